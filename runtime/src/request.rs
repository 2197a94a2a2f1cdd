//! Convenience constructors for requests and conversions of records to JSON.

use serde_json::Value;

use crate::bindings::{
    ExecuteRequest, FetchRequest, Filter, FilterOp, Pagination, Record, SortDirection, SortField,
};
use crate::error::Error;

impl FetchRequest {
    /// A request for every record of `resource`.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            filters: Vec::new(),
            sort: Vec::new(),
            fields: Vec::new(),
            pagination: None,
            options: None,
        }
    }

    /// Add a filter; `value` is JSON text.
    pub fn filter(mut self, field: &str, op: FilterOp, value: &str) -> Self {
        self.filters.push(Filter {
            field: field.into(),
            op,
            value: value.into(),
        });
        self
    }

    /// Add a sort key.
    pub fn sort(mut self, field: &str, direction: SortDirection) -> Self {
        self.sort.push(SortField {
            field: field.into(),
            direction,
        });
        self
    }

    /// Keep only these fields.
    pub fn fields<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Ask for one page.
    pub fn page(mut self, page_size: u32, offset: Option<u64>, cursor: Option<String>) -> Self {
        self.pagination = Some(Pagination {
            page_size,
            offset,
            cursor,
        });
        self
    }

    /// Set connector-specific options.
    pub fn options(mut self, options: &Value) -> Self {
        self.options = Some(options.to_string());
        self
    }
}

impl ExecuteRequest {
    /// An `operation` on `resource` with `records`.
    pub fn new(
        resource: impl Into<String>,
        operation: impl Into<String>,
        records: Vec<Record>,
    ) -> Self {
        Self {
            resource: resource.into(),
            operation: operation.into(),
            records,
            options: None,
        }
    }
}

impl Record {
    /// A record holding `data` (a JSON object).
    pub fn from_json(data: &Value) -> Self {
        Self {
            id: None,
            data: data.to_string(),
            metadata: None,
            timestamp: None,
        }
    }

    /// The record as one JSON object, the form every front door speaks
    /// (see [`crate::wire`]): `{"id", "data", "metadata", "timestamp"}`, with
    /// `id`, `metadata` and `timestamp` only when set. The data stays exactly
    /// the connector's: identity is never mixed into it.
    ///
    /// # Errors
    ///
    /// [`Error::Host`] when the connector produced data that is not JSON.
    pub fn to_json(&self) -> Result<Value, Error> {
        let data: Value = serde_json::from_str(&self.data).map_err(not_json)?;
        let mut object = serde_json::Map::new();
        if let Some(id) = &self.id {
            object.insert("id".into(), Value::String(id.clone()));
        }
        object.insert("data".into(), data);
        if let Some(metadata) = self.metadata_value() {
            object.insert("metadata".into(), metadata);
        }
        if let Some(ts) = self.timestamp {
            object.insert("timestamp".into(), Value::from(ts));
        }
        Ok(Value::Object(object))
    }

    /// Append [`Record::to_json`]'s object to `out` as JSON text. The data is
    /// checked but not rebuilt: its text is copied in, which is what lets
    /// `sluice serve` answer large pages and streams without parsing every
    /// record into a tree and printing it again.
    ///
    /// # Errors
    ///
    /// [`Error::Host`] when the connector produced data that is not JSON.
    pub fn write_json(&self, out: &mut String) -> Result<(), Error> {
        let text = self.data.trim();
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
        out.push('{');
        if let Some(id) = &self.id {
            out.push_str("\"id\":");
            out.push_str(&Value::String(id.clone()).to_string());
            out.push(',');
        }
        out.push_str("\"data\":");
        out.push_str(text);
        if let Some(metadata) = self.metadata_value() {
            out.push_str(",\"metadata\":");
            out.push_str(&metadata.to_string());
        }
        if let Some(ts) = self.timestamp {
            out.push_str(",\"timestamp\":");
            out.push_str(&ts.to_string());
        }
        out.push('}');
        Ok(())
    }

    /// The metadata as JSON; metadata that is not JSON is left out.
    fn metadata_value(&self) -> Option<Value> {
        self.metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
    }
}

fn not_json(e: serde_json::Error) -> Error {
    Error::Host(format!("connector returned a record that is not JSON: {e}"))
}

impl FilterOp {
    /// Parse an operator name: `eq ne lt le gt ge in not-in like is-null is-not-null`.
    ///
    /// # Errors
    ///
    /// A sentence naming the unknown operator and listing the valid names.
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "eq" => FilterOp::Eq,
            "ne" => FilterOp::Ne,
            "lt" => FilterOp::Lt,
            "le" => FilterOp::Le,
            "gt" => FilterOp::Gt,
            "ge" => FilterOp::Ge,
            "in" => FilterOp::In,
            "not-in" => FilterOp::NotIn,
            "like" => FilterOp::Like,
            "is-null" => FilterOp::IsNull,
            "is-not-null" => FilterOp::IsNotNull,
            other => {
                return Err(format!(
                    "unknown filter operator `{other}`; use one of eq ne lt le gt ge in not-in like is-null is-not-null"
                ))
            }
        })
    }
}

impl SortDirection {
    /// Parse `asc` or `desc`.
    ///
    /// # Errors
    ///
    /// A sentence naming the unknown direction.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "asc" => Ok(SortDirection::Asc),
            "desc" => Ok(SortDirection::Desc),
            other => Err(format!(
                "unknown sort direction `{other}`; use `asc` or `desc`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &str, id: Option<&str>, metadata: Option<&str>, ts: Option<i64>) -> Record {
        Record {
            id: id.map(str::to_string),
            data: data.to_string(),
            metadata: metadata.map(str::to_string),
            timestamp: ts,
        }
    }

    fn written(record: &Record) -> Result<Value, Error> {
        let mut out = String::new();
        record.write_json(&mut out)?;
        Ok(serde_json::from_str(&out).expect("valid JSON text"))
    }

    #[test]
    fn write_json_is_to_json_as_text() {
        let cases = [
            record(r#"{"a":1,"b":[1,2]}"#, None, None, None),
            record(
                r#" {"a":"x\"y"} "#,
                Some("7"),
                Some(r#"{"line":3}"#),
                Some(42),
            ),
            record("{}", Some("k\"1"), None, Some(-1)),
            record(r#"{"_id":"own","id":2,"a":1}"#, Some("host"), None, None),
            record("[1,2]", None, None, None),
            record("[1,2]", Some("x"), None, None),
            record(r#"{"a":1}"#, None, Some("not json"), None),
        ];
        for case in &cases {
            assert_eq!(written(case).unwrap(), case.to_json().unwrap(), "{case:?}");
        }
    }

    #[test]
    fn identity_stays_out_of_the_data() {
        let own = record(r#"{"_id":"own","id":2}"#, Some("host"), None, Some(5));
        assert_eq!(
            own.to_json().unwrap(),
            serde_json::json!({ "id": "host", "data": { "_id": "own", "id": 2 }, "timestamp": 5 })
        );
        let bare = record(r#"{"a":1}"#, None, None, None);
        assert_eq!(
            bare.to_json().unwrap(),
            serde_json::json!({ "data": { "a": 1 } })
        );
    }

    #[test]
    fn write_json_refuses_what_is_not_json() {
        for bad in [r#"{"a":}"#, "{oops}", "", "{\"a\":1} trailing"] {
            assert!(written(&record(bad, None, None, None)).is_err(), "{bad}");
            assert!(
                written(&record(bad, Some("1"), None, None)).is_err(),
                "{bad}"
            );
        }
    }
}
