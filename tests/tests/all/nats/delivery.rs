//! Publish and consume both ways with nats-py; at-least-once delivery.

use std::process::Command;

use serde_json::{json, Value};
use sluice::{ExecuteRequest, FetchRequest, Record};
use sluice_tests::data;
use sluice_tests::nats::{py, TestStream, ADDRESS};
use sluice_tests::{guest, kill_mid_stream, sluice_bin};

use super::{config, drain, draining, grants, ids, open};

fn seqs(from: u64, count: u64) -> Vec<String> {
    (from..from + count).map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn published_records_are_confirmed_by_jetstream_and_read_back_by_nats_py() {
    let stream = TestStream::new();
    let mut session = open(&config(json!({})), &grants()).await.unwrap();
    let mut with_id = Record::from_json(&json!({ "order": 2 }));
    with_id.id = Some("order-2".into());
    let records = vec![
        Record::from_json(&json!({ "order": 1, "lines": [{ "sku": "A" }] })),
        with_id.clone(),
    ];
    let out = session
        .execute(&ExecuteRequest::new(
            stream.subject.clone(),
            "publish",
            records,
        ))
        .await
        .unwrap();
    assert_eq!(out.affected, 2);
    assert_eq!(
        data(&out.records)[1],
        json!({ "stream": stream.name, "seq": 2, "duplicate": false })
    );
    // The same id again inside the duplicate window is not stored twice.
    let again = session
        .execute(&ExecuteRequest::new(
            stream.subject.clone(),
            "publish",
            vec![with_id],
        ))
        .await
        .unwrap();
    assert_eq!(data(&again.records)[0]["duplicate"], true);
    let stored = stream.messages();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].1,
        json!({ "order": 1, "lines": [{ "sku": "A" }] })
    );
    assert_eq!(stored[1].2["Nats-Msg-Id"], "order-2");
    // A subject no stream stores is not silently dropped.
    let err = session
        .execute(&ExecuteRequest::new(
            "nobody.stores.this",
            "publish",
            vec![Record::from_json(&json!({ "x": 1 }))],
        ))
        .await
        .unwrap_err();
    assert!(
        format!("{err}").contains("no JetStream stream stores"),
        "{err}"
    );
}

#[tokio::test]
async fn messages_from_nats_py_are_consumed_and_the_unacked_half_comes_back_after_a_drop() {
    let stream = TestStream::new();
    let payloads: Vec<Value> = (0..10).map(|n| json!({ "n": n })).collect();
    stream.publish(&payloads);
    let cfg = config(json!({ "ack_wait_ms": 1000 }));
    {
        let mut session = open(&cfg, &grants()).await.unwrap();
        let mut records = session.stream(&draining(&stream), None).await.unwrap();
        let batch = records.next(10).await.unwrap().expect("a batch");
        assert_eq!(ids(&batch), seqs(1, 10));
        assert_eq!(data(&batch.records), payloads);
        records.ack(&seqs(1, 5)).await.unwrap();
    }
    // Dropped with the session: the server delivers the five it held again
    // once ack_wait passes.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let mut session = open(&cfg, &grants()).await.unwrap();
    let again = drain(&mut session, &stream).await;
    let again_ids: Vec<String> = again.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(again_ids, seqs(6, 5), "exactly the unacknowledged half");
    assert!(again.iter().all(|(_, _, redelivered)| *redelivered));
    assert_eq!(again[0].1, json!({ "n": 5 }));
}

