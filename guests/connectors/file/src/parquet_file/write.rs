//! Records written as a Parquet file: snappy pages, one row group per
//! [`ROWS_PER_GROUP`] records, every column optional (a missing field or
//! `null` is a null).
//!
//! The schema is given (`options.schema`: field name → `boolean`, `int64`,
//! `double`, `string`, `json`, `timestamp`, `date` or `binary`) or inferred
//! from the records, in the order fields first appear: booleans → boolean,
//! integers → int64, numbers → double, strings → string, objects or arrays
//! (or anything mixed with them) → json (the value's JSON text), other
//! mixes → string (a non-string as its JSON text). Inference never reads a
//! string as a timestamp or date: give the schema for those.

use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type as SchemaType;
use serde_json::{Map, Value};
use sluice_sdk::{ConnectorError, Result};

use std::sync::Arc;

/// Records per row group.
pub const ROWS_PER_GROUP: usize = 65_536;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    Int64,
    Double,
    String,
    Json,
    Timestamp,
    Date,
    Binary,
}

impl Kind {
    const NAMES: [(&'static str, Kind); 8] = [
        ("boolean", Kind::Boolean),
        ("int64", Kind::Int64),
        ("double", Kind::Double),
        ("string", Kind::String),
        ("json", Kind::Json),
        ("timestamp", Kind::Timestamp),
        ("date", Kind::Date),
        ("binary", Kind::Binary),
    ];

    fn parse(name: &str) -> Option<Kind> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }

    /// The kind of one value, `None` for null.
    fn of(value: &Value) -> Option<Kind> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(n) if n.is_i64() => Kind::Int64,
            Value::Number(_) => Kind::Double,
            Value::String(_) => Kind::String,
            Value::Array(_) | Value::Object(_) => Kind::Json,
        })
    }

    /// The kind holding values of both.
    fn join(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Int64, Kind::Double) | (Kind::Double, Kind::Int64) => Kind::Double,
            (Kind::Json, _) | (_, Kind::Json) => Kind::Json,
            _ => Kind::String,
        }
    }
}

