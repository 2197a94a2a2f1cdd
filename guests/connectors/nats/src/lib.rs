//! The `nats` connector: JetStream streams consumed through durable pull
//! consumers with ack/nack (at least once), core subjects (at most once),
//! and publishing confirmed by JetStream's PubAck.
//!
//! Resources: a JetStream stream's name (`ORDERS`) for `discover`, `fetch`
//! and `stream`; `subject:orders.>` for a core NATS subscription; a subject
//! (`orders.new`) for `execute` `publish`. The connector speaks the NATS
//! protocol itself over a granted socket (`--allow-tcp HOST:PORT`); a
//! password or token is a secret it reads by name (`--socket-secret`).

mod consume;
mod jetstream;
mod proto;

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::net::Deadlines;
use sluice_sdk::queue::{self, Wait};
use sluice_sdk::{
    config, secrets, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, RecordBuilder, RecordStream, ResourceInfo,
    Result, Session,
};

use consume::{CoreSubscriber, PullConsumer};
use jetstream::Requester;
use proto::{Client, Login};

/// Resources named this way are core NATS subjects.
const CORE_PREFIX: &str = "subject:";

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// `HOST:PORT` of the NATS server (grant it: `--allow-tcp HOST:PORT`).
    address: String,
    /// User name to log in with.
    user: Option<String>,
    /// Name of the secret holding the user's password (`--socket-secret NAME=…`).
    password_secret: Option<String>,
    /// Name of the secret holding an auth token (instead of user and password).
    token_secret: Option<String>,
    /// The durable pull consumer `stream` reads a JetStream stream through
    /// (created when missing). Default `sluice`.
    #[serde(default = "default_durable")]
    durable: String,
    /// How long a delivered message may stay unacknowledged before the
    /// server delivers it again, for a consumer this connector creates, in
    /// milliseconds. Default 30000.
    #[serde(default = "default_ack_wait_ms")]
    ack_wait_ms: u64,
    /// Where a consumer this connector creates starts: `all` or `new`. Default `all`.
    #[serde(default = "default_deliver")]
    deliver: String,
    /// How long one `next` waits for messages, in milliseconds. Default 1000.
    #[serde(default = "default_block_ms")]
    block_ms: u64,
    /// End the stream once a wait brings nothing, instead of returning
    /// empty batches. Default false; a stream's `options` may say
    /// `{"end_when_idle": true}`.
    #[serde(default)]
    end_when_idle: bool,
    /// Largest message accepted or sent, in bytes (the server's
    /// `max_payload` also bounds it). Default 8 MiB.
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
}

fn default_durable() -> String {
    "sluice".into()
}

fn default_ack_wait_ms() -> u64 {
    30_000
}

fn default_deliver() -> String {
    "all".into()
}

fn default_block_ms() -> u64 {
    1_000
}

fn default_max_message_bytes() -> usize {
    8 << 20
}

impl Config {
    fn check(&self) -> Result<()> {
        queue::check_block_ms(self.block_ms)?;
        if self.deliver != "all" && self.deliver != "new" {
            return Err(ConnectorError::InvalidConfig(
                "deliver: write `all` or `new`".into(),
            ));
        }
        if !valid_name(&self.durable) {
            return Err(ConnectorError::InvalidConfig(format!(
                "durable: `{}` is not a consumer name (letters, digits, `-` and `_`)",
                self.durable
            )));
        }
        if self.ack_wait_ms == 0 {
            return Err(ConnectorError::InvalidConfig(
                "ack_wait_ms: give at least 1".into(),
            ));
        }
        Ok(())
    }

    fn connect(&self) -> Result<Client> {
        let login = Login {
            user: self.user.clone(),
            password: secrets::optional(self.password_secret.as_deref())?,
            token: secrets::optional(self.token_secret.as_deref())?,
        };
        Client::connect(
            &self.address,
            &login,
            Deadlines::default(),
            self.max_message_bytes,
        )
    }
}

/// A stream or consumer name JetStream accepts, and that cannot change the
/// meaning of an API subject (no `.`, `*`, `>` or whitespace).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_stream_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ConnectorError::InvalidRequest(format!(
            "`{name}` is not a JetStream stream name (letters, digits, `-` and `_`); a core subject is written `{CORE_PREFIX}{name}`"
        )))
    }
}

struct Nats;

struct NatsSession {
    config: Config,
    requester: RefCell<Requester>,
}

