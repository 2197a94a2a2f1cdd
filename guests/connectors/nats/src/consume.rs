//! `stream` = consume: a JetStream durable pull consumer (at least once), or
//! a core NATS subscription (at most once: core NATS keeps nothing).
//!
//! A pull asks for at most `max` messages and waits up to `block_ms`; each
//! message's id is its stream sequence, and the connector remembers its
//! `$JS.ACK…` reply subject to settle it: `ack` sends `+ACK`, `nack` sends
//! `-NAK` (the server redelivers at once). A message neither acked nor nacked
//! is redelivered by the server once `ack_wait` passes — whether the session
//! ended, trapped or was killed; a stream that is dropped sends `-NAK` for
//! what it still holds, so those come back at once.

use std::collections::{HashMap, VecDeque};

use serde_json::json;
use sluice_sdk::queue::Wait;
use sluice_sdk::{log, Batch, ConnectorError, RecordStream, Result};

use crate::jetstream::{self, Delivery};
use crate::proto::{Client, Message};

/// A durable pull consumer of one stream.
pub struct PullConsumer {
    client: Client,
    next_subject: String,
    inbox: String,
    sid: u64,
    wait: Wait,
    /// Delivered, not yet settled: id (stream sequence) → ack subject.
    unsettled: HashMap<String, String>,
    /// Deliveries that arrived while waiting for something else.
    early: VecDeque<Message>,
}

impl PullConsumer {
    /// Pull from `stream` through the durable consumer `durable`, on a connection of its own.
    pub fn new(mut client: Client, stream: &str, durable: &str, wait: Wait) -> Result<Self> {
        let inbox = jetstream::new_inbox();
        let sid = client.subscribe(&inbox)?;
        Ok(Self {
            client,
            next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
            inbox,
            sid,
            wait,
            unsettled: HashMap::new(),
            early: VecDeque::new(),
        })
    }

    /// Send `reply` (`+ACK`, `-NAK`) for each id, then wait until the server has them.
    fn settle(&mut self, ids: &[String], reply: &[u8]) -> Result<()> {
        let mut frames = Vec::new();
        let mut subjects = Vec::with_capacity(ids.len());
        for id in ids {
            let subject = self.unsettled.get(id).ok_or_else(|| {
                ConnectorError::InvalidRequest(format!(
                    "message {id} was not delivered by this stream, or was settled already"
                ))
            })?;
            frames.extend(self.client.publish_frame(subject, None, reply)?);
            subjects.push(id);
        }
        self.client.send(&frames)?;
        let arrived = self.client.flush()?;
        self.early
            .extend(arrived.into_iter().filter(|m| m.sid == self.sid));
        for id in subjects {
            self.unsettled.remove(id);
        }
        Ok(())
    }

    fn take(&mut self, message: Message) -> Result<Option<sluice_sdk::Record>> {
        if let Some(status) = message.status {
            return match status {
                // No messages / request expired / idle heartbeat: nothing to deliver.
                404 | 408 | 100 => Ok(None),
                _ => Err(ConnectorError::Unavailable(format!(
                    "JetStream ended the pull: {status} {}",
                    message.status_text
                ))),
            };
        }
        let reply = message.reply.clone().ok_or_else(|| {
            ConnectorError::Unavailable(
                "JetStream delivered a message without its ack subject".into(),
            )
        })?;
        let delivery = Delivery::parse(&reply).ok_or_else(|| {
            ConnectorError::Unavailable(format!(
                "JetStream delivered a message with an ack subject it does not explain: {reply}"
            ))
        })?;
        let id = delivery.stream_sequence.to_string();
        self.unsettled.insert(id.clone(), reply);
        Ok(Some(jetstream::record(&message, id, Some(&delivery))))
    }
}

impl RecordStream for PullConsumer {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        let max = max.max(1) as usize;
        let mut records = Vec::new();
        while records.len() < max {
            let Some(message) = self.early.pop_front() else {
                break;
            };
            if let Some(record) = self.take(message)? {
                records.push(record);
            }
        }
        if records.len() < max {
            let want = max - records.len();
            let expires = self.wait.block.as_nanos() as u64;
            let request = json!({ "batch": want, "expires": expires }).to_string();
            let subject = self.next_subject.clone();
            let inbox = self.inbox.clone();
            self.client
                .publish(&subject, Some(&inbox), request.as_bytes())?;
            let mut got = 0;
            while got < want {
                let message = self.client.next_message()?;
                if message.sid != self.sid {
                    continue;
                }
                match message.status {
                    Some(100) => continue,
                    Some(404 | 408) => break,
                    _ => {}
                }
                if let Some(record) = self.take(message)? {
                    records.push(record);
                    got += 1;
                }
            }
        }
        let checkpoint = records.last().and_then(|r| r.id.clone());
        Ok(self.wait.batch(records, checkpoint))
    }

    fn ack(&mut self, ids: Vec<String>) -> Result<()> {
        self.settle(&ids, b"+ACK")
    }

    fn nack(&mut self, ids: Vec<String>) -> Result<()> {
        self.settle(&ids, b"-NAK")
    }
}

impl Drop for PullConsumer {
    fn drop(&mut self) {
        // What was delivered and never settled goes back now rather than
        // after ack_wait (best effort: if this fails, ack_wait still applies).
        let ids: Vec<String> = self.unsettled.keys().cloned().collect();
        if !ids.is_empty() {
            if let Err(e) = self.settle(&ids, b"-NAK") {
                log::warn(&format!(
                    "returning {} unacknowledged message(s) failed ({e:?}); the server redelivers them after ack_wait",
                    ids.len()
                ));
            }
        }
    }
}

/// A core NATS subscription: at most once, nothing to acknowledge.
pub struct CoreSubscriber {
    client: Client,
    sid: u64,
    wait: Wait,
    next_id: u64,
    /// Messages that arrived beyond the last batch's `max`.
    buffer: VecDeque<Message>,
}

impl CoreSubscriber {
    /// Subscribe to `subject` (wildcards allowed).
    pub fn new(mut client: Client, subject: &str, wait: Wait) -> Result<Self> {
        let sid = client.subscribe(subject)?;
        client.flush()?;
        Ok(Self {
            client,
            sid,
            wait,
            next_id: 0,
            buffer: VecDeque::new(),
        })
    }
}

impl RecordStream for CoreSubscriber {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        let max = max.max(1) as usize;
        let mut records = Vec::new();
        let wait = self.wait;
        wait.poll(|| {
            if self.buffer.is_empty() {
                // A PING's PONG comes after everything the server sent before it.
                let arrived = self.client.flush()?;
                self.buffer
                    .extend(arrived.into_iter().filter(|m| m.sid == self.sid));
            }
            while records.len() < max {
                let Some(message) = self.buffer.pop_front() else {
                    break;
                };
                self.next_id += 1;
                records.push(jetstream::record(&message, self.next_id.to_string(), None));
            }
            Ok(!records.is_empty())
        })?;
        Ok(wait.batch(records, None))
    }

    fn ack(&mut self, _ids: Vec<String>) -> Result<()> {
        // Core NATS delivered at most once; there is nothing to settle.
        Ok(())
    }

    fn nack(&mut self, _ids: Vec<String>) -> Result<()> {
        Err(ConnectorError::Unsupported(
            "nack on a core NATS subject: core NATS delivers at most once and cannot redeliver; consume a JetStream stream for that"
                .into(),
        ))
    }
}
