//! MySQL values (binary protocol) to JSON text, and JSON parameters to MySQL
//! values.
//!
//! Results: integers of every width as JSON numbers written from the
//! integer itself (an unsigned `bigint` beyond 2^53 keeps every digit in the
//! text; a reader that parses into f64 loses them, as with PostgreSQL's
//! `int8`); `tinyint(1)` (MySQL's `bool`) as the number it holds (0, 1 or any
//! other); `decimal` as an exact string; `float` as the shortest text that
//! reads back as the same `f32`, `double` likewise; `bit(n)` as its number;
//! `year` as a number; text types, `enum` and `set` as strings; binary
//! strings, blobs and geometry as base64; `date` `2024-01-31`, `datetime`
//! and `timestamp` `2024-01-31T13:45:00.5` (a timestamp in UTC: the session
//! time zone is `+00:00`), `time` `-838:59:59`, `100:00:00.25` (negative
//! and beyond 24 hours kept); MySQL's `json` as JSON in the server's text;
//! NULL as null.
//!
//! Parameters: null, booleans (1/0), integers (exact, signed or unsigned),
//! other numbers and strings as text for the server to convert (every digit
//! of a decimal reaches it), arrays and objects as their JSON text.

use std::fmt::Write as _;

use base64::Engine as _;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::{Params, Row, Value};
use serde_json::value::RawValue;

use crate::bindings::sluice::connector::sql::Column;
use crate::capability::sql::failure::{SqlFailure, SqlResult};
use crate::capability::sql::json_text::{push_json_string, push_json_text};

/// The character set number of binary strings.
const BINARY_CHARSET: u16 = 63;

/// The guest's parameters (JSON texts) as positional MySQL values.
pub(super) fn params(values: &[String]) -> SqlResult<Params> {
    if values.is_empty() {
        return Ok(Params::Empty);
    }
    values
        .iter()
        .enumerate()
        .map(|(i, text)| {
            param(text)
                .map_err(|why| SqlFailure::InvalidValue(format!("parameter {}: {why}", i + 1)))
        })
        .collect::<SqlResult<Vec<_>>>()
        .map(Params::Positional)
}

fn param(text: &str) -> Result<Value, String> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let text = raw.get().trim();
    Ok(match text.as_bytes().first() {
        Some(b'n') => Value::NULL,
        Some(b't') => Value::Int(1),
        Some(b'f') => Value::Int(0),
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            Value::Bytes(s.into_bytes())
        }
        Some(b'[' | b'{') => Value::Bytes(text.as_bytes().to_vec()),
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Value::UInt(u)
            } else {
                Value::Bytes(text.as_bytes().to_vec())
            }
        }
    })
}

/// The columns as the guest reads them.
pub(super) fn columns_of(columns: &[mysql_async::Column]) -> Vec<Column> {
    columns
        .iter()
        .map(|c| Column {
            name: c.name_str().into_owned(),
            type_name: type_name(c),
        })
        .collect()
}

/// The type's SQL name (`int unsigned`, `varchar`, `blob`, `json`, …).
fn type_name(column: &mysql_async::Column) -> String {
    let flags = column.flags();
    let binary = column.character_set() == BINARY_CHARSET;
    let base = match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY => "tinyint",
        ColumnType::MYSQL_TYPE_SHORT => "smallint",
        ColumnType::MYSQL_TYPE_INT24 => "mediumint",
        ColumnType::MYSQL_TYPE_LONG => "int",
        ColumnType::MYSQL_TYPE_LONGLONG => "bigint",
        ColumnType::MYSQL_TYPE_FLOAT => "float",
        ColumnType::MYSQL_TYPE_DOUBLE => "double",
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => "decimal",
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => "date",
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => "time",
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => "datetime",
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        ColumnType::MYSQL_TYPE_YEAR => "year",
        ColumnType::MYSQL_TYPE_BIT => "bit",
        ColumnType::MYSQL_TYPE_JSON => "json",
        ColumnType::MYSQL_TYPE_GEOMETRY => "geometry",
        ColumnType::MYSQL_TYPE_NULL => "null",
        _ if flags.contains(ColumnFlags::ENUM_FLAG) => "enum",
        _ if flags.contains(ColumnFlags::SET_FLAG) => "set",
        ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if binary {
                "blob"
            } else {
                "text"
            }
        }
        ColumnType::MYSQL_TYPE_STRING => {
            if binary {
                "binary"
            } else {
                "char"
            }
        }
        _ => {
            if binary {
                "varbinary"
            } else {
                "varchar"
            }
        }
    };
    if flags.contains(ColumnFlags::UNSIGNED_FLAG) && is_numeric(column.column_type()) {
        format!("{base} unsigned")
    } else {
        base.to_string()
    }
}

fn is_numeric(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::MYSQL_TYPE_TINY
            | ColumnType::MYSQL_TYPE_SHORT
            | ColumnType::MYSQL_TYPE_INT24
            | ColumnType::MYSQL_TYPE_LONG
            | ColumnType::MYSQL_TYPE_LONGLONG
            | ColumnType::MYSQL_TYPE_FLOAT
            | ColumnType::MYSQL_TYPE_DOUBLE
            | ColumnType::MYSQL_TYPE_DECIMAL
            | ColumnType::MYSQL_TYPE_NEWDECIMAL
    )
}

