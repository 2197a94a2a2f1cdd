//! Rows rendered as records in the host (`row-stream.forward-records`): each
//! value's JSON text, as the driver wrote it, is spliced once into the
//! record's data object, so a streamed table is never parsed or printed
//! again in the guest.

use serde_json::value::RawValue;

use super::failure::{SqlFailure, SqlResult};
use super::json_text::push_json_text;
use crate::bindings::sluice::connector::sql::{Column, RecordShape};
use crate::bindings::Record;

/// A [`RecordShape`] checked against a stream's columns, with each visible
/// column's `"name":` escaped once.
pub(super) struct Shaper<'a> {
    shape: &'a RecordShape,
    keys_json: Vec<String>,
    json_text: Vec<bool>,
    width: usize,
}

impl<'a> Shaper<'a> {
    /// Check `shape` against `columns`.
    ///
    /// # Errors
    ///
    /// [`SqlFailure::InvalidValue`] for a position past the last column.
    pub(super) fn new(shape: &'a RecordShape, columns: &[Column]) -> SqlResult<Self> {
        let width = columns.len();
        let check = |what: &str, at: u32| {
            if (at as usize) < width {
                Ok(at as usize)
            } else {
                Err(SqlFailure::InvalidValue(format!(
                    "record shape: {what} column {at} is past the last of {width} columns"
                )))
            }
        };
        if shape.visible as usize > width {
            return Err(SqlFailure::InvalidValue(format!(
                "record shape: {} visible columns of {width}",
                shape.visible
            )));
        }
        for &at in &shape.id_columns {
            check("id", at)?;
        }
        for &at in &shape.position_columns {
            check("position", at)?;
        }
        let mut json_text = vec![false; width];
        for &at in &shape.json_text_columns {
            json_text[check("JSON text", at)?] = true;
        }
        Ok(Self {
            shape,
            keys_json: columns
                .iter()
                .take(shape.visible as usize)
                .map(|c| format!("{}:", serde_json::Value::String(c.name.clone())))
                .collect(),
            json_text,
            width,
        })
    }

    /// The records of `rows` (JSON arrays the host wrote), and the last
    /// row's position (a JSON array).
    pub(super) fn batch(
        &self,
        rows: &[String],
        columns: &[Column],
    ) -> SqlResult<(Vec<Record>, String)> {
        let mut records = Vec::with_capacity(rows.len());
        let mut last = Vec::new();
        for (n, row) in rows.iter().enumerate() {
            let values = self.values(row)?;
            records.push(self.record(&values, columns)?);
            if n + 1 == rows.len() {
                last = values;
            }
        }
        let mut position = String::from("[");
        for (i, &at) in self.shape.position_columns.iter().enumerate() {
            if i > 0 {
                position.push(',');
            }
            position.push_str(last.get(at as usize).map_or("null", |v| v.get()));
        }
        position.push(']');
        Ok((records, position))
    }

    fn values<'r>(&self, row: &'r str) -> SqlResult<Vec<&'r RawValue>> {
        let values: Vec<&RawValue> = serde_json::from_str(row).map_err(|e| {
            SqlFailure::Unavailable(format!("a row the host wrote is not JSON: {e}"))
        })?;
        if values.len() != self.width {
            return Err(SqlFailure::Unavailable(format!(
                "a row has {} values for {} columns",
                values.len(),
                self.width
            )));
        }
        Ok(values)
    }

    fn record(&self, values: &[&RawValue], columns: &[Column]) -> SqlResult<Record> {
        let mut data = String::with_capacity(
            values.iter().map(|v| v.get().len()).sum::<usize>()
                + self.keys_json.iter().map(String::len).sum::<usize>()
                + 2,
        );
        data.push('{');
        for (i, key) in self.keys_json.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            data.push_str(key);
            let raw = values[i].get();
            if self.json_text[i] && raw != "null" {
                let text: String = serde_json::from_str(raw).map_err(|_| {
                    SqlFailure::InvalidValue(format!("column `{}` is not text", columns[i].name))
                })?;
                if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
                    return Err(SqlFailure::InvalidValue(format!(
                        "column `{}` holds text that is not JSON",
                        columns[i].name
                    )));
                }
                push_json_text(&text, &mut data);
            } else {
                data.push_str(raw);
            }
        }
        data.push('}');
        let id = if self.shape.id_columns.is_empty() {
            None
        } else {
            let mut id = String::new();
            for (n, &at) in self.shape.id_columns.iter().enumerate() {
                if n > 0 {
                    id.push(',');
                }
                let raw = values[at as usize].get();
                if raw.starts_with('"') {
                    let text: String = serde_json::from_str(raw).map_err(|e| {
                        SqlFailure::Unavailable(format!("a key the host wrote is not JSON: {e}"))
                    })?;
                    id.push_str(&text);
                } else {
                    id.push_str(raw);
                }
            }
            Some(id)
        };
        Ok(Record {
            id,
            data,
            metadata: None,
            timestamp: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Vec<Column> {
        names
            .iter()
            .map(|n| Column {
                name: (*n).to_string(),
                type_name: "text".into(),
            })
            .collect()
    }

    #[test]
    fn rows_become_records_with_ids_and_the_last_position() {
        let columns = columns(&["id", "na\"me", "doc", "k2"]);
        let shape = RecordShape {
            visible: 3,
            id_columns: vec![0, 3],
            position_columns: vec![3, 0],
            json_text_columns: vec![2],
        };
        let shaper = Shaper::new(&shape, &columns).unwrap();
        let rows = vec![
            r#"[1,"a","{\"x\":\n1}","b,c"]"#.to_string(),
            r#"[2,null,null,"d"]"#.to_string(),
        ];
        let (records, last_position) = shaper.batch(&rows, &columns).unwrap();
        assert_eq!(records[0].data, r#"{"id":1,"na\"me":"a","doc":{"x": 1}}"#);
        assert_eq!(records[0].id.as_deref(), Some("1,b,c"));
        assert_eq!(records[1].data, r#"{"id":2,"na\"me":null,"doc":null}"#);
        assert_eq!(last_position, r#"["d",2]"#);
    }

    #[test]
    fn a_json_text_column_that_is_not_json_is_named() {
        let columns = columns(&["doc"]);
        let shape = RecordShape {
            visible: 1,
            id_columns: vec![],
            position_columns: vec![],
            json_text_columns: vec![0],
        };
        let shaper = Shaper::new(&shape, &columns).unwrap();
        let err = shaper
            .batch(&[r#"["{not json"]"#.to_string()], &columns)
            .unwrap_err();
        assert!(
            matches!(&err, SqlFailure::InvalidValue(m) if m.contains("`doc`")),
            "{err:?}"
        );
    }

    #[test]
    fn a_shape_past_the_columns_is_refused() {
        let columns = columns(&["a", "b"]);
        for shape in [
            RecordShape {
                visible: 3,
                id_columns: vec![],
                position_columns: vec![],
                json_text_columns: vec![],
            },
            RecordShape {
                visible: 1,
                id_columns: vec![2],
                position_columns: vec![],
                json_text_columns: vec![],
            },
            RecordShape {
                visible: 1,
                id_columns: vec![],
                position_columns: vec![u32::MAX],
                json_text_columns: vec![],
            },
        ] {
            assert!(matches!(
                Shaper::new(&shape, &columns),
                Err(SqlFailure::InvalidValue(_))
            ));
        }
    }
}
