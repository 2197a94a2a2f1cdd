//! Record batches (magic v2), the unit Kafka stores and sends: decoded with
//! every length checked against what is left, the CRC-32C verified, gzip
//! inflated to a bound; encoded for Produce (uncompressed or gzip).
//!
//! A Fetch answer may end in a batch cut short by the broker's byte limit;
//! that tail is not an error — it is fetched again from its offset next time.

use std::io::{Read, Write};

use sluice_sdk::{ConnectorError, Result};

/// One record as the broker stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether the broker set the timestamp when it appended (else the producer did).
    pub log_append_time: bool,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Bytes of a batch before its records: base offset (8), length (4), leader
/// epoch (4), magic (1), CRC (4), attributes (2), last offset delta (4),
/// two timestamps (16), producer id (8), epoch (2), base sequence (4), count (4).
const HEADER: usize = 61;
/// Where the CRC-covered part starts (after the CRC).
const CRC_START: usize = 21;
const COMPRESSION_MASK: i16 = 0x7;
const LOG_APPEND_TIME: i16 = 1 << 3;
const CONTROL: i16 = 1 << 5;

/// How a batch's records are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// What the whole batches of a Fetch answer hold.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The data records at or after the offset asked for.
    pub records: Vec<Record>,
    /// The offset after the last whole batch (data or transaction markers):
    /// where the next fetch starts even when no record was kept.
    pub next_offset: Option<i64>,
}

/// Decode every whole batch of a Fetch answer's `records` for partition
/// `what`, keeping records at or after `from`; a cut-off last batch is left.
/// `max_inflated` bounds what one compressed batch may inflate to.
pub fn decode(bytes: &[u8], from: i64, max_inflated: usize, what: &str) -> Result<Decoded> {
    let mut records = Vec::new();
    let mut next_offset = None;
    let mut at = 0;
    while bytes.len() - at >= 17 {
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        let magic = bytes[at + 16] as i8;
        if length < 0 || (length as usize) < HEADER - 12 {
            return Err(corrupt(what, at, format!("a batch length of {length}")));
        }
        let end = at + 12 + length as usize;
        if end > bytes.len() {
            break; // cut short by the fetch's byte limit
        }
        if magic != 2 {
            return Err(ConnectorError::Unsupported(format!(
                "{what}: a message set of magic v{magic} (Kafka before 0.11); this connector reads record batches (v2)"
            )));
        }
        let last = decode_batch(&bytes[at..end], from, max_inflated, what, at, &mut records)?;
        next_offset = Some(last + 1);
        at = end;
    }
    Ok(Decoded {
        records,
        next_offset,
    })
}

fn decode_batch(
    batch: &[u8],
    from: i64,
    max_inflated: usize,
    what: &str,
    at: usize,
    records: &mut Vec<Record>,
) -> Result<i64> {
    let int = |range: std::ops::Range<usize>| -> i64 {
        batch[range]
            .iter()
            .fold(0i64, |n, b| (n << 8) | i64::from(*b))
    };
    let stored_crc = int(17..21) as u32;
    let actual_crc = crc32c::crc32c(&batch[CRC_START..]);
    if stored_crc != actual_crc {
        return Err(corrupt(
            what,
            at,
            format!("a batch whose CRC-32C is {actual_crc:#010x}, not the {stored_crc:#010x} it carries"),
        ));
    }
    let base_offset = int(0..8);
    let attributes = int(21..23) as i16;
    let last_offset = base_offset + int(23..27) as i32 as i64;
    let base_timestamp = int(27..35);
    let max_timestamp = int(35..43);
    let count = int(57..61) as i32;
    if attributes & CONTROL != 0 {
        return Ok(last_offset); // transaction markers, not data
    }
    let log_append_time = attributes & LOG_APPEND_TIME != 0;
    let body = &batch[HEADER..];
    let inflated;
    let body = match attributes & COMPRESSION_MASK {
        0 => body,
        1 => {
            inflated = gunzip(body, max_inflated).map_err(|e| corrupt(what, at, e))?;
            &inflated[..]
        }
        other => {
            let name = match other {
                2 => "snappy",
                3 => "lz4",
                4 => "zstd",
                _ => "an unknown codec",
            };
            return Err(ConnectorError::Unsupported(format!(
                "{what}: a batch compressed with {name}; this connector reads uncompressed and gzip batches"
            )));
        }
    };
    // Every record takes at least 7 bytes: a count beyond that is a lie.
    if count < 0 || count as usize > body.len() / 7 + 1 {
        return Err(corrupt(
            what,
            at,
            format!("a batch claiming {count} records in {} bytes", body.len()),
        ));
    }
    let mut reader = Reader { bytes: body, at: 0 };
    for _ in 0..count {
        let record = reader
            .record(base_offset, base_timestamp, max_timestamp, log_append_time)
            .map_err(|e| corrupt(what, at, e))?;
        if record.offset >= from {
            records.push(record);
        }
    }
    Ok(last_offset)
}

