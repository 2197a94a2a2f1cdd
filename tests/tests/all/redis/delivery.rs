//! Publish and consume both ways with redis-cli; at-least-once delivery.

use serde_json::json;
use sluice::{ExecuteRequest, FetchRequest, Record};
use sluice_tests::data;
use sluice_tests::redis::TestStream;

use super::{config, drain, draining, grants, ids, open};

#[tokio::test]
async fn published_records_are_what_redis_cli_reads_back() {
    let stream = TestStream::new();
    let mut session = open(&config(json!({})), &grants()).await.unwrap();
    let records = vec![
        Record::from_json(&json!({ "name": "Ada", "born": 1815 })),
        Record::from_json(&json!({ "name": "Grace", "tags": ["navy", "cobol"] })),
        Record::from_json(&json!({ "name": "Edsger" })),
    ];
    let out = session
        .execute(&ExecuteRequest::new(stream.key.clone(), "publish", records))
        .await
        .unwrap();
    assert_eq!(out.affected, 3);
    let entries = stream.entries();
    let returned: Vec<String> = out.records.iter().map(|r| r.id.clone().unwrap()).collect();
    let stored: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        returned, stored,
        "the ids returned are the ids the server assigned"
    );
    assert_eq!(entries[0].1["name"], "Ada");
    assert_eq!(entries[0].1["born"], "1815");
    assert_eq!(entries[1].1["tags"], r#"["navy","cobol"]"#);
    assert_eq!(entries[2].1.len(), 1);
}

#[tokio::test]
async fn a_payload_field_round_trips_whole_json_records() {
    let stream = TestStream::new();
    let cfg = config(json!({ "payload_field": "json" }));
    let mut session = open(&cfg, &grants()).await.unwrap();
    let record = json!({ "n": 1, "nested": { "ok": true }, "list": [1, 2] });
    session
        .execute(&ExecuteRequest::new(
            stream.key.clone(),
            "publish",
            vec![Record::from_json(&record)],
        ))
        .await
        .unwrap();
    assert_eq!(stream.entries()[0].1["json"], record.to_string());
    let got = drain(&mut session, &stream).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, record);
}

#[tokio::test]
async fn entries_added_by_redis_cli_are_consumed_and_the_unacked_half_comes_back() {
    let stream = TestStream::new();
    let added: Vec<String> = (0..10)
        .map(|n| stream.add(&[("n", &n.to_string()), ("body", "x y")]))
        .collect();
    let cfg = config(json!({}));
    {
        let mut session = open(&cfg, &grants()).await.unwrap();
        let mut records = session.stream(&draining(&stream), None).await.unwrap();
        let batch = records.next(10).await.unwrap().expect("a batch");
        assert_eq!(ids(&batch), added);
        assert_eq!(data(&batch.records)[3], json!({ "n": "3", "body": "x y" }));
        records.ack(&added[..5]).await.unwrap();
        // The session ends here with five entries delivered, unacknowledged.
    }
    assert_eq!(stream.pending("g"), 5);
    let mut session = open(&cfg, &grants()).await.unwrap();
    let again = drain(&mut session, &stream).await;
    let again_ids: Vec<String> = again.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(
        again_ids,
        added[5..],
        "exactly the unacknowledged half, in order"
    );
    assert!(again.iter().all(|(_, _, redelivered)| *redelivered));
    let mut records = session.stream(&draining(&stream), None).await.unwrap();
    let batch = records.next(10).await.unwrap().expect("still pending");
    records.ack(&ids(&batch)).await.unwrap();
    assert_eq!(records.next(10).await.unwrap(), None, "nothing is left");
    drop(records);
    assert_eq!(stream.pending("g"), 0);
}

#[tokio::test]
async fn a_nacked_entry_is_delivered_again_before_anything_new() {
    let stream = TestStream::new();
    let added: Vec<String> = (0..3)
        .map(|n| stream.add(&[("n", &n.to_string())]))
        .collect();
    let mut session = open(&config(json!({})), &grants()).await.unwrap();
    let mut records = session.stream(&draining(&stream), None).await.unwrap();
    let first = records.next(10).await.unwrap().unwrap();
    assert_eq!(ids(&first), added);
    records
        .ack(&[added[0].clone(), added[2].clone()])
        .await
        .unwrap();
    records.nack(&[added[1].clone()]).await.unwrap();
    let later = stream.add(&[("n", "3")]);
    let again = records.next(10).await.unwrap().unwrap();
    assert_eq!(ids(&again), [added[1].clone()]);
    let metadata: serde_json::Value =
        serde_json::from_str(again.records[0].metadata.as_deref().unwrap()).unwrap();
    assert_eq!(metadata["redelivered"], true);
    records.ack(&ids(&again)).await.unwrap();
    let new = records.next(10).await.unwrap().unwrap();
    assert_eq!(ids(&new), std::slice::from_ref(&later));
    records.ack(&[later]).await.unwrap();
    assert_eq!(records.next(10).await.unwrap(), None);
    drop(records);
    assert_eq!(stream.pending("g"), 0);
}

#[tokio::test]
async fn entries_a_dead_consumer_held_are_claimed_by_another_after_claim_idle_ms() {
    let stream = TestStream::new();
    let added: Vec<String> = (0..4)
        .map(|n| stream.add(&[("n", &n.to_string())]))
        .collect();
    {
        let mut dead = open(&config(json!({ "consumer": "dead" })), &grants())
            .await
            .unwrap();
        let mut records = dead.stream(&draining(&stream), None).await.unwrap();
        assert_eq!(records.next(10).await.unwrap().unwrap().records.len(), 4);
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let cfg = config(json!({ "consumer": "alive", "claim_idle_ms": 100 }));
    let mut alive = open(&cfg, &grants()).await.unwrap();
    let got = drain(&mut alive, &stream).await;
    let got_ids: Vec<String> = got.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(got_ids, added);
    assert!(got.iter().all(|(_, _, redelivered)| *redelivered));
}

#[tokio::test]
async fn fetch_pages_through_a_stream_by_entry_id_without_consuming_it() {
    let stream = TestStream::new();
    let added: Vec<String> = (0..5)
        .map(|n| stream.add(&[("n", &n.to_string())]))
        .collect();
    let mut session = open(&config(json!({})), &grants()).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = session
            .fetch(&FetchRequest::new(stream.key.clone()).page(2, None, cursor))
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.records.iter().map(|r| r.id.clone().unwrap()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, added);
    assert_eq!(pages, 3);
    let resources = session.discover().await.unwrap();
    assert!(
        resources.iter().any(|r| r.name == stream.key),
        "{resources:?}"
    );
    // A fetch consumes nothing: a group created now still starts at the beginning.
    assert_eq!(drain(&mut session, &stream).await.len(), 5);
}