impl Connector for Nats {
    type Session = NatsSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "nats",
            env!("CARGO_PKG_VERSION"),
            "NATS: JetStream streams through durable pull consumers with ack/nack (at least once); core subjects `subject:NAME` at most once (core NATS keeps nothing); publish confirmed by JetStream",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: true,
            filtering: false,
            sorting: false,
            aggregation: false,
            transactions: false,
            max_page_size: Some(1000),
        })
        .build()
    }

    fn open(config_json: &str) -> Result<NatsSession> {
        let config: Config = config::parse(config_json)?;
        config.check()?;
        let requester = Requester::new(config.connect()?)?;
        Ok(NatsSession {
            config,
            requester: RefCell::new(requester),
        })
    }
}

impl NatsSession {
    fn api(&self, api: &str, body: &Value) -> Result<Value> {
        self.requester.borrow_mut().api(api, body)
    }

    /// Make sure the durable consumer exists on `stream`.
    fn ensure_consumer(&self, stream: &str, filter: Option<&str>) -> Result<()> {
        let durable = &self.config.durable;
        match self.api(&format!("CONSUMER.INFO.{stream}.{durable}"), &json!({})) {
            Ok(_) => return Ok(()),
            Err(ConnectorError::NotFound(m)) if m.contains("consumer") => {}
            Err(e) => return Err(e),
        }
        let mut consumer = json!({
            "durable_name": durable,
            "ack_policy": "explicit",
            "deliver_policy": self.config.deliver,
            "ack_wait": self.config.ack_wait_ms * 1_000_000,
            "max_ack_pending": 10_000,
        });
        if let Some(filter) = filter {
            consumer["filter_subject"] = json!(filter);
        }
        self.api(
            &format!("CONSUMER.DURABLE.CREATE.{stream}.{durable}"),
            &json!({ "stream_name": stream, "config": consumer }),
        )
        .map(drop)
    }
}

