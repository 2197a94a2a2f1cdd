//! An AMQP 0-9-1 connection with one channel: the handshake (SASL PLAIN),
//! synchronous methods, deliveries assembled from their frames, and the
//! broker's `close` turned into typed errors.

use std::collections::VecDeque;

use serde_json::{json, Map, Value};
use sluice_sdk::net::{Connection, Deadlines};
use sluice_sdk::{ConnectorError, Result};

use crate::codec::{self, Reader, Writer, BODY, FRAME_END, HEADER, HEARTBEAT, METHOD};

/// The largest frame we accept and ask for.
const FRAME_MAX: u32 = 128 * 1024;
/// The one channel this client uses.
const CHANNEL: u16 = 1;

/// A method from the broker: class, method id, and its argument bytes.
#[derive(Debug, Clone)]
pub struct Method {
    pub class: u16,
    pub id: u16,
    pub args: Vec<u8>,
}

/// A message delivered by `basic.deliver` (or returned by `basic.return`).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: String,
    pub routing_key: String,
    pub properties: Map<String, Value>,
    pub body: Vec<u8>,
}

/// What was read: a method, or a whole delivery.
pub enum Incoming {
    Method(Method),
    Delivery(Delivery),
    /// `basic.return`: a mandatory message no queue took.
    Returned {
        reply_text: String,
        routing_key: String,
    },
}

/// How to log in.
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub vhost: &'a str,
}

/// An open connection with channel 1 open.
pub struct Client {
    conn: Connection,
    frame_max: u32,
    max_message_bytes: usize,
    /// Deliveries read while waiting for a method.
    pub early: VecDeque<Delivery>,
    /// Returned messages read while waiting for confirms.
    pub returned: Vec<(String, String)>,
    /// Messages published on the channel since it went into confirm mode
    /// (their delivery tags are 1, 2, …).
    pub published: u64,
    confirming: bool,
}

impl Client {
    /// Connect, log in and open channel 1.
    pub fn connect(address: &str, login: &Login<'_>, max_message_bytes: usize) -> Result<Self> {
        let mut conn = Connection::open(address, Deadlines::default())?;
        conn.send(b"AMQP\x00\x00\x09\x01")?;
        let mut client = Self {
            conn,
            frame_max: FRAME_MAX,
            max_message_bytes,
            early: VecDeque::new(),
            returned: Vec::new(),
            published: 0,
            confirming: false,
        };
        let start = client.expect(10, 10, "connection.start")?;
        let mut r = Reader::new(&start.args);
        r.octet()?;
        r.octet()?;
        r.table()?;
        let mechanisms = String::from_utf8_lossy(r.longstr()?).into_owned();
        if !mechanisms.split(' ').any(|m| m == "PLAIN") {
            return Err(ConnectorError::Unsupported(format!(
                "{address} does not offer SASL PLAIN (it offers {mechanisms})"
            )));
        }
        let mut response = vec![0];
        response.extend_from_slice(login.user.as_bytes());
        response.push(0);
        response.extend_from_slice(login.password.as_bytes());
        let mut properties = Map::new();
        properties.insert("product".into(), json!("sluice"));
        properties.insert(
            "capabilities".into(),
            json!({ "publisher_confirms": true, "basic.nack": true, "consumer_cancel_notify": true,
                    "authentication_failure_close": true }),
        );
        let mut w = Writer::method(10, 11);
        w.table(&properties)?
            .shortstr("PLAIN")?
            .longstr(&response)
            .shortstr("en_US")?;
        client.send_method(0, &w)?;
        let tune = client.expect(10, 30, "connection.tune")?;
        let mut r = Reader::new(&tune.args);
        let channel_max = r.short()?;
        let server_frame_max = r.long()?;
        client.frame_max = match server_frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        let mut w = Writer::method(10, 31);
        w.short(channel_max).long(client.frame_max).short(0);
        client.send_method(0, &w)?;
        let mut w = Writer::method(10, 40);
        w.shortstr(login.vhost)?.shortstr("")?.octet(0);
        client.send_method(0, &w)?;
        client.expect(10, 41, "connection.open-ok")?;
        let mut w = Writer::method(20, 10);
        w.shortstr("")?;
        client.send_method(CHANNEL, &w)?;
        client.expect(20, 11, "channel.open-ok")?;
        Ok(client)
    }

    /// Put the channel in confirm mode (once); the delivery tag the next
    /// published message gets.
    pub fn confirm_mode(&mut self) -> Result<u64> {
        if !self.confirming {
            let mut w = Writer::method(85, 10);
            w.octet(0);
            self.send(&w)?;
            self.expect(85, 11, "confirm.select-ok")?;
            self.confirming = true;
        }
        Ok(self.published + 1)
    }

    /// The broker's address.
    pub fn address(&self) -> &str {
        self.conn.address()
    }

    /// Send a method on channel 1.
    pub fn send(&mut self, method: &Writer) -> Result<()> {
        self.send_method(CHANNEL, method)
    }

    fn send_method(&mut self, channel: u16, method: &Writer) -> Result<()> {
        self.conn.send(&codec::frame(METHOD, channel, &method.0))
    }

    /// The frames of one published message: method, header, body in pieces.
    pub fn publish_frames(
        &self,
        method: &Writer,
        properties: &Map<String, Value>,
        body: &[u8],
    ) -> Result<Vec<u8>> {
        if body.len() > self.max_message_bytes {
            return Err(ConnectorError::InvalidRequest(format!(
                "a message of {} bytes is over max_message_bytes ({})",
                body.len(),
                self.max_message_bytes
            )));
        }
        let mut out = codec::frame(METHOD, CHANNEL, &method.0);
        out.extend(codec::frame(
            HEADER,
            CHANNEL,
            &codec::write_header(body.len() as u64, properties)?,
        ));
        let piece = (self.frame_max as usize).saturating_sub(8).max(1);
        for chunk in body.chunks(piece) {
            out.extend(codec::frame(BODY, CHANNEL, chunk));
        }
        Ok(out)
    }

