//! SELECT building: validated, quoted identifiers; every value a bound parameter.

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sluice_sdk::{ConnectorError, Filter, FilterOp, Result, SortDirection, SortField};

use crate::catalog::{quote, Table};

/// SQL text with its parameters (JSON texts, bound as `$1..$n`).
#[derive(Debug, Default)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<String>,
}

impl Statement {
    /// Bind `value` and return its placeholder.
    pub fn bind(&mut self, value: &Value) -> String {
        self.bind_raw(&value.to_string())
    }

    /// Bind a value given as its JSON text, kept exactly as written (a
    /// number's every digit reaches the server).
    pub fn bind_raw(&mut self, json: &str) -> String {
        self.params.push(json.to_string());
        format!("${}", self.params.len())
    }
}

/// The order a read follows: the requested sort, then the key as a tiebreaker.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    pub column: String,
    pub descending: bool,
}

/// The full, deterministic order of a read (`None` when the table has no key and no sort was asked).
pub fn order(table: &Table, sort: &[SortField]) -> Result<Vec<OrderKey>> {
    let mut keys = Vec::new();
    for field in sort {
        let column = table.column(&field.field)?.to_string();
        if keys.iter().all(|k: &OrderKey| k.column != column) {
            keys.push(OrderKey {
                column,
                descending: field.direction == SortDirection::Desc,
            });
        }
    }
    for column in &table.key {
        if keys.iter().all(|k| &k.column != column) {
            keys.push(OrderKey {
                column: column.clone(),
                descending: false,
            });
        }
    }
    Ok(keys)
}

fn parse_value(filter: &Filter) -> Result<Value> {
    serde_json::from_str(&filter.value).map_err(|e| {
        ConnectorError::InvalidRequest(format!(
            "filter on `{}`: value `{}` is not JSON ({e})",
            filter.field, filter.value
        ))
    })
}

/// `WHERE` conditions for the filters, each value bound from the filter's
/// own JSON text (so `1234567.0123456789012` reaches a numeric column
/// exactly).
///
/// NULL follows the SDK's rule ([`sluice_sdk::query`]): `eq null` is
/// `IS NULL` and `ne null` is `IS NOT NULL`; `ne v` keeps NULL rows (NULL is
/// not `v`), `in` matches NULL only when the list holds `null` and `not-in`
/// is exactly its negation; `lt`, `le`, `gt`, `ge` and `like` never match NULL.
pub fn conditions(table: &Table, filters: &[Filter], stmt: &mut Statement) -> Result<Vec<String>> {
    filters
        .iter()
        .map(|f| {
            let name = table.column(&f.field)?;
            let column = quote(name);
            Ok(match f.op {
                FilterOp::IsNull => format!("{column} IS NULL"),
                FilterOp::IsNotNull => format!("{column} IS NOT NULL"),
                op => {
                    let value = parse_value(f)?;
                    let raw = f.value.trim();
                    match op {
                        FilterOp::In | FilterOp::NotIn => {
                            return membership(&column, f, op == FilterOp::NotIn, stmt)
                        }
                        FilterOp::Like if !value.is_string() => {
                            return Err(ConnectorError::InvalidRequest(format!(
                                "filter on `{}`: `like` needs a JSON string pattern",
                                f.field
                            )))
                        }
                        FilterOp::Eq if value.is_null() => format!("{column} IS NULL"),
                        FilterOp::Ne if value.is_null() => format!("{column} IS NOT NULL"),
                        _ if value.is_null() => "FALSE".to_string(),
                        FilterOp::Eq => format!("{column} = {}", stmt.bind_raw(raw)),
                        FilterOp::Ne => format!("{column} IS DISTINCT FROM {}", stmt.bind_raw(raw)),
                        FilterOp::Lt => format!("{column} < {}", stmt.bind_raw(raw)),
                        FilterOp::Le => format!("{column} <= {}", stmt.bind_raw(raw)),
                        FilterOp::Gt => format!("{column} > {}", stmt.bind_raw(raw)),
                        FilterOp::Ge => format!("{column} >= {}", stmt.bind_raw(raw)),
                        _ => format!("{column}::text LIKE {}", stmt.bind_raw(raw)),
                    }
                }
            })
        })
        .collect()
}

/// `in` / `not-in`: the list's values bound as one array (each item's text
/// kept), a `null` item matched with `IS NULL`.
fn membership(
    column: &str,
    filter: &Filter,
    negated: bool,
    stmt: &mut Statement,
) -> Result<String> {
    let items: Vec<&RawValue> = serde_json::from_str(&filter.value).map_err(|_| {
        ConnectorError::InvalidRequest(format!(
            "filter on `{}`: `in`/`not-in` needs a JSON array, got `{}`",
            filter.field, filter.value
        ))
    })?;
    let (nulls, values): (Vec<&RawValue>, Vec<&RawValue>) = items
        .into_iter()
        .partition(|item| item.get().trim() == "null");
    let any = if values.is_empty() {
        "FALSE".to_string()
    } else {
        let list: Vec<&str> = values.iter().map(|v| v.get()).collect();
        format!(
            "{column} = ANY({})",
            stmt.bind_raw(&format!("[{}]", list.join(",")))
        )
    };
    Ok(match (negated, nulls.is_empty()) {
        (false, true) => format!("({any})"),
        (false, false) => format!("({any} OR {column} IS NULL)"),
        (true, true) => format!("({column} IS NULL OR NOT ({any}))"),
        (true, false) => format!("({column} IS NOT NULL AND NOT ({any}))"),
    })
}