/// The columns to write: `options.schema` when given, else inferred.
///
/// # Errors
///
/// `invalid-request` for a schema that is not an object of known type
/// names, or a record with a field the given schema lacks.
pub fn columns(
    rows: &[Map<String, Value>],
    options: Option<&Value>,
) -> Result<Vec<(String, Kind)>> {
    let Some(given) = options.and_then(|o| o.get("schema")) else {
        let mut columns: Vec<(String, Option<Kind>)> = Vec::new();
        for row in rows {
            for (name, value) in row {
                let kind = Kind::of(value);
                match columns.iter_mut().find(|(n, _)| n == name) {
                    Some((_, seen)) => {
                        *seen = match (*seen, kind) {
                            (Some(a), Some(b)) => Some(a.join(b)),
                            (a, b) => a.or(b),
                        }
                    }
                    None => columns.push((name.clone(), kind)),
                }
            }
        }
        return Ok(columns
            .into_iter()
            .map(|(name, kind)| (name, kind.unwrap_or(Kind::String)))
            .collect());
    };
    let names = Kind::NAMES.map(|(n, _)| n).join(", ");
    let Value::Object(given) = given else {
        return Err(ConnectorError::InvalidRequest(format!(
            "option `schema`: an object of field name to type ({names})"
        )));
    };
    let columns = given
        .iter()
        .map(|(name, kind)| {
            kind.as_str()
                .and_then(Kind::parse)
                .map(|kind| (name.clone(), kind))
                .ok_or_else(|| {
                    ConnectorError::InvalidRequest(format!(
                        "option `schema`: field `{name}` has type {kind}; the types are {names}"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    for (i, row) in rows.iter().enumerate() {
        if let Some(extra) = row.keys().find(|k| !columns.iter().any(|(n, _)| n == *k)) {
            return Err(ConnectorError::InvalidRequest(format!(
                "record {i}: field `{extra}` is not in option `schema`"
            )));
        }
    }
    Ok(columns)
}

/// The Parquet file of `rows` in `columns`.
///
/// # Errors
///
/// `invalid-request` naming the record and field of a value its column's
/// type cannot hold.
pub fn encode(rows: &[Map<String, Value>], columns: &[(String, Kind)]) -> Result<Vec<u8>> {
    let failed = |e: parquet::errors::ParquetError| {
        ConnectorError::Internal(format!("encoding Parquet: {e}"))
    };
    let fields = columns
        .iter()
        .map(|(name, kind)| field_type(name, *kind).map(Arc::new))
        .collect::<parquet::errors::Result<Vec<_>>>()
        .map_err(failed)?;
    let schema = SchemaType::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map_err(failed)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!(
            "sluice file connector {}",
            env!("CARGO_PKG_VERSION")
        ))
        .build();
    let mut out = Vec::new();
    let mut writer =
        SerializedFileWriter::new(&mut out, Arc::new(schema), Arc::new(props)).map_err(failed)?;
    for (group, chunk) in rows.chunks(ROWS_PER_GROUP).enumerate() {
        let first = group * ROWS_PER_GROUP;
        let mut row_group = writer.next_row_group().map_err(failed)?;
        for (name, kind) in columns {
            let mut column = row_group
                .next_column()
                .map_err(failed)?
                .ok_or_else(|| ConnectorError::Internal("a column too few".into()))?;
            write_column(column.untyped(), chunk, first, name, *kind)?;
            column.close().map_err(failed)?;
        }
        row_group.close().map_err(failed)?;
    }
    writer.close().map_err(failed)?;
    Ok(out)
}

fn field_type(name: &str, kind: Kind) -> parquet::errors::Result<SchemaType> {
    let (physical, logical) = match kind {
        Kind::Boolean => (PhysicalType::BOOLEAN, None),
        Kind::Int64 => (PhysicalType::INT64, None),
        Kind::Double => (PhysicalType::DOUBLE, None),
        Kind::String => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
        Kind::Json => (PhysicalType::BYTE_ARRAY, Some(LogicalType::Json)),
        Kind::Timestamp => (
            PhysicalType::INT64,
            Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
        ),
        Kind::Date => (PhysicalType::INT32, Some(LogicalType::Date)),
        Kind::Binary => (PhysicalType::BYTE_ARRAY, None),
    };
    SchemaType::primitive_type_builder(name, physical)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(logical)
        .build()
}

/// One column of `rows` (the first being record `first`) into `writer`.
fn write_column(
    writer: &mut ColumnWriter<'_>,
    rows: &[Map<String, Value>],
    first: usize,
    name: &str,
    kind: Kind,
) -> Result<()> {
    let failed = |e: parquet::errors::ParquetError| {
        ConnectorError::Internal(format!("encoding Parquet column `{name}`: {e}"))
    };
    let mut levels = Vec::with_capacity(rows.len());
    let present = rows.iter().enumerate().filter_map(|(i, row)| {
        let value = row.get(name).filter(|v| !v.is_null());
        levels.push(i16::from(value.is_some()));
        value.map(|v| (first + i, v))
    });
    let wrong = |i: usize, v: &Value, what: &str| {
        ConnectorError::InvalidRequest(format!(
            "record {i}: field `{name}` is {v}, which a {what} column cannot hold"
        ))
    };
    match (writer, kind) {
        (ColumnWriter::BoolColumnWriter(w), _) => {
            let values = present
                .map(|(i, v)| v.as_bool().ok_or_else(|| wrong(i, v, "boolean")))
                .collect::<Result<Vec<_>>>()?;
            w.write_batch(&values, Some(&levels), None)
                .map_err(failed)?;
        }
        (ColumnWriter::Int64ColumnWriter(w), Kind::Timestamp) => {
            let values = present
                .map(|(i, v)| {
                    v.as_str()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.timestamp_micros())
                        .ok_or_else(|| wrong(i, v, "timestamp (RFC 3339 text)"))
                })
                .collect::<Result<Vec<_>>>()?;
            w.write_batch(&values, Some(&levels), None)
                .map_err(failed)?;
        }
        (ColumnWriter::Int64ColumnWriter(w), _) => {
            let values = present
                .map(|(i, v)| v.as_i64().ok_or_else(|| wrong(i, v, "int64")))
                .collect::<Result<Vec<_>>>()?;
            w.write_batch(&values, Some(&levels), None)
                .map_err(failed)?;
        }
        (ColumnWriter::Int32ColumnWriter(w), _) => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            let values = present
                .map(|(i, v)| {
                    v.as_str()
                        .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                        .and_then(|d| i32::try_from((d - epoch).num_days()).ok())
                        .ok_or_else(|| wrong(i, v, "date (YYYY-MM-DD)"))
                })
                .collect::<Result<Vec<_>>>()?;
            w.write_batch(&values, Some(&levels), None)
                .map_err(failed)?;
        }
        (ColumnWriter::DoubleColumnWriter(w), _) => {
            let values = present
                .map(|(i, v)| v.as_f64().ok_or_else(|| wrong(i, v, "double")))
                .collect::<Result<Vec<_>>>()?;
            w.write_batch(&values, Some(&levels), None)
                .map_err(failed)?;
        }
        (ColumnWriter::ByteArrayColumnWriter(w), kind) => {
            let values = present
                .map(|(i, v)| {
                    let bytes = match (kind, v) {
                        (Kind::Binary, Value::String(s)) => {
                            use base64::Engine as _;
                            base64::engine::general_purpose::STANDARD
                                .decode(s)
                                .map_err(|_| wrong(i, v, "binary (base64 text)"))?
                        }
                        (Kind::Binary, _) => return Err(wrong(i, v, "binary (base64 text)")),
                        (Kind::String, Value::String(s)) => s.clone().into_bytes(),
                        _ => v.to_string().into_bytes(),
                    };
                    Ok(ByteArray::from(bytes))
                })
                .collect::<Result<Vec<_>>>()?;
            w.write_batch(&values, Some(&levels), None)
                .map_err(failed)?;
        }
        _ => {
            return Err(ConnectorError::Internal(format!(
                "column `{name}`: no writer for {kind:?}"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(json: &str) -> Vec<Map<String, Value>> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn inference_widens_and_keeps_first_seen_order() {
        let rows = rows(
            r#"[{"b": 1, "a": true, "n": null}, {"b": 2.5, "c": "x", "a": false}, {"c": 3, "d": [1]}]"#,
        );
        assert_eq!(
            columns(&rows, None).unwrap(),
            vec![
                ("b".into(), Kind::Double),
                ("a".into(), Kind::Boolean),
                ("n".into(), Kind::String),
                ("c".into(), Kind::String),
                ("d".into(), Kind::Json),
            ]
        );
    }

    #[test]
    fn a_given_schema_refuses_unknown_types_and_fields() {
        let rows = rows(r#"[{"a": 1, "z": 2}]"#);
        let schema = serde_json::json!({"schema": {"a": "int64"}});
        assert!(columns(&rows, Some(&schema))
            .unwrap_err()
            .to_string()
            .contains("field `z` is not in option `schema`"));
        let bad = serde_json::json!({"schema": {"a": "int128"}});
        assert!(matches!(
            columns(&rows, Some(&bad)),
            Err(ConnectorError::InvalidRequest(_))
        ));
    }

    #[test]
    fn a_value_its_column_cannot_hold_names_record_and_field() {
        let rows = rows(r#"[{"t": "2024-01-02T03:04:05Z"}, {"t": "yesterday"}]"#);
        let err = encode(&rows, &[("t".into(), Kind::Timestamp)]).unwrap_err();
        assert!(err.to_string().contains("record 1: field `t`"), "{err}");
    }
}
