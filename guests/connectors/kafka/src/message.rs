//! Kafka records as sluice records and back, the same shape both ways so a
//! consumed record can be produced again byte for byte:
//!
//! ```json
//! {"key": "user-42", "value": {"total": 12.5},
//!  "headers": [{"key": "trace", "value": "abc"}]}
//! ```
//!
//! - `value`: the value when it is JSON, exactly as written (never parsed
//!   and printed again); `value_text` when it is UTF-8 text that is not
//!   JSON; `value_base64` for other bytes; none of them for a null value (a
//!   tombstone).
//! - `key`: UTF-8 text, `key_base64` for other bytes, `null` for none.
//! - `headers`: in order, duplicates kept; each `value` is UTF-8 text
//!   (`value_base64` for other bytes; absent for a null value).
//!
//! Topic, partition, offset and timestamp go in the record's metadata; its
//! id is `topic/partition/offset`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sluice_sdk::{ConnectorError, Record, Result};

use crate::batch::{self, Outgoing};

/// A consumed record of `topic`'s `partition` as a sluice record.
pub fn to_record(topic: &str, partition: i32, record: &batch::Record) -> Record {
    let mut data = String::with_capacity(
        32 + record.value.as_ref().map_or(0, Vec::len) + record.key.as_ref().map_or(0, Vec::len),
    );
    data.push_str("{\"key\":");
    match &record.key {
        None => data.push_str("null"),
        Some(key) => match std::str::from_utf8(key) {
            Ok(text) => data.push_str(&json_string(text)),
            Err(_) => {
                data.push_str("null,\"key_base64\":");
                data.push_str(&json_string(&STANDARD.encode(key)));
            }
        },
    }
    if let Some(value) = &record.value {
        match std::str::from_utf8(value) {
            Ok(text) if is_json(text) => {
                data.push_str(",\"value\":");
                data.push_str(text);
            }
            Ok(text) => {
                data.push_str(",\"value_text\":");
                data.push_str(&json_string(text));
            }
            Err(_) => {
                data.push_str(",\"value_base64\":");
                data.push_str(&json_string(&STANDARD.encode(value)));
            }
        }
    }
    if !record.headers.is_empty() {
        let headers: Vec<Value> = record
            .headers
            .iter()
            .map(|(key, value)| match value {
                None => json!({ "key": key }),
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => json!({ "key": key, "value": text }),
                    Err(_) => json!({ "key": key, "value_base64": STANDARD.encode(bytes) }),
                },
            })
            .collect();
        data.push_str(",\"headers\":");
        data.push_str(&Value::Array(headers).to_string());
    }
    data.push('}');
    Record {
        id: Some(format!("{topic}/{partition}/{}", record.offset)),
        data,
        metadata: Some(
            json!({
                "topic": topic,
                "partition": partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "timestamp_type": if record.log_append_time { "log_append" } else { "create" },
            })
            .to_string(),
        ),
        timestamp: Some(record.timestamp),
    }
}

