//! What goes wrong: a wrong login, a hostile server, and a login secret that
//! an upstream or the connector itself echoes. (No grant and no server:
//! `queues.rs`, for every queue connector.)

use serde_json::json;
use sluice::{Capability, ConnectorError, Error, ExecuteRequest, Grants, Record};
use sluice_tests::redis::TestStream;
use sluice_tests::{fake_server, probe, probe_request};

use super::{config, grants, open};

fn one_record() -> Vec<Record> {
    vec![Record::from_json(&json!({ "n": 1 }))]
}

#[tokio::test]
async fn a_wrong_password_is_denied_and_the_right_one_logs_in_as_an_acl_user() {
    let mut stream = TestStream::new();
    let user = stream.user("right-horse-battery");
    let login = config(json!({ "username": user, "password_secret": "redis_password" }));
    let wrong = grants()
        .allow_socket_secret("redis_password")
        .unwrap()
        .secret("redis_password", "wrong-horse");
    let err = open(&login, &wrong).await.unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("WRONGPASS")),
        "{err:?}"
    );
    let right = grants()
        .allow_socket_secret("redis_password")
        .unwrap()
        .secret("redis_password", "right-horse-battery");
    let mut session = open(&login, &right).await.unwrap();
    let out = session
        .execute(&ExecuteRequest::new(
            stream.key.clone(),
            "publish",
            one_record(),
        ))
        .await
        .unwrap();
    assert_eq!(out.affected, 1);
    // The user may touch its own key only: the server's NOPERM is `denied`.
    let err = session
        .execute(&ExecuteRequest::new(
            "some-other-key",
            "publish",
            one_record(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("NOPERM")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_password_secret_that_is_not_granted_is_denied_naming_the_grant() {
    let login = config(json!({ "password_secret": "redis_password" }));
    // Provided for http/sql use, but not readable by the connector.
    let grants = grants().secret("redis_password", "s3cr3t-value");
    let err = open(&login, &grants).await.unwrap_err();
    let Error::Denied(denial) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(denial.capability, Capability::Secrets);
    assert_eq!(denial.grant, "--socket-secret redis_password=VALUE");
    assert!(!format!("{err:?}").contains("s3cr3t-value"));
}

#[tokio::test]
async fn a_secret_the_host_holds_for_http_cannot_be_made_readable_too() {
    let grants = sluice::Grants::from_json(
        r#"{ "http": { "origins": ["http://127.0.0.1:9"],
                       "auth": [{ "origin": "http://127.0.0.1:9", "kind": "bearer", "secret": "token" }] },
             "sockets": { "tcp": ["127.0.0.1:6379"], "secrets": ["token"] } }"#,
    )
    .unwrap()
    .secret("token", "t0ken-value");
    let err = open(&config(json!({})), &grants).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidGrant(m) if m.contains("`token`") && m.contains("never enter the connector")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_secret_the_connector_logs_or_returns_is_redacted() {
    let grants = Grants::none()
        .allow_socket_secret("login")
        .unwrap()
        .secret("login", "hunter2-very-secret");
    let mut session = probe().open("{}", &grants).await.unwrap();
    let err = session
        .fetch(&probe_request("secret", json!({ "message": "login" })))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("login with *** refused"), "{shown}");
}

async fn open_against(reply: &'static [u8], secret: Option<&str>) -> (Error, Vec<u8>) {
    let (address, server) = fake_server(b"", reply);
    let mut grants = Grants::none().allow_tcp(&address).unwrap();
    let mut cfg = json!({ "address": address });
    if let Some(value) = secret {
        grants = grants
            .allow_socket_secret("pw")
            .unwrap()
            .secret("pw", value);
        cfg["password_secret"] = json!("pw");
    }
    let err = open(&cfg.to_string(), &grants).await.unwrap_err();
    (err, server.join().unwrap())
}

#[tokio::test]
async fn a_hostile_server_gets_a_typed_error_never_a_trap_or_unbounded_memory() {
    // The PING that ends `open` is answered with each of these.
    let cases: [(&'static [u8], &str); 5] = [
        (b"$2000000000\r\n", "larger than max_reply_bytes"),
        (b"*2000000000\r\n", "larger than max_reply_bytes"),
        (b"!not resp\r\n", "does not speak RESP"),
        (
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n",
            "nested too deep",
        ),
        (b"$3\r\nabcXY", "not followed by CRLF"),
    ];
    for (reply, expected) in cases {
        let (err, heard) = open_against(reply, None).await;
        assert!(String::from_utf8_lossy(&heard).contains("PING"));
        assert!(
            matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains(expected)),
            "{expected}: {err:?}"
        );
    }
    // A line that never ends is cut at the bound, too.
    let endless: &'static [u8] = Box::leak(vec![b'+'; 200 * 1024].into_boxed_slice());
    let (err, _) = open_against(endless, None).await;
    assert!(
        matches!(&err, Error::Connector(ConnectorError::InvalidRequest(m)) if m.contains("longer than")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_that_echoes_the_password_does_not_put_it_in_the_error() {
    let (err, heard) = open_against(
        b"-ERR AUTH hunter2-echoed is not valid here\r\n",
        Some("hunter2-echoed"),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&heard).contains("hunter2-echoed"),
        "the login went to the granted server"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("AUTH *** is not valid"), "{shown}");
}
