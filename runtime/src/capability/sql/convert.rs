//! PostgreSQL values to JSON and back.
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | bool | true/false |
//! | int2, int4, int8, oid | number |
//! | float4, float8 | number (`"NaN"`, `"Infinity"`, `"-Infinity"` as strings) |
//! | numeric | exact decimal string, e.g. `"12345.6700"` |
//! | text, varchar, char, name, enums | string |
//! | bytea | base64 string |
//! | date, time, timestamp | `2024-01-31`, `13:45:00.5`, `2024-01-31T13:45:00.5` |
//! | timestamptz | RFC 3339 in UTC, `2024-01-31T13:45:00.5Z` |
//! | interval | ISO 8601 duration, `P1Y2M3DT4H5M6.5S` |
//! | uuid | string |
//! | json, jsonb | the JSON value itself |
//! | arrays of these | arrays (one dimension) |
//! | NULL | null |
//!
//! Parameters go the other way, by the type the server inferred for each
//! placeholder. Any other type: cast it in the query (`col::text`, `$1::text::inet`).

use std::error::Error as StdError;
use std::fmt::Write as _;

use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use postgres_protocol::types as wire;
use serde_json::Value;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};

type BoxError = Box<dyn StdError + Sync + Send>;

fn unsupported(ty: &Type) -> BoxError {
    format!(
        "PostgreSQL type `{}` has no JSON mapping; cast it in the query, e.g. `col::text`",
        ty.name()
    )
    .into()
}

/// Decode one raw binary value of type `ty` (None = NULL).
pub fn decode(ty: &Type, raw: Option<&[u8]>) -> Result<Value, BoxError> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    if let Kind::Array(member) = ty.kind() {
        let array = wire::array_from_sql(raw)?;
        if fallible_iterator::FallibleIterator::count(array.dimensions())? > 1 {
            return Err(
                "multi-dimensional arrays are not supported; unnest them in the query".into(),
            );
        }
        let mut items = Vec::new();
        let mut values = array.values();
        while let Some(value) = fallible_iterator::FallibleIterator::next(&mut values)? {
            items.push(decode(member, value)?);
        }
        return Ok(Value::Array(items));
    }
    if let Kind::Enum(_) = ty.kind() {
        return Ok(Value::String(std::str::from_utf8(raw)?.to_string()));
    }
    Ok(match *ty {
        Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
        Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
        Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
        Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
        Type::OID => Value::from(u32::from_sql(ty, raw)?),
        Type::FLOAT4 => float(f64::from(f32::from_sql(ty, raw)?)),
        Type::FLOAT8 => float(f64::from_sql(ty, raw)?),
        Type::NUMERIC => Value::String(numeric_to_string(raw)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Value::String(String::from_sql(ty, raw)?)
        }
        Type::BYTEA => Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
        Type::DATE => match wire::date_from_sql(raw)? {
            i32::MAX => Value::String("infinity".into()),
            i32::MIN => Value::String("-infinity".into()),
            _ => Value::String(NaiveDate::from_sql(ty, raw)?.format("%Y-%m-%d").to_string()),
        },
        Type::TIME => Value::String(trim_fraction(
            NaiveTime::from_sql(ty, raw)?
                .format("%H:%M:%S%.f")
                .to_string(),
        )),
        Type::TIMESTAMP => match wire::timestamp_from_sql(raw)? {
            i64::MAX => Value::String("infinity".into()),
            i64::MIN => Value::String("-infinity".into()),
            _ => Value::String(trim_fraction(
                NaiveDateTime::from_sql(ty, raw)?
                    .format("%Y-%m-%dT%H:%M:%S%.f")
                    .to_string(),
            )),
        },
        Type::TIMESTAMPTZ => match wire::timestamp_from_sql(raw)? {
            i64::MAX => Value::String("infinity".into()),
            i64::MIN => Value::String("-infinity".into()),
            _ => Value::String(format!(
                "{}Z",
                trim_fraction(
                    DateTime::<Utc>::from_sql(ty, raw)?
                        .format("%Y-%m-%dT%H:%M:%S%.f")
                        .to_string()
                )
            )),
        },
        Type::INTERVAL => Value::String(interval_to_iso(raw)?),
        Type::UUID => Value::String(uuid::Uuid::from_sql(ty, raw)?.to_string()),
        Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
        _ => return Err(unsupported(ty)),
    })
}

