//! What goes wrong: hostile brokers, a broker that goes away mid-stream,
//! SASL/PLAIN logins refused and accepted. (No grant and no server:
//! `queues.rs`, for every queue connector.)

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use sluice::{ConnectorError, Error, Grants};
use sluice_tests::kafka::Broker;
use sluice_tests::kafka_connector;

use super::{drain_ids, draining, numbered, topic};

/// One answer of a fake broker: the bytes after the frame length and the
/// correlation id, or raw bytes sent as they are.
enum Answer {
    Body(Vec<u8>),
    Raw(Vec<u8>),
}

/// A one-connection fake broker: for each answer it reads one request
/// frame and writes the answer (echoing the request's correlation id);
/// then it keeps the connection open a moment. Returns its address and,
/// when joined, the bytes it heard.
fn fake_broker(answers: Vec<Answer>) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut heard = Vec::new();
        for answer in answers {
            let mut size = [0; 4];
            if socket.read_exact(&mut size).is_err() {
                break;
            }
            let mut request = vec![0; u32::from_be_bytes(size) as usize];
            socket.read_exact(&mut request).unwrap();
            heard.extend_from_slice(&request);
            let bytes = match answer {
                Answer::Raw(bytes) => bytes,
                Answer::Body(body) => {
                    let mut frame = ((body.len() + 4) as u32).to_be_bytes().to_vec();
                    frame.extend_from_slice(&request[4..8]); // correlation id
                    frame.extend_from_slice(&body);
                    frame
                }
            };
            let _ = socket.write_all(&bytes);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        heard
    });
    (address, handle)
}

/// An ApiVersions v0 answer offering each `(api key, min, max)`.
fn api_versions(apis: &[(i16, i16, i16)]) -> Vec<u8> {
    let mut body = 0i16.to_be_bytes().to_vec();
    body.extend_from_slice(&(apis.len() as i32).to_be_bytes());
    for (key, min, max) in apis {
        for n in [key, min, max] {
            body.extend_from_slice(&n.to_be_bytes());
        }
    }
    body
}

fn string(text: &str) -> Vec<u8> {
    let mut out = (text.len() as i16).to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

async fn open_fake(answers: Vec<Answer>, sasl: Option<&str>) -> (Error, Vec<u8>) {
    let (address, server) = fake_broker(answers);
    let mut grants = Grants::none().allow_tcp(&address).unwrap();
    let mut config = json!({ "bootstrap": [address] });
    if let Some(password) = sasl {
        grants = grants
            .allow_socket_secret("pw")
            .unwrap()
            .secret("pw", password);
        config["sasl_username"] = json!("app");
        config["sasl_password_secret"] = json!("pw");
    }
    let Err(err) = kafka_connector().open(&config.to_string(), &grants).await else {
        panic!("the fake broker is refused");
    };
    (err, server.join().unwrap())
}

#[tokio::test]
async fn a_hostile_broker_gets_a_typed_error_never_a_host_panic_or_unbounded_memory() {
    let cases: Vec<(Vec<Answer>, &str)> = vec![
        // A frame length of 2 GiB: refused before a byte of it is read.
        (
            vec![Answer::Raw(vec![0x7f, 0xff, 0xff, 0xff])],
            "over the limit",
        ),
        // A frame cut short by a closed connection.
        (
            vec![Answer::Raw(vec![0, 0, 0, 100, 0, 0, 0, 1, 0, 0])],
            "closed the connection",
        ),
        // An answer to another request.
        (
            vec![Answer::Raw(vec![
                0, 0, 0, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0,
            ])],
            "where 1 was asked",
        ),
        // An answer that ends in the middle of its fields.
        (
            vec![Answer::Body(vec![0, 0, 0, 0, 0, 1, 0])],
            "does not decode",
        ),
        // An error code where the versions should be.
        (
            vec![Answer::Body(vec![0, 35, 0, 0, 0, 0])],
            "UnsupportedVersion (35)",
        ),
    ];
    for (answers, expected) in cases {
        let (err, _) = open_fake(answers, None).await;
        assert!(
            matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains(expected)),
            "{expected}: {err:?}"
        );
    }
    // A count of 2^31 - 1 versions in a six-byte answer: the protocol
    // crate reserves room for them before reading one, which ends the guest
    // (its memory is the host's to bound). The host reports it, and the
    // next session is unaffected.
    let (err, _) = open_fake(vec![Answer::Body(vec![0, 0, 0x7f, 0xff, 0xff, 0xff])], None).await;
    assert!(matches!(&err, Error::Trap(_)), "{err:?}");
    // A broker that offers none of the versions this connector speaks.
    let (address, server) = fake_broker(vec![Answer::Body(api_versions(&[(3, 0, 0)]))]);
    let grants = Grants::none().allow_tcp(&address).unwrap();
    let mut session = kafka_connector()
        .open(&json!({ "bootstrap": [address] }).to_string(), &grants)
        .await
        .unwrap();
    let err = session.discover().await.unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Unsupported(m)) if m.contains("speaks Metadata v0..v0; this connector speaks v1..v12")),
        "{err:?}"
    );
    server.join().unwrap();
}

