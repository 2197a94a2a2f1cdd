//! The `rabbitmq` connector: AMQP 0-9-1 queues consumed with manual acks
//! (prefetch = batch size), and publishing with publisher confirms.
//!
//! Resources are queue names. `stream` consumes a queue (`basic.consume`,
//! at least once: `ack` = `basic.ack`, `nack` = `basic.nack` with requeue;
//! whatever is delivered but not acked when the channel closes — a session
//! dropped, trapped or killed — the broker requeues). `execute` `publish`
//! sends each record to an exchange with a routing key and counts it once
//! the broker confirmed it. The connector speaks AMQP itself over a granted
//! socket (`--allow-tcp`); the password is a secret read by name.

mod amqp;
mod codec;

use std::cell::RefCell;
use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_sdk::queue::{self, Wait};
use sluice_sdk::{
    config, secrets, Batch, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, Record, RecordBuilder, RecordStream,
    ResourceInfo, Result, Session,
};

use amqp::{Client, Delivery, Incoming, Login};
use codec::Writer;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// `HOST:PORT` of the broker (grant it: `--allow-tcp HOST:PORT`).
    address: String,
    /// User name. Default `guest`.
    #[serde(default = "default_user")]
    user: String,
    /// Name of the secret holding the password (`--socket-secret NAME=…`);
    /// none sends `guest`, RabbitMQ's default.
    password_secret: Option<String>,
    /// Virtual host. Default `/`.
    #[serde(default = "default_vhost")]
    vhost: String,
    /// Queues `discover` lists (AMQP cannot list queues), each checked to exist.
    #[serde(default)]
    queues: Vec<String>,
    /// How long one `next` waits for messages, in milliseconds. Default 1000.
    #[serde(default = "default_block_ms")]
    block_ms: u64,
    /// End the stream once a wait brings nothing, instead of returning
    /// empty batches; a stream's `options` may say `{"end_when_idle": true}`.
    #[serde(default)]
    end_when_idle: bool,
    /// Largest message accepted or sent, in bytes. Default 16 MiB.
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
}

fn default_user() -> String {
    "guest".into()
}

fn default_vhost() -> String {
    "/".into()
}

fn default_block_ms() -> u64 {
    1_000
}

fn default_max_message_bytes() -> usize {
    16 << 20
}

impl Config {
    fn check(&self) -> Result<()> {
        queue::check_block_ms(self.block_ms)
    }

    fn connect(&self) -> Result<Client> {
        let password =
            secrets::optional(self.password_secret.as_deref())?.unwrap_or_else(|| "guest".into());
        Client::connect(
            &self.address,
            &Login {
                user: &self.user,
                password: &password,
                vhost: &self.vhost,
            },
            self.max_message_bytes,
        )
    }
}

fn record(delivery: &Delivery) -> Record {
    let metadata = json!({
        "exchange": delivery.exchange,
        "routing_key": delivery.routing_key,
        "redelivered": delivery.redelivered,
        "properties": delivery.properties,
    });
    let timestamp = delivery
        .properties
        .get("timestamp")
        .and_then(Value::as_i64)
        .map(|seconds| seconds * 1000);
    queue::message_record(
        &delivery.body,
        delivery.delivery_tag.to_string(),
        metadata,
        timestamp,
    )
}

/// `queue.declare` with `passive`: the queue's message and consumer counts.
fn queue_stats(client: &mut Client, queue: &str) -> Result<(u32, u32)> {
    let mut w = Writer::method(50, 10);
    w.short(0).shortstr(queue)?.octet(0b0000_0001);
    w.table(&Map::new())?;
    client.send(&w)?;
    let ok = client.expect(50, 11, "queue.declare-ok")?;
    let mut r = codec::Reader::new(&ok.args);
    r.shortstr()?;
    Ok((r.long()?, r.long()?))
}

struct Rabbit;

struct RabbitSession {
    config: Config,
    /// The session's connection; dropped after a failure (a broker error
    /// closes the channel) and opened again by the next call.
    client: RefCell<Option<Client>>,
}

impl Connector for Rabbit {
    type Session = RabbitSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "rabbitmq",
            env!("CARGO_PKG_VERSION"),
            "RabbitMQ (AMQP 0-9-1): queues consumed with manual ack/nack (at least once, prefetch = batch size), publish with publisher confirms",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: false,
            filtering: false,
            sorting: false,
            aggregation: false,
            transactions: false,
            max_page_size: None,
        })
        .build()
    }

    fn open(config_json: &str) -> Result<RabbitSession> {
        let config: Config = config::parse(config_json)?;
        config.check()?;
        let client = config.connect()?;
        Ok(RabbitSession {
            config,
            client: RefCell::new(Some(client)),
        })
    }
}

