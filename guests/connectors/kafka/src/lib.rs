//! The `kafka` connector: topics read page by page (`fetch`), consumed with
//! offsets as checkpoints and consumer-group commits on ack (`stream`), and
//! written with broker acknowledgements (`execute` `produce`).
//!
//! Resources: a topic (`orders`), or one partition of it (`orders/2`). The
//! connector speaks the Kafka protocol itself over granted sockets: the
//! bootstrap addresses and every broker the cluster's metadata advertises
//! must be granted (`--allow-tcp HOST:PORT`); a SASL/PLAIN password is a
//! secret it reads by name (`--socket-secret`).

mod batch;
mod cluster;
mod consume;
mod errors;
mod message;
mod produce;
mod wire;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::net::Deadlines;
use sluice_sdk::queue::{self, Wait};
use sluice_sdk::{
    config, secrets, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, RecordStream, ResourceInfo, Result, Session,
};

use batch::Compression;
use cluster::Cluster;
use consume::{FetchSettings, Group, Reader, Start, TopicStream};
use wire::{Dial, Plain};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// `HOST:PORT` of one or more brokers to learn the cluster from (grant
    /// each, and each broker the cluster advertises: `--allow-tcp HOST:PORT`).
    bootstrap: Vec<String>,
    /// The client id the brokers see (their logs and quotas). Default `sluice`.
    #[serde(default = "default_client_id")]
    client_id: String,
    /// A consumer group: `stream` starts from its committed offsets (when
    /// there is no checkpoint) and `ack` commits to it. The connector
    /// commits as a standalone consumer: give it a group of its own.
    group_id: Option<String>,
    /// SASL/PLAIN user name.
    sasl_username: Option<String>,
    /// Name of the secret holding the SASL/PLAIN password (`--socket-secret NAME=…`).
    sasl_password_secret: Option<String>,
    /// Where a partition starts when there is no checkpoint and no committed
    /// offset: `earliest`, `latest`, an offset, or `timestamp:MILLIS`.
    /// Default `earliest`; a request's `options.from` overrides it.
    #[serde(default = "default_from")]
    from: Value,
    /// How long one `next` waits for records, in milliseconds. Default 1000.
    #[serde(default = "default_block_ms")]
    block_ms: u64,
    /// End the stream once a wait brings nothing, instead of returning
    /// empty batches. Default false; a stream's `options` may say
    /// `{"end_when_idle": true}`.
    #[serde(default)]
    end_when_idle: bool,
    /// The most bytes one Fetch answer may carry. Default 16 MiB.
    #[serde(default = "default_fetch_max_bytes")]
    fetch_max_bytes: u32,
    /// The most bytes one Fetch answer carries per partition. Default 1 MiB.
    #[serde(default = "default_partition_max_bytes")]
    partition_max_bytes: u32,
    /// The largest response frame accepted, and what a compressed batch may
    /// inflate to, in bytes. Default 64 MiB.
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: u32,
    /// The most bytes of records one Produce request carries. Default 1 MiB
    /// (the broker's own `message.max.bytes` also bounds it).
    #[serde(default = "default_batch_max_bytes")]
    batch_max_bytes: u32,
    /// Which acknowledgement `produce` waits for: `all` (every in-sync
    /// replica) or `leader`. Default `all`.
    #[serde(default = "default_acks")]
    acks: String,
    /// How `produce` compresses batches: `none` or `gzip`. Default `none`.
    #[serde(default = "default_compression")]
    compression: String,
}

fn default_client_id() -> String {
    "sluice".into()
}

fn default_from() -> Value {
    json!("earliest")
}

fn default_block_ms() -> u64 {
    1_000
}

fn default_fetch_max_bytes() -> u32 {
    16 << 20
}

fn default_partition_max_bytes() -> u32 {
    1 << 20
}

fn default_max_response_bytes() -> u32 {
    64 << 20
}

fn default_batch_max_bytes() -> u32 {
    1 << 20
}

fn default_acks() -> String {
    "all".into()
}

fn default_compression() -> String {
    "none".into()
}

/// How long the broker may take to replicate a produced batch.
const PRODUCE_TIMEOUT_MS: i32 = 15_000;

