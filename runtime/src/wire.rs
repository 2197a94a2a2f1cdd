//! The JSON every front door speaks — `sluice run`, `sluice serve` and the
//! programs embedding the library — so what one reads can be written by
//! another unchanged (`sluice run A stream t | sluice run B execute t2 upsert --records -`).
//!
//! - A **record** is `{"id": "7", "data": {…}, "metadata": {…}, "timestamp": 1700000000000}`
//!   ([`crate::Record::to_json`]). Only `data` is always there, and it is
//!   exactly the connector's data: identity never mixes into it, so a column
//!   really named `_id` or `id` survives the trip.
//! - A **stream** is NDJSON, one message per line, each an object whose one
//!   key names its kind: `{"record": RECORD}` for each record,
//!   `{"checkpoint": "…"}` after each batch (resume from the last one seen),
//!   and, when the stream cannot go on, `{"error": {"code", "message",
//!   "details"}}` as its last line. A stream that ends without an error line
//!   ended normally.
//! - **Records to write** (`execute`) are stream lines as above or bare data
//!   objects (`{"name": "Ada"}`). A checkpoint line ends a batch; an error
//!   line means the stream being copied failed, and stops the write. A bare
//!   object whose only key is `record`, `checkpoint` or `error` reads as that
//!   message; wrap such data as `{"record": {"data": …}}`.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::Record;

/// Append `{"record": RECORD}` and a newline.
///
/// # Errors
///
/// [`Error::Host`] when the connector produced data that is not JSON.
pub fn record_line(record: &Record, out: &mut String) -> Result<(), Error> {
    out.push_str("{\"record\":");
    record.write_json(out)?;
    out.push_str("}\n");
    Ok(())
}

/// Append `{"checkpoint": "…"}` and a newline.
pub fn checkpoint_line(checkpoint: &str, out: &mut String) {
    out.push_str("{\"checkpoint\":");
    out.push_str(&Value::String(checkpoint.to_string()).to_string());
    out.push_str("}\n");
}

/// Append `{"error": {"code", "message", "details"}}` and a newline: the
/// same object as the API's error bodies.
pub fn error_line(code: &str, message: &str, details: &Value, out: &mut String) {
    let mut error = Map::new();
    error.insert("code".into(), Value::String(code.to_string()));
    error.insert("message".into(), Value::String(message.to_string()));
    error.insert("details".into(), details.clone());
    let mut line = Map::new();
    line.insert("error".into(), Value::Object(error));
    out.push_str(&Value::Object(line).to_string());
    out.push('\n');
}

/// One message of records to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A record to write.
    Record(Record),
    /// The end of a batch of the stream being copied.
    Checkpoint(String),
    /// The stream being copied failed: its `{"code", "message", "details"}`.
    Error(Value),
}

/// Read one value of records to write (see the module docs).
///
/// # Errors
///
/// A sentence saying what is wrong with the value.
pub fn read(value: Value) -> Result<Message, String> {
    let Value::Object(mut object) = value else {
        return Err(format!("every record must be a JSON object, got `{value}`"));
    };
    let kind = match object.iter().next() {
        Some((key, value)) if object.len() == 1 => match (key.as_str(), value) {
            ("record", Value::Object(_)) => Some("record"),
            ("checkpoint", Value::String(_)) => Some("checkpoint"),
            ("error", Value::Object(error)) if error.contains_key("code") => Some("error"),
            _ => None,
        },
        _ => None,
    };
    match (kind, kind.and_then(|k| object.remove(k))) {
        (Some("record"), Some(Value::Object(record))) => record_from(record).map(Message::Record),
        (Some("checkpoint"), Some(Value::String(checkpoint))) => {
            Ok(Message::Checkpoint(checkpoint))
        }
        (Some("error"), Some(error)) => Ok(Message::Error(error)),
        _ => Ok(Message::Record(Record::from_json(&Value::Object(object)))),
    }
}

/// A record from its `{"id", "data", "metadata", "timestamp"}` object.
fn record_from(mut object: Map<String, Value>) -> Result<Record, String> {
    let unknown: Vec<&String> = object
        .keys()
        .filter(|k| !["id", "data", "metadata", "timestamp"].contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "a record has `id`, `data`, `metadata` and `timestamp`; unknown: {}",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let data = match object.remove("data") {
        Some(data @ Value::Object(_)) => data,
        Some(other) => {
            return Err(format!(
                "a record's `data` must be an object, got `{other}`"
            ))
        }
        None => return Err("a record needs `data`".into()),
    };
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(Value::Number(id)) => Some(id.to_string()),
        Some(other) => return Err(format!("a record's `id` must be a string, got `{other}`")),
    };
    let timestamp = match object.remove("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(ts)) if ts.is_i64() => ts.as_i64(),
        Some(other) => {
            return Err(format!(
                "a record's `timestamp` must be milliseconds since the Unix epoch, got `{other}`"
            ))
        }
    };
    let metadata = object
        .remove("metadata")
        .filter(|m| !m.is_null())
        .map(|m| m.to_string());
    Ok(Record {
        id,
        data: data.to_string(),
        metadata,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: Option<&str>, data: Value, ts: Option<i64>) -> Record {
        Record {
            id: id.map(str::to_string),
            data: data.to_string(),
            metadata: None,
            timestamp: ts,
        }
    }

    #[test]
    fn what_a_stream_writes_reads_back_as_the_same_messages() {
        let written = record(Some("7"), json!({ "_id": "own", "id": 1 }), Some(5));
        let mut text = String::new();
        record_line(&written, &mut text).unwrap();
        checkpoint_line("offset:\"3\"", &mut text);
        error_line("upstream_unavailable", "gone", &Value::Null, &mut text);
        let read: Vec<Message> = text
            .lines()
            .map(|line| read(serde_json::from_str(line).unwrap()).unwrap())
            .collect();
        assert_eq!(
            read,
            vec![
                Message::Record(written),
                Message::Checkpoint("offset:\"3\"".into()),
                Message::Error(
                    json!({ "code": "upstream_unavailable", "message": "gone", "details": null })
                ),
            ]
        );
    }

    #[test]
    fn bare_objects_are_data_even_with_reserved_looking_fields() {
        for data in [
            json!({ "name": "Ada" }),
            json!({ "_id": 3, "id": 4, "data": { "x": 1 } }),
            json!({ "record": 1 }),
            json!({ "checkpoint": 2 }),
            json!({ "error": "not a stream error" }),
            json!({ "error": { "message": "no code" } }),
        ] {
            assert_eq!(
                read(data.clone()).unwrap(),
                Message::Record(record(None, data.clone(), None)),
                "{data}"
            );
        }
    }

    #[test]
    fn malformed_records_are_refused_with_the_reason() {
        let cases = [
            (json!([1]), "must be a JSON object"),
            (
                json!({ "record": { "data": [1] } }),
                "`data` must be an object",
            ),
            (json!({ "record": { "id": "1" } }), "needs `data`"),
            (
                json!({ "record": { "data": {}, "_id": 1 } }),
                "unknown: `_id`",
            ),
            (
                json!({ "record": { "data": {}, "timestamp": "x" } }),
                "milliseconds",
            ),
        ];
        for (value, needle) in cases {
            let err = read(value.clone()).unwrap_err();
            assert!(err.contains(needle), "{value}: {err}");
        }
    }
}