/// `12:00:00.500` → `12:00:00.5`, `12:00:00.000` → `12:00:00`.
fn trim_fraction(text: String) -> String {
    match text.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => text,
    }
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        Value::String("NaN".into())
    } else if f.is_infinite() {
        Value::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// A decoded column of any supported type.
pub struct AnyValue(pub Value);

impl<'a> FromSql<'a> for AnyValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(ty, Some(raw)).map(AnyValue)
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(AnyValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

fn read_u16(raw: &[u8], at: usize) -> Result<u16, BoxError> {
    raw.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated numeric".into())
}

/// The exact decimal text of a binary `numeric`.
pub fn numeric_to_string(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = usize::from(read_u16(raw, 0)?);
    let weight = i64::from(read_u16(raw, 2)? as i16);
    let sign = read_u16(raw, 4)?;
    let dscale = usize::from(read_u16(raw, 6)?);
    let digits = (0..ndigits)
        .map(|i| read_u16(raw, 8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        _ => {}
    }
    let digit = |k: i64| -> u16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == NUMERIC_NEG {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                let _ = write!(text, "{}", digit(k));
            } else {
                let _ = write!(text, "{:04}", digit(k));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let groups = dscale.div_ceil(4) as i64;
        for j in 1..=groups {
            let _ = write!(fraction, "{:04}", digit(weight + j));
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// Binary `numeric` from decimal text (`-12.340`, `1e3` is not accepted).
pub fn numeric_from_str(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let bad = || -> BoxError { format!("`{text}` is not a decimal number").into() };
    let trimmed = text.trim();
    let (sign, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (NUMERIC_NEG, rest),
        None => (0, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    match body {
        "NaN" => return write_numeric(out, 0, 0, NUMERIC_NAN, 0, &[]),
        "Infinity" | "inf" => {
            let sign = if sign == NUMERIC_NEG {
                NUMERIC_NINF
            } else {
                NUMERIC_PINF
            };
            return write_numeric(out, 0, 0, sign, 0, &[]);
        }
        _ => {}
    }
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let int_part = int_part.trim_start_matches('0');
    let dscale = u16::try_from(frac_part.len()).map_err(|_| bad())?;
    // Pad so both parts split into whole base-10000 groups around the point.
    let int_padded = format!("{}{int_part}", "0".repeat((4 - int_part.len() % 4) % 4));
    let frac_padded = format!("{frac_part}{}", "0".repeat((4 - frac_part.len() % 4) % 4));
    let group = |s: &str| -> Vec<u16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')))
            .collect()
    };
    let int_groups = group(&int_padded);
    let mut all: Vec<u16> = int_groups
        .iter()
        .copied()
        .chain(group(&frac_padded))
        .collect();
    let mut weight = int_groups.len() as i64 - 1;
    // Strip leading zero groups (adjusting the weight) and trailing zero groups.
    while all.first() == Some(&0) {
        all.remove(0);
        weight -= 1;
    }
    while all.last() == Some(&0) {
        all.pop();
    }
    if all.is_empty() {
        return write_numeric(out, 0, 0, 0, dscale, &[]);
    }
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    write_numeric(out, all.len(), weight, sign, dscale, &all)
}

fn write_numeric(
    out: &mut BytesMut,
    ndigits: usize,
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: &[u16],
) -> Result<(), BoxError> {
    out.put_u16(u16::try_from(ndigits)?);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
    for d in digits {
        out.put_u16(*d);
    }
    Ok(())
}

const MICROS_PER_SECOND: i64 = 1_000_000;

/// ISO 8601 duration of a binary `interval` (months, days and microseconds kept apart).
pub fn interval_to_iso(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("bad interval".into());
    }
    let micros = i64::from_be_bytes(raw[0..8].try_into()?);
    let days = i32::from_be_bytes(raw[8..12].try_into()?);
    let months = i32::from_be_bytes(raw[12..16].try_into()?);
    let mut text = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years, 'Y'), (months, 'M'), (days, 'D')] {
        if n != 0 {
            let _ = write!(text, "{n}{unit}");
        }
    }
    if micros != 0 {
        text.push('T');
        let hours = micros / (3600 * MICROS_PER_SECOND);
        let minutes = (micros / (60 * MICROS_PER_SECOND)) % 60;
        let rest = micros % (60 * MICROS_PER_SECOND);
        if hours != 0 {
            let _ = write!(text, "{hours}H");
        }
        if minutes != 0 {
            let _ = write!(text, "{minutes}M");
        }
        if rest != 0 {
            let (secs, frac) = (rest / MICROS_PER_SECOND, (rest % MICROS_PER_SECOND).abs());
            let sign = if rest < 0 && secs == 0 { "-" } else { "" };
            if frac == 0 {
                let _ = write!(text, "{sign}{secs}S");
            } else {
                let frac = format!("{frac:06}");
                let _ = write!(text, "{sign}{secs}.{}S", frac.trim_end_matches('0'));
            }
        }
    }
    if text == "P" {
        text.push_str("T0S");
    }
    Ok(text)
}

/// Parse an ISO 8601 duration (`P1Y2M3DT4H5M6.5S`, components may be negative).
pub fn interval_from_iso(text: &str) -> Result<(i64, i32, i32), BoxError> {
    let bad = || -> BoxError {
        format!("`{text}` is not an ISO 8601 duration like `P1Y2M3DT4H5M6.5S`").into()
    };
    let body = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let mut number = String::new();
    for c in date.chars() {
        match c {
            'Y' | 'M' | 'W' | 'D' => {
                let n: i64 = number.parse().map_err(|_| bad())?;
                number.clear();
                match c {
                    'Y' => months += n * 12,
                    'M' => months += n,
                    'W' => days += n * 7,
                    _ => days += n,
                }
            }
            _ => number.push(c),
        }
    }
    if !number.is_empty() {
        return Err(bad());
    }
    for c in time.chars() {
        match c {
            'H' | 'M' | 'S' => {
                let n: f64 = number.parse().map_err(|_| bad())?;
                number.clear();
                let unit = match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                micros += (n * unit * MICROS_PER_SECOND as f64).round() as i64;
            }
            _ => number.push(c),
        }
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok((
        micros,
        i32::try_from(days).map_err(|_| bad())?,
        i32::try_from(months).map_err(|_| bad())?,
    ))
}

/// A JSON value bound to a placeholder, encoded by the placeholder's type.
#[derive(Debug)]
pub struct JsonParam(pub Value);

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_i64(value: &Value, ty: &Type) -> Result<i64, BoxError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not an integer").into()),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an integer ({})", ty.name()).into()),
        other => Err(format!("{other} is not an integer ({})", ty.name()).into()),
    }
}

fn as_f64(value: &Value) -> Result<f64, BoxError> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| "bad number".into()),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .trim()
                .parse()
                .map_err(|_| format!("`{other}` is not a number").into()),
        },
        other => Err(format!("{other} is not a number").into()),
    }
}

