//! Reading partitions: where to start (a checkpoint, the group's committed
//! offsets, or `from`), Fetch rounds to each partition's leader, records
//! handed out in offset order per partition, and the checkpoint — the next
//! offset of every partition — that says exactly where the next record is.
//!
//! With a consumer group, `ack` commits to the group the offset before which
//! every delivered record was acknowledged (OffsetCommit, as a standalone
//! consumer: generation -1, no member id); `nack` moves the partition back
//! to the record, so it and what follows are delivered again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    FetchRequest, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use sluice_sdk::queue::Wait;
use sluice_sdk::{Batch, ConnectorError, RecordStream, Result};

use crate::batch;
use crate::cluster::Cluster;
use crate::errors::{self, Code};
use crate::message;

/// Where a partition without a checkpoint or a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    Offset(i64),
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

impl Start {
    /// `earliest`, `latest`, an offset (`42` or `"42"`) or `timestamp:MILLIS`.
    pub fn parse(value: &Value) -> Result<Self> {
        let bad = || {
            ConnectorError::InvalidRequest(format!(
                "from: `{value}`; write `earliest`, `latest`, an offset (42) or `timestamp:MILLIS`"
            ))
        };
        match value {
            Value::Number(n) => n
                .as_i64()
                .filter(|n| *n >= 0)
                .map(Self::Offset)
                .ok_or_else(bad),
            Value::String(text) => match text.as_str() {
                "earliest" => Ok(Self::Earliest),
                "latest" => Ok(Self::Latest),
                other => match other.strip_prefix("timestamp:") {
                    Some(ms) => ms.parse().map(Self::Timestamp).map_err(|_| bad()),
                    None => other
                        .parse()
                        .ok()
                        .filter(|n: &i64| *n >= 0)
                        .map(Self::Offset)
                        .ok_or_else(bad),
                },
            },
            _ => Err(bad()),
        }
    }
}

/// How Fetch rounds are sized.
#[derive(Debug, Clone, Copy)]
pub struct FetchSettings {
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// What one compressed batch may inflate to.
    pub max_inflated: usize,
}

/// ListOffsets for `partitions` of `topic` at `timestamp` (-2 earliest,
/// -1 latest, else milliseconds): partition → offset (-1: no record at or
/// after that time).
pub fn list_offsets(
    cluster: &mut Cluster,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for &partition in partitions {
        by_leader
            .entry(cluster.leader(topic, partition)?)
            .or_default()
            .push(partition);
    }
    let mut offsets = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let (answer, _) = cluster.on_node(leader, |conn| conn.call(&request, 1..=8))?;
        for partition in answer.topics.iter().flat_map(|t| t.partitions.iter()) {
            if errors::moved(partition.error_code) {
                cluster.forget(topic);
            }
            errors::check(partition.error_code, || {
                format!(
                    "listing the offsets of {topic}/{}",
                    partition.partition_index
                )
            })?;
            offsets.insert(partition.partition_index, partition.offset);
        }
    }
    if let Some(missing) = partitions.iter().find(|p| !offsets.contains_key(p)) {
        return Err(ConnectorError::Unavailable(format!(
            "the broker's ListOffsets answer leaves out {topic}/{missing}"
        )));
    }
    Ok(offsets)
}

/// Resolve `from` for `partitions`.
pub fn starts(
    cluster: &mut Cluster,
    topic: &str,
    partitions: &[i32],
    from: Start,
) -> Result<BTreeMap<i32, i64>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(match from {
        Start::Earliest => list_offsets(cluster, topic, partitions, -2)?,
        Start::Latest => list_offsets(cluster, topic, partitions, -1)?,
        Start::Offset(offset) => partitions.iter().map(|p| (*p, offset)).collect(),
        Start::Timestamp(ms) => {
            let found = list_offsets(cluster, topic, partitions, ms)?;
            let latest = list_offsets(cluster, topic, partitions, -1)?;
            found
                .into_iter()
                .map(|(p, offset)| (p, if offset < 0 { latest[&p] } else { offset }))
                .collect()
        }
    })
}

/// A position map as text: `{"topic": "orders", "offsets": {"0": 12, "1": 7}}`.
pub fn positions_text(topic: &str, positions: &BTreeMap<i32, i64>) -> String {
    let offsets: serde_json::Map<String, Value> = positions
        .iter()
        .map(|(p, o)| (p.to_string(), Value::from(*o)))
        .collect();
    serde_json::json!({ "topic": topic, "offsets": offsets }).to_string()
}

