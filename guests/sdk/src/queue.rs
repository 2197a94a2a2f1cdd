//! What connectors for message queues share: how long a `next` waits for
//! messages and whether a wait that brings nothing ends the stream, and how
//! a message body becomes a record's data.
//!
//! ```no_run
//! use sluice_sdk::queue::Wait;
//!
//! # fn next(options: Option<&str>) -> sluice_sdk::Result<()> {
//! // Config: block_ms 1000, end_when_idle false; a request may override both.
//! let wait = Wait::from_options(1000, false, options, &[])?;
//! let mut got = Vec::<u8>::new();
//! wait.poll(|| {
//!     // read what has arrived; true once there is something to hand out
//!     Ok(!got.is_empty())
//! })?;
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::net::Deadlines;
use crate::{Batch, ConnectorError, FetchRequest, Record, Result};

/// How a consuming stream waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The longest one `next` waits for messages.
    pub block: Duration,
    /// Whether a wait that brings nothing ends the stream (drain, then stop)
    /// rather than returning an empty batch.
    pub end_when_idle: bool,
}

/// The option keys [`Wait::from_options`] reads.
const WAIT_OPTIONS: [&str; 2] = ["block_ms", "end_when_idle"];

impl Wait {
    /// The config's `block_ms` and `end_when_idle`, overridden by a stream
    /// request's options (`{"block_ms": 200, "end_when_idle": true}`); option
    /// keys other than those and `extra` are refused.
    ///
    /// # Errors
    ///
    /// `invalid-request` for options that are not a JSON object, an unknown
    /// key or a wrong type; `invalid-config` for a `block_ms` out of range.
    pub fn from_options(
        block_ms: u64,
        end_when_idle: bool,
        options: Option<&str>,
        extra: &[&str],
    ) -> Result<Self> {
        let options = stream_options(options, extra)?;
        let block_ms = match options.get("block_ms") {
            None => block_ms,
            Some(value) => value.as_u64().ok_or_else(|| {
                ConnectorError::InvalidRequest("options.block_ms: a number of milliseconds".into())
            })?,
        };
        let end_when_idle = match options.get("end_when_idle") {
            None => end_when_idle,
            Some(value) => value.as_bool().ok_or_else(|| {
                ConnectorError::InvalidRequest("options.end_when_idle: true or false".into())
            })?,
        };
        check_block_ms(block_ms)?;
        Ok(Self {
            block: Duration::from_millis(block_ms),
            end_when_idle,
        })
    }

    /// [`Wait::from_options`] for a stream request that consumes `what` (a
    /// queue, a subscription): one that asks for filters, sort or fields is
    /// refused, as a broker hands messages out in its own order, whole.
    ///
    /// # Errors
    ///
    /// `unsupported` for filters, sort or fields; else as [`Wait::from_options`].
    pub fn for_request(
        req: &FetchRequest,
        block_ms: u64,
        end_when_idle: bool,
        extra: &[&str],
        what: &str,
    ) -> Result<Self> {
        if !req.filters.is_empty() || !req.sort.is_empty() || !req.fields.is_empty() {
            return Err(ConnectorError::Unsupported(format!(
                "filters, sort and fields on {what}"
            )));
        }
        Self::from_options(block_ms, end_when_idle, req.options.as_deref(), extra)
    }