fn as_str<'v>(value: &'v Value, ty: &Type) -> Result<&'v str, BoxError> {
    value
        .as_str()
        .ok_or_else(|| format!("{} needs a JSON string, got {value}", ty.name()).into())
}

impl ToSql for JsonParam {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode(&self.0, ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn encode(value: &Value, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    if value.is_null() {
        return Ok(IsNull::Yes);
    }
    if let Kind::Array(member) = ty.kind() {
        let items = value
            .as_array()
            .ok_or_else(|| format!("{} needs a JSON array, got {value}", ty.name()))?;
        let dimension = wire::ArrayDimension {
            len: i32::try_from(items.len())?,
            lower_bound: 1,
        };
        wire::array_to_sql(
            Some(dimension),
            member.oid(),
            items.iter(),
            |item, buf| match encode(item, member, buf)? {
                IsNull::Yes => Ok(postgres_protocol::IsNull::Yes),
                IsNull::No => Ok(postgres_protocol::IsNull::No),
            },
            out,
        )?;
        return Ok(IsNull::No);
    }
    if let Kind::Enum(_) = ty.kind() {
        out.put_slice(as_text(value).as_bytes());
        return Ok(IsNull::No);
    }
    match *ty {
        Type::BOOL => match value {
            Value::Bool(b) => b.to_sql(ty, out),
            Value::String(s) if s == "true" || s == "false" => (s == "true").to_sql(ty, out),
            other => Err(format!("bool needs true or false, got {other}").into()),
        },
        Type::INT2 => i16::try_from(as_i64(value, ty)?)?.to_sql(ty, out),
        Type::INT4 => i32::try_from(as_i64(value, ty)?)?.to_sql(ty, out),
        Type::INT8 => as_i64(value, ty)?.to_sql(ty, out),
        Type::OID => u32::try_from(as_i64(value, ty)?)?.to_sql(ty, out),
        Type::FLOAT4 => (as_f64(value)? as f32).to_sql(ty, out),
        Type::FLOAT8 => as_f64(value)?.to_sql(ty, out),
        Type::NUMERIC => {
            numeric_from_str(&as_text(value), out)?;
            Ok(IsNull::No)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            as_text(value).to_sql(ty, out)
        }
        Type::BYTEA => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(as_str(value, ty)?)
                .map_err(|e| format!("bytea needs base64: {e}"))?;
            bytes.to_sql(ty, out)
        }
        Type::DATE => NaiveDate::parse_from_str(as_str(value, ty)?, "%Y-%m-%d")?.to_sql(ty, out),
        Type::TIME => NaiveTime::parse_from_str(as_str(value, ty)?, "%H:%M:%S%.f")?.to_sql(ty, out),
        Type::TIMESTAMP => {
            let text = as_str(value, ty)?;
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))?
                .to_sql(ty, out)
        }
        Type::TIMESTAMPTZ => DateTime::parse_from_rfc3339(as_str(value, ty)?)?
            .with_timezone(&Utc)
            .to_sql(ty, out),
        Type::INTERVAL => {
            let (micros, days, months) = interval_from_iso(as_str(value, ty)?)?;
            out.put_i64(micros);
            out.put_i32(days);
            out.put_i32(months);
            Ok(IsNull::No)
        }
        Type::UUID => uuid::Uuid::parse_str(as_str(value, ty)?)?.to_sql(ty, out),
        Type::JSON | Type::JSONB => value.to_sql(ty, out),
        _ => Err(unsupported(ty)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(text: &str) -> String {
        let mut buf = BytesMut::new();
        numeric_from_str(text, &mut buf).unwrap();
        numeric_to_string(&buf).unwrap()
    }

    #[test]
    fn numerics_round_trip_exactly() {
        for text in [
            "0",
            "1",
            "-1",
            "12345.6789",
            "0.0001",
            "-0.5",
            "100000000",
            "3.14159265358979323846",
            "10.500",
            "0.000",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(numeric_round_trip(text), text, "{text}");
        }
        assert_eq!(numeric_round_trip("007.50"), "7.50");
        assert!(numeric_from_str("1e3", &mut BytesMut::new()).is_err());
    }

    #[test]
    fn intervals_round_trip_through_iso_8601() {
        for text in [
            "P1Y2M3DT4H5M6.5S",
            "PT0S",
            "P-3D",
            "PT-0.25S",
            "P14M",
            "PT36H",
        ] {
            let (micros, days, months) = interval_from_iso(text).unwrap();
            let mut raw = Vec::new();
            raw.extend(micros.to_be_bytes());
            raw.extend(days.to_be_bytes());
            raw.extend(months.to_be_bytes());
            let expected = if text == "P14M" { "P1Y2M" } else { text };
            assert_eq!(interval_to_iso(&raw).unwrap(), expected, "{text}");
        }
    }
}