/// Read a position map written by [`positions_text`] for `topic`.
pub fn parse_positions(text: &str, topic: &str, what: &str) -> Result<BTreeMap<i32, i64>> {
    let bad = |why: String| ConnectorError::InvalidRequest(format!("{what} `{text}`: {why}"));
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if value["topic"].as_str() != Some(topic) {
        return Err(bad(format!(
            "it is a position in topic {}, not `{topic}`",
            value["topic"]
        )));
    }
    let offsets = value["offsets"]
        .as_object()
        .ok_or_else(|| bad("no `offsets` object".into()))?;
    offsets
        .iter()
        .map(|(p, o)| {
            let partition = p
                .parse::<i32>()
                .map_err(|_| bad(format!("`{p}` is not a partition")))?;
            let offset = o
                .as_i64()
                .filter(|o| *o >= 0)
                .ok_or_else(|| bad(format!("`{o}` is not an offset")))?;
            Ok((partition, offset))
        })
        .collect()
}

/// How many Fetch rounds in a row may find a partition's leader gone (or
/// moved) before reading ends with `unavailable`.
const LEADERLESS_ROUNDS: u32 = 20;

/// What one Fetch round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Records arrived.
    pub arrived: bool,
    /// A partition had no leader, or its leader moved: it was not read, so
    /// nothing arriving does not mean there is nothing to read.
    pub unsettled: bool,
}

/// Partitions being read: what was fetched, what was handed out.
pub struct Reader {
    pub topic: String,
    /// Partition → the offset of the next record to hand out.
    handed: BTreeMap<i32, i64>,
    /// Partition → where the next Fetch starts.
    fetched: BTreeMap<i32, i64>,
    buffered: BTreeMap<i32, VecDeque<batch::Record>>,
    settings: FetchSettings,
    unsettled_rounds: u32,
}

impl Reader {
    pub fn new(topic: &str, starts: BTreeMap<i32, i64>, settings: FetchSettings) -> Self {
        Self {
            topic: topic.to_string(),
            fetched: starts.clone(),
            buffered: starts.keys().map(|p| (*p, VecDeque::new())).collect(),
            handed: starts,
            settings,
            unsettled_rounds: 0,
        }
    }

