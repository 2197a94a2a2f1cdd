//! The `redis` connector: Redis Streams, consumed through consumer groups
//! with acknowledgement, and published to with XADD.
//!
//! - `discover`: the configured `streams`, else every stream key SCAN finds;
//! - `fetch`: a page of a stream by entry id (XRANGE), read without
//!   consuming; the cursor is the last id;
//! - `stream`: consume through the consumer group `group` as `consumer`
//!   (see [`consume`]): at least once, `ack` = XACK, `nack` = deliver again;
//! - `execute` `publish` (or `xadd`): one entry per record, pipelined;
//!   `affected` counts the ids the server assigned, returned as the records'
//!   ids.
//!
//! The connector speaks RESP2 itself over a granted socket
//! (`--allow-tcp HOST:PORT`); the password is a secret it reads by name
//! (`password_secret`, granted with `--socket-secret`), never in the config.

mod consume;
mod entry;
mod resp;

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::net::Deadlines;
use sluice_sdk::queue::{self, Wait};
use sluice_sdk::{
    config, secrets, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, RecordBuilder, RecordStream, ResourceInfo,
    Result, Session,
};

use consume::{Consume, Consumer};
use entry::Layout;
use resp::{Client, Reply};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// `HOST:PORT` of the Redis server (grant it: `--allow-tcp HOST:PORT`).
    address: String,
    /// ACL user name (Redis 6+); none logs in as the default user.
    username: Option<String>,
    /// Name of the secret holding the password (`--socket-secret NAME=…`;
    /// on the server, the instance's `secrets` and `grants.sockets.secrets`).
    password_secret: Option<String>,
    /// Logical database number. Default 0.
    #[serde(default)]
    database: u32,
    /// Stream keys `discover` lists; empty lists every stream SCAN finds.
    #[serde(default)]
    streams: Vec<String>,
    /// Consumer group `stream` reads through. Default `sluice`.
    #[serde(default = "default_group")]
    group: String,
    /// This consumer's name in the group. A consumer that comes back under
    /// the same name gets its unacknowledged entries first; give concurrent
    /// consumers distinct names. Default `sluice`.
    #[serde(default = "default_group")]
    consumer: String,
    /// Where a group that `stream` creates starts: `0` = the whole stream,
    /// `$` = entries added from then on. Default `0`.
    #[serde(default = "default_start")]
    start: String,
    /// Entries another consumer has held unacknowledged this long (it died)
    /// are claimed with XAUTOCLAIM and delivered here. Default 60000.
    #[serde(default = "default_claim_idle_ms")]
    claim_idle_ms: u64,
    /// How long one `next` waits for new entries, in milliseconds. Default 1000.
    #[serde(default = "default_block_ms")]
    block_ms: u64,
    /// End the stream once a wait brings nothing (drain, then stop) instead
    /// of returning empty batches. Default false; a stream's `options` may
    /// say `{"end_when_idle": true}`.
    #[serde(default)]
    end_when_idle: bool,
    /// When set, each record's data is one JSON text in this entry field
    /// (publish writes it, consume parses it). Otherwise each top-level
    /// field of the data is an entry field: strings as they are, other
    /// values as JSON text, and consumed values are strings.
    payload_field: Option<String>,
    /// Largest reply accepted from the server, in bytes. Default 16 MiB.
    #[serde(default = "default_max_reply_bytes")]
    max_reply_bytes: usize,
}

fn default_group() -> String {
    "sluice".into()
}

fn default_start() -> String {
    "0".into()
}

fn default_claim_idle_ms() -> u64 {
    60_000
}

fn default_block_ms() -> u64 {
    1_000
}

fn default_max_reply_bytes() -> usize {
    16 << 20
}

