//! Records both ways, byte for byte, and reading by page and by stream.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use sluice::{ExecuteRequest, FetchRequest, Record};
use sluice_tests::data;
use sluice_tests::kafka::{base64, Broker};

use super::{drain_ids, draining, ids, numbered, open, placed_ids, topic};

/// A record as kafka-python reported it, without what the broker assigned.
fn payload(record: &Value) -> Value {
    json!({ "key": record["key"], "value": record["value"], "headers": record["headers"] })
}

#[tokio::test]
async fn records_produced_by_sluice_reach_kafka_python_byte_for_byte_on_the_partition_its_hash_picks(
) {
    let broker = Broker::start();
    let name = topic("produce");
    broker.create_topic(&name, 3);
    let mut session = open(&broker, json!({})).await.unwrap();
    let binary = base64(&[0, 255, 16, 13, 10]);
    // Record data as JSON text, so the value's own spelling (12.50) is what is sent.
    let inputs = [
        r#"{"key": "user-42", "value": {"total": 12.50, "lines": [1, 2]}, "headers": [{"key": "trace", "value": "abc"}, {"key": "trace", "value": "def"}, {"key": "nil"}]}"#.to_string(),
        r#"{"key": "user-7", "value_text": "plain text, not JSON"}"#.to_string(),
        json!({ "key_base64": binary, "value_base64": binary, "headers": [{ "key": "bin", "value_base64": binary }] }).to_string(),
        r#"{"key": null, "value": "a JSON string", "partition": 2}"#.to_string(),
        r#"{"key": "tombstone"}"#.to_string(),
    ];
    let records: Vec<Record> = inputs
        .iter()
        .map(|data| Record {
            id: None,
            data: data.clone(),
            metadata: None,
            timestamp: None,
        })
        .collect();
    let out = session
        .execute(&ExecuteRequest::new(name.clone(), "produce", records))
        .await
        .unwrap();
    assert_eq!(out.affected, 5);
    let placed = data(&out.records);
    let seen = broker.consume_all(&name);
    assert_eq!(seen.len(), 5);
    let raw = |text: &str| Value::from(base64(text.as_bytes()));
    let expected = [
        json!({ "key": raw("user-42"), "value": raw(r#"{"total": 12.50, "lines": [1, 2]}"#), "headers": [["trace", raw("abc")], ["trace", raw("def")], ["nil", null]] }),
        json!({ "key": raw("user-7"), "value": raw("plain text, not JSON"), "headers": [] }),
        json!({ "key": binary, "value": binary, "headers": [["bin", binary]] }),
        json!({ "key": null, "value": raw("\"a JSON string\""), "headers": [] }),
        json!({ "key": raw("tombstone"), "value": null, "headers": [] }),
    ];
    for (i, (placed, expected)) in placed.iter().zip(&expected).enumerate() {
        let found = seen
            .iter()
            .find(|r| r["partition"] == placed["partition"] && r["offset"] == placed["offset"])
            .unwrap_or_else(|| panic!("record {i} at {placed} was not found by kafka-python"));
        assert_eq!(&payload(found), expected, "record {i}");
        assert_eq!(
            out.records[i].id.as_deref(),
            Some(format!("{name}/{}/{}", placed["partition"], placed["offset"]).as_str())
        );
    }
    // Keyed records go where Kafka's default partitioner (murmur2) sends
    // them: kafka-python, given the same keys, picks the same partitions.
    let keys: Vec<Value> = ["user-42", "user-7", "tombstone", "a", "order-1001"]
        .iter()
        .map(|k| json!({ "key": base64(k.as_bytes()), "value": base64(b"1") }))
        .collect();
    let theirs = broker.produce(&name, &keys);
    let records: Vec<Record> = ["user-42", "user-7", "tombstone", "a", "order-1001"]
        .iter()
        .map(|k| Record::from_json(&json!({ "key": k, "value": 1 })))
        .collect();
    let ours = session
        .execute(&ExecuteRequest::new(name.clone(), "produce", records))
        .await
        .unwrap();
    let ours: Vec<Value> = data(&ours.records)
        .iter()
        .map(|r| r["partition"].clone())
        .collect();
    let theirs: Vec<Value> = theirs.iter().map(|(p, _)| json!(p)).collect();
    assert_eq!(ours, theirs);
    assert_eq!(placed[0]["partition"], theirs[0]);
    assert_eq!(placed[3]["partition"], 2, "the partition a record names");
}

#[tokio::test]
async fn records_produced_by_kafka_python_are_read_byte_for_byte_and_produce_back_identically() {
    let broker = Broker::start();
    let name = topic("consume");
    broker.create_topic(&name, 1);
    let binary = base64(&[0xfe, 0, 1]);
    let raw = |text: &str| Value::from(base64(text.as_bytes()));
    let sent = [
        json!({ "key": raw("a"), "value": raw("{ \"spaced\" : [1, 2.0] }"), "headers": [["h", raw("v")], ["h", raw("w")]] }),
        json!({ "key": null, "value": raw("not json") }),
        json!({ "key": binary, "value": binary }),
        json!({ "key": raw("gone") }),
    ];
    broker.produce(&name, &sent);
    let mut session = open(&broker, json!({})).await.unwrap();
    let page = session
        .fetch(&FetchRequest::new(name.clone()))
        .await
        .unwrap();
    assert_eq!(page.next_cursor, None, "one page holds the topic");
    assert_eq!(
        data(&page.records),
        vec![
            json!({ "key": "a", "value": { "spaced": [1, 2.0] }, "headers": [{ "key": "h", "value": "v" }, { "key": "h", "value": "w" }] }),
            json!({ "key": null, "value_text": "not json" }),
            json!({ "key": null, "key_base64": binary, "value_base64": binary }),
            json!({ "key": "gone" }),
        ]
    );
    // The JSON value is the producer's text, not a re-printing of it.
    assert!(
        page.records[0].data.contains("{ \"spaced\" : [1, 2.0] }"),
        "{}",
        page.records[0].data
    );
    let metadata: Value =
        serde_json::from_str(page.records[1].metadata.as_deref().unwrap()).unwrap();
    assert_eq!(metadata["topic"], name.as_str());
    assert_eq!(
        (metadata["partition"].as_i64(), metadata["offset"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(metadata["timestamp_type"], "create");
    assert_eq!(page.records[1].timestamp, metadata["timestamp"].as_i64());
    assert_eq!(
        page.records[1].id.as_deref(),
        Some(format!("{name}/0/1").as_str())
    );

    // What sluice read, produced again to another topic, is what kafka-python sent.
    let mirror = topic("mirror");
    broker.create_topic(&mirror, 1);
    let again: Vec<Record> = page
        .records
        .iter()
        .map(|r| Record {
            id: None,
            data: r.data.clone(),
            metadata: None,
            timestamp: None,
        })
        .collect();
    session
        .execute(&ExecuteRequest::new(
            format!("{mirror}/0"),
            "produce",
            again,
        ))
        .await
        .unwrap();
    let original: Vec<Value> = broker.consume_all(&name).iter().map(payload).collect();
    let copied: Vec<Value> = broker.consume_all(&mirror).iter().map(payload).collect();
    assert_eq!(copied, original);
}

#[tokio::test]
async fn pages_walk_every_partition_once_by_cursor_and_from_picks_the_start() {
    let broker = Broker::start();
    let name = topic("pages");
    broker.create_topic(&name, 3);
    let placed = broker.produce(&name, &numbered(50));
    let mut session = open(&broker, json!({})).await.unwrap();
    let mut cursor = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let request = FetchRequest::new(name.clone()).page(7, None, cursor.clone());
        let page = session.fetch(&request).await.unwrap();
        assert!(page.records.len() <= 7);
        seen.extend(page.records.iter().map(|r| r.id.clone().unwrap()));
        pages += 1;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 8, "50 records in pages of 7");
    let expected: BTreeSet<String> = placed_ids(&name, &placed);
    assert_eq!(seen.len(), 50, "no record twice");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), expected);

    // One partition, from an offset, from latest, from a time.
    let partition0: Vec<i64> = placed
        .iter()
        .filter(|(p, _)| *p == 0)
        .map(|(_, o)| *o)
        .collect();
    let page = session
        .fetch(&FetchRequest::new(format!("{name}/0")).options(&json!({ "from": 2 })))
        .await
        .unwrap();
    let offsets: Vec<String> = page.records.iter().map(|r| r.id.clone().unwrap()).collect();
    let want: Vec<String> = partition0
        .iter()
        .filter(|o| **o >= 2)
        .map(|o| format!("{name}/0/{o}"))
        .collect();
    assert_eq!(offsets, want);
    let latest = session
        .fetch(&FetchRequest::new(name.clone()).options(&json!({ "from": "latest" })))
        .await
        .unwrap();
    assert!(latest.records.is_empty() && latest.next_cursor.is_none());
    // From a time: the records appended after it (one in each partition:
    // tansu 0.6.0 answers a time after a partition's last record with 0,
    // where Kafka answers -1, "none").
    std::thread::sleep(std::time::Duration::from_millis(50));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let later = broker.produce(
        &name,
        &(0..3)
            .map(|p| json!({ "value": base64(b"{}"), "partition": p }))
            .collect::<Vec<_>>(),
    );
    let recent = session
        .fetch(
            &FetchRequest::new(name.clone())
                .options(&json!({ "from": format!("timestamp:{since}") })),
        )
        .await
        .unwrap();
    let recent: BTreeSet<String> = recent
        .records
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    let later: BTreeSet<String> = placed_ids(&name, &later);
    assert_eq!(recent, later);
    let all_time = session
        .fetch(
            &FetchRequest::new(name.clone())
                .options(&json!({ "from": "timestamp:0" }))
                .page(100, None, None),
        )
        .await
        .unwrap();
    assert_eq!(all_time.records.len(), 53);
}

#[tokio::test]
async fn a_stream_resumed_from_a_checkpoint_yields_exactly_the_records_after_it() {
    let broker = Broker::start();
    let name = topic("resume");
    broker.create_topic(&name, 3);
    let placed = broker.produce(&name, &numbered(60));
    let mut session = open(&broker, json!({})).await.unwrap();
    let mut records = session.stream(&draining(&name), None).await.unwrap();
    let first = records.next(25).await.unwrap().expect("a batch");
    assert_eq!(first.records.len(), 25);
    let checkpoint = first.checkpoint.clone().expect("a checkpoint");
    // Offsets in order within each partition.
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    for id in ids(&first) {
        let (partition, offset) = id
            .rsplit_once('/')
            .map(|(p, o)| (p.to_string(), o.parse::<i64>().unwrap()))
            .unwrap();
        assert!(
            last.insert(partition, offset)
                .is_none_or(|before| before < offset),
            "{id} out of order"
        );
    }
    drop(records);

    let mut session = open(&broker, json!({})).await.unwrap();
    let mut resumed = session
        .stream(&draining(&name), Some(&checkpoint))
        .await
        .unwrap();
    let rest = drain_ids(&mut resumed, 10).await;
    let mut all: Vec<String> = ids(&first);
    all.extend(rest.iter().cloned());
    assert_eq!(rest.len(), 35, "exactly the remainder");
    let expected: BTreeSet<String> = placed_ids(&name, &placed);
    assert_eq!(
        all.iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "no loss"
    );
    assert_eq!(all.len(), expected.len(), "no duplicate");

    drop(resumed);
    // A checkpoint of another topic is refused.
    let other = topic("other");
    broker.create_topic(&other, 1);
    let cp = format!(r#"{{"topic":"{name}","offsets":{{"0":1}}}}"#);
    let err = session
        .stream(&draining(&other), Some(&cp))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains(&format!("not `{other}`")), "{err}");
}

#[tokio::test]
async fn a_stream_waits_for_new_records_and_discover_lists_topics_with_partition_counts() {
    let broker = Broker::start();
    let name = topic("live");
    broker.create_topic(&name, 2);
    broker.create_topic(&topic("other"), 5);
    let mut session = open(&broker, json!({})).await.unwrap();
    let resources = session.discover().await.unwrap();
    let counts: Vec<(String, i64)> = resources
        .iter()
        .map(|r| {
            let schema: Value = serde_json::from_str(r.schema.as_deref().unwrap()).unwrap();
            (
                r.name.clone(),
                schema["x-kafka-partitions"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(counts.contains(&(name.clone(), 2)), "{counts:?}");
    assert!(counts.contains(&(topic("other"), 5)), "{counts:?}");

    let mut records = session
        .stream(
            &sluice::FetchRequest::new(name.clone()).options(&json!({ "from": "latest" })),
            None,
        )
        .await
        .unwrap();
    let empty = records
        .next(10)
        .await
        .unwrap()
        .expect("a stream that waits returns empty batches");
    assert!(empty.records.is_empty());
    broker.produce(&name, &numbered(3));
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(ids(&records.next(10).await.unwrap().unwrap()));
        if got.len() >= 3 {
            break;
        }
    }
    assert_eq!(got.len(), 3, "{got:?}");
}
