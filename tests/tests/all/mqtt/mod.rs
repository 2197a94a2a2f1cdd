//! The `mqtt` connector against the real Mosquitto on 127.0.0.1:1883,
//! checked with Mosquitto's own clients: publish and consume both ways, QoS 1
//! on a persistent session with PUBACK withheld until ack, redelivery after a
//! dropped session, a nack and a killed process, denials and a hostile broker.

use std::net::TcpListener;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sluice::{ConnectorError, Error, ExecuteRequest, FetchRequest, Grants, Record, Session};
use sluice_tests::mqtt::{TestTopic, ADDRESS};
use sluice_tests::{data, fake_server, guest, kill_mid_stream, mqtt_connector, sluice_bin};

fn grants() -> Grants {
    Grants::none().allow_tcp(ADDRESS).expect("grant parses")
}

fn config(topic: &TestTopic) -> String {
    json!({ "address": ADDRESS, "client_id": topic.client_id, "block_ms": 300 }).to_string()
}

async fn open(config: &str, grants: &Grants) -> Result<Session, Error> {
    mqtt_connector().open(config, grants).await
}

fn draining(topic: &TestTopic) -> FetchRequest {
    FetchRequest::new(topic.topic.clone()).options(&json!({ "end_when_idle": true }))
}

/// Every record a draining stream delivers as `(data, redelivered)`, none acked.
async fn drain(session: &mut Session, topic: &TestTopic) -> Vec<(Value, bool)> {
    let mut out = Vec::new();
    let mut records = session.stream(&draining(topic), None).await.unwrap();
    while let Some(batch) = records.next(100).await.unwrap() {
        for (record, data) in batch.records.iter().zip(data(&batch.records)) {
            let metadata: Value =
                serde_json::from_str(record.metadata.as_deref().unwrap()).unwrap();
            out.push((data, metadata["redelivered"].as_bool().unwrap()));
        }
    }
    out
}

/// Open the persistent session (subscribing), so what is published from now on is kept for it.
async fn subscribe(topic: &TestTopic) {
    let mut session = open(&config(topic), &grants()).await.unwrap();
    drop(session.stream(&draining(topic), None).await.unwrap());
}

fn payloads(count: usize) -> Vec<String> {
    (0..count).map(|n| json!({ "n": n }).to_string()).collect()
}

#[tokio::test]
async fn published_records_are_confirmed_and_what_mosquitto_sub_receives() {
    let topic = TestTopic::new();
    topic.subscribe_later();
    let mut session = open(&config(&topic), &grants()).await.unwrap();
    let records: Vec<Record> = (0..3)
        .map(|n| Record::from_json(&json!({ "n": n })))
        .collect();
    let out = session
        .execute(&ExecuteRequest::new(
            topic.topic.clone(),
            "publish",
            records,
        ))
        .await
        .unwrap();
    assert_eq!(out.affected, 3, "three PUBACKs");
    assert_eq!(topic.received(3), payloads(3));
}

#[tokio::test]
async fn messages_from_mosquitto_pub_are_consumed_and_the_unacked_half_comes_back() {
    let topic = TestTopic::new();
    subscribe(&topic).await;
    topic.publish(&payloads(10));
    {
        let mut session = open(&config(&topic), &grants()).await.unwrap();
        let mut records = session.stream(&draining(&topic), None).await.unwrap();
        let mut got = Vec::new();
        let mut ids = Vec::new();
        while got.len() < 10 {
            let batch = records.next(10).await.unwrap().expect("a batch");
            ids.extend(batch.records.iter().map(|r| r.id.clone().unwrap()));
            got.extend(data(&batch.records));
        }
        let expected: Vec<Value> = (0..10).map(|n| json!({ "n": n })).collect();
        assert_eq!(got, expected);
        records.ack(&ids[..5]).await.unwrap();
    }
    let mut session = open(&config(&topic), &grants()).await.unwrap();
    let again = drain(&mut session, &topic).await;
    let expected: Vec<(Value, bool)> = (5..10).map(|n| (json!({ "n": n }), true)).collect();
    assert_eq!(
        again, expected,
        "exactly the unacknowledged half, marked redelivered"
    );
}

#[tokio::test]
async fn a_puback_waits_for_older_deliveries_and_a_nack_brings_back_all_unacked() {
    let topic = TestTopic::new();
    subscribe(&topic).await;
    topic.publish(&payloads(3));
    let mut session = open(&config(&topic), &grants()).await.unwrap();
    let mut records = session.stream(&draining(&topic), None).await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let batch = records.next(10).await.unwrap().unwrap();
        ids.extend(batch.records.iter().map(|r| r.id.clone().unwrap()));
    }
    // The third is acked first: MQTT acknowledges in order, so its PUBACK waits.
    records.ack(&ids[2..]).await.unwrap();
    records.nack(&ids[1..2]).await.unwrap();
    let mut again = Vec::new();
    while let Some(batch) = records.next(10).await.unwrap() {
        again.extend(data(&batch.records));
    }
    assert_eq!(
        again,
        vec![json!({ "n": 0 }), json!({ "n": 1 }), json!({ "n": 2 })]
    );
}