fn corrupt(what: &str, at: usize, detail: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Unavailable(format!(
        "{what}: the broker sent {detail} (at byte {at} of the fetched records)"
    ))
}

fn gunzip(body: &[u8], max: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("a gzip batch that does not inflate ({e})"))?;
    if out.len() > max {
        return Err(format!(
            "a gzip batch that inflates beyond {max} bytes (max_response_bytes)"
        ));
    }
    Ok(out)
}

/// Reads the records of one batch body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn record(
        &mut self,
        base_offset: i64,
        base_timestamp: i64,
        max_timestamp: i64,
        log_append_time: bool,
    ) -> std::result::Result<Record, String> {
        let length = self.varint()?;
        let start = self.at;
        if length < 0 || length as usize > self.bytes.len() - self.at {
            return Err(format!(
                "a record of {length} bytes where {} are left",
                self.bytes.len() - self.at
            ));
        }
        let _attributes = self.take(1)?;
        let timestamp_delta = self.varint()?;
        let offset_delta = self.varint()?;
        let key = self.nullable_bytes()?;
        let value = self.nullable_bytes()?;
        let header_count = self.varint()?;
        if header_count < 0 || header_count as usize > self.bytes.len() - self.at {
            return Err(format!("a record claiming {header_count} headers"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let name = self
                .nullable_bytes()?
                .ok_or_else(|| "a header without a name".to_string())?;
            let name = String::from_utf8(name)
                .map_err(|_| "a header name that is not UTF-8".to_string())?;
            headers.push((name, self.nullable_bytes()?));
        }
        if self.at - start != length as usize {
            return Err(format!(
                "a record whose fields take {} bytes where its length says {length}",
                self.at - start
            ));
        }
        Ok(Record {
            offset: base_offset + offset_delta,
            timestamp: if log_append_time {
                max_timestamp
            } else {
                base_timestamp + timestamp_delta
            },
            log_append_time,
            key,
            value,
            headers,
        })
    }

    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        if n > self.bytes.len() - self.at {
            return Err(format!(
                "a field of {n} bytes where {} are left",
                self.bytes.len() - self.at
            ));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn nullable_bytes(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(format!("a length of {n}")),
            n => Ok(Some(self.take(n as usize)?.to_vec())),
        }
    }

    /// A zigzag varint (records use them for lengths and deltas).
    fn varint(&mut self) -> std::result::Result<i64, String> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.take(1)?.first().unwrap();
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err("a varint longer than 10 bytes".into())
    }
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

impl Outgoing {
    /// About the bytes it takes in a batch.
    pub fn size(&self) -> usize {
        let field = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len) + 5;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + 5 + field(v))
            .sum();
        21 + field(&self.key) + field(&self.value) + headers
    }
}

