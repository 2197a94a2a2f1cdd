//! Each capability allows exactly what is granted: probe guests try to reach
//! past their grants and must get the typed denial.

use std::net::TcpListener;

use serde_json::json;
use sluice::{Capability, ConnectorError, Error, Grants, Session};
use sluice_tests::upstream::Upstream;
use sluice_tests::{data, probe, probe_request, tempdir};

async fn open(grants: &Grants) -> Session {
    probe().open("{}", grants).await.expect("probe opens")
}

async fn run(
    session: &mut Session,
    action: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, Error> {
    let page = session.fetch(&probe_request(action, params)).await?;
    Ok(data(&page.records).remove(0))
}

fn assert_connector_denied(result: Result<serde_json::Value, Error>, needle: &str) {
    match result {
        Err(Error::Connector(ConnectorError::Denied(message))) => {
            assert!(
                message.contains(needle),
                "denial `{message}` should mention `{needle}`"
            )
        }
        other => panic!("expected a denied error mentioning `{needle}`, got {other:?}"),
    }
}

fn host_denial(result: Result<serde_json::Value, Error>) -> sluice::Denial {
    match result {
        Err(Error::Denied(denial)) => denial,
        other => panic!("expected a host denial, got {other:?}"),
    }
}

#[tokio::test]
async fn files_inside_a_mount_are_readable() {
    let dir = tempdir();
    std::fs::write(dir.path().join("in.txt"), "inside").unwrap();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.path().display()))
        .unwrap();
    let mut session = open(&grants).await;
    let out = run(&mut session, "read", json!({ "path": "/data/in.txt" }))
        .await
        .unwrap();
    assert_eq!(out["text"], "inside");
}

#[tokio::test]
async fn files_outside_every_mount_are_denied() {
    let dir = tempdir();
    let secret = tempdir();
    std::fs::write(secret.path().join("secret.txt"), "top secret").unwrap();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.path().display()))
        .unwrap();
    let mut session = open(&grants).await;
    let path = secret.path().join("secret.txt").display().to_string();
    let result = run(&mut session, "read", json!({ "path": path })).await;
    assert_connector_denied(result, "outside every mounted directory");
}

#[tokio::test]
async fn files_dotdot_escape_is_denied() {
    let outer = tempdir();
    std::fs::create_dir(outer.path().join("mounted")).unwrap();
    std::fs::write(outer.path().join("secret.txt"), "top secret").unwrap();
    let grants = Grants::none()
        .mount(&format!(
            "{}:/data:ro",
            outer.path().join("mounted").display()
        ))
        .unwrap();
    let mut session = open(&grants).await;
    let result = run(
        &mut session,
        "read",
        json!({ "path": "/data/../secret.txt" }),
    )
    .await;
    assert_connector_denied(result, "/data/../secret.txt");
}

#[tokio::test]
async fn files_symlink_escape_is_denied() {
    let outer = tempdir();
    let mounted = outer.path().join("mounted");
    std::fs::create_dir(&mounted).unwrap();
    std::fs::write(outer.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(outer.path().join("secret.txt"), mounted.join("link.txt")).unwrap();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", mounted.display()))
        .unwrap();
    let mut session = open(&grants).await;
    let result = run(&mut session, "read", json!({ "path": "/data/link.txt" })).await;
    assert_connector_denied(result, "/data/link.txt");
}

#[tokio::test]
async fn files_write_to_a_read_only_mount_is_denied_and_changes_nothing() {
    let dir = tempdir();
    std::fs::write(dir.path().join("keep.txt"), "original").unwrap();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.path().display()))
        .unwrap();
    let mut session = open(&grants).await;
    let result = run(
        &mut session,
        "write",
        json!({ "path": "/data/keep.txt", "text": "overwritten" }),
    )
    .await;
    assert_connector_denied(result, "/data/keep.txt");
    let result = run(
        &mut session,
        "write",
        json!({ "path": "/data/new.txt", "text": "x" }),
    )
    .await;
    assert_connector_denied(result, "/data/new.txt");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "original"
    );
    assert!(!dir.path().join("new.txt").exists());
}

