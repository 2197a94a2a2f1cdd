//! The `kafka` connector against a real Kafka-compatible broker (tansu, one
//! per test), checked with Kafka's own Python client (kafka-python):
//! produce and consume both ways byte for byte, pages and cursors,
//! checkpoints that resume exactly, consumer-group commits through every
//! front door, a killed process, a broker that goes away, SASL/PLAIN, and
//! hostile brokers.

use serde_json::{json, Value};
use std::collections::BTreeSet;

use sluice::{Batch, Error, FetchRequest, Grants, RecordStream, Session};
use sluice_tests::kafka::Broker;
use sluice_tests::kafka_connector;

mod delivery;
mod failures;
mod groups;

pub(crate) fn grants(broker: &Broker) -> Grants {
    Grants::none()
        .allow_tcp(broker.address())
        .expect("grant parses")
}

pub(crate) fn config(broker: &Broker, extra: Value) -> String {
    let mut config = json!({ "bootstrap": [broker.address()], "block_ms": 300 });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config.to_string()
}

pub(crate) async fn open(broker: &Broker, extra: Value) -> Result<Session, Error> {
    kafka_connector()
        .open(&config(broker, extra), &grants(broker))
        .await
}

/// A stream request that ends once a wait brings nothing.
pub(crate) fn draining(resource: &str) -> FetchRequest {
    FetchRequest::new(resource).options(&json!({ "end_when_idle": true }))
}

pub(crate) fn ids(batch: &Batch) -> Vec<String> {
    batch
        .records
        .iter()
        .map(|r| r.id.clone().expect("topic/partition/offset"))
        .collect()
}

/// A topic name of this test's own.
pub(crate) fn topic(name: &str) -> String {
    format!("sluice-{name}")
}

/// `count` JSON values `{"n": i}` as kafka-python records, keyed `k<i>`.
pub(crate) fn numbered(count: usize) -> Vec<Value> {
    use sluice_tests::kafka::base64;
    (0..count)
        .map(|i| {
            json!({
                "key": base64(format!("k{i}").as_bytes()),
                "value": base64(json!({ "n": i }).to_string().as_bytes()),
            })
        })
        .collect()
}

/// The ids `topic/partition/offset` of records placed at `(partition, offset)`.
pub(crate) fn placed_ids(topic: &str, placed: &[(i32, i64)]) -> BTreeSet<String> {
    placed
        .iter()
        .map(|(p, o)| format!("{topic}/{p}/{o}"))
        .collect()
}

/// The ids of every record a draining stream still delivers, `max` per batch.
pub(crate) async fn drain_ids(records: &mut RecordStream<'_>, max: u32) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(batch) = records.next(max).await.unwrap() {
        out.extend(ids(&batch));
    }
    out
}
