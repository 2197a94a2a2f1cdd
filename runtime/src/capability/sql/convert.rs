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
//! | date, time, timestamp | `2024-01-31`, `13:45:00.5` (`24:00:00` too), `2024-01-31T13:45:00.5` |
//! | timestamptz | RFC 3339 in UTC, `2024-01-31T13:45:00.5Z` |
//! | infinite date, timestamp(tz) | `"infinity"`, `"-infinity"` |
//! | interval | ISO 8601 duration, `P1Y2M3DT4H5M6.5S` |
//! | uuid | string |
//! | json, jsonb | the JSON value, in the server's own text (every digit kept) |
//! | domains | as their base type |
//! | arrays of these | arrays (one dimension, starting at index 1; others are an error) |
//! | NULL | null |
//!
//! Parameters go the other way, by the type the server inferred for each
//! placeholder, from the parameter's exact JSON text (a number never passes
//! through f64). A parameter of any other type (inet, ranges, money, …) is
//! sent in text form and parsed by the server; a result column of one is an
//! error naming the cast (`col::text`).

use std::error::Error as StdError;
use std::fmt::Write as _;

use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use postgres_protocol::types as wire;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type};

type BoxError = Box<dyn StdError + Sync + Send>;

fn unsupported(ty: &Type) -> BoxError {
    format!(
        "PostgreSQL type `{}` has no JSON mapping; cast it in the query, e.g. `col::text`",
        ty.name()
    )
    .into()
}

/// Write the JSON text of one raw binary value of type `ty` (None = NULL)
/// to `out`. json and jsonb keep the server's text exactly (numbers beyond
/// f64 included); line breaks between their tokens become spaces, so a
/// value never splits a line of NDJSON.
pub fn write_json(ty: &Type, raw: Option<&[u8]>, out: &mut String) -> Result<(), BoxError> {
    let Some(raw) = raw else {
        out.push_str("null");
        return Ok(());
    };
    match ty.kind() {
        Kind::Array(member) => return write_array(member, raw, out),
        Kind::Domain(base) => return write_json(base, Some(raw), out),
        Kind::Enum(_) => {
            write!(
                out,
                "{}",
                Value::String(std::str::from_utf8(raw)?.to_string())
            )?;
            return Ok(());
        }
        _ => {}
    }
    match *ty {
        Type::JSON => push_json_text(std::str::from_utf8(raw)?, out),
        Type::JSONB => match raw.split_first() {
            Some((1, text)) => push_json_text(std::str::from_utf8(text)?, out),
            _ => return Err("unsupported jsonb binary format version".into()),
        },
        _ => write!(out, "{}", decode_scalar(ty, raw)?)?,
    }
    Ok(())
}

/// JSON text from the server, on one line (a raw line break can only sit
/// between tokens: inside a string the server requires it escaped).
fn push_json_text(text: &str, out: &mut String) {
    if text.contains(['\n', '\r']) {
        out.extend(
            text.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
    } else {
        out.push_str(text);
    }
}

/// A one-dimensional array whose lower bound is 1 (PostgreSQL's default):
/// other bounds and more dimensions have no faithful JSON array, so they are
/// refused with the way around rather than silently re-based.
fn write_array(member: &Type, raw: &[u8], out: &mut String) -> Result<(), BoxError> {
    use fallible_iterator::FallibleIterator as _;
    let array = wire::array_from_sql(raw)?;
    let dimensions: Vec<wire::ArrayDimension> = array.dimensions().collect()?;
    if dimensions.len() > 1 {
        return Err(
            "multi-dimensional arrays have no JSON mapping; unnest them in the query \
             or read the column as text (`col::text`)"
                .into(),
        );
    }
    if let Some(dimension) = dimensions.first() {
        if dimension.lower_bound != 1 {
            return Err(format!(
                "an array starting at index {} has no JSON mapping (JSON arrays carry no \
                 bounds); re-base it in a view (`ARRAY(SELECT unnest(col))`) or read it as text (`col::text`)",
                dimension.lower_bound
            )
            .into());
        }
    }
    out.push('[');
    let mut values = array.values();
    let mut first = true;
    while let Some(value) = values.next()? {
        if !first {
            out.push(',');
        }
        first = false;
        write_json(member, value, out)?;
    }
    out.push(']');
    Ok(())
}

/// Microseconds in a day: `time '24:00:00'`, which PostgreSQL allows.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A scalar of a type with a binary mapping (not arrays, enums, domains or json).
fn decode_scalar(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
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
        Type::TIME => match wire::time_from_sql(raw)? {
            MICROS_PER_DAY => Value::String("24:00:00".into()),
            _ => Value::String(trim_fraction(
                NaiveTime::from_sql(ty, raw)?
                    .format("%H:%M:%S%.f")
                    .to_string(),
            )),
        },
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
        Type::UUID => Value::String(uuid_text(raw)?),
        _ => return Err(unsupported(ty)),
    })
}

