//! JetStream's API: JSON requests on `$JS.API.…` subjects, answered on an
//! inbox; typed errors from its error bodies; messages as records.

use std::hash::{BuildHasher, Hasher};

use serde_json::{json, Map, Value};
use sluice_sdk::{ConnectorError, Record, Result};

use crate::proto::{Client, Message};

/// A fresh inbox prefix, unguessable by other clients of the server.
pub fn new_inbox() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let more = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("_INBOX.sluice{random:016x}{more:016x}")
}

/// A client with an inbox subscription for requests.
pub struct Requester {
    pub client: Client,
    inbox: String,
    sid: u64,
    next: u64,
}

impl Requester {
    /// Subscribe to the inbox.
    pub fn new(mut client: Client) -> Result<Self> {
        let inbox = new_inbox();
        let sid = client.subscribe(&format!("{inbox}.*"))?;
        Ok(Self {
            client,
            inbox,
            sid,
            next: 0,
        })
    }

    /// A reply subject for one request.
    pub fn reply_subject(&mut self) -> String {
        self.next += 1;
        format!("{}.{}", self.inbox, self.next)
    }

    /// Read the replies to `subjects`, in any order they come, as a list in the order asked.
    pub fn replies(&mut self, subjects: &[String]) -> Result<Vec<Message>> {
        let wanted: std::collections::HashMap<&str, usize> = subjects
            .iter()
            .enumerate()
            .map(|(at, s)| (s.as_str(), at))
            .collect();
        let mut replies: Vec<Option<Message>> = vec![None; subjects.len()];
        let mut missing = subjects.len();
        while missing > 0 {
            let message = self.client.next_message()?;
            if message.sid != self.sid {
                continue;
            }
            if let Some(&at) = wanted.get(message.subject.as_str()) {
                if replies[at].is_none() {
                    missing -= 1;
                }
                replies[at] = Some(message);
            }
        }
        Ok(replies.into_iter().flatten().collect())
    }

    /// One JetStream API call: `$JS.API.{api}` with a JSON body; the JSON answer.
    pub fn api(&mut self, api: &str, body: &Value) -> Result<Value> {
        let reply = self.reply_subject();
        let payload = body.to_string();
        self.client
            .publish(&format!("$JS.API.{api}"), Some(&reply), payload.as_bytes())?;
        let answer = self.replies(std::slice::from_ref(&reply))?.remove(0);
        if answer.status == Some(503) {
            return Err(ConnectorError::Unavailable(format!(
                "{}: JetStream did not answer `{api}` (no responders: JetStream is not enabled for this account)",
                self.client.address()
            )));
        }
        let value: Value = serde_json::from_slice(&answer.payload).map_err(|_| {
            ConnectorError::Unavailable(format!(
                "JetStream answered `{api}` with something that is not JSON"
            ))
        })?;
        api_error(&value, api)?;
        Ok(value)
    }
}

/// The typed error in a JetStream answer, if it holds one.
pub fn api_error(value: &Value, what: &str) -> Result<()> {
    let Some(error) = value.get("error") else {
        return Ok(());
    };
    let description = error["description"].as_str().unwrap_or("failed");
    let message = format!("JetStream {what}: {description}");
    Err(match error["code"].as_u64() {
        Some(404) => ConnectorError::NotFound(message),
        Some(401 | 403) => ConnectorError::Denied(message),
        Some(400) => ConnectorError::InvalidRequest(message),
        Some(429) => ConnectorError::RateLimited(None),
        _ => ConnectorError::Unavailable(message),
    })
}

/// What an `$JS.ACK.…` reply subject says about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: u64,
    pub stream_sequence: u64,
    pub consumer_sequence: u64,
    pub timestamp_ns: i64,
    pub pending: u64,
}

impl Delivery {
    /// Parse `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
    /// (and the longer form with domain and account hash).
    pub fn parse(reply: &str) -> Option<Self> {
        let tokens: Vec<&str> = reply.split('.').collect();
        if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
            return None;
        }
        let at = if tokens.len() >= 12 { 6 } else { 4 };
        Some(Self {
            delivered: tokens.get(at)?.parse().ok()?,
            stream_sequence: tokens.get(at + 1)?.parse().ok()?,
            consumer_sequence: tokens.get(at + 2)?.parse().ok()?,
            timestamp_ns: tokens.get(at + 3)?.parse().ok()?,
            pending: tokens.get(at + 4)?.parse().ok()?,
        })
    }
}

/// The record a delivered message becomes; `id` is what settles it.
pub fn record(message: &Message, id: String, delivery: Option<&Delivery>) -> Record {
    let headers: Map<String, Value> = message
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut metadata = json!({ "subject": message.subject, "headers": headers });
    let mut timestamp = None;
    if let Some(delivery) = delivery {
        metadata["stream_sequence"] = json!(delivery.stream_sequence);
        metadata["consumer_sequence"] = json!(delivery.consumer_sequence);
        metadata["delivered"] = json!(delivery.delivered);
        metadata["redelivered"] = json!(delivery.delivered > 1);
        metadata["pending"] = json!(delivery.pending);
        timestamp = Some(delivery.timestamp_ns / 1_000_000);
    }
    sluice_sdk::queue::message_record(&message.payload, id, metadata, timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_say_what_was_delivered() {
        let short = Delivery::parse("$JS.ACK.ORDERS.sluice.2.41.7.1700000000123456789.5").unwrap();
        assert_eq!(short.delivered, 2);
        assert_eq!(short.stream_sequence, 41);
        assert_eq!(short.consumer_sequence, 7);
        assert_eq!(short.pending, 5);
        let long =
            Delivery::parse("$JS.ACK.hub.ACC123.ORDERS.sluice.1.41.7.1700000000123456789.0.tok")
                .unwrap();
        assert_eq!(long.stream_sequence, 41);
        assert_eq!(Delivery::parse("_INBOX.x.1"), None);
    }

    #[test]
    fn api_errors_are_typed() {
        let missing = json!({ "error": { "code": 404, "err_code": 10059, "description": "stream not found" } });
        assert!(
            matches!(api_error(&missing, "STREAM.INFO"), Err(ConnectorError::NotFound(m)) if m.contains("stream not found"))
        );
        assert!(api_error(&json!({ "stream": "S", "seq": 1 }), "publish").is_ok());
    }
}