/// A row as a JSON array of its values' JSON text.
pub(super) fn row_json(row: &Row) -> SqlResult<String> {
    let columns = row.columns_ref();
    let mut text = String::with_capacity(2 + 16 * columns.len());
    text.push('[');
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let value = row.as_ref(i).unwrap_or(&Value::NULL);
        write_json(column, value, &mut text).map_err(|why| {
            SqlFailure::InvalidValue(format!("column `{}`: {why}", column.name_str()))
        })?;
    }
    text.push(']');
    Ok(text)
}

/// Write the JSON text of one value of `column` to `out`.
fn write_json(column: &mysql_async::Column, value: &Value, out: &mut String) -> Result<(), String> {
    let ty = column.column_type();
    match value {
        Value::NULL => out.push_str("null"),
        Value::Int(i) => write!(out, "{i}").map_err(|e| e.to_string())?,
        Value::UInt(u) => write!(out, "{u}").map_err(|e| e.to_string())?,
        Value::Float(f) => write_float(f.is_finite(), ryu::Buffer::new().format(*f), out)?,
        Value::Double(d) => write_float(d.is_finite(), ryu::Buffer::new().format(*d), out)?,
        Value::Date(year, month, day, hour, minute, second, micros) => {
            let date = format!("{year:04}-{month:02}-{day:02}");
            let text = if matches!(
                ty,
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
            ) {
                date
            } else {
                format!(
                    "{date}T{hour:02}:{minute:02}:{second:02}{}",
                    fraction(*micros)
                )
            };
            push_json_string(&text, out);
        }
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(*days) * 24 + u64::from(*hours);
            let sign = if *negative { "-" } else { "" };
            push_json_string(
                &format!(
                    "{sign}{hours:02}:{minutes:02}:{seconds:02}{}",
                    fraction(*micros)
                ),
                out,
            );
        }
        Value::Bytes(bytes) => write_bytes(column, bytes, out)?,
    }
    Ok(())
}

/// A float as the shortest text that reads back the same (`text`, from ryu).
fn write_float(finite: bool, text: &str, out: &mut String) -> Result<(), String> {
    if !finite {
        return Err(format!("{text} has no JSON number"));
    }
    out.push_str(text);
    Ok(())
}

/// The values that arrive as bytes: decimals, bits, json, strings, binaries.
fn write_bytes(column: &mysql_async::Column, bytes: &[u8], out: &mut String) -> Result<(), String> {
    match column.column_type() {
        ColumnType::MYSQL_TYPE_BIT => {
            if bytes.len() > 8 {
                return Err("a bit value wider than 64 bits".into());
            }
            let n = bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            write!(out, "{n}").map_err(|e| e.to_string())
        }
        ColumnType::MYSQL_TYPE_JSON => {
            let text = std::str::from_utf8(bytes).map_err(|_| "json that is not UTF-8")?;
            push_json_text(text, out);
            Ok(())
        }
        ColumnType::MYSQL_TYPE_GEOMETRY => {
            push_json_string(
                &base64::engine::general_purpose::STANDARD.encode(bytes),
                out,
            );
            Ok(())
        }
        _ if column.character_set() == BINARY_CHARSET
            && !matches!(
                column.column_type(),
                ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL
            ) =>
        {
            push_json_string(
                &base64::engine::general_purpose::STANDARD.encode(bytes),
                out,
            );
            Ok(())
        }
        _ => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| "text that is not UTF-8 (read it with CAST(col AS BINARY))")?;
            push_json_string(text, out);
            Ok(())
        }
    }
}

/// `.5` for 500000 µs, nothing for 0.
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let digits = format!("{micros:06}");
    format!(".{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_keep_every_digit_and_their_kind() {
        assert_eq!(param("null").unwrap(), Value::NULL);
        assert_eq!(param("true").unwrap(), Value::Int(1));
        assert_eq!(param("-5").unwrap(), Value::Int(-5));
        assert_eq!(
            param("18446744073709551615").unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            param("0.12345678901234567890").unwrap(),
            Value::Bytes(b"0.12345678901234567890".to_vec())
        );
        assert_eq!(
            param("123456789012345678901234567890").unwrap(),
            Value::Bytes(b"123456789012345678901234567890".to_vec())
        );
        assert_eq!(param("\"a\\\"b\"").unwrap(), Value::Bytes(b"a\"b".to_vec()));
        assert_eq!(
            param("{\"a\": [1]}").unwrap(),
            Value::Bytes(b"{\"a\": [1]}".to_vec())
        );
        assert!(param("{oops").is_err());
    }

    #[test]
    fn strings_are_escaped_only_when_they_need_it() {
        for text in [
            "plain",
            "héllo 👋",
            "",
            "a\"b",
            "back\\slash",
            "line\nbreak",
            "\u{1}",
        ] {
            let mut out = String::new();
            push_json_string(text, &mut out);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text, "{out}");
        }
    }

    #[test]
    fn fractions_are_trimmed_and_zero_is_none() {
        assert_eq!(fraction(0), "");
        assert_eq!(fraction(500_000), ".5");
        assert_eq!(fraction(1), ".000001");
    }
}