impl Config {
    fn check(&self) -> Result<()> {
        queue::check_block_ms(self.block_ms)?;
        if self.start != "0" && self.start != "$" {
            return Err(ConnectorError::InvalidConfig(
                "start: write `0` (the whole stream) or `$` (new entries only)".into(),
            ));
        }
        for (field, value) in [("group", &self.group), ("consumer", &self.consumer)] {
            if value.is_empty() {
                return Err(ConnectorError::InvalidConfig(format!(
                    "{field}: cannot be empty"
                )));
            }
        }
        Ok(())
    }

    fn layout(&self) -> Layout {
        match &self.payload_field {
            Some(field) => Layout::Payload(field.clone()),
            None => Layout::Fields,
        }
    }

    /// A logged-in connection on the configured database.
    fn connect(&self) -> Result<Client> {
        let mut client = Client::open(&self.address, Deadlines::default(), self.max_reply_bytes)?;
        if let Some(password) = secrets::optional(self.password_secret.as_deref())? {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            client.call(&args)?;
        } else if self.username.is_some() {
            return Err(ConnectorError::InvalidConfig(
                "username needs password_secret (the secret holding its password)".into(),
            ));
        }
        if self.database != 0 {
            client.call(&[b"SELECT", self.database.to_string().as_bytes()])?;
        }
        // `open` fails now, not at the first call, when the server does not
        // answer as Redis does.
        match client.call(&[b"PING"])? {
            Reply::Status(pong) if pong == "PONG" => Ok(client),
            other => Err(resp::unexpected("PING", &other)),
        }
    }
}

struct Redis;

struct RedisSession {
    config: Config,
    client: RefCell<Client>,
}

impl Connector for Redis {
    type Session = RedisSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "redis",
            env!("CARGO_PKG_VERSION"),
            "Redis Streams: consume through consumer groups with ack/nack (at least once), publish with XADD",
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

    fn open(config_json: &str) -> Result<RedisSession> {
        let config: Config = config::parse(config_json)?;
        config.check()?;
        let client = config.connect()?;
        Ok(RedisSession {
            client: RefCell::new(client),
            config,
        })
    }
}

impl RedisSession {
    fn call(&self, args: &[&[u8]]) -> Result<Reply> {
        self.client.borrow_mut().call(args)
    }

    fn scan_streams(&self) -> Result<Vec<String>> {
        const MOST: usize = 10_000;
        let mut cursor = "0".to_string();
        let mut names = Vec::new();
        loop {
            let reply = self.call(&[
                b"SCAN",
                cursor.as_bytes(),
                b"COUNT",
                b"1000",
                b"TYPE",
                b"stream",
            ])?;
            let mut parts = reply.into_array("SCAN")?.into_iter();
            cursor = parts
                .next()
                .ok_or_else(|| ConnectorError::Unavailable("SCAN answered nothing".into()))?
                .into_text("the SCAN cursor")?;
            if let Some(keys) = parts.next() {
                for key in keys.into_array("SCAN keys")? {
                    names.push(key.into_text("a key")?);
                }
            }
            if cursor == "0" || names.len() >= MOST {
                break;
            }
        }
        names.sort();
        names.dedup();
        names.truncate(MOST);
        Ok(names)
    }
}