/// Whether values of `ty` travel in PostgreSQL's binary form (the types in
/// the module's table); any other type's parameters are sent in its text form
/// and parsed by the server.
pub fn binary_mapped(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Array(member) => binary_mapped(member),
        Kind::Domain(base) => binary_mapped(base),
        Kind::Enum(_) => true,
        _ => matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
                | Type::DATE
                | Type::TIME
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::INTERVAL
                | Type::UUID
                | Type::JSON
                | Type::JSONB
        ),
    }
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

/// One column of a row as the server sent it (binary form, None = NULL),
/// for [`write_json`].
pub struct RawColumn<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawColumn<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(RawColumn(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(RawColumn(None))
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

/// Binary `numeric` from decimal text (`-12.340`, `1.5e3`: every digit kept).
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
    let plain = plain_decimal(body).ok_or_else(bad)?;
    let (int_part, frac_part) = plain.split_once('.').unwrap_or((&plain, ""));
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

/// The exponent a decimal may carry (`numeric` holds up to 131072 digits
/// before the point and 16383 after).
const MAX_EXPONENT: i64 = 140_000;

/// `1.25e3` → `1250`, `15e-3` → `0.015`; text without an exponent as it is.
/// Digits are moved, never computed, so none is lost.
fn plain_decimal(body: &str) -> Option<String> {
    let Some((mantissa, exponent)) = body.split_once(['e', 'E']) else {
        return Some(body.to_string());
    };
    let exponent: i64 = exponent.parse().ok()?;
    if exponent.abs() > MAX_EXPONENT {
        return None;
    }
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int_part}{frac_part}");
    let point = int_part.len() as i64 + exponent;
    Some(if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int_digits, frac_digits) = digits.split_at(point as usize);
        format!("{int_digits}.{frac_digits}")
    })
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

/// A parameter as its exact JSON text, encoded by the type the server
/// inferred for its placeholder: numbers go from their text (never through
/// f64), json/jsonb as written, and types without a binary mapping in their
/// text form for the server to parse.
#[derive(Debug)]
pub struct JsonParam(pub Box<RawValue>);

/// One JSON value, classified without losing a number's text.
enum Json<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(Cow<'a, str>),
    Array(&'a str),
    Object(&'a str),
}

impl<'a> Json<'a> {
    fn of(raw: &'a RawValue) -> Result<Self, BoxError> {
        let text = raw.get().trim();
        Ok(match text.as_bytes().first() {
            Some(b'n') => Json::Null,
            Some(b't') => Json::Bool(true),
            Some(b'f') => Json::Bool(false),
            Some(b'"') => Json::String(serde_json::from_str::<Cow<'a, str>>(text)?),
            Some(b'[') => Json::Array(text),
            Some(b'{') => Json::Object(text),
            _ => Json::Number(text),
        })
    }

    /// The value as text: a string's contents, anything else as written.
    fn text(&self) -> Cow<'a, str> {
        match self {
            Json::Null => Cow::Borrowed("null"),
            Json::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Json::String(s) => s.clone(),
            Json::Number(t) | Json::Array(t) | Json::Object(t) => Cow::Borrowed(t),
        }
    }

    /// A string's contents (numbers, objects and arrays are refused).
    fn string(&self, ty: &Type) -> Result<Cow<'a, str>, BoxError> {
        match self {
            Json::String(s) => Ok(s.clone()),
            _ => Err(format!("{} needs a JSON string, got {}", ty.name(), self.text()).into()),
        }
    }

    /// A number's text, or a string's (`"12"`), trimmed.
    fn numeric_text(&self, ty: &Type) -> Result<Cow<'a, str>, BoxError> {
        match self {
            Json::Number(t) => Ok(Cow::Borrowed(t)),
            Json::String(s) => Ok(Cow::Owned(s.trim().to_string())),
            _ => Err(format!("{} is not a number ({})", self.text(), ty.name()).into()),
        }
    }
}

