//! Filters, sort, field selection and pagination over in-memory records.
//!
//! Connectors whose upstream cannot do the work itself (files, simple APIs)
//! hand their records to [`apply`]; streaming connectors compile the filters
//! once with [`Predicate::compile`] and test each record with
//! [`Predicate::matches`].
//!
//! Comparison rules: numbers compare numerically (`1 == 1.0`), strings
//! lexicographically, booleans `false < true`; a string that parses as a
//! number compares numerically against a number (so CSV text columns filter
//! naturally). Values of different kinds are unequal and unordered, so `lt`,
//! `le`, `gt`, `ge` and `like` are false for them. Field names may be dotted
//! paths into nested objects (`address.city`).
//!
//! NULL, the one rule every connector follows (the postgres connector's SQL
//! included): a missing field is null; `eq null` matches null (like
//! `is-null`) and `ne null` matches everything else (like `is-not-null`);
//! `eq v` never matches null and `ne v` does (null is not `v`); `in` matches
//! null only when its list holds `null`, and `not-in` matches exactly what
//! `in` does not; `lt`, `le`, `gt`, `ge` and `like` never match null, nor
//! compare anything with a null operand.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::{
    ConnectorError, FetchRequest, FetchResponse, Filter, FilterOp, RecordBuilder, Result,
    SortDirection, SortField,
};

/// Filters compiled once: operand JSON parsed, operators checked.
#[derive(Debug, Clone, Default)]
pub struct Predicate {
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
struct Condition {
    field: String,
    op: FilterOp,
    operand: Value,
}

impl Predicate {
    /// Compile `filters`.
    ///
    /// # Errors
    ///
    /// `invalid-request` when an operand is not JSON, or `in`/`not-in` is not
    /// given an array, or `like` is not given a string.
    pub fn compile(filters: &[Filter]) -> Result<Self> {
        let conditions = filters
            .iter()
            .map(|f| {
                let operand = parse_operand(f)?;
                Ok(Condition {
                    field: f.field.clone(),
                    op: f.op,
                    operand,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { conditions })
    }

    /// Whether `record` (a JSON object) satisfies every condition.
    pub fn matches(&self, record: &Value) -> bool {
        self.matches_fields(|field| record.get(field))
    }

    /// [`Predicate::matches`] on a record known only through `field`, which
    /// gives a top-level field's value (`None` when absent): for a reader
    /// that holds just the fields [`Predicate::top_level_fields`] names,
    /// without building the record.
    pub fn matches_fields<'v>(&self, field: impl Fn(&str) -> Option<&'v Value>) -> bool {
        self.conditions.iter().all(|c| c.matches(&field))
    }

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The top-level fields the conditions read (a dotted path `a.b` reads
    /// `a.b` itself or `a`): a record holding only these matches like the whole one.
    pub fn top_level_fields(&self) -> Vec<String> {
        let mut fields = Vec::new();
        for condition in &self.conditions {
            fields.push(condition.field.clone());
            if let Some((first, _)) = condition.field.split_once('.') {
                fields.push(first.to_string());
            }
        }
        fields
    }
}

fn parse_operand(filter: &Filter) -> Result<Value> {
    if matches!(filter.op, FilterOp::IsNull | FilterOp::IsNotNull) {
        return Ok(Value::Null);
    }
    let value: Value = serde_json::from_str(&filter.value).map_err(|err| {
        ConnectorError::InvalidRequest(format!(
            "filter on `{}`: value `{}` is not JSON ({err}); quote strings, e.g. \"\\\"text\\\"\"",
            filter.field, filter.value
        ))
    })?;
    match filter.op {
        FilterOp::In | FilterOp::NotIn if !value.is_array() => {
            Err(ConnectorError::InvalidRequest(format!(
                "filter on `{}`: `in`/`not-in` needs a JSON array, got `{}`",
                filter.field, filter.value
            )))
        }
        FilterOp::Like if !value.is_string() => Err(ConnectorError::InvalidRequest(format!(
            "filter on `{}`: `like` needs a JSON string pattern, got `{}`",
            filter.field, filter.value
        ))),
        _ => Ok(value),
    }
}

impl Condition {
    fn matches<'v>(&self, top: &impl Fn(&str) -> Option<&'v Value>) -> bool {
        // A missing field is null.
        let field = lookup_in(top, &self.field).unwrap_or(&Value::Null);
        match self.op {
            FilterOp::IsNull => field.is_null(),
            FilterOp::IsNotNull => !field.is_null(),
            FilterOp::Eq => equal(field, &self.operand),
            FilterOp::Ne => !equal(field, &self.operand),
            FilterOp::Lt => ordered(field, &self.operand, |o| o == Ordering::Less),
            FilterOp::Le => ordered(field, &self.operand, |o| o != Ordering::Greater),
            FilterOp::Gt => ordered(field, &self.operand, |o| o == Ordering::Greater),
            FilterOp::Ge => ordered(field, &self.operand, |o| o != Ordering::Less),
            FilterOp::In => self.in_operand(field),
            FilterOp::NotIn => !self.in_operand(field),
            FilterOp::Like => match (field, &self.operand) {
                (Value::String(s), Value::String(p)) => like(s, p),
                (Value::Number(n), Value::String(p)) => like(&n.to_string(), p),
                _ => false,
            },
        }
    }

    fn in_operand(&self, value: &Value) -> bool {
        self.operand
            .as_array()
            .is_some_and(|items| items.iter().any(|item| equal(value, item)))
    }
}

/// An ordering test; null is unordered, on either side.
fn ordered(field: &Value, operand: &Value, test: impl Fn(Ordering) -> bool) -> bool {
    if field.is_null() || operand.is_null() {
        return false;
    }
    compare(field, operand).is_some_and(test)
}

/// Look up a dotted field path in a JSON object.
pub fn lookup<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    lookup_in(&|name| record.get(name), field)
}

/// [`lookup`] through a record's top-level fields: the field as named, or
/// its dotted path from the first part down.
fn lookup_in<'v>(top: &impl Fn(&str) -> Option<&'v Value>, field: &str) -> Option<&'v Value> {
    if let Some(v) = top(field) {
        return Some(v);
    }
    let mut parts = field.split('.');
    let first = top(parts.next()?)?;
    parts.try_fold(first, |value, part| value.get(part))
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(Ordering::Equal) || a == b
}