impl Config {
    fn check(&self) -> Result<Settings> {
        let invalid = |m: String| Err(ConnectorError::InvalidConfig(m));
        if self.bootstrap.is_empty() {
            return invalid("bootstrap: give at least one HOST:PORT".into());
        }
        if self.group_id.as_deref().is_some_and(str::is_empty) {
            return invalid("group_id: an empty name".into());
        }
        if self.sasl_username.is_some() != self.sasl_password_secret.is_some() {
            return invalid("sasl_username and sasl_password_secret: give both, or neither".into());
        }
        queue::check_block_ms(self.block_ms)?;
        let from = Start::parse(&self.from)
            .map_err(|e| ConnectorError::InvalidConfig(format!("{e:?}")))?;
        if self.partition_max_bytes == 0 || self.fetch_max_bytes < self.partition_max_bytes {
            return invalid("fetch_max_bytes and partition_max_bytes: give 1 <= partition_max_bytes <= fetch_max_bytes".into());
        }
        if u64::from(self.max_response_bytes) < u64::from(self.fetch_max_bytes) + (1 << 20) {
            return invalid(
                "max_response_bytes: give at least fetch_max_bytes + 1 MiB (a Fetch answer's frame holds fetch_max_bytes of records and more)".into(),
            );
        }
        if self.batch_max_bytes == 0 {
            return invalid("batch_max_bytes: give at least 1".into());
        }
        let acks = match self.acks.as_str() {
            "all" => -1,
            "leader" => 1,
            other => return invalid(format!("acks: `{other}`; write `all` or `leader` (acks=0 would lose records without telling)")),
        };
        let compression =
            parse_compression(&self.compression).map_err(ConnectorError::InvalidConfig)?;
        Ok(Settings {
            from,
            fetch: FetchSettings {
                max_bytes: self.fetch_max_bytes.min(i32::MAX as u32) as i32,
                partition_max_bytes: self.partition_max_bytes.min(i32::MAX as u32) as i32,
                max_inflated: self.max_response_bytes as usize,
            },
            produce: produce::Settings {
                acks,
                compression,
                batch_max_bytes: self.batch_max_bytes as usize,
                timeout_ms: PRODUCE_TIMEOUT_MS,
            },
        })
    }

    fn connect(&self) -> Result<Cluster> {
        let login = match (&self.sasl_username, &self.sasl_password_secret) {
            (Some(username), Some(secret)) => Some(Plain {
                username: username.clone(),
                password: secrets::get(secret)?,
            }),
            _ => None,
        };
        Cluster::connect(
            &self.bootstrap,
            Dial {
                client_id: self.client_id.clone(),
                deadlines: Deadlines::default(),
                max_frame: self.max_response_bytes as usize,
                login,
            },
        )
    }
}

fn parse_compression(name: &str) -> std::result::Result<Compression, String> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" | "lz4" | "zstd" => Err(format!(
            "compression: `{name}` is not supported by this connector; write `none` or `gzip`"
        )),
        other => Err(format!("compression: `{other}`; write `none` or `gzip`")),
    }
}

/// What the config decides, checked.
#[derive(Debug, Clone, Copy)]
struct Settings {
    from: Start,
    fetch: FetchSettings,
    produce: produce::Settings,
}

/// `topic` or `topic/partition`.
fn parse_resource(resource: &str) -> Result<(&str, Option<i32>)> {
    let (topic, partition) = match resource.split_once('/') {
        Some((topic, partition)) => {
            let partition = partition
                .parse::<i32>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    ConnectorError::InvalidRequest(format!(
                        "`{resource}`: write a topic, or topic/PARTITION with a partition number"
                    ))
                })?;
            (topic, Some(partition))
        }
        None => (resource, None),
    };
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
        return Err(ConnectorError::InvalidRequest(format!(
            "`{topic}` is not a Kafka topic name (1 to 249 of letters, digits, `.`, `_` and `-`)"
        )));
    }
    Ok((topic, partition))
}

struct Kafka;

struct KafkaSession {
    config: Config,
    settings: Settings,
    cluster: RefCell<Cluster>,
    round_robin: Cell<u32>,
}

impl Connector for Kafka {
    type Session = KafkaSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "kafka",
            env!("CARGO_PKG_VERSION"),
            "Kafka: topics (`orders`, or one partition `orders/2`) read page by page, consumed with the next offset of every partition as the checkpoint and consumer-group commits on ack (at least once), and produced with acks=all",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: true,
            filtering: false,
            sorting: false,
            aggregation: false,
            transactions: false,
            max_page_size: Some(10_000),
        })
        .build()
    }

    fn open(config_json: &str) -> Result<KafkaSession> {
        let config: Config = config::parse(config_json)?;
        let settings = config.check()?;
        let cluster = config.connect()?;
        Ok(KafkaSession {
            config,
            settings,
            cluster: RefCell::new(cluster),
            round_robin: Cell::new(0),
        })
    }
}

/// The option keys `fetch` and `stream` read besides the waiting ones.
const READ_OPTIONS: [&str; 2] = ["from", "partitions"];

