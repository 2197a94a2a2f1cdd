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

    /// The record as one JSON object: its data, plus `_id`, `_metadata` and
    /// `_timestamp` when set.
    ///
    /// # Errors
    ///
    /// [`Error::Host`] when the connector produced data that is not JSON.
    pub fn to_json(&self) -> Result<Value, Error> {
        let mut data: Value = serde_json::from_str(&self.data).map_err(|e| {
            Error::Host(format!("connector returned a record that is not JSON: {e}"))
        })?;
        if let Value::Object(map) = &mut data {
            if let Some(id) = &self.id {
                map.insert("_id".into(), Value::String(id.clone()));
            }
            if let Some(metadata) = &self.metadata {
                if let Ok(value) = serde_json::from_str(metadata) {
                    map.insert("_metadata".into(), value);
                }
            }
            if let Some(ts) = self.timestamp {
                map.insert("_timestamp".into(), Value::from(ts));
            }
        }
        Ok(data)
    }
}

impl FilterOp {
    /// Parse an operator name: `eq ne lt le gt ge in not-in like is-null is-not-null`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] listing the valid names.
    pub fn parse(name: &str) -> Result<Self, Error> {
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
                return Err(Error::InvalidConfig(format!(
                    "unknown filter operator `{other}`; use one of eq ne lt le gt ge in not-in like is-null is-not-null"
                )))
            }
        })
    }
}

impl SortDirection {
    /// Parse `asc` or `desc`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for anything else.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "asc" => Ok(SortDirection::Asc),
            "desc" => Ok(SortDirection::Desc),
            other => Err(Error::InvalidConfig(format!(
                "unknown sort direction `{other}`; use `asc` or `desc`"
            ))),
        }
    }
}
