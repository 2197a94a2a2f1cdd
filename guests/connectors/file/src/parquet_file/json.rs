//! Parquet values as JSON.
//!
//! Integers and floats are numbers (NaN and the infinities, which JSON
//! lacks, are the strings `NaN`, `Infinity`, `-Infinity`); decimals are
//! strings with every digit (`"1234.50"`); strings are strings; binary is
//! base64; dates are `YYYY-MM-DD`; times `HH:MM:SS.ffffff`; timestamps
//! RFC 3339 with `Z` when the column is adjusted to UTC and without an
//! offset when it is local; structs are objects, lists arrays and maps
//! objects (keys as text).

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat};
use parquet::basic::{LogicalType, TimeUnit};
use parquet::data_type::Decimal;
use parquet::record::{Field, Row};
use parquet::schema::types::Type as SchemaType;
use serde_json::{json, Map, Number, Value};

/// How a top-level column's values read, beyond what the row decoder says
/// (it hands nanosecond timestamps and times over as plain integers, and
/// does not say whether a timestamp is in UTC).
#[derive(Debug, Clone, Copy)]
enum Hint {
    Timestamp { utc: bool, per_second: i64 },
    Time { per_second: i64 },
}

/// The hints of a file's top-level columns, by name.
#[derive(Debug, Default)]
pub struct Hints(HashMap<String, Hint>);

impl Hints {
    /// The hints of a file's schema.
    pub fn of(schema: &SchemaType) -> Self {
        let mut hints = HashMap::new();
        for field in schema.get_fields() {
            if !field.is_primitive() {
                continue;
            }
            let hint = match field.get_basic_info().logical_type_ref() {
                Some(LogicalType::Timestamp(t)) => Hint::Timestamp {
                    utc: t.is_adjusted_to_u_t_c,
                    per_second: per_second(&t.unit),
                },
                Some(LogicalType::Time(t)) => Hint::Time {
                    per_second: per_second(&t.unit),
                },
                _ => continue,
            };
            hints.insert(field.name().to_string(), hint);
        }
        Self(hints)
    }

    /// A row as a JSON object.
    pub fn row_to_json(&self, row: &Row) -> Value {
        let mut object = Map::with_capacity(row.len());
        for (name, field) in row.get_column_iter() {
            let value = match (self.0.get(name.as_str()), field) {
                (
                    Some(Hint::Timestamp { utc, per_second }),
                    Field::Long(n) | Field::TimestampMillis(n) | Field::TimestampMicros(n),
                ) => {
                    // The decoder already scaled millis and micros to their
                    // own variants; only a raw integer keeps the column's unit.
                    let per_second = match field {
                        Field::TimestampMillis(_) => 1_000,
                        Field::TimestampMicros(_) => 1_000_000,
                        _ => *per_second,
                    };
                    timestamp(*n, per_second, *utc)
                }
                (Some(Hint::Time { per_second }), Field::Long(n)) => time(*n, *per_second),
                _ => to_json(field),
            };
            object.insert(name.clone(), value);
        }
        Value::Object(object)
    }
}

/// The JSON Schema of a column's values as [`to_json`] renders them.
pub fn schema_of(field: &SchemaType) -> Value {
    use parquet::basic::{ConvertedType as C, Type as P};
    let info = field.get_basic_info();
    if !field.is_primitive() {
        let fields = field.get_fields();
        let is_list = matches!(info.logical_type_ref(), Some(LogicalType::List))
            || info.converted_type() == C::LIST;
        let is_map = matches!(info.logical_type_ref(), Some(LogicalType::Map))
            || matches!(info.converted_type(), C::MAP | C::MAP_KEY_VALUE);
        return if is_list {
            // LIST > repeated group > element (or the legacy two-level form).
            let element = fields
                .first()
                .map(|repeated| match repeated.get_fields() {
                    [element] if !repeated.is_primitive() => schema_of(element),
                    _ => schema_of(repeated),
                })
                .unwrap_or_else(|| json!({}));
            json!({ "type": "array", "items": element })
        } else if is_map {
            let value = fields
                .first()
                .and_then(|pair| pair.get_fields().get(1))
                .map_or_else(|| json!({}), |v| schema_of(v));
            json!({ "type": "object", "additionalProperties": value })
        } else {
            let properties: Map<String, Value> = fields
                .iter()
                .map(|f| (f.name().to_string(), schema_of(f)))
                .collect();
            json!({ "type": "object", "properties": properties })
        };
    }
    match (field.get_physical_type(), info.converted_type()) {
        (_, C::DECIMAL) => json!({ "type": "string", "format": "decimal" }),
        (_, C::DATE) => json!({ "type": "string", "format": "date" }),
        (_, C::TIME_MILLIS | C::TIME_MICROS) => json!({ "type": "string", "format": "time" }),
        (_, C::TIMESTAMP_MILLIS | C::TIMESTAMP_MICROS) | (P::INT96, _) => {
            json!({ "type": "string", "format": "date-time" })
        }
        (P::INT64, C::NONE) => match info.logical_type_ref() {
            Some(LogicalType::Timestamp(_)) => json!({ "type": "string", "format": "date-time" }),
            Some(LogicalType::Time(_)) => json!({ "type": "string", "format": "time" }),
            _ => json!({ "type": "integer" }),
        },
        (P::BOOLEAN, _) => json!({ "type": "boolean" }),
        (P::INT32 | P::INT64, _) => json!({ "type": "integer" }),
        (P::FLOAT | P::DOUBLE, _) => json!({ "type": ["number", "string"] }),
        (P::BYTE_ARRAY, C::UTF8 | C::ENUM | C::JSON) => json!({ "type": "string" }),
        (P::FIXED_LEN_BYTE_ARRAY, _)
            if matches!(info.logical_type_ref(), Some(LogicalType::Float16)) =>
        {
            json!({ "type": ["number", "string"] })
        }
        _ => json!({ "type": "string", "contentEncoding": "base64" }),
    }
}