impl KafkaSession {
    /// The partitions to read: the resource's one, `options.partitions`, or all.
    fn partitions(
        &self,
        cluster: &mut Cluster,
        topic: &str,
        only: Option<i32>,
        options: &serde_json::Map<String, Value>,
    ) -> Result<Vec<i32>> {
        let all: Vec<i32> = cluster.topic(topic)?.leaders.keys().copied().collect();
        let asked: Vec<i32> = match (only, options.get("partitions")) {
            (Some(_), Some(_)) => {
                return Err(ConnectorError::InvalidRequest(
                    "options.partitions with a topic/partition resource: give one or the other"
                        .into(),
                ))
            }
            (Some(p), None) => vec![p],
            (None, Some(list)) => serde_json::from_value(list.clone()).map_err(|_| {
                ConnectorError::InvalidRequest(
                    "options.partitions: a list of partition numbers".into(),
                )
            })?,
            (None, None) => return Ok(all),
        };
        if let Some(missing) = asked.iter().find(|p| !all.contains(p)) {
            return Err(ConnectorError::NotFound(format!(
                "topic `{topic}` has no partition {missing} (it has {})",
                all.len()
            )));
        }
        Ok(asked)
    }

    fn from(&self, options: &serde_json::Map<String, Value>) -> Result<Start> {
        options
            .get("from")
            .map_or(Ok(self.settings.from), Start::parse)
    }
}

