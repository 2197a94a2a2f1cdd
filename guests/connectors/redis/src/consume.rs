//! `stream` = consume through a consumer group, at least once.
//!
//! Order of delivery in one stream: first this consumer's own pending
//! entries (delivered to it before, by an earlier session that ended without
//! acknowledging them), then entries other consumers left pending longer than
//! `claim_idle_ms` (claimed with XAUTOCLAIM: their consumer died), then new
//! entries (`>`). `ack` is XACK; `nack` claims the entries back with XCLAIM
//! (raising their delivery count) and delivers them again in the next batch.
//! Whatever is delivered but not acknowledged stays in the group's pending
//! list at the server, so a session that is dropped, trapped or killed loses
//! nothing: the next consumer of that name gets it first.

use std::collections::{HashSet, VecDeque};

use sluice_sdk::queue::Wait;
use sluice_sdk::{log, Batch, ConnectorError, RecordStream, Result};

use crate::entry::{self, Entry, Layout};
use crate::resp::Client;

/// Where the consumer is in its order of delivery.
#[derive(Debug)]
enum Phase {
    /// Re-reading this consumer's pending entries after `after`.
    Pending { after: String },
    /// Claiming stale entries of other consumers from `cursor`.
    Claim { cursor: String },
    /// Reading new entries.
    New,
}

/// What a consumer reads and how.
#[derive(Debug, Clone)]
pub struct Consume {
    pub key: String,
    pub group: String,
    pub consumer: String,
    pub layout: Layout,
    pub claim_idle_ms: u64,
    pub wait: Wait,
}

/// One consumer of one stream.
pub struct Consumer {
    client: Client,
    spec: Consume,
    phase: Phase,
    /// Entries nacked in this session, delivered again first.
    redeliver: VecDeque<Entry>,
    /// Whether stale entries were looked for since new ones last came.
    swept: bool,
    /// Delivered in this session and not yet settled: XAUTOCLAIM would hand
    /// these back to their own consumer once they idle, so it must not.
    outstanding: HashSet<String>,
}

impl Consumer {
    /// Join the group (creating it, and the stream, at `start` when missing).
    pub fn start(mut client: Client, spec: Consume, start: &str) -> Result<Self> {
        let created = client.call(&[
            b"XGROUP",
            b"CREATE",
            spec.key.as_bytes(),
            spec.group.as_bytes(),
            start.as_bytes(),
            b"MKSTREAM",
        ]);
        match created {
            Ok(_) => {}
            Err(ConnectorError::InvalidRequest(m)) if m.contains("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            client,
            spec,
            phase: Phase::Pending {
                after: "0-0".into(),
            },
            redeliver: VecDeque::new(),
            swept: false,
            outstanding: HashSet::new(),
        })
    }

