//! What goes wrong: a refused login, a hostile server. (No grant and no
//! server: `queues.rs`, for every queue connector.)

use serde_json::json;
use sluice::{ConnectorError, Error, Grants};
use sluice_tests::fake_server;

use super::open;

async fn open_fake(script: &'static [u8], secret: Option<&str>) -> (Error, Vec<u8>) {
    let (address, server) = fake_server(b"INFO {\"max_payload\":1048576}\r\n", script);
    let mut grants = Grants::none().allow_tcp(&address).unwrap();
    let mut cfg = json!({ "address": address });
    if let Some(value) = secret {
        grants = grants
            .allow_socket_secret("pw")
            .unwrap()
            .secret("pw", value);
        cfg["user"] = json!("app");
        cfg["password_secret"] = json!("pw");
    }
    let err = open(&cfg.to_string(), &grants).await.unwrap_err();
    (err, server.join().unwrap())
}

#[tokio::test]
async fn a_refused_login_is_denied_and_the_password_stays_out_of_the_error() {
    let (err, heard) = open_fake(
        b"-ERR 'Authorization Violation for pass hunter2-nats'\r\n",
        Some("hunter2-nats"),
    )
    .await;
    assert!(String::from_utf8_lossy(&heard).contains("\"pass\":\"hunter2-nats\""));
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("Authorization Violation")),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn a_hostile_server_gets_a_typed_error_never_a_trap_or_unbounded_memory() {
    let cases: [(&'static [u8], &str); 3] = [
        (b"MSG x 1 2000000000\r\n", "over the limit"),
        (b"WHAT is this\r\n", "does not speak the NATS protocol"),
        (b"MSG x 1 3\r\nabcXY", "not followed by CRLF"),
    ];
    for (script, expected) in cases {
        let (err, _) = open_fake(script, None).await;
        assert!(
            matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains(expected)),
            "{expected}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_real_server_that_requires_a_login_denies_a_wrong_password_and_accepts_the_right_one() {
    let server = sluice_tests::Daemon::start(
        "nats-server",
        &[
            "-a",
            "127.0.0.1",
            "-p",
            "{port}",
            "--user",
            "app",
            "--pass",
            "right-nats-pw",
        ],
    );
    let grants = |password: &str| {
        Grants::none()
            .allow_tcp(&server.address)
            .unwrap()
            .allow_socket_secret("pw")
            .unwrap()
            .secret("pw", password)
    };
    let cfg =
        json!({ "address": server.address, "user": "app", "password_secret": "pw" }).to_string();
    let err = open(&cfg, &grants("wrong-nats-pw")).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("Authorization Violation")),
        "{shown}"
    );
    assert!(!shown.contains("wrong-nats-pw"), "{shown}");
    let mut session = open(&cfg, &grants("right-nats-pw")).await.unwrap();
    session.health().await.unwrap();
}