impl Session for RedisSession {
    fn health_check(&self) -> Result<()> {
        match self.call(&[b"PING"])? {
            Reply::Status(pong) if pong == "PONG" => Ok(()),
            other => Err(resp::unexpected("PING", &other)),
        }
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        let names = if self.config.streams.is_empty() {
            self.scan_streams()?
        } else {
            self.config.streams.clone()
        };
        Ok(names
            .into_iter()
            .map(|name| ResourceInfo { name, schema: None })
            .collect())
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        if !req.filters.is_empty() || !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "filters and sort on a Redis stream (entries come in id order)".into(),
            ));
        }
        let page = req.pagination.as_ref();
        if page.and_then(|p| p.offset).is_some() {
            return Err(ConnectorError::Unsupported(
                "offset pagination on a Redis stream: page with the cursor (the last entry id)"
                    .into(),
            ));
        }
        let size = page.map_or(1000, |p| p.page_size.clamp(1, 10_000));
        let start = match page.and_then(|p| p.cursor.as_deref()) {
            Some(cursor) => format!("({cursor}"),
            None => "-".to_string(),
        };
        let count = size.to_string();
        let reply = self.call(&[
            b"XRANGE",
            req.resource.as_bytes(),
            start.as_bytes(),
            b"+",
            b"COUNT",
            count.as_bytes(),
        ])?;
        let entries = entry::entries(reply)?;
        let full = entries.len() == size as usize;
        let next_cursor = full.then(|| entries.last().map(|e| e.id.clone())).flatten();
        let layout = self.config.layout();
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let record = layout.record(&req.resource, entry, false)?;
            records.push(select_fields(record, &req.fields)?);
        }
        Ok(FetchResponse {
            records,
            total_count: None,
            next_cursor,
        })
    }

    fn stream(
        &self,
        req: FetchRequest,
        _checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let config = &self.config;
        let wait = Wait::for_request(
            &req,
            config.block_ms,
            config.end_when_idle,
            &[],
            "a consumed Redis stream",
        )?;
        let spec = Consume {
            key: req.resource,
            group: config.group.clone(),
            consumer: config.consumer.clone(),
            layout: config.layout(),
            claim_idle_ms: config.claim_idle_ms,
            wait,
        };
        // The group remembers the position; a checkpoint adds nothing.
        Ok(Box::new(Consumer::start(
            config.connect()?,
            spec,
            &config.start,
        )?))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        if req.operation != "publish" && req.operation != "xadd" {
            return Err(ConnectorError::Unsupported(format!(
                "execute `{}`: the redis connector publishes (`publish`, `xadd`)",
                req.operation
            )));
        }
        let max_len = match &req.options {
            Some(text) => {
                let options: Value = serde_json::from_str(text)
                    .map_err(|e| ConnectorError::InvalidRequest(format!("options: {e}")))?;
                options.get("max_len").and_then(Value::as_u64)
            }
            None => None,
        };
        let layout = self.config.layout();
        let mut commands = Vec::with_capacity(req.records.len());
        for record in &req.records {
            let mut command: Vec<Vec<u8>> = vec![b"XADD".to_vec(), req.resource.clone().into()];
            if let Some(max_len) = max_len {
                command.extend([
                    b"MAXLEN".to_vec(),
                    b"~".to_vec(),
                    max_len.to_string().into(),
                ]);
            }
            command.push(b"*".to_vec());
            for (field, value) in layout.fields(&record.data)? {
                command.push(field.into());
                command.push(value.into());
            }
            commands.push(command);
        }
        let mut client = self.client.borrow_mut();
        let replies = client.pipeline(&commands)?;
        let mut records = Vec::with_capacity(replies.len());
        for reply in replies {
            let id = client.check(reply)?.into_text("the XADD id")?;
            records.push(
                RecordBuilder::new(serde_json::json!({ "id": id }))
                    .id(id)
                    .build(),
            );
        }
        Ok(ExecuteResponse {
            affected: records.len() as u64,
            records,
        })
    }
}

/// Keep only `fields` of a record's data (all when empty).
fn select_fields(mut record: sluice_sdk::Record, fields: &[String]) -> Result<sluice_sdk::Record> {
    if fields.is_empty() {
        return Ok(record);
    }
    let data: Value = serde_json::from_str(&record.data)
        .map_err(|e| ConnectorError::Internal(format!("record data: {e}")))?;
    let kept: serde_json::Map<String, Value> = fields
        .iter()
        .filter_map(|f| data.get(f).map(|v| (f.clone(), v.clone())))
        .collect();
    record.data = Value::Object(kept).to_string();
    Ok(record)
}

sluice_sdk::export_connector!(Redis);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