    /// The next offset of every partition.
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.handed
    }

    pub fn buffered(&self) -> usize {
        self.buffered.values().map(VecDeque::len).sum()
    }

    /// One Fetch round to the leaders of the partitions with nothing
    /// buffered and (when `until` is given) not yet at their end; each
    /// leader waits up to `max_wait_ms` for data.
    pub fn fill(
        &mut self,
        cluster: &mut Cluster,
        max_wait_ms: u64,
        until: Option<&BTreeMap<i32, i64>>,
    ) -> Result<Round> {
        let topic = self.topic.clone();
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut leaderless = false;
        for (&partition, &offset) in &self.fetched {
            let done =
                until.is_some_and(|ends| ends.get(&partition).is_some_and(|end| offset >= *end));
            if done || !self.buffered[&partition].is_empty() {
                continue;
            }
            match cluster.leader(&topic, partition) {
                Ok(leader) => by_leader.entry(leader).or_default().push(partition),
                Err(ConnectorError::Unavailable(_)) => leaderless = true,
                Err(e) => return Err(e),
            }
        }
        if by_leader.is_empty() && leaderless {
            // Nothing to ask yet: give the cluster a moment to elect leaders.
            std::thread::sleep(std::time::Duration::from_millis(max_wait_ms.min(200)));
        }
        let leaders = by_leader.len().max(1) as u64;
        let mut arrived = false;
        for (leader, partitions) in by_leader {
            let request = FetchRequest::default()
                .with_max_wait_ms((max_wait_ms / leaders) as i32)
                .with_min_bytes(1)
                .with_max_bytes(self.settings.max_bytes)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(self.fetched[p])
                                    .with_partition_max_bytes(self.settings.partition_max_bytes)
                            })
                            .collect(),
                    )]);
            let (answer, _) = cluster.on_node(leader, |conn| conn.call(&request, 4..=11))?;
            errors::check(answer.error_code, || format!("fetching from `{topic}`"))?;
            for data in answer.responses.iter().flat_map(|t| t.partitions.iter()) {
                let partition = data.partition_index;
                let Some(&from) = self.fetched.get(&partition) else {
                    continue;
                };
                let what = format!("{topic}/{partition}");
                if errors::moved(data.error_code) {
                    cluster.forget(&topic);
                    leaderless = true;
                    continue;
                }
                if data.error_code == errors::OFFSET_OUT_OF_RANGE {
                    let kept = if data.log_start_offset >= 0 {
                        format!(
                            "from offset {} up to {}",
                            data.log_start_offset, data.high_watermark
                        )
                    } else {
                        format!("up to offset {}", data.high_watermark)
                    };
                    return Err(ConnectorError::InvalidRequest(format!(
                        "{what}: offset {from} is out of range (the broker keeps {kept}); records before the first kept one were deleted by retention — start again with options.from (`earliest`)"
                    )));
                }
                errors::check(data.error_code, || {
                    format!("fetching {what} from offset {from}")
                })?;
                let bytes = data.records.as_deref().unwrap_or_default();
                let decoded = batch::decode(bytes, from, self.settings.max_inflated, &what)?;
                if decoded.next_offset.is_none() && !bytes.is_empty() {
                    return Err(ConnectorError::Unavailable(format!(
                        "{what}: the broker sent part of a batch at offset {from} and not the whole of it; raise partition_max_bytes"
                    )));
                }
                if let Some(next) = decoded.next_offset {
                    self.fetched.insert(partition, next.max(from));
                }
                let buffer = self
                    .buffered
                    .get_mut(&partition)
                    .expect("every partition has a buffer");
                arrived |= !decoded.records.is_empty();
                buffer.extend(decoded.records);
                if buffer.is_empty() {
                    self.handed.insert(partition, self.fetched[&partition]);
                }
            }
        }
        if leaderless {
            self.unsettled_rounds += 1;
            if self.unsettled_rounds > LEADERLESS_ROUNDS {
                return Err(ConnectorError::Unavailable(format!(
                    "a partition of `{topic}` has had no leader to read from for {LEADERLESS_ROUNDS} fetches"
                )));
            }
        } else {
            self.unsettled_rounds = 0;
        }
        Ok(Round {
            arrived,
            unsettled: leaderless,
        })
    }

    /// Up to `max` buffered records, partition by partition, each
    /// partition's in offset order.
    pub fn take(&mut self, max: usize) -> Vec<(i32, batch::Record)> {
        let mut out = Vec::new();
        for (&partition, buffer) in &mut self.buffered {
            while out.len() < max {
                let Some(record) = buffer.pop_front() else {
                    break;
                };
                self.handed.insert(partition, record.offset + 1);
                out.push((partition, record));
            }
            if buffer.is_empty() {
                self.handed.insert(partition, self.fetched[&partition]);
            }
        }
        out
    }

    /// Move `partition` back to `offset`: what was buffered is dropped.
    pub fn seek(&mut self, partition: i32, offset: i64) {
        self.handed.insert(partition, offset);
        self.fetched.insert(partition, offset);
        if let Some(buffer) = self.buffered.get_mut(&partition) {
            buffer.clear();
        }
    }
}

pub fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A consumer group's committed offsets, through its coordinator.
pub struct Group {
    pub id: String,
    coordinator: Option<i32>,
    /// Partition → the offset last committed (or found committed).
    committed: BTreeMap<i32, i64>,
}