impl RabbitSession {
    /// Run `op` on the session's connection (opened again if a failure dropped it).
    fn with_client<T>(&self, op: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut slot = self.client.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.config.connect()?);
        }
        let client = slot.as_mut().expect("connected just now");
        let result = op(client);
        if result.is_err() {
            *slot = None;
        }
        result
    }
}

impl Session for RabbitSession {
    fn health_check(&self) -> Result<()> {
        self.with_client(|client| {
            // A synchronous no-op: the broker answers, so the channel is alive.
            let mut w = Writer::method(60, 10);
            w.long(0).short(0).octet(0);
            client.send(&w)?;
            client.expect(60, 11, "basic.qos-ok").map(drop)
        })
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        let mut out = Vec::new();
        for queue in &self.config.queues {
            self.with_client(|client| queue_stats(client, queue))?;
            out.push(ResourceInfo {
                name: queue.clone(),
                schema: None,
            });
        }
        Ok(out)
    }

    /// A queue's counts, read without consuming: `{queue, messages, consumers}`.
    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        // A fetch reads the queue's state without consuming: one record,
        // to which the request's filters, sort, page and fields apply.
        let (messages, consumers) =
            self.with_client(|client| queue_stats(client, &req.resource))?;
        let state = RecordBuilder::new(
            json!({ "queue": req.resource, "messages": messages, "consumers": consumers }),
        )
        .id(req.resource.clone());
        sluice_sdk::query::apply(&req, [state])
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
            &[],
            "a consumed queue",
        )?;
        Ok(Box::new(Consumer::start(
            &self.config,
            wait,
            &req.resource,
        )?))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        if req.operation != "publish" {
            return Err(ConnectorError::Unsupported(format!(
                "execute `{}`: the rabbitmq connector publishes (`publish`)",
                req.operation
            )));
        }
        let options: Value = match &req.options {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| ConnectorError::InvalidRequest(format!("options: {e}")))?,
            None => json!({}),
        };
        // Default: the default exchange, routed to the queue the resource names.
        let exchange = options["exchange"].as_str().unwrap_or("").to_string();
        let routing_key = options["routing_key"]
            .as_str()
            .unwrap_or(&req.resource)
            .to_string();
        let mandatory = options["mandatory"].as_bool().unwrap_or(true);
        self.with_client(|client| {
            let first_tag = client.confirm_mode()?;
            let mut frames = Vec::new();
            for record in &req.records {
                let metadata: Value = match &record.metadata {
                    Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                    None => Value::Null,
                };
                let key = metadata["routing_key"].as_str().unwrap_or(&routing_key);
                let mut properties = match &metadata["properties"] {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                properties
                    .entry("content_type")
                    .or_insert(json!("application/json"));
                properties.entry("delivery_mode").or_insert(json!(2));
                let mut method = Writer::method(60, 40);
                method
                    .short(0)
                    .shortstr(&exchange)?
                    .shortstr(key)?
                    .octet(u8::from(mandatory));
                frames.extend(client.publish_frames(&method, &properties, record.data.as_bytes())?);
            }
            client.send_raw(&frames)?;
            let count = req.records.len() as u64;
            client.published += count;
            // Delivery tags count every message published on the channel,
            // across calls: this call's are first_tag..first_tag + count.
            let mut pending: std::collections::BTreeSet<u64> = (first_tag..first_tag + count).collect();
            let mut confirmed = 0u64;
            let mut refused = 0u64;
            while !pending.is_empty() {
                let method = match client.read()? {
                    Incoming::Method(m) => m,
                    Incoming::Returned {
                        reply_text,
                        routing_key,
                    } => {
                        client.returned.push((reply_text, routing_key));
                        continue;
                    }
                    Incoming::Delivery(d) => {
                        client.early.push_back(d);
                        continue;
                    }
                };
                let mut r = codec::Reader::new(&method.args);
                let tag = r.longlong()?;
                let multiple = r.octet()? & 1 == 1;
                let settled = if multiple {
                    let rest = pending.split_off(&(tag + 1));
                    let settled = pending.len() as u64;
                    pending = rest;
                    settled
                } else {
                    u64::from(pending.remove(&tag))
                };
                match (method.class, method.id) {
                    (60, 80) => confirmed += settled,
                    (60, 120) => refused += settled,
                    _ => {
                        return Err(ConnectorError::Unavailable(format!(
                            "{} answered a publish with method {}.{}",
                            client.address(),
                            method.class,
                            method.id
                        )))
                    }
                }
            }
            if let Some((why, key)) = client.returned.first().cloned() {
                let returned = client.returned.len();
                client.returned.clear();
                return Err(ConnectorError::NotFound(format!(
                    "{returned} of {count} message(s) reached no queue (routing key `{key}`: {why}); with \"mandatory\": false they would be dropped instead"
                )));
            }
            if refused > 0 {
                return Err(ConnectorError::Unavailable(format!(
                    "the broker refused {refused} of {count} message(s) (basic.nack); {confirmed} were confirmed"
                )));
            }
            Ok(ExecuteResponse {
                affected: confirmed,
                records: Vec::new(),
            })
        })
    }
}

