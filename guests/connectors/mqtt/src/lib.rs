//! The `mqtt` connector: MQTT 3.1.1 subscriptions at QoS 1 on a persistent
//! session, each PUBACK withheld until the record is acked; publishing at
//! QoS 1, counted once the broker's PUBACK came.
//!
//! Resources are topic filters (`sensors/+/temp`, `orders/#`) for `stream`
//! and `fetch` (retained messages), topics for `execute` `publish`. The
//! connector speaks MQTT itself over a granted socket (`--allow-tcp`); the
//! password is a secret it reads by name (`--socket-secret`).

mod packet;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::net::{Connection, Deadlines};
use sluice_sdk::queue::{self, Wait};
use sluice_sdk::{
    config, secrets, Batch, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, Record, RecordStream, ResourceInfo, Result,
    Session,
};

use packet::{Connect, Packet, Publish};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// `HOST:PORT` of the broker (grant it: `--allow-tcp HOST:PORT`).
    address: String,
    /// The client id of the persistent session `stream` consumes on: the
    /// broker keeps its subscriptions and every message not yet
    /// acknowledged, and delivers them again when this id reconnects. One
    /// connection per id at a time (a second one takes the session over).
    /// Publishing uses `<client_id>-pub` with a clean session.
    client_id: String,
    /// User name to log in with.
    username: Option<String>,
    /// Name of the secret holding the password (`--socket-secret NAME=…`).
    password_secret: Option<String>,
    /// Topics (or filters) `discover` lists: MQTT cannot list topics.
    #[serde(default)]
    topics: Vec<String>,
    /// How long one `next` waits for messages, in milliseconds. Default 1000.
    #[serde(default = "default_block_ms")]
    block_ms: u64,
    /// End the stream once a wait brings nothing, instead of returning
    /// empty batches; a stream's `options` may say `{"end_when_idle": true}`.
    #[serde(default)]
    end_when_idle: bool,
    /// Keep-alive interval in seconds announced to the broker; 0 (the
    /// default) turns it off, so an idle session is never cut.
    #[serde(default)]
    keep_alive_s: u16,
    /// Largest packet accepted from the broker, in bytes. Default 16 MiB.
    #[serde(default = "default_max_packet_bytes")]
    max_packet_bytes: usize,
}

fn default_block_ms() -> u64 {
    1_000
}

fn default_max_packet_bytes() -> usize {
    16 << 20
}

impl Config {
    fn check(&self) -> Result<()> {
        queue::check_block_ms(self.block_ms)?;
        if self.client_id.is_empty() || self.client_id.len() > 200 {
            return Err(ConnectorError::InvalidConfig(
                "client_id: 1 to 200 characters".into(),
            ));
        }
        Ok(())
    }
}

/// A connection to the broker, logged in.
struct Client {
    conn: Connection,
    max_packet_bytes: usize,
    /// Packets read while waiting for something else.
    early: VecDeque<Packet>,
    next_packet_id: u16,
}

impl Client {
    fn connect(config: &Config, client_id: &str, clean_session: bool) -> Result<(Self, bool)> {
        let password = secrets::optional(config.password_secret.as_deref())?;
        let mut conn = Connection::open(&config.address, Deadlines::default())?;
        conn.send(&packet::connect(&Connect {
            client_id,
            clean_session,
            keep_alive_s: config.keep_alive_s,
            username: config.username.as_deref(),
            password: password.as_deref(),
        })?)?;
        let mut client = Self {
            conn,
            max_packet_bytes: config.max_packet_bytes,
            early: VecDeque::new(),
            next_packet_id: 0,
        };
        match client.read()? {
            Packet::ConnAck {
                session_present,
                code: 0,
            } => Ok((client, session_present)),
            Packet::ConnAck { code, .. } => Err(packet::refused(&config.address, code)),
            _ => Err(ConnectorError::Unavailable(format!(
                "{} answered CONNECT with something other than CONNACK",
                config.address
            ))),
        }
    }

    fn read(&mut self) -> Result<Packet> {
        packet::read(&mut self.conn, self.max_packet_bytes)
    }

    fn packet_id(&mut self) -> u16 {
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.next_packet_id
    }

    /// Read until `done` accepts a packet; deliveries met on the way are kept.
    fn wait_for(&mut self, mut done: impl FnMut(&Packet) -> bool) -> Result<Packet> {
        loop {
            let packet = self.read()?;
            if done(&packet) {
                return Ok(packet);
            }
            if matches!(packet, Packet::Publish(_)) {
                self.early.push_back(packet);
            }
        }
    }