/// One batch of `records` (offsets from 0), as Produce sends it.
pub fn encode(records: &[Outgoing], compression: Compression) -> Vec<u8> {
    let first = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let last = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut body = Vec::with_capacity(records.iter().map(Outgoing::size).sum());
    let mut one = Vec::new();
    for (delta, record) in records.iter().enumerate() {
        one.clear();
        one.push(0); // attributes
        put_varint(&mut one, record.timestamp - first);
        put_varint(&mut one, delta as i64);
        put_nullable(&mut one, record.key.as_deref());
        put_nullable(&mut one, record.value.as_deref());
        put_varint(&mut one, record.headers.len() as i64);
        for (name, value) in &record.headers {
            put_nullable(&mut one, Some(name.as_bytes()));
            put_nullable(&mut one, value.as_deref());
        }
        put_varint(&mut body, one.len() as i64);
        body.extend_from_slice(&one);
    }
    let (body, codec) = match compression {
        Compression::None => (body, 0i16),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&body).expect("writing to memory");
            (gz.finish().expect("writing to memory"), 1)
        }
    };
    let mut batch = Vec::with_capacity(HEADER + body.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((HEADER - 12 + body.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // CRC, below
    batch.extend_from_slice(&codec.to_be_bytes());
    batch.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes()); // last offset delta
    batch.extend_from_slice(&first.to_be_bytes());
    batch.extend_from_slice(&last.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id: none
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&(records.len() as i32).to_be_bytes());
    batch.extend_from_slice(&body);
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

fn put_varint(out: &mut Vec<u8>, n: i64) {
    let mut raw = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: &[u8]) -> Outgoing {
        Outgoing {
            key: None,
            value: Some(bytes.to_vec()),
            headers: vec![],
            timestamp: 0,
        }
    }

    fn sample() -> Vec<(String, Option<Vec<u8>>)> {
        vec![
            ("trace".into(), Some(b"abc".to_vec())),
            ("empty".into(), None),
        ]
    }

    #[test]
    fn a_batch_round_trips_in_both_codecs_with_offsets_from_its_base() {
        let headers = sample();
        let records = [
            Outgoing {
                key: Some(b"k1".to_vec()),
                value: Some(b"{\"a\":1}".to_vec()),
                headers: headers.clone(),
                timestamp: 1_700_000_000_000,
            },
            Outgoing {
                key: None,
                value: None,
                headers: vec![],
                timestamp: 1_700_000_000_005,
            },
        ];
        for compression in [Compression::None, Compression::Gzip] {
            let mut batch = encode(&records, compression);
            batch[..8].copy_from_slice(&40i64.to_be_bytes()); // as the broker assigns
            let crc = crc32c::crc32c(&batch[CRC_START..]);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
            let all = decode(&batch, 0, 1 << 20, "t/0").unwrap();
            assert_eq!(all.next_offset, Some(42));
            let decoded = all.records;
            assert_eq!(decoded.len(), 2);
            assert_eq!(decoded[0].offset, 40);
            assert_eq!(decoded[1].offset, 41);
            assert_eq!(decoded[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(decoded[0].value.as_deref(), Some(&b"{\"a\":1}"[..]));
            assert_eq!(decoded[0].headers, headers);
            assert_eq!(decoded[0].timestamp, 1_700_000_000_000);
            assert_eq!(decoded[1].key, None);
            assert_eq!(decoded[1].timestamp, 1_700_000_000_005);
            assert_eq!(decode(&batch, 41, 1 << 20, "t/0").unwrap().records.len(), 1);
        }
    }

    #[test]
    fn a_cut_off_last_batch_is_left_for_the_next_fetch() {
        let one = encode(&[value(b"x")], Compression::None);
        let mut two = one.clone();
        two.extend_from_slice(&one[..one.len() - 3]);
        let decoded = decode(&two, 0, 1 << 20, "t/0").unwrap();
        assert_eq!(decoded.records.len(), 1);
        assert_eq!(decoded.next_offset, Some(1));
    }

    #[test]
    fn corruption_lies_and_bombs_are_typed_errors() {
        let mut batch = encode(&[value(b"hello")], Compression::None);
        let last = batch.len() - 1;
        batch[last] ^= 1;
        let err = decode(&batch, 0, 1 << 20, "t/0").unwrap_err();
        assert!(
            matches!(&err, ConnectorError::Unavailable(m) if m.contains("CRC-32C")),
            "{err:?}"
        );

        // A record count no body could hold, with a valid CRC.
        let mut lying = encode(&[value(b"")], Compression::None);
        lying[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lying[CRC_START..]);
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = decode(&lying, 0, 1 << 20, "t/0").unwrap_err();
        assert!(
            matches!(&err, ConnectorError::Unavailable(m) if m.contains("claiming 2147483647 records")),
            "{err:?}"
        );

        // A gzip batch that inflates beyond the bound.
        let zeros = vec![0u8; 1 << 16];
        let bomb = encode(&[value(&zeros)], Compression::Gzip);
        let err = decode(&bomb, 0, 1024, "t/0").unwrap_err();
        assert!(
            matches!(&err, ConnectorError::Unavailable(m) if m.contains("inflates beyond 1024")),
            "{err:?}"
        );

        let mut old = vec![0u8; 72];
        old[11] = 60;
        old[16] = 1;
        let err = decode(&old, 0, 1 << 20, "t/0").unwrap_err();
        assert!(
            matches!(&err, ConnectorError::Unsupported(m) if m.contains("magic v1")),
            "{err:?}"
        );
    }

    #[test]
    fn varints_are_zigzag() {
        for n in [
            0i64,
            -1,
            1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            let mut reader = Reader { bytes: &out, at: 0 };
            assert_eq!(reader.varint().unwrap(), n);
        }
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        assert_eq!(out, [1]);
    }
}