impl Group {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            coordinator: None,
            committed: BTreeMap::new(),
        }
    }

    fn on_coordinator<T>(
        &mut self,
        cluster: &mut Cluster,
        call: impl Fn(&mut crate::wire::BrokerConn) -> Result<T>,
        error_of: impl Fn(&T) -> i16,
    ) -> Result<T> {
        for _ in 0..=3 {
            let node = match self.coordinator {
                Some(node) => node,
                None => {
                    let node = cluster.coordinator(&self.id)?;
                    self.coordinator = Some(node);
                    node
                }
            };
            let answer = cluster.on_node(node, &call);
            match answer {
                Ok(answer) if errors::moved(error_of(&answer)) => self.coordinator = None,
                Err(ConnectorError::Unavailable(_)) => self.coordinator = None,
                other => return other,
            }
        }
        Err(ConnectorError::Unavailable(format!(
            "the coordinator of group `{}` kept moving",
            self.id
        )))
    }

    /// The group's committed offsets of `topic`'s `partitions` (those it has).
    pub fn committed(
        &mut self,
        cluster: &mut Cluster,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>> {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.id.clone())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec())]));
        let answer = self.on_coordinator(
            cluster,
            |conn| conn.call(&request, 1..=7).map(|(a, _)| a),
            |a| a.error_code,
        )?;
        let group = self.id.clone();
        errors::check(answer.error_code, || {
            format!("reading the offsets of group `{group}`")
        })?;
        let mut found = BTreeMap::new();
        for partition in answer.topics.iter().flat_map(|t| t.partitions.iter()) {
            errors::check(partition.error_code, || {
                format!(
                    "reading group `{group}`'s offset of {topic}/{}",
                    partition.partition_index
                )
            })?;
            if partition.committed_offset >= 0 && partitions.contains(&partition.partition_index) {
                found.insert(partition.partition_index, partition.committed_offset);
            }
        }
        self.committed.extend(&found);
        Ok(found)
    }

    /// Commit `offsets` of `topic` where they moved forward.
    pub fn commit(
        &mut self,
        cluster: &mut Cluster,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<()> {
        let moved: Vec<(i32, i64)> = offsets
            .iter()
            .filter(|(p, o)| self.committed.get(p).is_none_or(|c| *o > c))
            .map(|(p, o)| (*p, *o))
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.id.clone())))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    moved
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                        })
                        .collect(),
                )]);
        let first_error = |a: &kafka_protocol::messages::OffsetCommitResponse| {
            a.topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.error_code)
                .find(|c| *c != 0)
                .unwrap_or(0)
        };
        let answer = self.on_coordinator(
            cluster,
            |conn| conn.call(&request, 2..=8).map(|(a, _)| a),
            first_error,
        )?;
        let code = first_error(&answer);
        // Illegal generation, unknown member id, rebalance in progress.
        if matches!(code, 22 | 25 | 27) {
            return Err(ConnectorError::InvalidRequest(format!(
                "group `{}` refused the commit ({}): it has members of its own; a sluice stream commits as a standalone consumer — give it a group id of its own",
                self.id,
                Code(code)
            )));
        }
        errors::check(code, || {
            format!("committing group `{}`'s offsets of `{topic}`", self.id)
        })?;
        self.committed.extend(moved);
        Ok(())
    }
}

/// `stream`: the partitions of one topic, consumed.
pub struct TopicStream {
    cluster: Cluster,
    reader: Reader,
    wait: Wait,
    group: Option<Group>,
    /// With a group: partition → delivered offsets not acknowledged yet.
    outstanding: BTreeMap<i32, BTreeSet<i64>>,
}

impl TopicStream {
    pub fn new(cluster: Cluster, reader: Reader, wait: Wait, group: Option<Group>) -> Self {
        Self {
            cluster,
            reader,
            wait,
            group,
            outstanding: BTreeMap::new(),
        }
    }

    /// `topic/partition/offset` → (partition, offset) of this stream's topic.
    fn parse_id(&self, id: &str) -> Result<(i32, i64)> {
        let bad = || {
            ConnectorError::InvalidRequest(format!(
                "`{id}` is not the id of a record of `{}` (topic/partition/offset)",
                self.reader.topic
            ))
        };
        let (rest, offset) = id.rsplit_once('/').ok_or_else(bad)?;
        let (topic, partition) = rest.rsplit_once('/').ok_or_else(bad)?;
        if topic != self.reader.topic {
            return Err(bad());
        }
        Ok((
            partition.parse().map_err(|_| bad())?,
            offset.parse().map_err(|_| bad())?,
        ))
    }

    /// Parse `ids`, each delivered by this stream and not settled yet
    /// (checked only with a group: without one, nothing is tracked).
    fn settle(&mut self, ids: &[String]) -> Result<Vec<(i32, i64)>> {
        let parsed = ids
            .iter()
            .map(|id| self.parse_id(id))
            .collect::<Result<Vec<_>>>()?;
        if self.group.is_some() {
            if let Some((p, o)) = parsed
                .iter()
                .find(|(p, o)| !self.outstanding.get(p).is_some_and(|s| s.contains(o)))
            {
                return Err(ConnectorError::InvalidRequest(format!(
                    "record {}/{p}/{o} was not delivered by this stream, or was settled already",
                    self.reader.topic
                )));
            }
            for (p, o) in &parsed {
                self.outstanding.get_mut(p).map(|s| s.remove(o));
            }
        }
        Ok(parsed)
    }
}