impl Session for NatsSession {
    fn health_check(&self) -> Result<()> {
        self.requester.borrow_mut().client.flush().map(drop)
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        let mut names = Vec::new();
        loop {
            let page = self.api("STREAM.NAMES", &json!({ "offset": names.len() }))?;
            let batch: Vec<String> = page["streams"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            let done = batch.is_empty();
            names.extend(batch);
            if done || names.len() >= total || names.len() >= 10_000 {
                break;
            }
        }
        Ok(names
            .into_iter()
            .map(|name| ResourceInfo { name, schema: None })
            .collect())
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        if !req.filters.is_empty() || !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "filters and sort on a JetStream stream (messages come in sequence order)".into(),
            ));
        }
        check_stream_name(&req.resource)?;
        let page = req.pagination.as_ref();
        if page.and_then(|p| p.offset).is_some() {
            return Err(ConnectorError::Unsupported(
                "offset pagination: page with the cursor (the next stream sequence)".into(),
            ));
        }
        if !req.filters.is_empty() || !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "filters and sort on a JetStream stream: it is read in sequence order".into(),
            ));
        }
        let size = page.map_or(100, |p| p.page_size.clamp(1, 1000)) as usize;
        let info = self.api(&format!("STREAM.INFO.{}", req.resource), &json!({}))?;
        let first = info["state"]["first_seq"].as_u64().unwrap_or(1);
        let last = info["state"]["last_seq"].as_u64().unwrap_or(0);
        let mut seq = match page.and_then(|p| p.cursor.as_deref()) {
            Some(cursor) => cursor.parse::<u64>().map_err(|_| {
                ConnectorError::InvalidRequest(format!("cursor `{cursor}`: a stream sequence"))
            })?,
            None => first,
        }
        .max(first);
        let mut records = Vec::new();
        while records.len() < size && seq <= last {
            let got = self.api(
                &format!("STREAM.MSG.GET.{}", req.resource),
                &json!({ "seq": seq }),
            );
            match got {
                Ok(answer) => records.push(sluice_sdk::query::project_record(
                    stored_record(&answer["message"])?,
                    &req.fields,
                )),
                // Deleted or purged: nothing at this sequence.
                Err(ConnectorError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            seq += 1;
        }
        Ok(FetchResponse {
            records,
            total_count: info["state"]["messages"].as_u64(),
            next_cursor: (seq <= last).then(|| seq.to_string()),
        })
    }

    fn stream(
        &self,
        req: FetchRequest,
        _checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let wait = Wait::for_request(
            &req,
            self.config.block_ms,
            self.config.end_when_idle,
            &["filter_subject"],
            "a consumed NATS stream",
        )?;
        let options = queue::stream_options(req.options.as_deref(), &["filter_subject"])?;
        let filter_subject = match options.get("filter_subject") {
            None => None,
            Some(value) => Some(value.as_str().ok_or_else(|| {
                ConnectorError::InvalidRequest("options.filter_subject: a subject".into())
            })?),
        };
        if let Some(subject) = req.resource.strip_prefix(CORE_PREFIX) {
            return Ok(Box::new(CoreSubscriber::new(
                self.config.connect()?,
                subject,
                wait,
            )?));
        }
        check_stream_name(&req.resource)?;
        // The durable consumer remembers the position; a checkpoint adds nothing.
        self.ensure_consumer(&req.resource, filter_subject)?;
        Ok(Box::new(PullConsumer::new(
            self.config.connect()?,
            &req.resource,
            &self.config.durable,
            wait,
        )?))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        if req.operation != "publish" {
            return Err(ConnectorError::Unsupported(format!(
                "execute `{}`: the nats connector publishes (`publish`)",
                req.operation
            )));
        }
        let core = match &req.options {
            Some(text) => {
                let options: Value = serde_json::from_str(text)
                    .map_err(|e| ConnectorError::InvalidRequest(format!("options: {e}")))?;
                options
                    .get("core")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            }
            None => false,
        };
        let subject = req
            .resource
            .strip_prefix(CORE_PREFIX)
            .unwrap_or(&req.resource);
        let mut requester = self.requester.borrow_mut();
        let mut frames = Vec::new();
        let mut replies = Vec::with_capacity(req.records.len());
        for record in &req.records {
            let reply = (!core).then(|| requester.reply_subject());
            let headers = record.id.as_deref().map(|id| {
                // JetStream drops a second message with the same id inside
                // its duplicate window: a retried publish is not stored twice.
                format!(
                    "NATS/1.0\r\nNats-Msg-Id: {}\r\n\r\n",
                    id.replace(['\r', '\n'], "")
                )
            });
            frames.extend(requester.client.publish_frame_with_headers(
                subject,
                reply.as_deref(),
                headers.as_deref(),
                record.data.as_bytes(),
            )?);
            replies.extend(reply);
        }
        requester.client.send(&frames)?;
        if core {
            // The server has read them once it answers a PING; core NATS
            // confirms nothing more.
            requester.client.flush()?;
            return Ok(ExecuteResponse {
                affected: req.records.len() as u64,
                records: Vec::new(),
            });
        }
        let answers = requester.replies(&replies)?;
        let mut records = Vec::with_capacity(answers.len());
        for answer in answers {
            if answer.status == Some(503) {
                return Err(ConnectorError::NotFound(format!(
                    "no JetStream stream stores subject `{subject}` (publish with options {{\"core\": true}} for core NATS)"
                )));
            }
            let ack: Value = serde_json::from_slice(&answer.payload).map_err(|_| {
                ConnectorError::Unavailable(
                    "JetStream answered a publish with something that is not JSON".into(),
                )
            })?;
            jetstream::api_error(&ack, "publish")?;
            let seq = ack["seq"].as_u64().ok_or_else(|| {
                ConnectorError::Unavailable(format!(
                    "JetStream's publish answer has no sequence: {ack}"
                ))
            })?;
            records.push(
                RecordBuilder::new(json!({ "stream": ack["stream"], "seq": seq, "duplicate": ack["duplicate"].as_bool().unwrap_or(false) }))
                    .id(seq.to_string())
                    .build(),
            );
        }
        Ok(ExecuteResponse {
            affected: records.len() as u64,
            records,
        })
    }
}

/// A message as `STREAM.MSG.GET` returns it.
fn stored_record(message: &Value) -> Result<sluice_sdk::Record> {
    use base64::Engine as _;
    let decode = |field: &str| -> Result<Vec<u8>> {
        match message[field].as_str() {
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| {
                    ConnectorError::Unavailable(format!(
                        "JetStream sent `{field}` that is not base64"
                    ))
                }),
            None => Ok(Vec::new()),
        }
    };
    let payload = decode("data")?;
    let seq = message["seq"].as_u64().unwrap_or(0);
    let headers_block = decode("hdrs")?;
    let headers: serde_json::Map<String, Value> = String::from_utf8_lossy(&headers_block)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
        .collect();
    Ok(RecordBuilder::new(queue::payload_data(&payload))
        .id(seq.to_string())
        .metadata(json!({ "subject": message["subject"], "stream_sequence": seq, "time": message["time"], "headers": headers }))
        .build())
}

sluice_sdk::export_connector!(Nats);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