fn per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::MILLIS => 1_000,
        TimeUnit::MICROS => 1_000_000,
        TimeUnit::NANOS => 1_000_000_000,
    }
}

/// A value as JSON (nested timestamps read as UTC).
pub fn to_json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => Value::from(*n),
        Field::Short(n) => Value::from(*n),
        Field::Int(n) => Value::from(*n),
        Field::Long(n) => Value::from(*n),
        Field::UByte(n) => Value::from(*n),
        Field::UShort(n) => Value::from(*n),
        Field::UInt(n) => Value::from(*n),
        Field::ULong(n) => Value::from(*n),
        Field::Float16(n) => float(f64::from(*n)),
        Field::Float(n) => float(f64::from(*n)),
        Field::Double(n) => float(*n),
        Field::Decimal(d) => Value::String(decimal(d)),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b.data()))
        }
        Field::Date(days) => Value::String(date(*days)),
        Field::TimeMillis(ms) => time(i64::from(*ms), 1_000),
        Field::TimeMicros(us) => time(*us, 1_000_000),
        Field::TimestampMillis(ms) => timestamp(*ms, 1_000, true),
        Field::TimestampMicros(us) => timestamp(*us, 1_000_000, true),
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(name, field)| (name.clone(), to_json(field)))
                .collect(),
        ),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(to_json).collect()),
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(key, value)| {
                    let key = match to_json(key) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
    }
}

fn float(n: f64) -> Value {
    match Number::from_f64(n) {
        Some(n) => Value::Number(n),
        None if n.is_nan() => Value::String("NaN".into()),
        None if n > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn date(days: i32) -> String {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::days(i64::from(days))))
        .map_or_else(|| days.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

/// `ticks` of `1/per_second` s since midnight as `HH:MM:SS[.fraction]`.
fn time(ticks: i64, per_second: i64) -> Value {
    let secs = ticks.div_euclid(per_second);
    let nanos = ticks.rem_euclid(per_second) * (1_000_000_000 / per_second);
    match NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, nanos as u32) {
        Some(t) if (0..86_400).contains(&secs) => {
            Value::String(t.format("%H:%M:%S%.f").to_string())
        }
        _ => Value::from(ticks),
    }
}

/// `ticks` of `1/per_second` s since the epoch, RFC 3339 (with `Z` in UTC,
/// without an offset for a local timestamp).
fn timestamp(ticks: i64, per_second: i64, utc: bool) -> Value {
    let secs = ticks.div_euclid(per_second);
    let nanos = ticks.rem_euclid(per_second) * (1_000_000_000 / per_second);
    let digits = match per_second {
        1_000 => SecondsFormat::Millis,
        1_000_000 => SecondsFormat::Micros,
        _ => SecondsFormat::Nanos,
    };
    match DateTime::from_timestamp(secs, nanos as u32) {
        Some(t) if utc => Value::String(t.to_rfc3339_opts(digits, true)),
        Some(t) => {
            let text = t.to_rfc3339_opts(digits, true);
            Value::String(text.trim_end_matches('Z').to_string())
        }
        None => Value::from(ticks),
    }
}

/// A decimal's unscaled big-endian two's-complement bytes, scaled, as text.
fn decimal(d: &Decimal) -> String {
    let bytes = d.data();
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // The magnitude, big-endian, then its decimal digits by long division.
    let mut magnitude: Vec<u8> = if negative {
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for byte in m.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut rest = 0u32;
        for byte in magnitude.iter_mut() {
            let value = (rest << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            rest = value % 10;
        }
        digits.push(b'0' + rest as u8);
    }
    let scale = usize::try_from(d.scale()).unwrap_or(0);
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(whole).unwrap_or("0"));
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(fraction).unwrap_or("0"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_every_digit_and_sign() {
        assert_eq!(decimal(&Decimal::from_i32(123_450, 9, 2)), "1234.50");
        assert_eq!(decimal(&Decimal::from_i64(-5, 9, 3)), "-0.005");
        assert_eq!(decimal(&Decimal::from_i32(0, 9, 0)), "0");
        assert_eq!(
            decimal(&Decimal::from_i64(i64::MIN, 19, 0)),
            "-9223372036854775808"
        );
        let big = Decimal::from_bytes(
            parquet::data_type::ByteArray::from(vec![0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            30,
            4,
        );
        assert_eq!(decimal(&big), "472236648286964521.3696");
    }

    #[test]
    fn times_and_timestamps_are_rfc3339() {
        assert_eq!(timestamp(1_500, 1_000, true), "1970-01-01T00:00:01.500Z");
        assert_eq!(
            timestamp(-1, 1_000_000, false),
            "1969-12-31T23:59:59.999999"
        );
        assert_eq!(
            timestamp(1, 1_000_000_000, true),
            "1970-01-01T00:00:00.000000001Z"
        );
        assert_eq!(time(3_723_000, 1_000), "01:02:03");
        assert_eq!(date(19_000), "2022-01-08");
    }

    #[test]
    fn non_finite_floats_are_named() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(float(0.5), 0.5);
    }
}
