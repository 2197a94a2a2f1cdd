//! Stream entries: from XRANGE / XREADGROUP / XCLAIM replies to records,
//! and from records to XADD field lists.

use serde_json::{Map, Value};
use sluice_sdk::{ConnectorError, Record, RecordBuilder, Result};

use crate::resp::{unexpected, Reply};

/// One stream entry: its id and its field/value pairs (none when the entry
/// was deleted while it was pending).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub fields: Option<Vec<(String, String)>>,
}

/// The entries of an `[[id, [field, value, …]], …]` reply.
pub fn entries(reply: Reply) -> Result<Vec<Entry>> {
    reply
        .into_array("stream entries")?
        .into_iter()
        .map(entry)
        .collect()
}

fn entry(reply: Reply) -> Result<Entry> {
    let mut parts = reply.into_array("a stream entry")?.into_iter();
    let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(ConnectorError::Unavailable(
            "a stream entry came without its id or fields".into(),
        ));
    };
    let id = id.into_text("an entry id")?;
    if fields.is_nil() {
        return Ok(Entry { id, fields: None });
    }
    let mut flat = fields.into_array("entry fields")?.into_iter();
    let mut pairs = Vec::new();
    while let Some(name) = flat.next() {
        let value = flat
            .next()
            .ok_or_else(|| unexpected("entry fields (odd count)", &Reply::Array(None)))?;
        pairs.push((
            name.into_text("a field name")?,
            value.into_text("a field value")?,
        ));
    }
    Ok(Entry {
        id,
        fields: Some(pairs),
    })
}

/// The entries of each stream in an XREADGROUP reply (`[[key, entries], …]`, nil when none came).
pub fn read_reply(reply: Reply) -> Result<Vec<Entry>> {
    let mut all = Vec::new();
    for stream in reply.into_array("XREADGROUP")? {
        let mut parts = stream.into_array("a stream of XREADGROUP")?.into_iter();
        parts.next();
        if let Some(list) = parts.next() {
            all.extend(entries(list)?);
        }
    }
    Ok(all)
}

/// How a record's data maps onto an entry's fields.
#[derive(Debug, Clone)]
pub enum Layout {
    /// Each top-level field is a stream field; strings as they are, other
    /// values as JSON text.
    Fields,
    /// The whole data object is one JSON text in this field.
    Payload(String),
}

impl Layout {
    /// The field/value pairs an XADD of `data` writes.
    pub fn fields(&self, data: &str) -> Result<Vec<(String, String)>> {
        let value: Value = serde_json::from_str(data)
            .map_err(|e| ConnectorError::InvalidRequest(format!("record data: {e}")))?;
        match self {
            Layout::Payload(field) => Ok(vec![(field.clone(), value.to_string())]),
            Layout::Fields => {
                let Value::Object(map) = value else {
                    return Err(ConnectorError::InvalidRequest(
                        "record data must be a JSON object (its fields become the entry's fields)"
                            .into(),
                    ));
                };
                if map.is_empty() {
                    return Err(ConnectorError::InvalidRequest(
                        "a stream entry needs at least one field; the record's data is empty"
                            .into(),
                    ));
                }
                Ok(map
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect())
            }
        }
    }

    /// The record an entry of stream `key` becomes; `redelivered` when it
    /// was delivered before (pending, claimed or nacked).
    pub fn record(&self, key: &str, entry: Entry, redelivered: bool) -> Result<Record> {
        let fields = entry.fields.unwrap_or_default();
        let data = match self {
            Layout::Payload(name) => {
                let text = fields
                    .iter()
                    .find(|(field, _)| field == name)
                    .map(|(_, value)| value.as_str())
                    .ok_or_else(|| {
                        ConnectorError::InvalidRequest(format!(
                            "entry {} of `{key}` has no field `{name}` (payload_field)",
                            entry.id
                        ))
                    })?;
                serde_json::from_str(text).map_err(|e| {
                    ConnectorError::InvalidRequest(format!(
                        "entry {} of `{key}`: field `{name}` is not JSON: {e}",
                        entry.id
                    ))
                })?
            }
            Layout::Fields => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<Map<_, _>>(),
            ),
        };
        let mut builder = RecordBuilder::new(data)
            .metadata(serde_json::json!({ "stream": key, "redelivered": redelivered }));
        if let Some(millis) = entry
            .id
            .split('-')
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
        {
            builder = builder.timestamp(millis);
        }
        Ok(builder.id(entry.id).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn entries_become_records_with_their_id_and_time() {
        let reply = Reply::Array(Some(vec![Reply::Array(Some(vec![
            bulk("1700000000000-3"),
            Reply::Array(Some(vec![bulk("name"), bulk("Ada"), bulk("n"), bulk("1")])),
        ]))]));
        let entry = entries(reply).unwrap().remove(0);
        let record = Layout::Fields.record("s", entry, false).unwrap();
        assert_eq!(record.id.as_deref(), Some("1700000000000-3"));
        assert_eq!(record.data, r#"{"name":"Ada","n":"1"}"#);
        assert_eq!(record.timestamp, Some(1_700_000_000_000));
    }

    #[test]
    fn a_payload_field_carries_the_whole_data() {
        let layout = Layout::Payload("json".into());
        let fields = layout.fields(r#"{"n":1,"tags":["a"]}"#).unwrap();
        assert_eq!(
            fields,
            vec![("json".into(), r#"{"n":1,"tags":["a"]}"#.into())]
        );
        let entry = Entry {
            id: "1-0".into(),
            fields: Some(fields),
        };
        let record = layout.record("s", entry, true).unwrap();
        assert_eq!(record.data, r#"{"n":1,"tags":["a"]}"#);
    }

    #[test]
    fn plain_fields_keep_strings_and_write_other_values_as_json() {
        let fields = Layout::Fields
            .fields(r#"{"a":"x","b":2,"c":null}"#)
            .unwrap();
        assert_eq!(
            fields,
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "2".into()),
                ("c".into(), "null".into())
            ]
        );
        assert!(Layout::Fields.fields("{}").is_err());
        assert!(Layout::Fields.fields("[1]").is_err());
    }
}