    /// Call `step` until it says something arrived (`true`) or `block` has
    /// passed, pausing briefly between calls.
    ///
    /// # Errors
    ///
    /// Whatever `step` returns.
    pub fn poll(self, mut step: impl FnMut() -> Result<bool>) -> Result<()> {
        let started = Instant::now();
        loop {
            if step()? || started.elapsed() >= self.block {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The batch `next` returns: `records` with `checkpoint`, or the end of
    /// the stream when nothing came and the stream ends when idle.
    pub fn batch(self, records: Vec<Record>, checkpoint: Option<String>) -> Option<Batch> {
        if records.is_empty() && self.end_when_idle {
            return None;
        }
        Some(Batch {
            records,
            checkpoint,
        })
    }
}

/// A stream request's options as a JSON object with only [`Wait`]'s keys and `extra`.
///
/// # Errors
///
/// `invalid-request` naming an unknown key, or for options that are not an object.
pub fn stream_options(options: Option<&str>, extra: &[&str]) -> Result<Map<String, Value>> {
    let Some(text) = options else {
        return Ok(Map::new());
    };
    let Value::Object(map) = serde_json::from_str(text)
        .map_err(|e| ConnectorError::InvalidRequest(format!("options: {e}")))?
    else {
        return Err(ConnectorError::InvalidRequest(
            "options: a JSON object".into(),
        ));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !WAIT_OPTIONS.contains(&k.as_str()) && !extra.contains(&k.as_str()))
    {
        let known: Vec<&str> = WAIT_OPTIONS.iter().chain(extra).copied().collect();
        return Err(ConnectorError::InvalidRequest(format!(
            "options: unknown `{unknown}`; a stream takes {}",
            known.join(", ")
        )));
    }
    Ok(map)
}

/// Check a `block_ms`: at least 1 (0 would wait forever on some brokers)
/// and under the read deadline of [`crate::net`].
///
/// # Errors
///
/// `invalid-config` saying the range.
pub fn check_block_ms(block_ms: u64) -> Result<()> {
    let read_deadline = Deadlines::default().read.as_millis() as u64;
    if block_ms == 0 || block_ms >= read_deadline {
        return Err(ConnectorError::InvalidConfig(format!(
            "block_ms: give 1 to {}",
            read_deadline - 1
        )));
    }
    Ok(())
}

/// A delivered message as a record: its body as data ([`payload_data`]'s
/// rules; a body that is a JSON object is checked and used as it is, never
/// parsed into values and printed again), with `id`, `metadata` and `timestamp`.
pub fn message_record(body: &[u8], id: String, metadata: Value, timestamp: Option<i64>) -> Record {
    Record {
        id: Some(id),
        data: payload_text(body),
        metadata: Some(metadata.to_string()),
        timestamp,
    }
}

/// [`payload_data`] as JSON text.
pub fn payload_text(body: &[u8]) -> String {
    let object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if object && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        if let Ok(text) = std::str::from_utf8(body) {
            return text.to_string();
        }
    }
    payload_data(body).to_string()
}

/// A message body as a record's data: a JSON object as it is; other JSON
/// or UTF-8 text as `{"payload": …}`; other bytes as `{"payload_base64": …}`.
pub fn payload_data(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(other) => json!({ "payload": other }),
        Err(_) => match std::str::from_utf8(body) {
            Ok(text) => json!({ "payload": text }),
            Err(_) => json!({ "payload_base64": base64_encode(body) }),
        },
    }
}

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_data_objects() {
        assert_eq!(payload_data(br#"{"a":1}"#), json!({ "a": 1 }));
        assert_eq!(payload_data(b"[1,2]"), json!({ "payload": [1, 2] }));
        assert_eq!(payload_data(b"hello"), json!({ "payload": "hello" }));
        assert_eq!(
            payload_data(&[0xff, 0x00]),
            json!({ "payload_base64": "/wA=" })
        );
        assert_eq!(base64_encode(b"abcd"), "YWJjZA==");
        assert_eq!(payload_text(br#" {"a": [1]} "#), r#" {"a": [1]} "#);
        assert_eq!(payload_text(br#"{"a": "#), r#"{"payload":"{\"a\": "}"#);
        assert_eq!(payload_text(b"7"), r#"{"payload":7}"#);
        assert_eq!(base64_encode(b"abc"), "YWJj");
    }

    #[test]
    fn options_override_the_config_and_unknown_keys_are_refused() {
        let wait =
            Wait::from_options(1000, false, Some(r#"{"end_when_idle": true}"#), &[]).unwrap();
        assert_eq!(wait.block, Duration::from_millis(1000));
        assert!(wait.end_when_idle);
        assert!(Wait::from_options(1000, false, Some(r#"{"filter": 1}"#), &[]).is_err());
        assert!(Wait::from_options(1000, false, Some(r#"{"filter": 1}"#), &["filter"]).is_ok());
        assert!(Wait::from_options(0, false, None, &[]).is_err());
        assert!(wait.batch(Vec::new(), None).is_none());
    }
}