    /// Send bytes already framed.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn.send(bytes)
    }

    /// Read until the method `class.id`; deliveries met on the way are kept.
    pub fn expect(&mut self, class: u16, id: u16, name: &str) -> Result<Method> {
        loop {
            match self.read()? {
                Incoming::Method(m) if m.class == class && m.id == id => return Ok(m),
                Incoming::Method(m) => {
                    return Err(ConnectorError::Unavailable(format!(
                        "{} answered with method {}.{} while {name} was expected",
                        self.address(),
                        m.class,
                        m.id
                    )))
                }
                Incoming::Delivery(d) => self.early.push_back(d),
                Incoming::Returned {
                    reply_text,
                    routing_key,
                } => self.returned.push((reply_text, routing_key)),
            }
        }
    }

    /// Read the next method or whole delivery (heartbeats skipped; a
    /// `close` from the broker becomes its typed error).
    pub fn read(&mut self) -> Result<Incoming> {
        loop {
            let (kind, _channel, payload) = self.read_frame()?;
            match kind {
                HEARTBEAT => continue,
                METHOD => {}
                _ => {
                    return Err(ConnectorError::Unavailable(format!(
                        "{} sent a content frame outside a message",
                        self.address()
                    )))
                }
            }
            let mut r = Reader::new(&payload);
            let class = r.short()?;
            let id = r.short()?;
            let args = payload[4..].to_vec();
            match (class, id) {
                (10, 50) | (20, 40) => return Err(self.closed(&args, class == 10)),
                (60, 60) => {
                    let mut r = Reader::new(&args);
                    r.shortstr()?; // consumer tag
                    let delivery_tag = r.longlong()?;
                    let redelivered = r.octet()? & 1 == 1;
                    let exchange = r.shortstr()?;
                    let routing_key = r.shortstr()?;
                    let (properties, body) = self.read_content()?;
                    return Ok(Incoming::Delivery(Delivery {
                        delivery_tag,
                        redelivered,
                        exchange,
                        routing_key,
                        properties,
                        body,
                    }));
                }
                (60, 50) => {
                    let mut r = Reader::new(&args);
                    r.short()?;
                    let reply_text = r.shortstr()?;
                    r.shortstr()?;
                    let routing_key = r.shortstr()?;
                    self.read_content()?;
                    return Ok(Incoming::Returned {
                        reply_text,
                        routing_key,
                    });
                }
                _ => return Ok(Incoming::Method(Method { class, id, args })),
            }
        }
    }

    fn read_content(&mut self) -> Result<(Map<String, Value>, Vec<u8>)> {
        let (kind, _, payload) = self.read_frame()?;
        if kind != HEADER {
            return Err(ConnectorError::Unavailable(format!(
                "{} sent a message without its content header",
                self.address()
            )));
        }
        let (size, properties) = codec::read_header(&payload)?;
        if size > self.max_message_bytes as u64 {
            return Err(ConnectorError::Unavailable(format!(
                "{} delivered a message of {size} bytes, over max_message_bytes ({}); raise it in the config if messages are that large",
                self.address(),
                self.max_message_bytes
            )));
        }
        let mut body = Vec::with_capacity(size as usize);
        while (body.len() as u64) < size {
            let (kind, _, piece) = self.read_frame()?;
            if kind != BODY || body.len() + piece.len() > size as usize {
                return Err(ConnectorError::Unavailable(format!(
                    "{} sent a message body that does not match its header",
                    self.address()
                )));
            }
            body.extend_from_slice(&piece);
        }
        Ok((properties, body))
    }

    fn read_frame(&mut self) -> Result<(u8, u16, Vec<u8>)> {
        let head = self.conn.read_exact(7)?;
        if head.starts_with(b"AMQP") {
            return Err(ConnectorError::Unsupported(format!(
                "{} does not speak AMQP 0-9-1",
                self.address()
            )));
        }
        let kind = head[0];
        let channel = u16::from_be_bytes([head[1], head[2]]);
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
        if size > self.frame_max.max(FRAME_MAX) {
            return Err(ConnectorError::Unavailable(format!(
                "{} sent a frame of {size} bytes, over the negotiated frame_max of {}",
                self.address(),
                self.frame_max
            )));
        }
        let mut payload = self.conn.read_exact(size as usize + 1)?;
        if payload.pop() != Some(FRAME_END) {
            return Err(ConnectorError::Unavailable(format!(
                "{} does not speak AMQP 0-9-1: a frame did not end with 0xCE",
                self.address()
            )));
        }
        Ok((kind, channel, payload))
    }

    /// `connection.close` / `channel.close` as the error its reply code names.
    fn closed(&mut self, args: &[u8], connection: bool) -> ConnectorError {
        let mut r = Reader::new(args);
        let code = r.short().unwrap_or(0);
        let text = r.shortstr().unwrap_or_default();
        let said = format!("{}: {code} {text}", self.address());
        // Acknowledge the close so the broker can release the channel.
        let reply = if connection {
            codec::frame(METHOD, 0, &Writer::method(10, 51).0)
        } else {
            codec::frame(METHOD, CHANNEL, &Writer::method(20, 41).0)
        };
        let _ = self.conn.send(&reply);
        match code {
            403 => ConnectorError::Denied(said),
            404 => ConnectorError::NotFound(said),
            406 | 405 => ConnectorError::InvalidRequest(said),
            530 | 540 => ConnectorError::Unsupported(said),
            _ => ConnectorError::Unavailable(said),
        }
    }
}
