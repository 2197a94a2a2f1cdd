//! SELECT building: validated, quoted identifiers; every value a bound parameter.

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sluice_sdk::{ConnectorError, Filter, FilterOp, Result, SortDirection, SortField};

use crate::dialect::Dialect;
use crate::table::Table;

/// SQL text with its parameters (JSON texts, bound to the placeholders in
/// the order they were bound, which is the order they appear in the text).
#[derive(Debug)]
pub struct Statement {
    /// The SQL it is written in.
    pub dialect: Dialect,
    /// The text.
    pub sql: String,
    /// The parameters' JSON texts.
    pub params: Vec<String>,
}

impl Statement {
    /// An empty statement in `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            sql: String::new(),
            params: Vec::new(),
        }
    }

    /// Bind `value` and return its placeholder.
    pub fn bind(&mut self, value: &Value) -> String {
        self.bind_raw(&value.to_string())
    }

    /// Bind a value given as its JSON text, kept exactly as written (a
    /// number's every digit reaches the server).
    pub fn bind_raw(&mut self, json: &str) -> String {
        self.params.push(json.to_string());
        self.dialect.placeholder(self.params.len())
    }
}

/// The order a read follows: the requested sort, then the key as a tiebreaker.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    /// The column.
    pub column: String,
    /// Whether it sorts descending.
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
            let column = table.quote(name);
            Ok(match f.op {
                FilterOp::IsNull => format!("{column} IS NULL"),
                FilterOp::IsNotNull => format!("{column} IS NOT NULL"),
                op => {
                    let value = parse_value(f)?;
                    let raw = f.value.trim();
                    let compare = |sign: &str, stmt: &mut Statement| -> Result<String> {
                        Ok(format!("{column} {sign} {}", table.bind(stmt, name, raw)?))
                    };
                    match op {
                        FilterOp::In | FilterOp::NotIn => {
                            return membership(table, name, f, op == FilterOp::NotIn, stmt)
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
                        FilterOp::Eq => compare("=", stmt)?,
                        FilterOp::Ne => {
                            let bound = table.bind(stmt, name, raw)?;
                            table.dialect.distinct_from(&column, &bound)
                        }
                        FilterOp::Lt => compare("<", stmt)?,
                        FilterOp::Le => compare("<=", stmt)?,
                        FilterOp::Gt => compare(">", stmt)?,
                        FilterOp::Ge => compare(">=", stmt)?,
                        _ => format!(
                            "{} LIKE {}",
                            table.dialect.as_text(&column),
                            stmt.bind_raw(raw)
                        ),
                    }
                }
            })
        })
        .collect()
}

/// `in` / `not-in`: the list's values bound (each item's text kept; one
/// array on PostgreSQL, one placeholder each on MySQL), a `null` item
/// matched with `IS NULL`.
fn membership(
    table: &Table,
    name: &str,
    filter: &Filter,
    negated: bool,
    stmt: &mut Statement,
) -> Result<String> {
    let column = table.quote(name);
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
        match table.dialect {
            Dialect::Postgres => {
                let list: Vec<&str> = values.iter().map(|v| v.get()).collect();
                format!(
                    "{column} = ANY({})",
                    stmt.bind_raw(&format!("[{}]", list.join(",")))
                )
            }
            Dialect::Mysql => {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| table.bind(stmt, name, v.get()))
                    .collect::<Result<_>>()?;
                format!("{column} IN ({})", list.join(", "))
            }
        }
    };
    Ok(match (negated, nulls.is_empty()) {
        (false, true) => format!("({any})"),
        (false, false) => format!("({any} OR {column} IS NULL)"),
        (true, true) => format!("({column} IS NULL OR NOT ({any}))"),
        (true, false) => format!("({column} IS NOT NULL AND NOT ({any}))"),
    })
}

