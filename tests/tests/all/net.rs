//! The SDK's TCP connection (`sluice_sdk::net`) in a real guest: a protocol
//! spoken over a granted socket, and peers that stay silent, flood, close or
//! are not granted — each an error the connector can act on, never a hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use sluice::{Capability, ConnectorError, Error, Grants, Session};
use sluice_tests::{data, probe, probe_request};

/// Where the machine's Redis listens.
const REDIS: &str = "127.0.0.1:6379";

async fn open(grants: &Grants) -> Session {
    probe().open("{}", grants).await.expect("the probe opens")
}

/// Run the probe's `tcp-exchange` against `addr`: send `text`, read `lines`
/// lines of at most `max` bytes; with `reconnect`, once more on a new connection.
async fn exchange(
    addr: &str,
    text: &str,
    lines: usize,
    max: usize,
    reconnect: bool,
) -> Result<Value, Error> {
    let grants = Grants::none().allow_tcp(addr).unwrap();
    let mut session = open(&grants).await;
    let params = json!({
        "addr": addr, "text": text, "message": lines.to_string(), "method": max.to_string(),
        "host": if reconnect { "reconnect" } else { "" },
    });
    let page = session
        .fetch(&probe_request("tcp-exchange", params))
        .await?;
    Ok(data(&page.records).remove(0)["replies"].clone())
}

/// A peer on a free loopback port that runs `serve` on each of its first
/// `connections` connections, in a thread of its own.
fn peer(connections: usize, serve: fn(TcpStream, usize)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for n in 0..connections {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            serve(stream, n);
        }
    });
    addr
}

#[tokio::test]
async fn a_connector_speaks_redis_over_a_granted_socket() {
    assert!(
        TcpStream::connect(REDIS).is_ok(),
        "Redis is not reachable on {REDIS}; the test needs it (Debian: apt-get install redis-server, then start redis-server)"
    );
    let replies = exchange(REDIS, "PING\r\nECHO sluice\r\n", 3, 512, false)
        .await
        .unwrap();
    assert_eq!(replies, json!(["+PONG", "$6", "sluice"]));
}

#[tokio::test]
async fn a_silent_peer_is_a_timeout_not_a_hang() {
    let addr = peer(1, |stream, _| {
        // Accept, answer nothing for longer than the guest waits.
        std::thread::sleep(Duration::from_secs(3));
        drop(stream);
    });
    // The peer would close after 3 s, which reads as `unavailable`: a
    // `timeout` means the guest's read deadline (300 ms) ended the call.
    let err = exchange(&addr.to_string(), "hello\n", 1, 512, false)
        .await
        .unwrap_err();
    assert_eq!(
        err.connector_error(),
        Some(&ConnectorError::Timeout),
        "{err}"
    );
}

#[tokio::test]
async fn an_endless_line_is_refused_at_its_bound() {
    let addr = peer(1, |mut stream, _| {
        let _ = stream.write_all(&vec![b'x'; 256 * 1024]);
        std::thread::sleep(Duration::from_secs(1));
    });
    let err = exchange(&addr.to_string(), "hello\n", 1, 1024, false)
        .await
        .unwrap_err();
    match err.connector_error() {
        Some(ConnectorError::InvalidRequest(message)) => {
            assert!(message.contains("longer than 1024 bytes"), "{message}");
        }
        other => panic!("expected invalid-request, got {other:?} ({err})"),
    }
}

#[tokio::test]
async fn a_closed_connection_is_unavailable_and_reconnect_starts_afresh() {
    // Each connection: read the request, answer one line naming the connection, close.
    let addr = peer(3, |mut stream, n| {
        let mut request = [0u8; 64];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(format!("connection {n}\r\n").as_bytes());
    });
    let replies = exchange(&addr.to_string(), "hi\n", 1, 512, true)
        .await
        .unwrap();
    assert_eq!(replies, json!(["connection 0", "connection 1"]));
    // Asking for a second line from a peer that closed after one.
    let err = exchange(&addr.to_string(), "hi\n", 2, 512, false)
        .await
        .unwrap_err();
    match err.connector_error() {
        Some(ConnectorError::Unavailable(message)) => {
            assert!(message.contains("closed the connection"), "{message}");
        }
        other => panic!("expected unavailable, got {other:?} ({err})"),
    }
}

#[tokio::test]
async fn an_ungranted_address_is_denied_naming_the_grant() {
    let granted = peer(0, |_, _| {});
    let other = peer(1, |_, _| {});
    let grants = Grants::none().allow_tcp(&granted.to_string()).unwrap();
    let mut session = open(&grants).await;
    let params = json!({ "addr": other.to_string(), "text": "hi\n" });
    let err = session
        .fetch(&probe_request("tcp-exchange", params))
        .await
        .unwrap_err();
    let Error::Denied(denial) = &err else {
        panic!("expected the host's denial, got {err}");
    };
    assert_eq!(denial.capability, Capability::Tcp);
    assert_eq!(denial.grant, format!("--allow-tcp {other}"));
    match &denial.connector_error {
        Some(ConnectorError::Denied(message)) => {
            assert!(
                message.contains(&format!("--allow-tcp {other}")),
                "{message}"
            );
        }
        other => panic!("the connector should say denied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_connect_is_unavailable_when_the_connection_opens() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // No bytes exchanged: the refusal must show at `open`, not at the first read.
    let err = exchange(&addr, "", 0, 16, false).await.unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains("connecting to") && m.contains(&addr)),
        "{err:?}"
    );
}