fn json_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// Whether `text` is one JSON document with nothing around it (a value
/// with whitespace around it is text: that whitespace would not survive).
fn is_json(text: &str) -> bool {
    !text.is_empty()
        && text.trim() == text
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// A record to produce, as `execute` `produce` takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming<'a> {
    #[serde(default, borrow)]
    key: Option<&'a RawValue>,
    key_base64: Option<String>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    value_text: Option<String>,
    value_base64: Option<String>,
    #[serde(default)]
    headers: Vec<IncomingHeader>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingHeader {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
}

/// A record to produce: what to send, and the partition it asks for.
pub struct Produced {
    pub outgoing: Outgoing,
    pub partition: Option<i32>,
}

/// Read record `index`'s data as a record to produce; `now` is its
/// timestamp when it gives none.
pub fn from_record(index: usize, data: &str, now: i64) -> Result<Produced> {
    let bad = |what: String| {
        ConnectorError::InvalidRequest(format!(
            "record {index}: {what}; a record to produce is {{\"key\", \"value\" (or \"value_text\", \"value_base64\"), \"headers\", \"partition\", \"timestamp\"}}"
        ))
    };
    let incoming: Incoming = serde_json::from_str(data).map_err(|e| bad(e.to_string()))?;
    let base64 = |field: &str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|_| bad(format!("`{field}` is not base64")))
    };
    let key = match (incoming.key, incoming.key_base64) {
        (Some(_), Some(_)) => return Err(bad("both `key` and `key_base64`".into())),
        (None, Some(text)) => Some(base64("key_base64", &text)?),
        (Some(raw), None) if raw.get() == "null" => None,
        (Some(raw), None) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::String(text)) => Some(text.into_bytes()),
            _ => {
                return Err(bad(
                    "`key` is a string (or null; `key_base64` for bytes)".into()
                ))
            }
        },
        (None, None) => None,
    };
    let value = match (incoming.value, incoming.value_text, incoming.value_base64) {
        (Some(raw), None, None) => Some(raw.get().as_bytes().to_vec()),
        (None, Some(text), None) => Some(text.into_bytes()),
        (None, None, Some(text)) => Some(base64("value_base64", &text)?),
        (None, None, None) => None,
        _ => {
            return Err(bad(
                "more than one of `value`, `value_text` and `value_base64`".into(),
            ))
        }
    };
    let mut headers = Vec::with_capacity(incoming.headers.len());
    for header in incoming.headers {
        let value = match (header.value, header.value_base64) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "header `{}` has both `value` and `value_base64`",
                    header.key
                )))
            }
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(text)) => Some(base64("headers[].value_base64", &text)?),
            (None, None) => None,
        };
        headers.push((header.key, value));
    }
    Ok(Produced {
        outgoing: Outgoing {
            key,
            value,
            headers,
            timestamp: incoming.timestamp.unwrap_or(now),
        },
        partition: incoming.partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumed(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    ) -> batch::Record {
        batch::Record {
            offset: 7,
            timestamp: 1_700_000_000_000,
            log_append_time: false,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
        }
    }

    #[test]
    fn every_kind_of_value_survives_consume_then_produce_byte_for_byte() {
        let headers = vec![
            ("trace".to_string(), Some(b"abc".to_vec())),
            ("bin".to_string(), Some(vec![0xff, 0])),
            ("trace".to_string(), None),
        ];
        type Bytes<'a> = Option<&'a [u8]>;
        let cases: [(Bytes, Bytes); 7] = [
            (None, Some(b" {\"padded\": true}\n")),
            (
                Some(b"user-42"),
                Some(b"{ \"total\": 12.50, \"n\": 1e400 }"),
            ),
            (None, Some(b"hello, not json")),
            (Some(&[0xfe, 0x01]), Some(&[0x00, 0xff, 0x10])),
            (Some(b""), None),
            (None, Some(b"\"a json string\"")),
            (None, Some(b"")),
        ];
        for (key, value) in cases {
            let record = to_record("orders", 2, &consumed(key, value, headers.clone()));
            assert_eq!(record.id.as_deref(), Some("orders/2/7"));
            serde_json::from_str::<serde::de::IgnoredAny>(&record.data).expect("the data is JSON");
            let back = from_record(0, &record.data, 0).unwrap();
            assert_eq!(back.outgoing.key.as_deref(), key, "{}", record.data);
            assert_eq!(back.outgoing.value.as_deref(), value, "{}", record.data);
            assert_eq!(back.outgoing.headers, headers);
        }
        let json = to_record("t", 0, &consumed(None, Some(b"{\"a\": [1, 2]}"), vec![]));
        assert_eq!(json.data, "{\"key\":null,\"value\":{\"a\": [1, 2]}}");
        let text = to_record("t", 0, &consumed(Some(b"k"), Some(b"plain"), vec![]));
        assert_eq!(text.data, "{\"key\":\"k\",\"value_text\":\"plain\"}");
    }

    #[test]
    fn a_record_to_produce_that_is_not_understood_is_refused_naming_it() {
        for (data, says) in [
            (r#"{"name": "x"}"#, "unknown field `name`"),
            (r#"{"key": 5}"#, "`key` is a string"),
            (r#"{"value": 1, "value_text": "1"}"#, "more than one of"),
            (r#"{"value_base64": "%%"}"#, "`value_base64` is not base64"),
        ] {
            let err = from_record(3, data, 0).err().unwrap();
            assert!(
                matches!(&err, ConnectorError::InvalidRequest(m) if m.starts_with("record 3: ") && m.contains(says)),
                "{data}: {err:?}"
            );
        }
        let produced = from_record(
            0,
            r#"{"value": {"a": 1}, "partition": 2, "timestamp": 5}"#,
            9,
        )
        .unwrap();
        assert_eq!(produced.partition, Some(2));
        assert_eq!(produced.outgoing.timestamp, 5);
        assert_eq!(
            produced.outgoing.value.as_deref(),
            Some(&br#"{"a": 1}"#[..])
        );
    }
}
