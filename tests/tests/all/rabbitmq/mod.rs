//! The `rabbitmq` connector against the real RabbitMQ on 127.0.0.1:5672,
//! checked with pika: publish and consume both ways with properties and
//! headers, at-least-once delivery through ack/nack, dropped sessions and a
//! killed process, a refused login, denials and a hostile broker.

use std::process::Command;

use serde_json::{json, Value};
use sluice::{ConnectorError, Error, ExecuteRequest, FetchRequest, Grants, Record, Session};
use sluice_tests::rabbitmq::{TestQueue, ADDRESS};
use sluice_tests::{data, fake_server, guest, kill_mid_stream, rabbitmq_connector, sluice_bin};

fn grants() -> Grants {
    Grants::none().allow_tcp(ADDRESS).expect("grant parses")
}

fn config() -> String {
    json!({ "address": ADDRESS, "block_ms": 300 }).to_string()
}

async fn open(config: &str, grants: &Grants) -> Result<Session, Error> {
    rabbitmq_connector().open(config, grants).await
}

fn draining(queue: &TestQueue) -> FetchRequest {
    FetchRequest::new(queue.name.clone()).options(&json!({ "end_when_idle": true }))
}

/// Every record a draining stream delivers as `(data, metadata)`, none acked.
async fn drain(session: &mut Session, queue: &TestQueue) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    let mut records = session.stream(&draining(queue), None).await.unwrap();
    while let Some(batch) = records.next(100).await.unwrap() {
        for (record, data) in batch.records.iter().zip(data(&batch.records)) {
            out.push((
                data,
                serde_json::from_str(record.metadata.as_deref().unwrap()).unwrap(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn published_records_are_confirmed_and_pika_reads_them_with_their_properties() {
    let queue = TestQueue::new();
    let mut session = open(&config(), &grants()).await.unwrap();
    let mut with_headers = Record::from_json(&json!({ "n": 2 }));
    with_headers.metadata = Some(
        json!({ "properties": { "headers": { "tenant": "acme", "attempt": 1 }, "message_id": "m-2" } })
            .to_string(),
    );
    let records = vec![
        Record::from_json(&json!({ "n": 1, "tags": ["a"] })),
        with_headers,
    ];
    let out = session
        .execute(&ExecuteRequest::new(queue.name.clone(), "publish", records))
        .await
        .unwrap();
    assert_eq!(out.affected, 2, "both confirmed");
    // The channel's delivery tags go on across calls: a second publish on
    // the same session counts its own confirms only.
    let more: Vec<Record> = (3..6)
        .map(|n| Record::from_json(&json!({ "n": n })))
        .collect();
    let again = session
        .execute(&ExecuteRequest::new(queue.name.clone(), "publish", more))
        .await
        .unwrap();
    assert_eq!(again.affected, 3);
    let taken = queue.take_all();
    assert_eq!(taken.len(), 5);
    assert_eq!(taken[0].0, json!({ "n": 1, "tags": ["a"] }));
    assert_eq!(taken[0].1["content_type"], "application/json");
    assert_eq!(taken[0].1["delivery_mode"], 2, "persistent");
    assert_eq!(
        taken[1].1["headers"],
        json!({ "tenant": "acme", "attempt": 1 })
    );
    assert_eq!(taken[1].1["message_id"], "m-2");
    // A routing key no queue is bound to is not silently dropped.
    let err = session
        .execute(&ExecuteRequest::new(
            "sluice-test-nobody-listens",
            "publish",
            vec![Record::from_json(&json!({ "x": 1 }))],
        ))
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("reached no queue"), "{err}");
}

#[tokio::test]
async fn messages_from_pika_are_consumed_and_the_unacked_half_comes_back_after_a_drop() {
    let queue = TestQueue::new();
    let payloads: Vec<Value> = (0..10).map(|n| json!({ "n": n })).collect();
    queue.publish(&payloads);
    {
        let mut session = open(&config(), &grants()).await.unwrap();
        let mut records = session.stream(&draining(&queue), None).await.unwrap();
        let batch = records.next(10).await.unwrap().expect("a batch");
        assert_eq!(data(&batch.records), payloads);
        let metadata: Value =
            serde_json::from_str(batch.records[3].metadata.as_deref().unwrap()).unwrap();
        assert_eq!(metadata["routing_key"], queue.name);
        assert_eq!(
            metadata["properties"]["headers"],
            json!({ "source": "pika", "n": 3 })
        );
        assert_eq!(metadata["properties"]["message_id"], "m-3");
        assert_eq!(metadata["redelivered"], false);
        let ids: Vec<String> = batch
            .records
            .iter()
            .map(|r| r.id.clone().unwrap())
            .collect();
        records.ack(&ids[..5]).await.unwrap();
    }
    let mut session = open(&config(), &grants()).await.unwrap();
    let again = drain(&mut session, &queue).await;
    let got: Vec<Value> = again.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(got, payloads[5..], "exactly the unacknowledged half");
    assert!(again.iter().all(|(_, m)| m["redelivered"] == true));
}

#[tokio::test]
async fn a_nacked_message_is_requeued_and_delivered_again() {
    let queue = TestQueue::new();
    queue.publish(&[json!({ "n": 1 }), json!({ "n": 2 })]);
    let mut session = open(&config(), &grants()).await.unwrap();
    let mut records = session.stream(&draining(&queue), None).await.unwrap();
    let first = records.next(10).await.unwrap().unwrap();
    let ids: Vec<String> = first
        .records
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    records.ack(&ids[..1]).await.unwrap();
    records.nack(&ids[1..]).await.unwrap();
    let again = records.next(10).await.unwrap().unwrap();
    assert_eq!(data(&again.records), [json!({ "n": 2 })]);
    let ids: Vec<String> = again
        .records
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    records.ack(&ids).await.unwrap();
    assert_eq!(records.next(10).await.unwrap(), None);
    drop(records);
    drop(session);
    assert_eq!(queue.counts().0, 0, "nothing left");
}

#[tokio::test]
async fn a_killed_sluice_run_loses_nothing() {
    let queue = TestQueue::new();
    let payloads: Vec<Value> = (0..200)
        .map(|n| json!({ "n": n, "pad": "x".repeat(1024) }))
        .collect();
    queue.publish(&payloads);
    let mut run = Command::new(sluice_bin());
    run.args(["run", &guest("sluice_rabbitmq").display().to_string()])
        .args(["--allow-tcp", ADDRESS, "--config", &config()])
        .args(["stream", &queue.name, "--batch-size", "7"]);
    let printed: Vec<Value> = kill_mid_stream(&mut run, 20)
        .iter()
        .map(|r| r["data"].clone())
        .collect();
    assert!(
        printed.len() < payloads.len(),
        "the kill landed before the end"
    );
    // The broker requeues what the dead connection held once it notices.
    let mut back = Vec::new();
    for _ in 0..50 {
        let mut session = open(&config(), &grants()).await.unwrap();
        back = drain(&mut session, &queue)
            .await
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        if back.len() + printed.len() >= payloads.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for payload in &payloads {
        if !printed.contains(payload) {
            assert!(
                back.contains(payload),
                "{} was never written and did not come back",
                payload["n"]
            );
        }
    }
    assert!(back.len() < payloads.len(), "acks before the kill held");
}

#[tokio::test]
async fn a_wrong_password_is_denied_and_a_missing_queue_is_not_found() {
    let grants_wrong = grants()
        .allow_socket_secret("amqp_password")
        .unwrap()
        .secret("amqp_password", "not-the-guest-password");
    let cfg = json!({ "address": ADDRESS, "user": "guest", "password_secret": "amqp_password" })
        .to_string();
    let err = open(&cfg, &grants_wrong).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Denied(m)) if m.contains("403")),
        "{shown}"
    );
    assert!(!shown.contains("not-the-guest-password"), "{shown}");
    let mut session = open(&config(), &grants()).await.unwrap();
    let err = session
        .stream(&FetchRequest::new("sluice-test-no-such-queue"), None)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&err, Error::Connector(ConnectorError::NotFound(m)) if m.contains("404")),
        "{err:?}"
    );
    // The session's connection recovers for the next call.
    session.health().await.unwrap();
}

#[tokio::test]
async fn a_hostile_broker_gets_a_typed_error_never_a_trap_or_unbounded_memory() {
    let cases: [(&'static [u8], &str); 3] = [
        // A method frame of 2 GB.
        (
            b"\x01\x00\x00\x7f\xff\xff\xff",
            "over the negotiated frame_max",
        ),
        // A frame without its end octet.
        (
            b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0a\x00",
            "did not end with 0xCE",
        ),
        // connection.start whose table claims more than the frame holds.
        (
            b"\x01\x00\x00\x00\x00\x00\x0a\x00\x0a\x00\x0a\x00\x09\x00\xff\xff\xff\xce",
            "shorter than its contents say",
        ),
    ];
    for (reply, expected) in cases {
        let (address, server) = fake_server(b"", reply);
        let cfg = json!({ "address": address }).to_string();
        let err = open(&cfg, &Grants::none().allow_tcp(&address).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains(expected)),
            "{expected}: {err:?}"
        );
        server.join().unwrap();
    }
}