impl RecordStream for TopicStream {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        if self.reader.buffered() == 0 {
            let block = self.wait.block;
            let round = self
                .reader
                .fill(&mut self.cluster, block.as_millis() as u64, None)?;
            if round.unsettled && !round.arrived {
                // Not idle: a partition could not be read. Hand back an
                // empty batch, never the end of the stream.
                let checkpoint = positions_text(&self.reader.topic, self.reader.positions());
                return Ok(Some(Batch {
                    records: Vec::new(),
                    checkpoint: Some(checkpoint),
                }));
            }
        }
        let taken = self.reader.take(max.max(1) as usize);
        let topic = &self.reader.topic;
        let mut records = Vec::with_capacity(taken.len());
        for (partition, record) in &taken {
            if self.group.is_some() {
                self.outstanding
                    .entry(*partition)
                    .or_default()
                    .insert(record.offset);
            }
            records.push(message::to_record(topic, *partition, record));
        }
        let checkpoint = positions_text(topic, self.reader.positions());
        Ok(self.wait.batch(records, Some(checkpoint)))
    }

    fn ack(&mut self, ids: Vec<String>) -> Result<()> {
        self.settle(&ids)?;
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        // Everything before the first record still out is acknowledged.
        let offsets: BTreeMap<i32, i64> = self
            .reader
            .positions()
            .iter()
            .map(|(p, next)| {
                let first_out = self.outstanding.get(p).and_then(|s| s.first().copied());
                (*p, first_out.unwrap_or(*next))
            })
            .collect();
        group.commit(&mut self.cluster, &self.reader.topic, &offsets)
    }

    fn nack(&mut self, ids: Vec<String>) -> Result<()> {
        let settled = self.settle(&ids)?;
        let mut back: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o) in settled {
            let earliest = back.entry(p).or_insert(o);
            *earliest = (*earliest).min(o);
        }
        for (p, offset) in back {
            if self
                .reader
                .positions()
                .get(&p)
                .is_none_or(|next| offset >= *next)
            {
                return Err(ConnectorError::InvalidRequest(format!(
                    "record {}/{p}/{offset} was not delivered by this stream",
                    self.reader.topic
                )));
            }
            self.reader.seek(p, offset);
            if let Some(out) = self.outstanding.get_mut(&p) {
                out.retain(|o| *o < offset);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_reads_every_form_and_refuses_the_rest() {
        assert_eq!(Start::parse(&json!("earliest")).unwrap(), Start::Earliest);
        assert_eq!(Start::parse(&json!("latest")).unwrap(), Start::Latest);
        assert_eq!(Start::parse(&json!(42)).unwrap(), Start::Offset(42));
        assert_eq!(Start::parse(&json!("42")).unwrap(), Start::Offset(42));
        assert_eq!(
            Start::parse(&json!("timestamp:1700000000000")).unwrap(),
            Start::Timestamp(1_700_000_000_000)
        );
        for bad in [json!(-1), json!("soon"), json!(true), json!("timestamp:x")] {
            assert!(
                matches!(Start::parse(&bad), Err(ConnectorError::InvalidRequest(m)) if m.contains("earliest"))
            );
        }
    }

    #[test]
    fn positions_round_trip_and_belong_to_their_topic() {
        let positions = BTreeMap::from([(0, 12), (1, 7)]);
        let text = positions_text("orders", &positions);
        assert_eq!(text, r#"{"topic":"orders","offsets":{"0":12,"1":7}}"#);
        assert_eq!(
            parse_positions(&text, "orders", "checkpoint").unwrap(),
            positions
        );
        let err = parse_positions(&text, "payments", "checkpoint").unwrap_err();
        assert!(
            matches!(&err, ConnectorError::InvalidRequest(m) if m.contains("not `payments`")),
            "{err:?}"
        );
        let err = parse_positions(
            r#"{"topic":"orders","offsets":{"0":-3}}"#,
            "orders",
            "cursor",
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConnectorError::InvalidRequest(m) if m.contains("not an offset")),
            "{err:?}"
        );
    }
}