#[tokio::test]
async fn a_killed_sluice_run_loses_nothing() {
    let topic = TestTopic::new();
    subscribe(&topic).await;
    let sent: Vec<String> = (0..150)
        .map(|n| json!({ "n": n, "pad": "x".repeat(1024) }).to_string())
        .collect();
    topic.publish(&sent);
    let mut run = Command::new(sluice_bin());
    run.args(["run", &guest("sluice_mqtt").display().to_string()])
        .args(["--allow-tcp", ADDRESS, "--config", &config(&topic)])
        .args(["stream", &topic.topic, "--batch-size", "7"]);
    let printed: Vec<Value> = kill_mid_stream(&mut run, 20)
        .iter()
        .map(|r| r["data"].clone())
        .collect();
    assert!(printed.len() < sent.len(), "the kill landed before the end");
    let mut session = open(&config(&topic), &grants()).await.unwrap();
    let back: Vec<Value> = drain(&mut session, &topic)
        .await
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    for text in &sent {
        let message: Value = serde_json::from_str(text).unwrap();
        if !printed.contains(&message) {
            assert!(
                back.contains(&message),
                "{} was never written and did not come back",
                message["n"]
            );
        }
    }
    assert!(back.len() < sent.len(), "acks before the kill held");
}

/// A fake broker that answers the CONNECT with `reply`.
async fn against(reply: &'static [u8], secret: Option<&str>) -> Error {
    let (address, server) = fake_server(b"", reply);
    let mut grants = Grants::none().allow_tcp(&address).unwrap();
    let mut cfg = json!({ "address": address, "client_id": "x" });
    if let Some(value) = secret {
        grants = grants
            .allow_socket_secret("pw")
            .unwrap()
            .secret("pw", value);
        cfg["username"] = json!("app");
        cfg["password_secret"] = json!("pw");
    }
    let err = open(&cfg.to_string(), &grants).await.unwrap_err();
    server.join().unwrap();
    err
}

#[tokio::test]
async fn a_refused_login_is_denied_and_a_hostile_broker_gets_a_typed_error() {
    let err = against(b"\x20\x02\x00\x04", Some("wrong-pw")).await;
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("user name or password")),
        "{err:?}"
    );
    let cases: [(&'static [u8], &str); 3] = [
        (b"\x20\xff\xff\xff\x7f", "over max_packet_bytes"),
        (b"\x20\xff\xff\xff\xff\x01", "longer than four bytes"),
        (b"\xf0\x00", "a packet a broker does not send"),
    ];
    for (reply, expected) in cases {
        let err = against(reply, None).await;
        assert!(
            matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains(expected)),
            "{expected}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_real_broker_that_requires_a_login_denies_a_wrong_password_and_accepts_the_right_one() {
    let dir = sluice_tests::tempdir();
    let passwords = dir.path().join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args([
            "-b",
            "-c",
            &passwords.display().to_string(),
            "app",
            "right-mqtt-pw",
        ])
        .output()
        .expect("mosquitto_passwd runs (Debian: mosquitto)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {{port}} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    )
    .unwrap();
    // The port goes into the file: write it once the daemon picked one.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("{port}", &port.to_string());
    std::fs::write(&conf, text).unwrap();
    let mut broker = Command::new("mosquitto")
        .args(["-c", &conf.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts (Debian: mosquitto)");
    let address = format!("127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&address).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let grants = |password: &str| {
        Grants::none()
            .allow_tcp(&address)
            .unwrap()
            .allow_socket_secret("pw")
            .unwrap()
            .secret("pw", password)
    };
    let cfg = json!({ "address": address, "client_id": "auth-test", "username": "app", "password_secret": "pw" })
        .to_string();
    let wrong = open(&cfg, &grants("wrong-mqtt-pw")).await;
    let right = match open(&cfg, &grants("right-mqtt-pw")).await {
        Ok(mut session) => session.health().await,
        Err(e) => Err(e),
    };
    let _ = broker.kill();
    let _ = broker.wait();
    let err = wrong.expect_err("a wrong password is refused");
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("user name or password") || m.contains("not authorized")),
        "{shown}"
    );
    assert!(!shown.contains("wrong-mqtt-pw"), "{shown}");
    right.expect("the right password logs in");
}