#[tokio::test]
async fn files_write_to_a_read_write_mount_is_allowed() {
    let dir = tempdir();
    let grants = Grants::none()
        .mount(&format!("{}:/out:rw", dir.path().display()))
        .unwrap();
    let mut session = open(&grants).await;
    run(
        &mut session,
        "write",
        json!({ "path": "/out/new.txt", "text": "written" }),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
        "written"
    );
}

#[tokio::test]
async fn tcp_connect_to_a_granted_address_is_allowed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let grants = Grants::none().allow_tcp(&addr.to_string()).unwrap();
    let mut session = open(&grants).await;
    let out = run(&mut session, "tcp", json!({ "addr": addr.to_string() }))
        .await
        .unwrap();
    assert_eq!(out["peer"], addr.to_string());
}

#[tokio::test]
async fn tcp_connect_to_an_ungranted_port_is_denied_naming_the_grant() {
    let granted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    let grants = Grants::none()
        .allow_tcp(&granted.local_addr().unwrap().to_string())
        .unwrap();
    let mut session = open(&grants).await;
    let denial = host_denial(
        run(
            &mut session,
            "tcp",
            json!({ "addr": other_addr.to_string() }),
        )
        .await,
    );
    assert_eq!(denial.capability, Capability::Tcp);
    assert_eq!(denial.attempted, format!("connect to {other_addr}"));
    assert_eq!(denial.grant, format!("--allow-tcp {other_addr}"));
    assert!(matches!(
        denial.connector_error,
        Some(ConnectorError::Denied(_))
    ));
}

#[tokio::test]
async fn tcp_without_any_grant_is_denied() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut session = open(&Grants::none()).await;
    let result = run(&mut session, "tcp", json!({ "addr": addr })).await;
    assert!(result.unwrap_err().is_denied());
}

#[tokio::test]
async fn tcp_listen_is_denied_even_with_a_tcp_grant() {
    let grants = Grants::none().allow_tcp("127.0.0.1:*").unwrap();
    let mut session = open(&grants).await;
    let denial = host_denial(run(&mut session, "listen", json!({ "addr": "127.0.0.1:0" })).await);
    assert_eq!(denial.capability, Capability::Tcp);
    assert!(
        denial.attempted.starts_with("bind 127.0.0.1:0")
            || denial.attempted.starts_with("listen on"),
        "{denial}"
    );
}

#[tokio::test]
async fn udp_and_dns_are_denied_unless_granted() {
    let mut session = open(&Grants::none()).await;
    let udp = run(&mut session, "udp", json!({ "addr": "0.0.0.0:0" })).await;
    assert!(udp.unwrap_err().is_denied());
    let dns = run(&mut session, "dns", json!({ "host": "localhost" })).await;
    assert!(dns.is_err(), "an ungranted lookup must fail, got {dns:?}");
    let mut grants = Grants::none();
    grants.sockets.allow_dns(true);
    let mut session = open(&grants).await;
    let out = run(&mut session, "dns", json!({ "host": "localhost" }))
        .await
        .unwrap();
    assert!(
        out["addrs"]
            .as_array()
            .unwrap()
            .contains(&json!("127.0.0.1")),
        "{out}"
    );
}

#[tokio::test]
async fn http_to_a_granted_origin_is_allowed() {
    let upstream = Upstream::start().await;
    let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    let mut session = open(&grants).await;
    let out = run(
        &mut session,
        "http",
        json!({ "url": upstream.url("/hello") }),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "hello");
}

#[tokio::test]
async fn http_to_an_ungranted_origin_is_denied_naming_the_grant() {
    let granted = Upstream::start().await;
    let other = Upstream::start().await;
    let grants = Grants::none().allow_http(&granted.origin()).unwrap();
    let mut session = open(&grants).await;
    let denial =
        host_denial(run(&mut session, "http", json!({ "url": other.url("/hello") })).await);
    assert_eq!(denial.capability, Capability::Http);
    assert_eq!(denial.attempted, format!("GET {}", other.url("/hello")));
    assert_eq!(denial.grant, format!("--allow-http {}", other.origin()));
}