impl Session for KafkaSession {
    fn health_check(&self) -> Result<()> {
        self.cluster.borrow_mut().refresh(Some(&[])).map(drop)
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        let topics = self.cluster.borrow_mut().refresh(None)?;
        let mut resources: Vec<ResourceInfo> = topics
            .into_iter()
            .filter(|(_, _, internal)| !internal)
            .map(|(name, partitions, _)| ResourceInfo {
                schema: Some(
                    json!({
                        "type": "object",
                        "description": format!("Kafka topic `{name}` with {partitions} partition(s)"),
                        "x-kafka-partitions": partitions,
                        "properties": {
                            "key": { "type": ["string", "null"] },
                            "key_base64": { "type": "string" },
                            "value": {},
                            "value_text": { "type": "string" },
                            "value_base64": { "type": "string" },
                            "headers": { "type": "array" },
                        },
                    })
                    .to_string(),
                ),
                name,
            })
            .collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(resources)
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        if !req.filters.is_empty() || !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "filters and sort on a Kafka topic (records come in offset order)".into(),
            ));
        }
        let (topic, only) = parse_resource(&req.resource)?;
        let options = queue::stream_options(req.options.as_deref(), &READ_OPTIONS)?;
        let page = req.pagination.as_ref();
        if page.and_then(|p| p.offset).is_some() {
            return Err(ConnectorError::Unsupported(
                "offset pagination: page with the cursor (the next offset of every partition)"
                    .into(),
            ));
        }
        let size = page.map_or(100, |p| p.page_size.clamp(1, 10_000)) as usize;
        let mut cluster = self.cluster.borrow_mut();
        let partitions = self.partitions(&mut cluster, topic, only, &options)?;
        let starts = match page.and_then(|p| p.cursor.as_deref()) {
            Some(cursor) => {
                let positions = consume::parse_positions(cursor, topic, "cursor")?;
                if positions.keys().any(|p| !partitions.contains(p))
                    || positions.len() != partitions.len()
                {
                    return Err(ConnectorError::InvalidRequest(
                        "cursor: it is for other partitions than this request reads".into(),
                    ));
                }
                positions
            }
            None => consume::starts(&mut cluster, topic, &partitions, self.from(&options)?)?,
        };
        let ends = consume::list_offsets(&mut cluster, topic, &partitions, -1)?;
        let mut reader = Reader::new(topic, starts, self.settings.fetch);
        let mut records = Vec::new();
        let mut idle_rounds = 0;
        while records.len() < size {
            if reader.buffered() == 0 {
                let done = reader.positions().iter().all(|(p, next)| *next >= ends[p]);
                if done || idle_rounds >= 3 {
                    break;
                }
                let round = reader.fill(&mut cluster, 100, Some(&ends))?;
                idle_rounds = if round.arrived || round.unsettled {
                    0
                } else {
                    idle_rounds + 1
                };
                continue;
            }
            for (partition, record) in reader.take(size - records.len()) {
                records.push(sluice_sdk::query::project_record(
                    message::to_record(topic, partition, &record),
                    &req.fields,
                ));
            }
        }
        let more = reader.positions().iter().any(|(p, next)| *next < ends[p]);
        Ok(FetchResponse {
            records,
            total_count: None,
            next_cursor: more.then(|| consume::positions_text(topic, reader.positions())),
        })
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let wait = Wait::for_request(
            &req,
            self.config.block_ms,
            self.config.end_when_idle,
            &READ_OPTIONS,
            "a Kafka topic",
        )?;
        let (topic, only) = parse_resource(&req.resource)?;
        let options = queue::stream_options(req.options.as_deref(), &READ_OPTIONS)?;
        let from = self.from(&options)?;
        // A stream has connections of its own: it outlives this call.
        let mut cluster = self.config.connect()?;
        let partitions = self.partitions(&mut cluster, topic, only, &options)?;
        let mut starts: BTreeMap<i32, i64> = match checkpoint.as_deref() {
            Some(text) => consume::parse_positions(text, topic, "checkpoint")?
                .into_iter()
                .filter(|(p, _)| partitions.contains(p))
                .collect(),
            None => BTreeMap::new(),
        };
        let mut group = self.config.group_id.as_deref().map(Group::new);
        let missing: Vec<i32> = partitions
            .iter()
            .filter(|p| !starts.contains_key(p))
            .copied()
            .collect();
        if let (Some(group), false) = (group.as_mut(), missing.is_empty()) {
            starts.extend(group.committed(&mut cluster, topic, &missing)?);
        }
        let missing: Vec<i32> = partitions
            .iter()
            .filter(|p| !starts.contains_key(p))
            .copied()
            .collect();
        starts.extend(consume::starts(&mut cluster, topic, &missing, from)?);
        let reader = Reader::new(topic, starts, self.settings.fetch);
        Ok(Box::new(TopicStream::new(cluster, reader, wait, group)))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        if req.operation != "produce" {
            return Err(ConnectorError::Unsupported(format!(
                "execute `{}`: the kafka connector produces (`produce`)",
                req.operation
            )));
        }
        let (topic, partition) = parse_resource(&req.resource)?;
        let mut settings = self.settings.produce;
        let options = queue::stream_options(req.options.as_deref(), &["acks", "compression"])?;
        let bad_option = |m: &str| ConnectorError::InvalidRequest(format!("options.{m}"));
        match options.get("acks").map(|v| v.as_str()) {
            None => {}
            Some(Some("all")) => settings.acks = -1,
            Some(Some("leader")) => settings.acks = 1,
            Some(_) => return Err(bad_option("acks: write `all` or `leader`")),
        }
        if let Some(name) = options.get("compression") {
            let name = name
                .as_str()
                .ok_or_else(|| bad_option("compression: `none` or `gzip`"))?;
            settings.compression = parse_compression(name)
                .map_err(|m| ConnectorError::InvalidRequest(format!("options.{m}")))?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let records = req
            .records
            .iter()
            .enumerate()
            .map(|(index, record)| {
                message::from_record(index, &record.data, now).map(|p| (p.outgoing, p.partition))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut round_robin = self.round_robin.get();
        let placed = produce::produce(
            &mut self.cluster.borrow_mut(),
            topic,
            partition,
            records,
            settings,
            &mut round_robin,
        );
        self.round_robin.set(round_robin);
        let placed = placed?;
        Ok(ExecuteResponse {
            affected: placed.len() as u64,
            records: placed,
        })
    }
}

sluice_sdk::export_connector!(Kafka);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: Value) -> Config {
        let mut base = json!({ "bootstrap": ["127.0.0.1:9092"] });
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_config_that_cannot_work_is_refused_naming_the_field() {
        for (extra, says) in [
            (json!({ "bootstrap": [] }), "bootstrap"),
            (json!({ "acks": "none" }), "acks"),
            (json!({ "compression": "zstd" }), "not supported"),
            (json!({ "from": "yesterday" }), "from"),
            (json!({ "sasl_username": "app" }), "sasl_password_secret"),
            (
                json!({ "fetch_max_bytes": 100, "partition_max_bytes": 1000 }),
                "partition_max_bytes",
            ),
            (json!({ "max_response_bytes": 1024 }), "max_response_bytes"),
            (json!({ "group_id": "" }), "group_id"),
        ] {
            let err = config(extra.clone()).check().unwrap_err();
            assert!(
                matches!(&err, ConnectorError::InvalidConfig(m) if m.contains(says)),
                "{extra}: {err:?}"
            );
        }
        assert!(config(json!({})).check().is_ok());
    }

    #[test]
    fn resources_are_a_topic_or_one_of_its_partitions() {
        assert_eq!(parse_resource("orders").unwrap(), ("orders", None));
        assert_eq!(
            parse_resource("orders.v2/3").unwrap(),
            ("orders.v2", Some(3))
        );
        for bad in ["", "a b", "orders/x", "orders/-1", "../etc"] {
            assert!(
                matches!(parse_resource(bad), Err(ConnectorError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }
}
