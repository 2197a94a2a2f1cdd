//! AMQP 0-9-1 encoding: frames, method arguments, field tables and basic
//! properties. Reading never trusts a length: every one is checked against
//! what is left of its frame.

use serde_json::{json, Map, Value};
use sluice_sdk::{ConnectorError, Result};

/// Frame types.
pub const METHOD: u8 = 1;
pub const HEADER: u8 = 2;
pub const BODY: u8 = 3;
pub const HEARTBEAT: u8 = 8;
/// Every frame ends with this octet.
pub const FRAME_END: u8 = 0xCE;

/// Builds a method's arguments.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// A method frame's payload starts with its class and method ids.
    pub fn method(class: u16, method: u16) -> Self {
        let mut w = Self::default();
        w.short(class).short(method);
        w
    }
    pub fn octet(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn short(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn long(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn longlong(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn shortstr(&mut self, v: &str) -> Result<&mut Self> {
        let len = u8::try_from(v.len()).map_err(|_| {
            ConnectorError::InvalidRequest(format!(
                "`{}…` is longer than the 255 bytes AMQP allows for a name",
                v.chars().take(20).collect::<String>()
            ))
        })?;
        self.0.push(len);
        self.0.extend_from_slice(v.as_bytes());
        Ok(self)
    }
    pub fn longstr(&mut self, v: &[u8]) -> &mut Self {
        self.long(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    /// A field table from a JSON object: strings, integers, floats, booleans,
    /// null, arrays and nested objects.
    pub fn table(&mut self, map: &Map<String, Value>) -> Result<&mut Self> {
        let mut inner = Writer::default();
        for (key, value) in map {
            inner.shortstr(key)?;
            inner.field(value)?;
        }
        self.longstr(&inner.0);
        Ok(self)
    }
    fn field(&mut self, value: &Value) -> Result<()> {
        match value {
            Value::Null => {
                self.octet(b'V');
            }
            Value::Bool(b) => {
                self.octet(b't').octet(u8::from(*b));
            }
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.octet(b'l').longlong(i as u64);
                } else {
                    self.octet(b'd');
                    self.0
                        .extend_from_slice(&n.as_f64().unwrap_or_default().to_be_bytes());
                }
            }
            Value::String(s) => {
                self.octet(b'S').longstr(s.as_bytes());
            }
            Value::Array(items) => {
                let mut inner = Writer::default();
                for item in items {
                    inner.field(item)?;
                }
                self.octet(b'A').longstr(&inner.0);
            }
            Value::Object(map) => {
                self.octet(b'F').table(map)?;
            }
        }
        Ok(())
    }
}

/// A frame to send.
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

/// Reads a frame's payload.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn short_frame() -> ConnectorError {
    ConnectorError::Unavailable(
        "the broker sent an AMQP frame shorter than its contents say".into(),
    )
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or_else(short_frame)?;
        let slice = self.bytes.get(self.at..end).ok_or_else(short_frame)?;
        self.at = end;
        Ok(slice)
    }
    pub fn octet(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn short(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn long(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn longlong(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub fn shortstr(&mut self) -> Result<String> {
        let n = usize::from(self.octet()?);
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    pub fn longstr(&mut self) -> Result<&'a [u8]> {
        let n = self.long()? as usize;
        self.take(n)
    }
    /// A field table as a JSON object (nesting bounded by the frame's size).
    pub fn table(&mut self) -> Result<Map<String, Value>> {
        self.table_at(0)
    }
    fn table_at(&mut self, depth: usize) -> Result<Map<String, Value>> {
        let mut inner = Reader::new(self.longstr()?);
        let mut map = Map::new();
        while inner.at < inner.bytes.len() {
            let key = inner.shortstr()?;
            let value = inner.field(depth)?;
            map.insert(key, value);
        }
        Ok(map)
    }
    fn field(&mut self, depth: usize) -> Result<Value> {
        if depth > 16 {
            return Err(ConnectorError::Unavailable(
                "the broker sent field tables nested too deep".into(),
            ));
        }
        Ok(match self.octet()? {
            b't' => json!(self.octet()? != 0),
            b'b' => json!(self.octet()? as i8),
            b'B' => json!(self.octet()?),
            b's' => json!(self.short()? as i16),
            b'u' => json!(self.short()?),
            b'I' => json!(self.long()? as i32),
            b'i' => json!(self.long()?),
            b'l' => json!(self.longlong()? as i64),
            b'f' => json!(f32::from_bits(self.long()?)),
            b'd' => json!(f64::from_bits(self.longlong()?)),
            b'D' => {
                let scale = self.octet()?;
                let value = self.long()? as i32;
                json!(value as f64 / 10f64.powi(i32::from(scale)))
            }
            b'S' | b'x' => json!(String::from_utf8_lossy(self.longstr()?)),
            b'T' => json!(self.longlong()?),
            b'V' => Value::Null,
            b'F' => Value::Object(self.table_at(depth + 1)?),
            b'A' => {
                let mut inner = Reader::new(self.longstr()?);
                let mut items = Vec::new();
                while inner.at < inner.bytes.len() {
                    items.push(inner.field(depth + 1)?);
                }
                Value::Array(items)
            }
            other => {
                return Err(ConnectorError::Unavailable(format!(
                    "the broker sent a field of unknown type `{}`",
                    other as char
                )))
            }
        })
    }
}

/// The basic class's content properties, in flag order (bit 15 first).
const PROPERTIES: [(&str, u8); 14] = [
    ("content_type", b's'),
    ("content_encoding", b's'),
    ("headers", b'F'),
    ("delivery_mode", b'o'),
    ("priority", b'o'),
    ("correlation_id", b's'),
    ("reply_to", b's'),
    ("expiration", b's'),
    ("message_id", b's'),
    ("timestamp", b'T'),
    ("type", b's'),
    ("user_id", b's'),
    ("app_id", b's'),
    ("cluster_id", b's'),
];

/// A content header's body size and properties (as a JSON object).
pub fn read_header(payload: &[u8]) -> Result<(u64, Map<String, Value>)> {
    let mut r = Reader::new(payload);
    r.short()?; // class
    r.short()?; // weight
    let size = r.longlong()?;
    let flags = r.short()?;
    let mut properties = Map::new();
    for (bit, (name, kind)) in (0..).zip(PROPERTIES) {
        if flags & (1 << (15 - bit)) == 0 {
            continue;
        }
        let value = match kind {
            b's' => json!(r.shortstr()?),
            b'F' => Value::Object(r.table()?),
            b'o' => json!(r.octet()?),
            _ => json!(r.longlong()?),
        };
        properties.insert(name.to_string(), value);
    }
    Ok((size, properties))
}

/// A content header for a body of `size` bytes with `properties` (the names
/// of [`PROPERTIES`]; others are refused).
pub fn write_header(size: u64, properties: &Map<String, Value>) -> Result<Vec<u8>> {
    let mut flags = 0u16;
    let mut fields = Writer::default();
    for (name, _) in properties {
        if !PROPERTIES.iter().any(|(known, _)| known == name) {
            return Err(ConnectorError::InvalidRequest(format!(
                "`{name}` is not an AMQP message property; use one of {}",
                PROPERTIES.map(|(n, _)| n).join(", ")
            )));
        }
    }
    for (bit, (name, kind)) in (0..).zip(PROPERTIES) {
        let Some(value) = properties.get(name) else {
            continue;
        };
        flags |= 1 << (15 - bit);
        let wrong = || ConnectorError::InvalidRequest(format!("property `{name}`: wrong type"));
        match kind {
            b's' => {
                fields.shortstr(value.as_str().ok_or_else(wrong)?)?;
            }
            b'F' => {
                fields.table(value.as_object().ok_or_else(wrong)?)?;
            }
            b'o' => {
                let octet = value.as_u64().and_then(|v| u8::try_from(v).ok());
                fields.octet(octet.ok_or_else(wrong)?);
            }
            _ => {
                fields.longlong(value.as_u64().ok_or_else(wrong)?);
            }
        }
    }
    let mut w = Writer::default();
    w.short(60).short(0).longlong(size).short(flags);
    w.0.extend_from_slice(&fields.0);
    Ok(w.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip() {
        let map = json!({ "s": "x", "n": -3, "f": 1.5, "b": true, "null": null,
                          "list": [1, "two"], "nested": { "k": "v" } });
        let mut w = Writer::default();
        w.table(map.as_object().unwrap()).unwrap();
        let back = Reader::new(&w.0).table().unwrap();
        assert_eq!(Value::Object(back), map);
    }

    #[test]
    fn properties_round_trip_in_flag_order() {
        let props = json!({ "headers": { "tenant": "a" }, "content_type": "application/json",
                            "delivery_mode": 2, "message_id": "m-1", "timestamp": 1700000000 });
        let header = write_header(42, props.as_object().unwrap()).unwrap();
        let (size, back) = read_header(&header).unwrap();
        assert_eq!(size, 42);
        assert_eq!(Value::Object(back), props);
        assert!(write_header(1, json!({ "bogus": 1 }).as_object().unwrap()).is_err());
    }

    #[test]
    fn a_length_past_the_frame_is_an_error() {
        let mut r = Reader::new(&[0, 0, 0, 200, 1, 2]);
        assert!(r.longstr().is_err());
    }
}