/// The condition "strictly after `after`" in `order`, NULLs included: the
/// order puts them last ascending and first descending ([`order_by`] says so
/// explicitly), and a comparison with NULL is never true, so NULLs are
/// matched with `IS NULL` / `IS NOT NULL` instead.
pub fn after(order: &[OrderKey], after: &[Value], stmt: &mut Statement) -> String {
    let mut alternatives = Vec::new();
    for i in 0..order.len().min(after.len()) {
        let Some(beyond) = beyond(&order[i], &after[i], stmt) else {
            // Nothing sorts after a NULL ascending: no row continues here.
            continue;
        };
        let mut parts: Vec<String> = order[..i]
            .iter()
            .zip(after)
            .map(|(key, value)| equal(key, value, stmt))
            .collect();
        parts.push(beyond);
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    if alternatives.is_empty() {
        return "FALSE".into();
    }
    format!("({})", alternatives.join(" OR "))
}

/// `column = value`, where a NULL value is matched by `IS NULL`.
fn equal(key: &OrderKey, value: &Value, stmt: &mut Statement) -> String {
    let column = quote(&key.column);
    if value.is_null() {
        format!("{column} IS NULL")
    } else {
        format!("{column} = {}", stmt.bind(value))
    }
}

/// The rows that sort strictly after `value` in `key`'s column alone
/// (`None`: no row does).
fn beyond(key: &OrderKey, value: &Value, stmt: &mut Statement) -> Option<String> {
    let column = quote(&key.column);
    match (key.descending, value.is_null()) {
        // ASC NULLS LAST: the larger values, then the NULLs.
        (false, false) => Some(format!(
            "({column} > {} OR {column} IS NULL)",
            stmt.bind(value)
        )),
        (false, true) => None,
        // DESC NULLS FIRST: after the NULLs come all values; after a value, the smaller ones.
        (true, true) => Some(format!("{column} IS NOT NULL")),
        (true, false) => Some(format!("{column} < {}", stmt.bind(value))),
    }
}

/// `ORDER BY` text, with where NULLs go written out (PostgreSQL's defaults,
/// which [`after`] relies on).
///
/// Columns are qualified with the table: a column read in text form
/// (`"c"::text`) names an output column `c` too, and an unqualified name
/// would sort by that text instead of the column's own order, which the
/// keyset predicate uses.
pub fn order_by(table: &Table, order: &[OrderKey]) -> String {
    order
        .iter()
        .map(|k| {
            format!(
                "{}.{} {}",
                table.qualified(),
                quote(&k.column),
                if k.descending {
                    "DESC NULLS FIRST"
                } else {
                    "ASC NULLS LAST"
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Types without a btree order: a column of one cannot take part in an ORDER BY.
const UNORDERED_TYPES: &[&str] = &[
    "json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle",
];

/// A deterministic order for a table without a key: `order` (the requested
/// sort), then every other column that can be ordered. Rows equal in all of
/// those are indistinguishable, so any order among them reads the same.
pub fn deterministic(table: &Table, order: &[OrderKey]) -> Vec<OrderKey> {
    let mut full = order.to_vec();
    for (column, kind) in &table.columns {
        let base = kind.trim_end_matches("[]");
        if UNORDERED_TYPES.contains(&base) || full.iter().any(|k| &k.column == column) {
            continue;
        }
        full.push(OrderKey {
            column: column.clone(),
            descending: false,
        });
    }
    full
}

/// An opaque offset cursor, for tables without a key: how many rows of
/// `order` were read.
pub fn encode_offset(order: &[OrderKey], offset: u64) -> String {
    let body = json!({ "order": order_signature(order), "offset": offset });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
}

/// Decode a cursor made by [`encode_offset`] for the same order.
pub fn decode_offset(order: &[OrderKey], text: &str) -> Result<u64> {
    let body = cursor_body(order, text)?;
    body["offset"].as_u64().ok_or_else(|| {
        ConnectorError::InvalidRequest(format!(
            "cursor `{text}`: not an offset cursor (the table has no key, so it pages by offset)"
        ))
    })
}

fn order_signature(order: &[OrderKey]) -> Vec<String> {
    order
        .iter()
        .map(|k| format!("{}:{}", k.column, if k.descending { "desc" } else { "asc" }))
        .collect()
}

/// An opaque cursor: the last row's order-key values, bound to the order they belong to.
pub fn encode_position(order: &[OrderKey], values: &[Value]) -> String {
    let body = json!({ "order": order_signature(order), "after": values });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
}

/// Decode a cursor or checkpoint made by [`encode_position`] for the same order.
pub fn decode_position(order: &[OrderKey], text: &str) -> Result<Vec<Value>> {
    match cursor_body(order, text)?["after"].as_array() {
        Some(values) if values.len() == order.len() => Ok(values.clone()),
        _ => Err(ConnectorError::InvalidRequest(format!(
            "cursor/checkpoint `{text}`: malformed"
        ))),
    }
}

/// The JSON of a cursor this connector issued for `order`.
fn cursor_body(order: &[OrderKey], text: &str) -> Result<Value> {
    let bad =
        |why: &str| ConnectorError::InvalidRequest(format!("cursor/checkpoint `{text}`: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad("not issued by the postgres connector"))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("not issued by the postgres connector"))?;
    if body["order"] != json!(order_signature(order)) {
        return Err(bad("it belongs to a different sort order"));
    }
    Ok(body)
}