/// Compare two JSON values by the rules in the module docs; `None` when they are not comparable.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::String(_), Value::Number(_)) | (Value::Number(_), Value::String(_)) => {
            as_number(a)?.partial_cmp(&as_number(b)?)
        }
        _ => None,
    }
}

/// SQL LIKE: `%` matches any run of characters, `_` exactly one.
pub fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // Iterative wildcard matching with backtracking to the last `%`.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '_' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
}

/// Total order used for sorting: null < bool < number < string < array < object.
fn sort_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(Value::Array(_)) => 4,
            Some(Value::Object(_)) => 5,
        }
    }
    match (a, b) {
        (Some(x), Some(y)) if rank(a) == rank(b) => compare(x, y).unwrap_or(Ordering::Equal),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Sort JSON objects by `keys`, most significant first (stable).
pub fn sort_values<T>(items: &mut [T], keys: &[SortField], value: impl Fn(&T) -> &Value) {
    if keys.is_empty() {
        return;
    }
    items.sort_by(|a, b| {
        let (a, b) = (value(a), value(b));
        keys.iter()
            .map(|key| {
                let order = sort_order(lookup(a, &key.field), lookup(b, &key.field));
                match key.direction {
                    SortDirection::Asc => order,
                    SortDirection::Desc => order.reverse(),
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

/// Keep only `fields` of a JSON object (all of them when `fields` is empty).
pub fn project(record: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return record;
    }
    match record {
        Value::Object(mut map) => {
            let mut kept = Map::new();
            for field in fields {
                if let Some(v) = map.remove(field) {
                    kept.insert(field.clone(), v);
                } else if let Some(v) = lookup(&Value::Object(map.clone()), field) {
                    kept.insert(field.clone(), v.clone());
                }
            }
            Value::Object(kept)
        }
        other => other,
    }
}

/// A built record with only `fields` of its data kept (all of them when
/// `fields` is empty); data that is not a JSON object is left as it is.
pub fn project_record(mut record: crate::Record, fields: &[String]) -> crate::Record {
    if fields.is_empty() {
        return record;
    }
    if let Ok(data @ Value::Object(_)) = serde_json::from_str::<Value>(&record.data) {
        record.data = project(data, fields).to_string();
    }
    record
}

/// Encode an offset as an opaque page cursor.
pub fn offset_cursor(offset: u64) -> String {
    format!("offset:{offset}")
}

/// Decode a cursor made by [`offset_cursor`].
///
/// # Errors
///
/// `invalid-request` when the cursor was not made by [`offset_cursor`].
pub fn parse_offset_cursor(cursor: &str) -> Result<u64> {
    cursor
        .strip_prefix("offset:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            ConnectorError::InvalidRequest(format!(
                "cursor `{cursor}` was not issued by this connector"
            ))
        })
}

/// The starting offset and page size a request asks for: the cursor wins
/// over the offset; no pagination means everything from the start.
///
/// # Errors
///
/// `invalid-request` for a foreign cursor or a zero page size.
pub fn page_window(req: &FetchRequest) -> Result<(u64, Option<u64>)> {
    match &req.pagination {
        None => Ok((0, None)),
        Some(p) => {
            if p.page_size == 0 {
                return Err(ConnectorError::InvalidRequest(
                    "page size must be at least 1".into(),
                ));
            }
            let start = match &p.cursor {
                Some(cursor) => parse_offset_cursor(cursor)?,
                None => p.offset.unwrap_or(0),
            };
            Ok((start, Some(u64::from(p.page_size))))
        }
    }
}

/// Apply a fetch request's filters, sort, pagination and field selection to
/// `records`, returning the page with its total count and next cursor.
///
/// # Errors
///
/// `invalid-request` for malformed filters or cursors.
pub fn apply(
    req: &FetchRequest,
    records: impl IntoIterator<Item = RecordBuilder>,
) -> Result<FetchResponse> {
    let predicate = Predicate::compile(&req.filters)?;
    let (start, page_size) = page_window(req)?;
    let mut matching: Vec<RecordBuilder> = records
        .into_iter()
        .filter(|r| predicate.matches(r.data()))
        .collect();
    sort_values(&mut matching, &req.sort, RecordBuilder::data);
    let total = matching.len() as u64;
    let end = page_size.map_or(total, |size| start.saturating_add(size).min(total));
    let next_cursor = (end < total && page_size.is_some()).then(|| offset_cursor(end));
    let records = matching
        .into_iter()
        .skip(start.min(total) as usize)
        .take(end.saturating_sub(start) as usize)
        .map(|r| r.map_data(|d| project(d, &req.fields)).build())
        .collect();
    Ok(FetchResponse {
        records,
        total_count: Some(total),
        next_cursor,
    })
}

/// A JSON value as plain text: strings unquoted, anything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// For APIs that take filters as named parameters: each filter's target name
/// (from `mapping`, record field → parameter) and its value.
///
/// # Errors
///
/// `unsupported` for a field without a mapping or an operator other than
/// `eq` (a filter is never silently ignored); `invalid-request` for a value
/// that is not JSON.
pub fn mapped_equalities(
    filters: &[Filter],
    mapping: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, Value)>> {
    filters
        .iter()
        .map(|filter| {
            let target = mapping.get(&filter.field).ok_or_else(|| {
                ConnectorError::Unsupported(format!(
                    "filter on `{}`: nothing is configured to receive it (resource `filters`)",
                    filter.field
                ))
            })?;
            if filter.op != FilterOp::Eq {
                return Err(ConnectorError::Unsupported(format!(
                    "filter on `{}`: the API takes equality only",
                    filter.field
                )));
            }
            let value = serde_json::from_str(&filter.value).map_err(|e| {
                ConnectorError::InvalidRequest(format!(
                    "filter on `{}`: value is not JSON ({e})",
                    filter.field
                ))
            })?;
            Ok((target.clone(), value))
        })
        .collect()
}

/// A record from an API item: `fields` kept, id read from `id_field`.
pub fn api_record(item: &Value, fields: &[String], id_field: Option<&str>) -> crate::Record {
    let mut builder = RecordBuilder::new(project(item.clone(), fields));
    if let Some(id) = id_field.and_then(|f| item.get(f)) {
        builder = builder.id(value_text(id));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matching(op: FilterOp, operand: &str) -> Vec<i64> {
        let predicate = Predicate::compile(&[Filter {
            field: "score".into(),
            op,
            value: operand.into(),
        }])
        .unwrap();
        let rows = [
            json!({ "id": 1, "score": 1 }),
            json!({ "id": 2, "score": null }),
            json!({ "id": 3, "score": 2 }),
            json!({ "id": 4 }),
        ];
        rows.iter()
            .filter(|r| predicate.matches(r))
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn null_follows_one_rule_for_every_operator() {
        // A missing field (id 4) is null, like an explicit one (id 2).
        assert_eq!(matching(FilterOp::IsNull, ""), [2, 4]);
        assert_eq!(matching(FilterOp::IsNotNull, ""), [1, 3]);
        assert_eq!(matching(FilterOp::Eq, "null"), [2, 4]);
        assert_eq!(matching(FilterOp::Ne, "null"), [1, 3]);
        assert_eq!(matching(FilterOp::Eq, "1"), [1]);
        assert_eq!(matching(FilterOp::Ne, "1"), [2, 3, 4]);
        assert_eq!(matching(FilterOp::In, "[1]"), [1]);
        assert_eq!(matching(FilterOp::NotIn, "[1]"), [2, 3, 4]);
        assert_eq!(matching(FilterOp::In, "[1, null]"), [1, 2, 4]);
        assert_eq!(matching(FilterOp::NotIn, "[1, null]"), [3]);
        assert_eq!(matching(FilterOp::Le, "2"), [1, 3]);
        assert_eq!(matching(FilterOp::Ge, "null"), Vec::<i64>::new());
        assert_eq!(matching(FilterOp::Le, "null"), Vec::<i64>::new());
        // Numbers are matched by their text; null never is.
        assert_eq!(matching(FilterOp::Like, "\"%\""), [1, 3]);
    }

    /// The cases every kit's `apply` answers alike (`guests/kits/query-cases.json`).
    #[test]
    fn the_shared_cases_answer_as_every_kit_does() {
        use crate::{Pagination, SortDirection, SortField};
        let suite: Value =
            serde_json::from_str(include_str!("../../kits/query-cases.json")).unwrap();
        let op = |name: &str| match name {
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
            other => panic!("unknown op {other}"),
        };
        let text = |v: &Value| v.as_str().unwrap().to_string();
        for case in suite["cases"].as_array().unwrap() {
            let list = |key: &str| case[key].as_array().cloned().unwrap_or_default();
            let req = FetchRequest {
                resource: "r".into(),
                filters: list("filters")
                    .iter()
                    .map(|f| Filter {
                        field: text(&f[0]),
                        op: op(f[1].as_str().unwrap()),
                        value: text(&f[2]),
                    })
                    .collect(),
                sort: list("sort")
                    .iter()
                    .map(|s| SortField {
                        field: text(&s[0]),
                        direction: if s[1] == true {
                            SortDirection::Desc
                        } else {
                            SortDirection::Asc
                        },
                    })
                    .collect(),
                fields: list("fields").iter().map(text).collect(),
                pagination: case.get("page").map(|p| Pagination {
                    page_size: p[0].as_u64().unwrap() as u32,
                    offset: p[1].as_u64(),
                    cursor: p[2].as_str().map(str::to_string),
                }),
                options: None,
            };
            let records = suite["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| RecordBuilder::new(r["data"].clone()).id(text(&r["id"])));
            match (apply(&req, records), case.get("error")) {
                (Err(err), Some(expected)) => {
                    let message = format!("{err:?}");
                    assert!(
                        message.contains(expected.as_str().unwrap()),
                        "{case}: {message}"
                    );
                }
                (Err(err), None) => panic!("{case}: {err:?}"),
                (Ok(_), Some(_)) => panic!("{case}: no error"),
                (Ok(page), None) => {
                    let ids: Vec<Value> = page.records.iter().map(|r| json!(r.id)).collect();
                    assert_eq!(Value::Array(ids), case["ids"], "{case}");
                    if let Some(total) = case.get("total") {
                        assert_eq!(json!(page.total_count), *total, "{case}");
                    }
                    if let Some(next) = case.get("next_cursor") {
                        assert_eq!(json!(page.next_cursor), *next, "{case}");
                    }
                    if let Some(data) = case.get("data") {
                        let got: Vec<Value> = page
                            .records
                            .iter()
                            .map(|r| serde_json::from_str(&r.data).unwrap())
                            .collect();
                        assert_eq!(Value::Array(got), *data, "{case}");
                    }
                }
            }
        }
    }
}
