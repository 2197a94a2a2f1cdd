//! The `redis` connector against the real Redis on 127.0.0.1:6379, checked
//! with Redis's own client (`redis-cli`): publish and consume both ways,
//! at-least-once delivery through ack/nack and dropped sessions, logins,
//! denials, a hostile server, and the login secret kept out of errors.

use serde_json::{json, Value};
use sluice::{Batch, Error, FetchRequest, Grants, Session};
use sluice_tests::redis::{TestStream, ADDRESS};
use sluice_tests::{data, redis_connector};

mod cli;
mod delivery;
mod failures;
mod server;

/// A TCP grant for the tests' Redis.
pub(crate) fn grants() -> Grants {
    Grants::none().allow_tcp(ADDRESS).expect("grant parses")
}

/// The config for `stream`, with `extra` fields merged in.
pub(crate) fn config(extra: Value) -> String {
    let mut config = json!({ "address": ADDRESS, "group": "g", "consumer": "c1", "block_ms": 100 });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config.to_string()
}

pub(crate) async fn open(config: &str, grants: &Grants) -> Result<Session, Error> {
    redis_connector().open(config, grants).await
}

/// A stream request that ends once nothing more comes.
pub(crate) fn draining(stream: &TestStream) -> FetchRequest {
    FetchRequest::new(stream.key.clone()).options(&json!({ "end_when_idle": true }))
}

/// The ids of a batch's records.
pub(crate) fn ids(batch: &Batch) -> Vec<String> {
    batch
        .records
        .iter()
        .map(|r| r.id.clone().expect("an entry id"))
        .collect()
}

/// Every record a draining stream delivers, as `(id, data, redelivered)`, none acknowledged.
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
