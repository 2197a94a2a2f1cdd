//! The NATS client protocol over a granted socket: CONNECT, SUB, PUB,
//! MSG/HMSG in, PING/PONG both ways; every length bounded by the server's
//! own `max_payload` (and ours), so a hostile server gets an error.

use serde_json::{json, Value};
use sluice_sdk::net::{Connection, Deadlines};
use sluice_sdk::{ConnectorError, Result};

/// Longest control line accepted (INFO carries the server's description).
const MAX_LINE: usize = 64 * 1024;

/// A message delivered to one of our subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub subject: String,
    pub sid: u64,
    pub reply: Option<String>,
    /// Header lines after the `NATS/1.0` status line, as (name, value).
    pub headers: Vec<(String, String)>,
    /// The status code of the `NATS/1.0 408 …` line, when there is one.
    pub status: Option<u16>,
    pub status_text: String,
    pub payload: Vec<u8>,
}

/// How to log in.
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

/// One connection to a NATS server.
pub struct Client {
    conn: Connection,
    max_payload: usize,
    next_sid: u64,
}

impl Client {
    /// Connect, read INFO, log in, and check the login with a PING.
    pub fn connect(
        address: &str,
        login: &Login,
        deadlines: Deadlines,
        max_message_bytes: usize,
    ) -> Result<Self> {
        let mut conn = Connection::open(address, deadlines)?;
        let info = conn.read_line(MAX_LINE)?;
        let info = info
            .strip_prefix(b"INFO ")
            .ok_or_else(|| garbage(address, "something other than INFO first"))?;
        let info: Value = serde_json::from_slice(info)
            .map_err(|_| garbage(address, "an INFO that is not JSON"))?;
        let server_max = info["max_payload"].as_u64().unwrap_or(1 << 20) as usize;
        let mut connect = json!({
            "verbose": false, "pedantic": false, "headers": true, "no_responders": true,
            "lang": "rust-sluice", "version": env!("CARGO_PKG_VERSION"), "protocol": 1,
        });
        if let Some(user) = &login.user {
            connect["user"] = json!(user);
        }
        if let Some(password) = &login.password {
            connect["pass"] = json!(password);
        }
        if let Some(token) = &login.token {
            connect["auth_token"] = json!(token);
        }
        let mut client = Self {
            conn,
            max_payload: server_max.min(max_message_bytes),
            next_sid: 1,
        };
        client
            .conn
            .send(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())?;
        client.flush_wait()?;
        Ok(client)
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        self.conn.address()
    }

    /// Subscribe to `subject`; the subscription id.
    pub fn subscribe(&mut self, subject: &str) -> Result<u64> {
        check_subject(subject)?;
        let sid = self.next_sid;
        self.next_sid += 1;
        self.conn
            .send(format!("SUB {subject} {sid}\r\n").as_bytes())?;
        Ok(sid)
    }

    /// The bytes of one PUB (queued by the caller, sent with [`Client::send`]).
    pub fn publish_frame(
        &self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        self.publish_frame_with_headers(subject, reply, None, payload)
    }

    /// The bytes of one PUB, or HPUB when `headers` (a whole `NATS/1.0`
    /// block ending in an empty line) are given.
    pub fn publish_frame_with_headers(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&str>,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        check_subject(subject)?;
        let header_len = headers.map_or(0, str::len);
        if payload.len() + header_len > self.max_payload {
            return Err(ConnectorError::InvalidRequest(format!(
                "a message of {} bytes is over the limit of {} bytes (the server's max_payload, or max_message_bytes)",
                payload.len() + header_len,
                self.max_payload
            )));
        }
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        let mut frame = match headers {
            Some(block) => format!(
                "HPUB {subject}{reply} {header_len} {}\r\n{block}",
                header_len + payload.len()
            ),
            None => format!("PUB {subject}{reply} {}\r\n", payload.len()),
        }
        .into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        Ok(frame)
    }