/// The condition "strictly after `after`" in `order`, NULLs included: where
/// NULLs sort is the dialect's ([`order_by`] writes it out for PostgreSQL),
/// and a comparison with NULL is never true, so NULLs are matched with
/// `IS NULL` / `IS NOT NULL` instead. Values are bound in the order they
/// appear in the text (MySQL's placeholders are positional).
///
/// # Errors
///
/// `invalid-request` when a cursor value does not fit its column.
pub fn after(
    table: &Table,
    order: &[OrderKey],
    after: &[Value],
    stmt: &mut Statement,
) -> Result<String> {
    let nulls_first = table.dialect.nulls_first_ascending();
    let mut alternatives = Vec::new();
    for i in 0..order.len().min(after.len()) {
        if !anything_beyond(&order[i], &after[i], nulls_first) {
            // Nothing sorts after this value in this key: no row continues here.
            continue;
        }
        let mut parts: Vec<String> = order[..i]
            .iter()
            .zip(after)
            .map(|(key, value)| equal(table, key, value, stmt))
            .collect::<Result<_>>()?;
        parts.push(beyond(table, &order[i], &after[i], nulls_first, stmt)?);
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    if alternatives.is_empty() {
        return Ok("FALSE".into());
    }
    Ok(format!("({})", alternatives.join(" OR ")))
}

/// `column = value`, where a NULL value is matched by `IS NULL`.
fn equal(table: &Table, key: &OrderKey, value: &Value, stmt: &mut Statement) -> Result<String> {
    let column = table.quote(&key.column);
    if value.is_null() {
        Ok(format!("{column} IS NULL"))
    } else {
        let bound = table.bind(stmt, &key.column, &value.to_string())?;
        Ok(format!("{column} = {bound}"))
    }
}

/// Whether NULLs come after every value in `key`'s direction.
fn nulls_last(key: &OrderKey, nulls_first_ascending: bool) -> bool {
    key.descending == nulls_first_ascending
}

/// Whether any row can sort strictly after `value` in `key`'s column alone:
/// not after a NULL when NULLs come last.
fn anything_beyond(key: &OrderKey, value: &Value, nulls_first_ascending: bool) -> bool {
    !(value.is_null() && nulls_last(key, nulls_first_ascending))
}

/// The rows that sort strictly after `value` in `key`'s column alone (see
/// [`anything_beyond`] for when there are none).
fn beyond(
    table: &Table,
    key: &OrderKey,
    value: &Value,
    nulls_first_ascending: bool,
    stmt: &mut Statement,
) -> Result<String> {
    let column = table.quote(&key.column);
    if value.is_null() {
        // NULLs come first: every value comes after them.
        return Ok(format!("{column} IS NOT NULL"));
    }
    let sign = if key.descending { "<" } else { ">" };
    let bound = table.bind(stmt, &key.column, &value.to_string())?;
    Ok(if nulls_last(key, nulls_first_ascending) {
        format!("({column} {sign} {bound} OR {column} IS NULL)")
    } else {
        format!("{column} {sign} {bound}")
    })
}

/// `ORDER BY` text, with where NULLs go written out where the dialect
/// allows ([`after`] relies on the dialect's rule).
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
                table.quote(&k.column),
                table.dialect.order_suffix(k.descending)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A deterministic order for a table without a key: `order` (the requested
/// sort), then every other column that can be ordered. Rows equal in all of
/// those are indistinguishable, so any order among them reads the same.
pub fn deterministic(table: &Table, order: &[OrderKey]) -> Vec<OrderKey> {
    let mut full = order.to_vec();
    for column in &table.columns {
        if !column.orderable || full.iter().any(|k| k.column == column.name) {
            continue;
        }
        full.push(OrderKey {
            column: column.name.clone(),
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
        .map_err(|_| bad("not issued by this connector"))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("not issued by this connector"))?;
    if body["order"] != json!(order_signature(order)) {
        return Err(bad("it belongs to a different sort order"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::{Filter, FilterOp};

    use super::*;
    use crate::table::{Bind, Column, Read};

    fn table(dialect: Dialect) -> Table {
        let column = |name: &str, bind: Bind| Column {
            name: name.into(),
            sql_type: "t".into(),
            json_type: "string",
            read: Read::Plain,
            bind,
            accept: crate::table::Accept::Any,
            orderable: true,
        };
        Table {
            dialect,
            schema: "s".into(),
            name: "t".into(),
            columns: vec![
                column("id", Bind::Plain),
                column("score", Bind::Plain),
                column("amount", Bind::Wrap("CAST({} AS DECIMAL(65, 30))".into())),
            ],
            key: vec!["id".into()],
        }
    }

    fn key(column: &str, descending: bool) -> OrderKey {
        OrderKey {
            column: column.into(),
            descending,
        }
    }

    fn filter(field: &str, op: FilterOp, value: &str) -> Filter {
        Filter {
            field: field.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn mysql_keyset_follows_its_null_order_and_binds_in_text_order() {
        let t = table(Dialect::Mysql);
        let order = [key("score", false), key("id", false)];
        // Ascending, NULLs first: after a value, only larger values.
        let mut stmt = Statement::new(Dialect::Mysql);
        let sql = after(&t, &order, &[json!(5), json!(2)], &mut stmt).unwrap();
        assert_eq!(sql, "((`score` > ?) OR (`score` = ? AND `id` > ?))");
        assert_eq!(stmt.params, ["5", "5", "2"]);
        // After a NULL, every value, then the tied NULLs' later ids.
        let mut stmt = Statement::new(Dialect::Mysql);
        let sql = after(&t, &order, &[json!(null), json!(2)], &mut stmt).unwrap();
        assert_eq!(
            sql,
            "((`score` IS NOT NULL) OR (`score` IS NULL AND `id` > ?))"
        );
        assert_eq!(stmt.params, ["2"]);
        // Descending, NULLs last: after a value, smaller values and the NULLs.
        let order = [key("score", true), key("id", false)];
        let mut stmt = Statement::new(Dialect::Mysql);
        let sql = after(&t, &order, &[json!(5), json!(2)], &mut stmt).unwrap();
        assert_eq!(
            sql,
            "(((`score` < ? OR `score` IS NULL)) OR (`score` = ? AND `id` > ?))"
        );
        // After a NULL descending, only the tied NULLs' later ids.
        let mut stmt = Statement::new(Dialect::Mysql);
        let sql = after(&t, &order, &[json!(null), json!(2)], &mut stmt).unwrap();
        assert_eq!(sql, "((`score` IS NULL AND `id` > ?))");
    }

    #[test]
    fn postgres_keyset_numbers_its_placeholders() {
        let t = table(Dialect::Postgres);
        let order = [key("score", false), key("id", false)];
        let mut stmt = Statement::new(Dialect::Postgres);
        let sql = after(&t, &order, &[json!(5), json!(2)], &mut stmt).unwrap();
        assert_eq!(
            sql,
            "(((\"score\" > $1 OR \"score\" IS NULL)) OR (\"score\" = $2 AND (\"id\" > $3 OR \"id\" IS NULL)))"
        );
        assert_eq!(
            order_by(&t, &order),
            "\"s\".\"t\".\"score\" ASC NULLS LAST, \"s\".\"t\".\"id\" ASC NULLS LAST"
        );
    }

    #[test]
    fn mysql_filters_cast_decimals_and_list_each_member() {
        let t = table(Dialect::Mysql);
        let mut stmt = Statement::new(Dialect::Mysql);
        let sql = conditions(
            &t,
            &[
                filter("amount", FilterOp::Eq, "1234567.0123456789012"),
                filter("score", FilterOp::Ne, "3"),
                filter("score", FilterOp::NotIn, "[1, null, 2]"),
                filter("amount", FilterOp::In, "[1.5]"),
                filter("score", FilterOp::Like, "\"4%\""),
            ],
            &mut stmt,
        )
        .unwrap();
        assert_eq!(
            sql,
            [
                "`amount` = CAST(? AS DECIMAL(65, 30))",
                "NOT (`score` <=> ?)",
                "(`score` IS NOT NULL AND NOT (`score` IN (?, ?)))",
                "(`amount` IN (CAST(? AS DECIMAL(65, 30))))",
                "CAST(`score` AS CHAR) LIKE ?",
            ]
        );
        assert_eq!(
            stmt.params,
            ["1234567.0123456789012", "3", "1", "2", "1.5", "\"4%\""]
        );
    }
}