    /// PINGREQ, then every delivery that arrived before the PINGRESP.
    fn poll(&mut self) -> Result<Vec<Publish>> {
        self.conn.send(&packet::PINGREQ)?;
        self.wait_for(|p| *p == Packet::PingResp)?;
        Ok(self
            .early
            .drain(..)
            .filter_map(|p| match p {
                Packet::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect())
    }

    fn subscribe(&mut self, filter: &str) -> Result<()> {
        let id = self.packet_id();
        self.conn.send(&packet::subscribe(id, filter)?)?;
        let ack = self.wait_for(|p| matches!(p, Packet::SubAck(got, _) if *got == id))?;
        if let Packet::SubAck(_, codes) = ack {
            if codes.first().is_none_or(|code| *code == 0x80) {
                return Err(ConnectorError::Denied(format!(
                    "{} refused the subscription to `{filter}`",
                    self.conn.address()
                )));
            }
        }
        Ok(())
    }
}

fn record(publish: &Publish, id: String) -> Record {
    let metadata = json!({
        "topic": publish.topic, "qos": publish.qos,
        "redelivered": publish.dup, "retained": publish.retain,
    });
    queue::message_record(&publish.payload, id, metadata, None)
}

struct Mqtt;

struct MqttSession {
    config: Config,
    publisher: RefCell<Client>,
}

impl Connector for Mqtt {
    type Session = MqttSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "mqtt",
            env!("CARGO_PKG_VERSION"),
            "MQTT 3.1.1: QoS 1 subscriptions on a persistent session, PUBACK withheld until ack (at least once); publish at QoS 1 confirmed by PUBACK",
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

    fn open(config_json: &str) -> Result<MqttSession> {
        let config: Config = config::parse(config_json)?;
        config.check()?;
        let (publisher, _) = Client::connect(&config, &format!("{}-pub", config.client_id), true)?;
        Ok(MqttSession {
            config,
            publisher: RefCell::new(publisher),
        })
    }
}

impl Session for MqttSession {
    fn health_check(&self) -> Result<()> {
        self.publisher.borrow_mut().poll().map(drop)
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        Ok(self
            .config
            .topics
            .iter()
            .map(|name| ResourceInfo {
                name: name.clone(),
                schema: None,
            })
            .collect())
    }

    /// The retained messages of a filter, read on a clean session of its own.
    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        if !req.filters.is_empty() || !req.sort.is_empty() || req.pagination.is_some() {
            return Err(ConnectorError::Unsupported(
                "filters, sort and pages on MQTT retained messages".into(),
            ));
        }
        let id = format!("{}-fetch", self.config.client_id);
        let (mut client, _) = Client::connect(&self.config, &id, true)?;
        client.subscribe(&req.resource)?;
        let mut records = Vec::new();
        let wait = Wait {
            block: Duration::from_millis(self.config.block_ms),
            end_when_idle: false,
        };
        wait.poll(|| {
            let arrived = client.poll()?;
            let got = arrived.len();
            for publish in arrived.into_iter().filter(|p| p.retain) {
                if let Some(packet_id) = publish.packet_id {
                    client.conn.send(&packet::puback(packet_id))?;
                }
                records.push(sluice_sdk::query::project_record(
                    record(&publish, publish.topic.clone()),
                    &req.fields,
                ));
            }
            // Retained messages come at once: done when a poll brings no more.
            Ok(got == 0 && !records.is_empty())
        })?;
        let _ = client.conn.send(&packet::DISCONNECT);
        Ok(FetchResponse {
            records,
            total_count: None,
            next_cursor: None,
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
            &[],
            "an MQTT subscription",
        )?;
        Ok(Box::new(Subscription::start(
            self.config.clone(),
            wait,
            req.resource,
        )?))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        if req.operation != "publish" {
            return Err(ConnectorError::Unsupported(format!(
                "execute `{}`: the mqtt connector publishes (`publish`)",
                req.operation
            )));
        }
        if req.resource.contains(['+', '#']) || req.resource.is_empty() {
            return Err(ConnectorError::InvalidRequest(format!(
                "`{}` is not a topic to publish to (no wildcards)",
                req.resource
            )));
        }
        let options: Value = match &req.options {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| ConnectorError::InvalidRequest(format!("options: {e}")))?,
            None => json!({}),
        };
        let retain = options["retain"].as_bool().unwrap_or(false);
        let qos = options["qos"].as_u64().unwrap_or(1);
        if qos > 1 {
            return Err(ConnectorError::Unsupported(
                "qos 2: this connector publishes at QoS 0 or 1".into(),
            ));
        }
        let mut client = self.publisher.borrow_mut();
        let mut frames = Vec::new();
        let mut waiting = Vec::new();
        for record in &req.records {
            let id = client.packet_id();
            frames.extend(packet::publish(
                &req.resource,
                qos as u8,
                retain,
                id,
                record.data.as_bytes(),
            )?);
            waiting.push(id);
        }
        client.conn.send(&frames)?;
        if qos == 0 {
            client.poll()?;
        }
        let mut confirmed = 0u64;
        if qos == 1 {
            for id in &waiting {
                client.wait_for(|p| *p == Packet::PubAck(*id))?;
                confirmed += 1;
            }
        } else {
            confirmed = waiting.len() as u64;
        }
        Ok(ExecuteResponse {
            affected: confirmed,
            records: Vec::new(),
        })
    }
}

/// A QoS 1 subscription on the persistent session.
///
/// MQTT acknowledges in order of receipt (3.1.1, 4.6), so an `ack` sends
/// the PUBACKs of the longest run of acknowledged deliveries from the
/// oldest; a later one acked early waits for those before it. MQTT has no
/// reject: `nack` reconnects, and the broker delivers every message not yet
/// acknowledged again (marked `redelivered`). A session that ends any other
/// way leaves them with the broker, delivered again when this client id
/// connects next.
struct Subscription {
    client: Client,
    config: Config,
    wait: Wait,
    filter: String,
    /// Deliveries not yet PUBACKed, oldest first: (record id, packet id, acked).
    unacked: VecDeque<(String, u16, bool)>,
    next_id: u64,
    buffer: VecDeque<Publish>,
}

impl Subscription {
    fn start(config: Config, wait: Wait, filter: String) -> Result<Self> {
        let (mut client, present) = Client::connect(&config, &config.client_id, false)?;
        if !present {
            client.subscribe(&filter)?;
        }
        let buffer = client
            .early
            .drain(..)
            .filter_map(|p| match p {
                Packet::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect();
        Ok(Self {
            client,
            config,
            wait,
            filter,
            unacked: VecDeque::new(),
            next_id: 0,
            buffer,
        })
    }

    fn deliver(&mut self, publish: Publish) -> Record {
        self.next_id += 1;
        let id = self.next_id.to_string();
        if let Some(packet_id) = publish.packet_id {
            self.unacked.push_back((id.clone(), packet_id, false));
        }
        record(&publish, id)
    }
}

impl RecordStream for Subscription {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        let max = max.max(1) as usize;
        let mut records = Vec::new();
        let wait = self.wait;
        wait.poll(|| {
            if self.buffer.is_empty() {
                let arrived = self.client.poll()?;
                self.buffer.extend(arrived);
            }
            while records.len() < max {
                let Some(publish) = self.buffer.pop_front() else {
                    break;
                };
                records.push(self.deliver(publish));
            }
            Ok(!records.is_empty())
        })?;
        let checkpoint = records.last().and_then(|r| r.id.clone());
        Ok(wait.batch(records, checkpoint))
    }

    fn ack(&mut self, ids: Vec<String>) -> Result<()> {
        for id in &ids {
            match self.unacked.iter_mut().find(|(d, _, _)| d == id) {
                Some(entry) => entry.2 = true,
                None if id.parse::<u64>().is_ok_and(|n| n <= self.next_id) => {}
                None => {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "message {id} was not delivered by this stream"
                    )))
                }
            }
        }
        let mut frames = Vec::new();
        while let Some((_, packet_id, true)) = self.unacked.front() {
            frames.extend(packet::puback(*packet_id));
            self.unacked.pop_front();
        }
        if !frames.is_empty() {
            self.client.conn.send(&frames)?;
            // Deliveries read while waiting for the PINGRESP are kept for `next`.
            let arrived = self.client.poll()?;
            self.buffer.extend(arrived);
        }
        Ok(())
    }

    fn nack(&mut self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Acknowledge nothing more; reconnecting makes the broker deliver
        // every unacknowledged message of the session again.
        let _ = self.client.conn.send(&packet::DISCONNECT);
        let (client, present) = Client::connect(&self.config, &self.config.client_id, false)?;
        self.client = client;
        self.unacked.clear();
        self.buffer.clear();
        if !present {
            self.client.subscribe(&self.filter)?;
        }
        let early: Vec<Publish> = self
            .client
            .early
            .drain(..)
            .filter_map(|p| match p {
                Packet::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect();
        self.buffer.extend(early);
        Ok(())
    }
}

sluice_sdk::export_connector!(Mqtt);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