#[tokio::test]
async fn a_refused_sasl_login_is_denied_and_the_password_stays_out_of_the_error() {
    let mut handshake = 0i16.to_be_bytes().to_vec();
    handshake.extend_from_slice(&1i32.to_be_bytes());
    handshake.extend_from_slice(&string("PLAIN"));
    let mut refused = 58i16.to_be_bytes().to_vec();
    refused.extend_from_slice(&string(
        "Authentication failed: bad password hunter2-kafka for app",
    ));
    refused.extend_from_slice(&0i32.to_be_bytes()); // auth bytes: empty
    let (err, heard) = open_fake(
        vec![
            Answer::Body(api_versions(&[(17, 0, 1), (36, 0, 0)])),
            Answer::Body(handshake),
            Answer::Body(refused),
        ],
        Some("hunter2-kafka"),
    )
    .await;
    assert!(
        heard.windows(18).any(|w| w == b"\0app\0hunter2-kafka"),
        "the PLAIN token reached the broker"
    );
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("refused the SASL/PLAIN login of `app`") && m.contains("SaslAuthenticationFailed (58)")),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn an_accepted_sasl_login_opens_the_session_after_the_plain_token_went_to_the_broker() {
    let mut handshake = 0i16.to_be_bytes().to_vec();
    handshake.extend_from_slice(&1i32.to_be_bytes());
    handshake.extend_from_slice(&string("PLAIN"));
    let mut accepted = 0i16.to_be_bytes().to_vec();
    accepted.extend_from_slice(&(-1i16).to_be_bytes()); // no error message
    accepted.extend_from_slice(&0i32.to_be_bytes()); // auth bytes: empty
    let (address, server) = fake_broker(vec![
        Answer::Body(api_versions(&[(17, 0, 1), (36, 0, 0)])),
        Answer::Body(handshake),
        Answer::Body(accepted),
    ]);
    let grants = Grants::none()
        .allow_tcp(&address)
        .unwrap()
        .allow_socket_secret("pw")
        .unwrap()
        .secret("pw", "right-kafka-pw");
    let cfg =
        json!({ "bootstrap": [address], "sasl_username": "app", "sasl_password_secret": "pw" });
    let session = kafka_connector().open(&cfg.to_string(), &grants).await;
    assert!(session.is_ok(), "{:?}", session.err());
    drop(session);
    let heard = server.join().unwrap();
    // ApiVersions, then SaslHandshake v1 naming PLAIN, then the token.
    assert_eq!(&heard[..2], &18i16.to_be_bytes(), "ApiVersions first");
    assert!(heard.windows(5).any(|w| w == b"PLAIN"));
    assert!(heard.windows(19).any(|w| w == b"\0app\0right-kafka-pw"));
}

/// A TCP forwarder that can cut every connection and refuse new ones.
struct Proxy {
    address: String,
    down: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn new() -> (Self, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        (
            Self {
                address,
                down: Arc::default(),
                live: Arc::default(),
            },
            listener,
        )
    }

    fn forward(&self, listener: TcpListener, target: String) {
        let down = self.down.clone();
        let live = self.live.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if down.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(upstream) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut live = live.lock().unwrap();
                live.push(client.try_clone().unwrap());
                live.push(upstream.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for socket in self.live.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_broker_that_goes_away_mid_stream_is_unavailable_and_the_checkpoint_resumes_exactly() {
    let (proxy, listener) = Proxy::new();
    let broker = Broker::start_with(&[], Some(&proxy.address));
    proxy.forward(listener, broker.address().to_string());
    let name = topic("away");
    broker.create_topic(&name, 1);
    broker.produce(&name, &numbered(30));
    let grants = Grants::none().allow_tcp(&proxy.address).unwrap();
    let cfg = json!({ "bootstrap": [proxy.address], "block_ms": 200 }).to_string();
    let mut session = kafka_connector().open(&cfg, &grants).await.unwrap();
    let mut records = session.stream(&draining(&name), None).await.unwrap();
    let first = records.next(10).await.unwrap().unwrap();
    let checkpoint = first.checkpoint.clone().unwrap();
    let rest = records.next(100).await.unwrap().unwrap();
    assert_eq!(rest.records.len(), 20);
    proxy.cut();
    let err = records.next(10).await.unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains(&proxy.address)),
        "{err:?}"
    );
    drop(records);
    proxy.restore();
    let mut session = kafka_connector().open(&cfg, &grants).await.unwrap();
    let mut resumed = session
        .stream(&draining(&name), Some(&checkpoint))
        .await
        .unwrap();
    let after = drain_ids(&mut resumed, 7).await;
    let expected: Vec<String> = (10..30).map(|o| format!("{name}/0/{o}")).collect();
    assert_eq!(after, expected);
}