    fn batch(&mut self, entries: Vec<Entry>, redelivered: bool) -> Result<Batch> {
        let checkpoint = entries.last().map(|e| e.id.clone());
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.fields.is_none() {
                // Deleted (XDEL, trimmed) while pending: nothing to deliver.
                log::warn(&format!(
                    "entry {} of `{}` was deleted while pending; acknowledging it",
                    entry.id, self.spec.key
                ));
                continue;
            }
            self.outstanding.insert(entry.id.clone());
            records.push(
                self.spec
                    .layout
                    .record(&self.spec.key, entry, redelivered)?,
            );
        }
        Ok(Batch {
            records,
            checkpoint,
        })
    }

    fn ack_deleted(&mut self, entries: &[Entry]) -> Result<()> {
        let deleted: Vec<&str> = entries
            .iter()
            .filter(|e| e.fields.is_none())
            .map(|e| e.id.as_str())
            .collect();
        if deleted.is_empty() {
            return Ok(());
        }
        self.xack(&deleted)
    }

    fn xack(&mut self, ids: &[&str]) -> Result<()> {
        let mut args: Vec<&[u8]> = vec![
            b"XACK",
            self.spec.key.as_bytes(),
            self.spec.group.as_bytes(),
        ];
        args.extend(ids.iter().map(|id| id.as_bytes()));
        self.client.call(&args).map(drop)
    }

    fn read_pending(&mut self, after: &str, max: u32) -> Result<Vec<Entry>> {
        let count = max.to_string();
        let reply = self.client.call(&[
            b"XREADGROUP",
            b"GROUP",
            self.spec.group.as_bytes(),
            self.spec.consumer.as_bytes(),
            b"COUNT",
            count.as_bytes(),
            b"STREAMS",
            self.spec.key.as_bytes(),
            after.as_bytes(),
        ])?;
        entry::read_reply(reply)
    }

    /// XAUTOCLAIM from `cursor`: the next cursor and the claimed entries.
    fn claim(&mut self, cursor: &str, max: u32) -> Result<(String, Vec<Entry>)> {
        let count = max.to_string();
        let idle = self.spec.claim_idle_ms.to_string();
        let reply = self.client.call(&[
            b"XAUTOCLAIM",
            self.spec.key.as_bytes(),
            self.spec.group.as_bytes(),
            self.spec.consumer.as_bytes(),
            idle.as_bytes(),
            cursor.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ])?;
        let mut parts = reply.into_array("XAUTOCLAIM")?.into_iter();
        let next = parts
            .next()
            .ok_or_else(|| ConnectorError::Unavailable("XAUTOCLAIM answered nothing".into()))?
            .into_text("the XAUTOCLAIM cursor")?;
        let mut claimed = match parts.next() {
            Some(list) => entry::entries(list)?,
            None => Vec::new(),
        };
        claimed.retain(|e| !self.outstanding.contains(&e.id));
        Ok((next, claimed))
    }

    fn read_new(&mut self, max: u32) -> Result<Vec<Entry>> {
        let count = max.to_string();
        let block = self.spec.wait.block.as_millis().to_string();
        let reply = self.client.call(&[
            b"XREADGROUP",
            b"GROUP",
            self.spec.group.as_bytes(),
            self.spec.consumer.as_bytes(),
            b"COUNT",
            count.as_bytes(),
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            self.spec.key.as_bytes(),
            b">",
        ])?;
        entry::read_reply(reply)
    }
}

impl RecordStream for Consumer {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        let max = max.max(1);
        if !self.redeliver.is_empty() {
            let take = self.redeliver.len().min(max as usize);
            let entries: Vec<Entry> = self.redeliver.drain(..take).collect();
            return self.batch(entries, true).map(Some);
        }
        loop {
            match std::mem::replace(&mut self.phase, Phase::New) {
                Phase::Pending { after } => {
                    let entries = self.read_pending(&after, max)?;
                    let Some(last) = entries.last().map(|e| e.id.clone()) else {
                        self.phase = Phase::Claim {
                            cursor: "0-0".into(),
                        };
                        continue;
                    };
                    self.phase = Phase::Pending { after: last };
                    self.ack_deleted(&entries)?;
                    return self.batch(entries, true).map(Some);
                }
                Phase::Claim { cursor } => {
                    let (next, entries) = self.claim(&cursor, max)?;
                    if next != "0-0" {
                        self.phase = Phase::Claim { cursor: next };
                    }
                    if entries.is_empty() {
                        continue;
                    }
                    self.swept = false;
                    return self.batch(entries, true).map(Some);
                }
                Phase::New => {
                    let entries = self.read_new(max)?;
                    if !entries.is_empty() {
                        self.swept = false;
                        return self.batch(entries, false).map(Some);
                    }
                    if !self.swept {
                        // Idle: look once for entries a dead consumer left
                        // behind, then wait again.
                        self.swept = true;
                        self.phase = Phase::Claim {
                            cursor: "0-0".into(),
                        };
                        continue;
                    }
                    self.swept = false;
                    return Ok(self.spec.wait.batch(Vec::new(), None));
                }
            }
        }
    }

    fn ack(&mut self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.redeliver.retain(|e| !ids.contains(&e.id.as_str()));
        self.xack(&ids)?;
        for id in ids {
            self.outstanding.remove(id);
        }
        Ok(())
    }

    fn nack(&mut self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&[u8]> = vec![
            b"XCLAIM",
            self.spec.key.as_bytes(),
            self.spec.group.as_bytes(),
            self.spec.consumer.as_bytes(),
            b"0",
        ];
        args.extend(ids.iter().map(|id| id.as_bytes()));
        let reply = self.client.call(&args)?;
        let claimed = entry::entries(reply)?;
        for id in &ids {
            self.outstanding.remove(id);
        }
        let deleted: Vec<Entry> = claimed
            .iter()
            .filter(|e| e.fields.is_none())
            .cloned()
            .collect();
        self.ack_deleted(&deleted)?;
        self.redeliver
            .extend(claimed.into_iter().filter(|e| e.fields.is_some()));
        Ok(())
    }
}
