//! JSON parameters to server values, by the type the server inferred.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use postgres_protocol::types as wire;
use serde_json::value::RawValue;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type};

use super::scalar::{interval_from_iso, numeric_from_str, uuid_bytes};
use super::{binary_mapped, unsupported, BoxError, MICROS_PER_DAY};

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