#[tokio::test]
async fn http_redirect_to_an_ungranted_origin_is_not_followed() {
    let granted = Upstream::start().await;
    let other = Upstream::start().await;
    let grants = Grants::none().allow_http(&granted.origin()).unwrap();
    let mut session = open(&grants).await;
    let redirect = granted.url(&format!("/redirect?to={}", other.url("/hello")));
    // The host hands the redirect to the guest instead of following it.
    let out = run(&mut session, "http", json!({ "url": redirect }))
        .await
        .unwrap();
    assert_eq!(out["status"], 302);
    assert_eq!(out["location"], other.url("/hello"));
    // A guest that follows it itself is checked like any other request.
    let denial = host_denial(run(&mut session, "http-follow", json!({ "url": redirect })).await);
    assert_eq!(denial.grant, format!("--allow-http {}", other.origin()));
}

#[tokio::test]
async fn http_response_larger_than_the_cap_is_stopped() {
    let upstream = Upstream::start().await;
    let mut grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    grants.http.max_response_bytes = 64 * 1024;
    let mut session = open(&grants).await;
    for path in ["/bytes?n=200000", "/chunked?n=200000"] {
        let result = run(&mut session, "http", json!({ "url": upstream.url(path) })).await;
        match result {
            Err(Error::Connector(ConnectorError::Unavailable(message))) => {
                // The grant's cap, which the user can change, never the response's size.
                assert!(
                    message.contains("larger than the host's cap") && message.contains("65536"),
                    "{path}: {message}"
                )
            }
            other => panic!("{path}: expected the size cap, got {other:?}"),
        }
    }
    // Under the cap is fine.
    let out = run(
        &mut session,
        "http",
        json!({ "url": upstream.url("/chunked?n=1000") }),
    )
    .await
    .unwrap();
    assert_eq!(out["body"].as_str().unwrap().len(), 1000);
}

#[tokio::test]
async fn http_timeouts_name_the_grant_setting_that_expired() {
    let upstream = Upstream::start().await;
    let mut grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    grants.http.first_byte_timeout = std::time::Duration::from_millis(200);
    grants.http.between_bytes_timeout = std::time::Duration::from_millis(300);
    let mut session = open(&grants).await;
    let cases = [
        (
            "/hold?ms=5000",
            "first_byte_timeout_ms",
            200,
            "the first response byte",
        ),
        (
            "/stall",
            "between_bytes_timeout_ms",
            300,
            "the next response bytes",
        ),
    ];
    for (path, setting, ms, waited_for) in cases {
        let err = run(&mut session, "http", json!({ "url": upstream.url(path) }))
            .await
            .unwrap_err();
        let message = err.to_string();
        match err {
            Error::GrantTimeout(expired) => {
                assert_eq!(expired.capability, Capability::Http, "{path}");
                assert_eq!(expired.setting, setting, "{path}");
                assert_eq!(
                    expired.limit,
                    std::time::Duration::from_millis(ms),
                    "{path}"
                );
                assert_eq!(
                    expired.waited_for,
                    format!("{waited_for} from {}", upstream.origin()),
                    "{path}"
                );
                assert!(
                    message.contains(&format!("the http grant's {setting} of {ms} ms")),
                    "{message}"
                );
                assert!(!message.contains("connector's own"), "{message}");
            }
            other => panic!("{path}: expected the grant's timeout, got {other:?}"),
        }
    }
    // The session is still usable, and a later timeout-free call is not blamed.
    let out = run(
        &mut session,
        "http",
        json!({ "url": upstream.url("/hold?ms=1") }),
    )
    .await
    .unwrap();
    assert_eq!(out["body"], "late");
}

#[tokio::test]
async fn guests_see_no_host_environment() {
    let mut session = open(&Grants::none()).await;
    let out = run(&mut session, "env", json!({})).await.unwrap();
    assert_eq!(out, json!({}));
}