fn integer(value: &Json, ty: &Type) -> Result<i64, BoxError> {
    let text = value.numeric_text(ty)?;
    text.parse()
        .map_err(|_| format!("`{text}` is not an integer ({})", ty.name()).into())
}

fn float_value(value: &Json, ty: &Type) -> Result<f64, BoxError> {
    let text = value.numeric_text(ty)?;
    match text.as_ref() {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        other => other
            .parse()
            .map_err(|_| format!("`{other}` is not a number ({})", ty.name()).into()),
    }
}

impl ToSql for JsonParam {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode(&self.0, ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if binary_mapped(ty) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

fn encode(raw: &RawValue, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    let value = Json::of(raw)?;
    if let Json::Null = value {
        return Ok(IsNull::Yes);
    }
    if !binary_mapped(ty) {
        encode_text(&value, ty, out)?;
        return Ok(IsNull::No);
    }
    match ty.kind() {
        Kind::Array(member) => {
            let Json::Array(text) = value else {
                return Err(
                    format!("{} needs a JSON array, got {}", ty.name(), value.text()).into(),
                );
            };
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            let dimension = wire::ArrayDimension {
                len: i32::try_from(items.len())?,
                lower_bound: 1,
            };
            wire::array_to_sql(
                Some(dimension),
                member.oid(),
                items,
                |item, buf| match encode(item, member, buf)? {
                    IsNull::Yes => Ok(postgres_protocol::IsNull::Yes),
                    IsNull::No => Ok(postgres_protocol::IsNull::No),
                },
                out,
            )?;
            return Ok(IsNull::No);
        }
        Kind::Domain(base) => return encode(raw, base, out),
        Kind::Enum(_) => {
            out.put_slice(value.text().as_bytes());
            return Ok(IsNull::No);
        }
        _ => {}
    }
    match *ty {
        Type::BOOL => match value {
            Json::Bool(b) => b.to_sql(ty, out),
            Json::String(s) if s == "true" || s == "false" => (s == "true").to_sql(ty, out),
            other => Err(format!("bool needs true or false, got {}", other.text()).into()),
        },
        Type::INT2 => i16::try_from(integer(&value, ty)?)?.to_sql(ty, out),
        Type::INT4 => i32::try_from(integer(&value, ty)?)?.to_sql(ty, out),
        Type::INT8 => integer(&value, ty)?.to_sql(ty, out),
        Type::OID => u32::try_from(integer(&value, ty)?)?.to_sql(ty, out),
        Type::FLOAT4 => (float_value(&value, ty)? as f32).to_sql(ty, out),
        Type::FLOAT8 => float_value(&value, ty)?.to_sql(ty, out),
        Type::NUMERIC => {
            numeric_from_str(&value.numeric_text(ty)?, out)?;
            Ok(IsNull::No)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            value.text().as_ref().to_sql(ty, out)
        }
        Type::BYTEA => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.string(ty)?.as_ref())
                .map_err(|e| format!("bytea needs base64: {e}"))?;
            bytes.to_sql(ty, out)
        }
        Type::DATE => {
            match value.string(ty)?.as_ref() {
                "infinity" => wire::date_to_sql(i32::MAX, out),
                "-infinity" => wire::date_to_sql(i32::MIN, out),
                text => {
                    NaiveDate::parse_from_str(text, "%Y-%m-%d")?.to_sql(ty, out)?;
                }
            }
            Ok(IsNull::No)
        }
        Type::TIME => {
            let text = value.string(ty)?;
            if is_end_of_day(&text) {
                wire::time_to_sql(MICROS_PER_DAY, out);
            } else {
                NaiveTime::parse_from_str(&text, "%H:%M:%S%.f")?.to_sql(ty, out)?;
            }
            Ok(IsNull::No)
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            match value.string(ty)?.as_ref() {
                "infinity" => wire::timestamp_to_sql(i64::MAX, out),
                "-infinity" => wire::timestamp_to_sql(i64::MIN, out),
                text if *ty == Type::TIMESTAMPTZ => {
                    DateTime::parse_from_rfc3339(text)?
                        .with_timezone(&Utc)
                        .to_sql(ty, out)?;
                }
                text => {
                    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))?
                        .to_sql(ty, out)?;
                }
            }
            Ok(IsNull::No)
        }
        Type::INTERVAL => {
            let (micros, days, months) = interval_from_iso(&value.string(ty)?)?;
            out.put_i64(micros);
            out.put_i32(days);
            out.put_i32(months);
            Ok(IsNull::No)
        }
        Type::UUID => {
            out.put_slice(&uuid_bytes(&value.string(ty)?)?);
            Ok(IsNull::No)
        }
        // The JSON text as it was written, digits and all.
        Type::JSON => {
            out.put_slice(raw.get().trim().as_bytes());
            Ok(IsNull::No)
        }
        Type::JSONB => {
            out.put_u8(1);
            out.put_slice(raw.get().trim().as_bytes());
            Ok(IsNull::No)
        }
        _ => Err(unsupported(ty)),
    }
}

