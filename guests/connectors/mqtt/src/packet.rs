//! MQTT 3.1.1 packets over a granted socket: the few this connector sends
//! and every one a broker may send it, each length bounded.

use sluice_sdk::net::Connection;
use sluice_sdk::{ConnectorError, Result};

/// A packet from the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// CONNACK: session present, return code.
    ConnAck { session_present: bool, code: u8 },
    /// PUBLISH to us.
    Publish(Publish),
    /// PUBACK of one of our QoS 1 publishes.
    PubAck(u16),
    /// SUBACK: packet id and the granted QoS (0x80 = refused) per filter.
    SubAck(u16, Vec<u8>),
    /// PINGRESP.
    PingResp,
    /// UNSUBACK.
    UnsubAck(u16),
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    pub packet_id: Option<u16>,
    pub payload: Vec<u8>,
}

/// How to connect.
pub struct Connect<'a> {
    pub client_id: &'a str,
    pub clean_session: bool,
    pub keep_alive_s: u16,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

fn string(out: &mut Vec<u8>, text: &[u8]) -> Result<()> {
    let len = u16::try_from(text.len()).map_err(|_| {
        ConnectorError::InvalidRequest("an MQTT string is at most 65535 bytes".into())
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text);
    Ok(())
}

/// A whole packet: the fixed header's first byte, the remaining length, the rest.
fn packet(first: u8, body: &[u8]) -> Result<Vec<u8>> {
    let mut len = body.len();
    if len > 268_435_455 {
        return Err(ConnectorError::InvalidRequest(
            "an MQTT packet is at most 256 MiB".into(),
        ));
    }
    let mut out = vec![first];
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    Ok(out)
}

/// CONNECT (protocol level 4: MQTT 3.1.1).
pub fn connect(c: &Connect<'_>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT")?;
    body.push(4);
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&c.keep_alive_s.to_be_bytes());
    string(&mut body, c.client_id.as_bytes())?;
    if let Some(user) = c.username {
        string(&mut body, user.as_bytes())?;
    }
    if let Some(password) = c.password {
        string(&mut body, password.as_bytes())?;
    }
    packet(0x10, &body)
}

/// SUBSCRIBE one filter at QoS 1.
pub fn subscribe(packet_id: u16, filter: &str) -> Result<Vec<u8>> {
    let mut body = packet_id.to_be_bytes().to_vec();
    string(&mut body, filter.as_bytes())?;
    body.push(1);
    packet(0x82, &body)
}

/// PUBLISH at `qos` (0 or 1; `packet_id` for 1).
pub fn publish(
    topic: &str,
    qos: u8,
    retain: bool,
    packet_id: u16,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(&mut body, topic.as_bytes())?;
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// PUBACK of a delivered QoS 1 message.
pub fn puback(packet_id: u16) -> Vec<u8> {
    let id = packet_id.to_be_bytes();
    vec![0x40, 2, id[0], id[1]]
}

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xC0, 0];
/// DISCONNECT.
pub const DISCONNECT: [u8; 2] = [0xE0, 0];

fn garbage(conn: &Connection, what: &str) -> ConnectorError {
    ConnectorError::Unavailable(format!(
        "{} does not speak MQTT 3.1.1: it sent {what}",
        conn.address()
    ))
}

/// Read one packet, refusing one longer than `max_bytes`.
pub fn read(conn: &mut Connection, max_bytes: usize) -> Result<Packet> {
    let first = conn.read_exact(1)?[0];
    let mut len: usize = 0;
    let mut shift = 0;
    loop {
        let byte = conn.read_exact(1)?[0];
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(garbage(conn, "a remaining length longer than four bytes"));
        }
    }
    if len > max_bytes {
        return Err(ConnectorError::Unavailable(format!(
            "{} sent a packet of {len} bytes, over max_packet_bytes ({max_bytes}); raise it in the config if messages are that large",
            conn.address()
        )));
    }
    let body = conn.read_exact(len)?;
    let short = |conn: &Connection| garbage(conn, "a packet shorter than its kind needs");
    let id_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
    };
    match first >> 4 {
        2 => {
            if body.len() < 2 {
                return Err(short(conn));
            }
            Ok(Packet::ConnAck {
                session_present: body[0] & 1 == 1,
                code: body[1],
            })
        }
        3 => {
            let qos = (first >> 1) & 3;
            if qos > 2 {
                return Err(garbage(conn, "a PUBLISH with QoS 3"));
            }
            let topic_len = usize::from(id_at(0).ok_or_else(|| short(conn))?);
            let topic = body.get(2..2 + topic_len).ok_or_else(|| short(conn))?;
            let topic = String::from_utf8(topic.to_vec())
                .map_err(|_| garbage(conn, "a topic that is not UTF-8"))?;
            let mut at = 2 + topic_len;
            let packet_id = if qos > 0 {
                let id = id_at(at).ok_or_else(|| short(conn))?;
                at += 2;
                Some(id)
            } else {
                None
            };
            Ok(Packet::Publish(Publish {
                topic,
                qos,
                dup: first & 0x08 != 0,
                retain: first & 1 != 0,
                packet_id,
                payload: body[at..].to_vec(),
            }))
        }
        4 => Ok(Packet::PubAck(id_at(0).ok_or_else(|| short(conn))?)),
        9 => Ok(Packet::SubAck(
            id_at(0).ok_or_else(|| short(conn))?,
            body.get(2..).unwrap_or_default().to_vec(),
        )),
        11 => Ok(Packet::UnsubAck(id_at(0).ok_or_else(|| short(conn))?)),
        13 => Ok(Packet::PingResp),
        _ => Err(garbage(conn, "a packet a broker does not send")),
    }
}

/// A CONNACK return code as a typed error (0 is accepted).
pub fn refused(address: &str, code: u8) -> ConnectorError {
    match code {
        4 => ConnectorError::Denied(format!(
            "{address} refused the login: bad user name or password"
        )),
        5 => ConnectorError::Denied(format!("{address} refused the connection: not authorized")),
        2 => ConnectorError::InvalidConfig(format!("{address} rejected the client id")),
        1 => ConnectorError::Unsupported(format!("{address} does not accept MQTT 3.1.1")),
        3 => ConnectorError::Unavailable(format!("{address}: the MQTT service is unavailable")),
        other => {
            ConnectorError::Unavailable(format!("{address} refused the connection (code {other})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lengths_are_variable_byte_integers() {
        assert_eq!(packet(0xC0, &[]).unwrap(), vec![0xC0, 0]);
        let long = packet(0x30, &[0; 321]).unwrap();
        assert_eq!(&long[..3], &[0x30, 0xC1, 0x02]);
    }

    #[test]
    fn connect_carries_the_session_and_login_flags() {
        let bytes = connect(&Connect {
            client_id: "c",
            clean_session: false,
            keep_alive_s: 0,
            username: Some("u"),
            password: Some("p"),
        })
        .unwrap();
        // 0x10, len, "MQTT", level 4, flags user|password (no clean session).
        assert_eq!(&bytes[2..10], b"\x00\x04MQTT\x04\xC0");
    }

    #[test]
    fn refusals_are_typed() {
        assert!(matches!(refused("m:1", 4), ConnectorError::Denied(_)));
        assert!(matches!(refused("m:1", 3), ConnectorError::Unavailable(_)));
    }
}