/// A consumer of one queue on a connection of its own.
struct Consumer {
    client: Client,
    wait: Wait,
    /// Deliveries read but not yet handed out.
    buffer: VecDeque<Delivery>,
    prefetch: u16,
}

impl Consumer {
    fn start(config: &Config, wait: Wait, queue: &str) -> Result<Self> {
        let mut client = config.connect()?;
        let mut w = Writer::method(60, 20);
        w.short(0).shortstr(queue)?.shortstr("")?.octet(0);
        w.table(&Map::new())?;
        client.send(&w)?;
        client.expect(60, 21, "basic.consume-ok")?;
        let mut consumer = Self {
            client,
            wait,
            buffer: VecDeque::new(),
            prefetch: 0,
        };
        // Nothing flows until the first `next` sets the prefetch.
        consumer.set_prefetch(1)?;
        Ok(consumer)
    }

    /// `basic.qos`: at most `count` unacknowledged deliveries. Its `qos-ok`
    /// comes after every delivery the broker sent before it.
    fn set_prefetch(&mut self, count: u16) -> Result<()> {
        let mut w = Writer::method(60, 10);
        w.long(0).short(count).octet(0);
        self.client.send(&w)?;
        self.client.expect(60, 11, "basic.qos-ok")?;
        self.prefetch = count;
        let early: Vec<Delivery> = self.client.early.drain(..).collect();
        self.buffer.extend(early);
        Ok(())
    }

    fn settle(&mut self, ids: &[String], nack: bool) -> Result<()> {
        let mut frames = Vec::new();
        for id in ids {
            let tag: u64 = id.parse().map_err(|_| {
                ConnectorError::InvalidRequest(format!(
                    "`{id}` is not a delivery tag of this stream"
                ))
            })?;
            let mut w = if nack {
                Writer::method(60, 120)
            } else {
                Writer::method(60, 80)
            };
            // multiple = 0; for nack, requeue = 1.
            w.longlong(tag).octet(if nack { 0b10 } else { 0 });
            frames.extend(codec::frame(codec::METHOD, 1, &w.0));
        }
        self.client.send_raw(&frames)?;
        // A qos round trip: the broker has processed them (an unknown tag
        // closes the channel, which surfaces here as an error).
        let prefetch = self.prefetch;
        self.set_prefetch(prefetch)
    }
}

impl RecordStream for Consumer {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        let max = max.clamp(1, u32::from(u16::MAX)) as u16;
        if self.prefetch != max {
            self.set_prefetch(max)?;
        }
        let mut records = Vec::new();
        let wait = self.wait;
        wait.poll(|| {
            if self.buffer.is_empty() {
                // Collect what the broker has sent so far.
                let prefetch = self.prefetch;
                self.set_prefetch(prefetch)?;
            }
            while records.len() < usize::from(max) {
                let Some(delivery) = self.buffer.pop_front() else {
                    break;
                };
                records.push(record(&delivery));
            }
            Ok(!records.is_empty())
        })?;
        let checkpoint = records.last().and_then(|r| r.id.clone());
        Ok(wait.batch(records, checkpoint))
    }

    fn ack(&mut self, ids: Vec<String>) -> Result<()> {
        self.settle(&ids, false)
    }

    fn nack(&mut self, ids: Vec<String>) -> Result<()> {
        self.settle(&ids, true)
    }
}

sluice_sdk::export_connector!(Rabbit);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