/// A binary uuid as `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`.
fn uuid_text(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("bad uuid".into());
    }
    let mut text = String::with_capacity(36);
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        write!(text, "{byte:02x}")?;
    }
    Ok(text)
}

/// The 16 bytes of a uuid written as 32 hex digits, hyphenated or not,
/// optionally in braces (the forms PostgreSQL accepts).
fn uuid_bytes(text: &str) -> Result<[u8; 16], BoxError> {
    let bad = || -> BoxError { format!("`{text}` is not a uuid").into() };
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let digits: Vec<u8> = inner.bytes().filter(|&b| b != b'-').collect();
    if digits.len() != 32 || inner.starts_with('-') || inner.ends_with('-') {
        return Err(bad());
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        bytes[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(bytes)
}

/// `24:00:00` (with any zero fraction): the end of the day, a valid `time`.
fn is_end_of_day(text: &str) -> bool {
    text.strip_prefix("24:00:00").is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix('.')
                .is_some_and(|f| f.bytes().all(|b| b == b'0'))
    })
}

/// The text form of a value for a type without a binary mapping (inet,
/// ranges, money, composite, …): the server's own input function parses it.
/// Arrays become PostgreSQL array literals with every element quoted.
fn encode_text(value: &Json, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    let text = match (value, ty.kind()) {
        (Json::Array(items), Kind::Array(_)) => {
            let items: Vec<&RawValue> = serde_json::from_str(items)?;
            let mut literal = String::from("{");
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    literal.push(',');
                }
                match Json::of(item)? {
                    Json::Null => literal.push_str("NULL"),
                    Json::Array(_) => {
                        return Err("multi-dimensional array parameters are not supported".into())
                    }
                    element => {
                        literal.push('"');
                        for c in element.text().chars() {
                            if c == '"' || c == '\\' {
                                literal.push('\\');
                            }
                            literal.push(c);
                        }
                        literal.push('"');
                    }
                }
            }
            literal.push('}');
            Cow::Owned(literal)
        }
        _ => value.text(),
    };
    if text.contains('\0') {
        return Err(format!("{} cannot hold a NUL character", ty.name()).into());
    }
    out.put_slice(text.as_bytes());
    Ok(())
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
        assert_eq!(numeric_round_trip("1e3"), "1000");
        assert_eq!(numeric_round_trip("1.25E+3"), "1250");
        assert_eq!(numeric_round_trip("15e-3"), "0.015");
        assert_eq!(numeric_round_trip("-1.5e-1"), "-0.15");
        assert_eq!(
            numeric_round_trip("0.12345678901234567890"),
            "0.12345678901234567890"
        );
        assert!(numeric_from_str("1e", &mut BytesMut::new()).is_err());
        assert!(numeric_from_str("1e999999", &mut BytesMut::new()).is_err());
        assert!(numeric_from_str("12abc", &mut BytesMut::new()).is_err());
    }

    #[test]
    fn uuids_round_trip_in_every_accepted_form() {
        let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for form in [
            text,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        ] {
            assert_eq!(
                uuid_text(&uuid_bytes(form).unwrap()).unwrap(),
                text,
                "{form}"
            );
        }
        for bad in [
            "",
            "a0eebc99",
            "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "g0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert!(uuid_bytes(bad).is_err(), "{bad}");
        }
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