#[tokio::test]
async fn a_nacked_message_is_delivered_again() {
    let stream = TestStream::new();
    stream.publish(&[json!({ "n": 1 }), json!({ "n": 2 })]);
    let mut session = open(&config(json!({})), &grants()).await.unwrap();
    let mut records = session.stream(&draining(&stream), None).await.unwrap();
    let first = records.next(10).await.unwrap().unwrap();
    assert_eq!(ids(&first), seqs(1, 2));
    records.ack(&["1".to_string()]).await.unwrap();
    records.nack(&["2".to_string()]).await.unwrap();
    let again = records.next(10).await.unwrap().unwrap();
    assert_eq!(ids(&again), ["2"]);
    let metadata: Value =
        serde_json::from_str(again.records[0].metadata.as_deref().unwrap()).unwrap();
    assert_eq!(metadata["delivered"], 2);
    records.ack(&ids(&again)).await.unwrap();
    assert_eq!(records.next(10).await.unwrap(), None);
    let err = records.ack(&["2".to_string()]).await.unwrap_err();
    assert!(format!("{err}").contains("settled already"), "{err}");
    drop(records);
    assert_eq!(stream.consumer_state("d1"), (0, 0));
}

#[tokio::test]
async fn fetch_pages_a_stream_by_sequence_without_consuming_it() {
    let stream = TestStream::new();
    stream.publish(&(0..5).map(|n| json!({ "n": n })).collect::<Vec<_>>());
    let mut session = open(&config(json!({})), &grants()).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = session
            .fetch(&FetchRequest::new(stream.name.clone()).page(2, None, cursor))
            .await
            .unwrap();
        assert_eq!(page.total_count, Some(5));
        seen.extend(data(&page.records));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..5).map(|n| json!({ "n": n })).collect::<Vec<_>>());
    let resources = session.discover().await.unwrap();
    assert!(
        resources.iter().any(|r| r.name == stream.name),
        "{resources:?}"
    );
}

#[tokio::test]
async fn a_core_subject_is_at_most_once_and_says_so() {
    let describe = sluice_tests::nats_connector().describe().await.unwrap();
    assert!(
        describe.description.contains("at most once"),
        "{}",
        describe.description
    );
    let stream = TestStream::new();
    let subject = format!("{}.core", stream.name);
    let mut session = open(&config(json!({})), &grants()).await.unwrap();
    let req = FetchRequest::new(format!("subject:{subject}"));
    let mut records = session.stream(&req, None).await.unwrap();
    py(
        "async def main(nc, js):\n    for n in range(3):\n        await nc.publish(ARGS['subject'], json.dumps({'n': n}).encode())\n    await nc.flush()\n    return True",
        &json!({ "subject": subject }),
    );
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = records.next(10).await.unwrap().unwrap();
        got.extend(data(&batch.records));
    }
    assert_eq!(got, (0..3).map(|n| json!({ "n": n })).collect::<Vec<_>>());
    let err = records.nack(&["1".to_string()]).await.unwrap_err();
    assert!(format!("{err}").contains("at most once"), "{err}");
}

#[tokio::test]
async fn a_killed_sluice_run_loses_nothing_its_messages_come_back_after_ack_wait() {
    let stream = TestStream::new();
    let payloads: Vec<Value> = (0..200)
        .map(|n| json!({ "n": n, "pad": "x".repeat(1024) }))
        .collect();
    stream.publish(&payloads);
    let cfg = config(json!({ "ack_wait_ms": 1000 }));
    let mut run = Command::new(sluice_bin());
    run.args(["run", &guest("sluice_nats").display().to_string()])
        .args(["--allow-tcp", ADDRESS, "--config", &cfg])
        .args(["stream", &stream.name, "--batch-size", "7"]);
    let printed: Vec<String> = kill_mid_stream(&mut run, 20)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        printed.len() < payloads.len(),
        "the kill landed before the end"
    );
    let (ack_pending, _) = stream.consumer_state("d1");
    assert!(
        ack_pending > 0,
        "the kill left messages delivered and unacknowledged"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut session = open(&cfg, &grants()).await.unwrap();
    let back = drain(&mut session, &stream).await;
    for (seq, payload) in (1..).zip(&payloads) {
        let id = seq.to_string();
        if !printed.contains(&id) {
            let found = back.iter().find(|(b, _, _)| *b == id);
            let (_, data, _) =
                found.unwrap_or_else(|| panic!("{id} was never written and did not come back"));
            assert_eq!(data, payload, "{id} came back whole");
        }
    }
    assert!(back.len() < payloads.len(), "acks before the kill held");
}