    /// Send queued frames.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn.send(bytes)
    }

    /// Publish one message.
    pub fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) -> Result<()> {
        let frame = self.publish_frame(subject, reply, payload)?;
        self.conn.send(&frame)
    }

    /// PING, then read until the PONG: the server has processed everything
    /// sent before it. Messages that arrive meanwhile are returned.
    pub fn flush(&mut self) -> Result<Vec<Message>> {
        self.conn.send(b"PING\r\n")?;
        let mut arrived = Vec::new();
        loop {
            match self.read()? {
                Event::Pong => return Ok(arrived),
                Event::Message(message) => arrived.push(message),
            }
        }
    }

    fn flush_wait(&mut self) -> Result<()> {
        let arrived = self.flush()?;
        if arrived.is_empty() {
            Ok(())
        } else {
            Err(garbage(self.address(), "messages before any subscription"))
        }
    }

    /// The next message (answering the server's PINGs on the way).
    pub fn next_message(&mut self) -> Result<Message> {
        loop {
            if let Event::Message(message) = self.read()? {
                return Ok(message);
            }
        }
    }

    fn read(&mut self) -> Result<Event> {
        loop {
            let line = self.conn.read_line(MAX_LINE)?;
            let text = String::from_utf8(line)
                .map_err(|_| garbage(self.address(), "a control line that is not UTF-8"))?;
            let (op, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
            match op.to_ascii_uppercase().as_str() {
                "PING" => self.conn.send(b"PONG\r\n")?,
                "PONG" => return Ok(Event::Pong),
                "+OK" | "INFO" => {}
                "-ERR" => return Err(server_error(self.address(), rest)),
                "MSG" => return self.read_msg(rest, false).map(Event::Message),
                "HMSG" => return self.read_msg(rest, true).map(Event::Message),
                _ => return Err(garbage(self.address(), "an unknown operation")),
            }
        }
    }

    fn read_msg(&mut self, args: &str, with_headers: bool) -> Result<Message> {
        let parts: Vec<&str> = args.split_ascii_whitespace().collect();
        let bad = || garbage(self.address(), "a message line that does not parse");
        let (subject, sid, reply, sizes) = match (with_headers, parts.len()) {
            (false, 3) => (parts[0], parts[1], None, &parts[2..]),
            (false, 4) => (parts[0], parts[1], Some(parts[2]), &parts[3..]),
            (true, 4) => (parts[0], parts[1], None, &parts[2..]),
            (true, 5) => (parts[0], parts[1], Some(parts[2]), &parts[3..]),
            _ => return Err(bad()),
        };
        let sid: u64 = sid.parse().map_err(|_| bad())?;
        let sizes: Vec<usize> = sizes
            .iter()
            .map(|n| n.parse::<usize>().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        let (header_len, total) = if with_headers {
            (sizes[0], sizes[1])
        } else {
            (0, sizes[0])
        };
        if header_len > total {
            return Err(bad());
        }
        if total > self.max_payload + MAX_LINE {
            return Err(ConnectorError::Unavailable(format!(
                "{} sent a message of {total} bytes, over the limit of {} bytes (max_message_bytes)",
                self.address(),
                self.max_payload
            )));
        }
        let mut body = self.conn.read_exact(total + 2)?;
        if !body.ends_with(b"\r\n") {
            return Err(garbage(self.address(), "a message not followed by CRLF"));
        }
        body.truncate(total);
        let payload = body.split_off(header_len);
        let (status, status_text, headers) = parse_headers(&body);
        Ok(Message {
            subject: subject.to_string(),
            sid,
            reply: reply.map(str::to_string),
            headers,
            status,
            status_text,
            payload,
        })
    }
}

enum Event {
    Pong,
    Message(Message),
}

/// `NATS/1.0 408 Request Timeout\r\nName: value\r\n…`.
fn parse_headers(block: &[u8]) -> (Option<u16>, String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(block);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(3, ' ');
    words.next();
    let status = words.next().and_then(|code| code.parse().ok());
    let status_text = words.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, status_text, headers)
}

/// A subject may not hold whitespace (it would split the protocol line).
fn check_subject(subject: &str) -> Result<()> {
    if subject.is_empty() || subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConnectorError::InvalidRequest(format!(
            "`{subject}` is not a NATS subject: it must be non-empty, without whitespace"
        )));
    }
    Ok(())
}

fn garbage(address: &str, what: &str) -> ConnectorError {
    ConnectorError::Unavailable(format!(
        "{address} does not speak the NATS protocol: it sent {what}"
    ))
}

/// `-ERR 'Authorization Violation'` and the like, typed.
pub fn server_error(address: &str, message: &str) -> ConnectorError {
    let message = message.trim().trim_matches('\'');
    let said = format!("{address}: {message}");
    let lower = message.to_ascii_lowercase();
    if lower.contains("authorization")
        || lower.contains("permissions violation")
        || lower.contains("authentication")
    {
        ConnectorError::Denied(said)
    } else if lower.contains("maximum payload") {
        ConnectorError::InvalidRequest(said)
    } else {
        ConnectorError::Unavailable(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_headers_are_read() {
        let (status, text, headers) =
            parse_headers(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\n\r\n");
        assert_eq!(status, Some(408));
        assert_eq!(text, "Request Timeout");
        assert_eq!(headers, vec![("Nats-Pending-Messages".into(), "3".into())]);
        let (status, _, headers) = parse_headers(b"NATS/1.0\r\nA: b\r\n\r\n");
        assert_eq!(status, None);
        assert_eq!(headers, vec![("A".into(), "b".into())]);
    }

    #[test]
    fn server_errors_are_typed() {
        assert!(matches!(
            server_error("n:1", "'Authorization Violation'"),
            ConnectorError::Denied(m) if m == "n:1: Authorization Violation"
        ));
        assert!(matches!(
            server_error("n:1", "'Maximum Payload Violation'"),
            ConnectorError::InvalidRequest(_)
        ));
    }

    #[test]
    fn subjects_cannot_smuggle_protocol_lines() {
        assert!(check_subject("orders.new").is_ok());
        assert!(check_subject("a b").is_err());
        assert!(check_subject("a\r\nPUB x 1").is_err());
        assert!(check_subject("").is_err());
    }
}
