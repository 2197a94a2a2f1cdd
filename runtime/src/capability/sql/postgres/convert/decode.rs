//! Server values (binary form) to JSON text.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use postgres_protocol::types as wire;
use serde_json::Value;
use tokio_postgres::types::{FromSql, Kind, Type};

use super::scalar::{interval_to_iso, numeric_to_string, uuid_text};
use super::{unsupported, BoxError, MICROS_PER_DAY};
use crate::capability::sql::json_text::{push_json_string, push_json_text};

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
        // The commonest types are written straight into `out`, without a
        // `Value` in between (the same text `Value` would print).
        Type::INT2 => push_integer(i16::from_sql(ty, raw)?, out),
        Type::INT4 => push_integer(i32::from_sql(ty, raw)?, out),
        Type::INT8 => push_integer(i64::from_sql(ty, raw)?, out),
        Type::FLOAT8 => push_float(f64::from_sql(ty, raw)?, out),
        Type::FLOAT4 => push_float(f64::from(f32::from_sql(ty, raw)?), out),
        Type::BOOL => out.push_str(if bool::from_sql(ty, raw)? {
            "true"
        } else {
            "false"
        }),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            push_json_string(<&str>::from_sql(ty, raw)?, out)
        }
        _ => write!(out, "{}", decode_scalar(ty, raw)?)?,
    }
    Ok(())
}

fn push_integer(value: impl itoa::Integer, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// A finite float as serde_json prints it (with the same formatter); NaN
/// and the infinities as the strings [`float`] gives them.
fn push_float(value: f64, out: &mut String) {
    if value.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(value));
    } else {
        let _ = write!(out, "{}", float(value));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_paths_write_what_a_value_prints() {
        use tokio_postgres::types::ToSql;
        let cases: Vec<(Type, Box<dyn ToSql + Sync>)> = vec![
            (Type::INT2, Box::new(i16::MIN)),
            (Type::INT4, Box::new(-42i32)),
            (Type::INT8, Box::new(i64::MAX)),
            (Type::BOOL, Box::new(true)),
            (Type::FLOAT8, Box::new(0.1f64 + 0.2)),
            (Type::FLOAT8, Box::new(1e300f64)),
            (Type::FLOAT8, Box::new(-0.0f64)),
            (Type::FLOAT8, Box::new(3.0f64)),
            (Type::FLOAT8, Box::new(f64::NAN)),
            (Type::FLOAT8, Box::new(f64::NEG_INFINITY)),
            (Type::FLOAT4, Box::new(1.1f32)),
            (Type::TEXT, Box::new("a \"b\"\n\u{1}".to_string())),
            (Type::BPCHAR, Box::new("abc ".to_string())),
        ];
        for (ty, value) in cases {
            let mut raw = bytes::BytesMut::new();
            value.to_sql_checked(&ty, &mut raw).unwrap();
            let mut direct = String::new();
            write_json(&ty, Some(&raw), &mut direct).unwrap();
            assert_eq!(
                direct,
                decode_scalar(&ty, &raw).unwrap().to_string(),
                "{ty}"
            );
        }
    }
}
