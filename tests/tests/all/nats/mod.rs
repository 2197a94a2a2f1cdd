//! The `nats` connector against the real NATS server with JetStream on
//! 127.0.0.1:4222, checked with NATS's own Python client (nats-py):
//! publish and consume both ways, at-least-once delivery through ack/nack,
//! dropped sessions and a killed process, core subjects, denials and a
//! hostile server.

use serde_json::{json, Value};
use sluice::{Batch, Error, FetchRequest, Grants, Session};
use sluice_tests::nats::{TestStream, ADDRESS};
use sluice_tests::{data, nats_connector};

mod delivery;
mod failures;

pub(crate) fn grants() -> Grants {
    Grants::none().allow_tcp(ADDRESS).expect("grant parses")
}

pub(crate) fn config(extra: Value) -> String {
    let mut config = json!({ "address": ADDRESS, "durable": "d1", "block_ms": 200 });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config.to_string()
}

pub(crate) async fn open(config: &str, grants: &Grants) -> Result<Session, Error> {
    nats_connector().open(config, grants).await
}

pub(crate) fn draining(stream: &TestStream) -> FetchRequest {
    FetchRequest::new(stream.name.clone()).options(&json!({ "end_when_idle": true }))
}

pub(crate) fn ids(batch: &Batch) -> Vec<String> {
    batch
        .records
        .iter()
        .map(|r| r.id.clone().expect("a sequence"))
        .collect()
}

/// Every record a draining stream delivers as `(id, data, redelivered)`,
/// acknowledging none; the stream is dropped at the end (which returns them).
pub(crate) async fn drain(
    session: &mut Session,
    stream: &TestStream,
) -> Vec<(String, Value, bool)> {
    let mut out = Vec::new();
    let mut records = session.stream(&draining(stream), None).await.unwrap();
    while let Some(batch) = records.next(100).await.unwrap() {
        for (record, data) in batch.records.iter().zip(data(&batch.records)) {
            let metadata: Value =
                serde_json::from_str(record.metadata.as_deref().unwrap()).unwrap();
            out.push((
                record.id.clone().unwrap(),
                data,
                metadata["redelivered"].as_bool().unwrap(),
            ));
        }
    }
    out
}
