//! `execute` `produce`: records to partitions (the one a record names, the
//! key's murmur2 hash as the Java client's default partitioner computes it,
//! or round-robin for records without a key), one batch per partition and
//! request, each acknowledged by the broker (`acks=all` by default).
//!
//! A request the broker refused because leadership moved was not written:
//! it is sent again (at most three times) after a metadata refresh. Any
//! other refusal ends the call with an error that says how many records
//! were acknowledged before it.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use sluice_sdk::{ConnectorError, Record, RecordBuilder, Result};

use crate::batch::{self, Compression, Outgoing};
use crate::cluster::Cluster;
use crate::errors;

/// How records are produced.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// -1 (all in-sync replicas) or 1 (the leader).
    pub acks: i16,
    pub compression: Compression,
    /// The largest batch sent in one request, in bytes (before compression).
    pub batch_max_bytes: usize,
    pub timeout_ms: i32,
}

/// How many times a request refused because leadership moved is sent again.
const RETRIES: usize = 3;

/// Produce `records` to `topic` (every record to `partition` when given);
/// each record's partition and offset, in the order given.
pub fn produce(
    cluster: &mut Cluster,
    topic: &str,
    partition: Option<i32>,
    records: Vec<(Outgoing, Option<i32>)>,
    settings: Settings,
    round_robin: &mut u32,
) -> Result<Vec<Record>> {
    let count = cluster.topic(topic)?.leaders.len() as i32;
    if count == 0 {
        return Err(ConnectorError::Unavailable(format!(
            "topic `{topic}` has no partitions"
        )));
    }
    // partition → (index in the request, record)
    let mut by_partition: BTreeMap<i32, Vec<(usize, Outgoing)>> = BTreeMap::new();
    for (index, (record, asked)) in records.into_iter().enumerate() {
        let chosen = match (asked.or(partition), &record.key) {
            (Some(p), _) if (0..count).contains(&p) => p,
            (Some(p), _) => {
                return Err(ConnectorError::InvalidRequest(format!(
                    "record {index}: topic `{topic}` has partitions 0..{}, not {p}",
                    count - 1
                )))
            }
            (None, Some(key)) => (murmur2(key) & 0x7fff_ffff) as i32 % count,
            (None, None) => {
                *round_robin = round_robin.wrapping_add(1);
                (*round_robin % count as u32) as i32
            }
        };
        by_partition
            .entry(chosen)
            .or_default()
            .push((index, record));
    }
    let total: usize = by_partition.values().map(Vec::len).sum();
    let mut placed: Vec<Option<(i32, i64)>> = vec![None; total];
    let mut acknowledged = 0;
    for (partition, records) in by_partition {
        for chunk in chunks(records, settings.batch_max_bytes) {
            let (indexes, outgoing): (Vec<usize>, Vec<Outgoing>) = chunk.into_iter().unzip();
            let base = send(cluster, topic, partition, &outgoing, settings)
                .map_err(|e| after(e, acknowledged, total))?;
            for (delta, index) in indexes.iter().enumerate() {
                placed[*index] = Some((partition, base + delta as i64));
            }
            acknowledged += indexes.len();
        }
    }
    Ok(placed
        .into_iter()
        .flatten()
        .map(|(partition, offset)| {
            RecordBuilder::new(json!({ "topic": topic, "partition": partition, "offset": offset }))
                .id(format!("{topic}/{partition}/{offset}"))
                .build()
        })
        .collect())
}

/// Records in order, cut so each batch stays under `max` bytes (a record
/// larger than that goes alone; the broker judges it).
fn chunks(records: Vec<(usize, Outgoing)>, max: usize) -> Vec<Vec<(usize, Outgoing)>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for record in records {
        let one = record.1.size();
        if !current.is_empty() && size + one > max {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += one;
        current.push(record);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Say in the error how far the call got.
fn after(error: ConnectorError, acknowledged: usize, total: usize) -> ConnectorError {
    if acknowledged == 0 {
        return error;
    }
    let note = format!(" ({acknowledged} of {total} records were acknowledged before this)");
    match error {
        ConnectorError::Unavailable(m) => ConnectorError::Unavailable(m + &note),
        ConnectorError::InvalidRequest(m) => ConnectorError::InvalidRequest(m + &note),
        ConnectorError::Denied(m) => ConnectorError::Denied(m + &note),
        ConnectorError::NotFound(m) => ConnectorError::NotFound(m + &note),
        other => other,
    }
}

/// Send one batch to the partition's leader; the offset the broker gave its first record.
fn send(
    cluster: &mut Cluster,
    topic: &str,
    partition: i32,
    records: &[Outgoing],
    settings: Settings,
) -> Result<i64> {
    let batch = Bytes::from(batch::encode(records, settings.compression));
    let request = ProduceRequest::default()
        .with_acks(settings.acks)
        .with_timeout_ms(settings.timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let what = || {
        format!(
            "producing {} record(s) to {topic}/{partition}",
            records.len()
        )
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let leader = cluster.leader(topic, partition)?;
        let (answer, _) = cluster.on_node(leader, |conn| conn.call(&request, 3..=12))?;
        let result = answer
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| {
                ConnectorError::Unavailable(format!(
                    "{}: the broker's answer leaves the partition out",
                    what()
                ))
            })?;
        if errors::moved(result.error_code) && tries <= RETRIES {
            cluster.forget(topic);
            continue;
        }
        errors::check(result.error_code, || {
            let said = result
                .error_message
                .as_ref()
                .map_or(String::new(), |m| format!(" ({m})"));
            format!("{}{said}", what())
        })?;
        return Ok(result.base_offset);
    }
}

/// The 32-bit murmur2 hash Kafka's Java client partitions keys with.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_clients_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()) as i32, expected, "{key}");
        }
    }

    #[test]
    fn chunks_keep_order_and_stay_under_the_limit() {
        let record = |n: usize| {
            (
                n,
                Outgoing {
                    key: None,
                    value: Some(vec![b'x'; 100]),
                    headers: vec![],
                    timestamp: 0,
                },
            )
        };
        let cut = chunks((0..10).map(record).collect(), 300);
        let sizes: Vec<usize> = cut.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        let order: Vec<usize> = cut.iter().flatten().map(|(i, _)| *i).collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        assert_eq!(chunks(vec![record(0)], 10).len(), 1);
    }
}
