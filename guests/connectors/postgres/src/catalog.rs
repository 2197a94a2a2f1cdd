//! What the database says exists: tables, views, columns and keys. Every
//! identifier a request names is checked here before it reaches SQL.

use serde_json::{json, Value};
use sluice_sdk::sql::{self, Connection};
use sluice_sdk::{ConnectorError, Result};

/// Quote an identifier for SQL (it has been validated against the catalogue too).
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// One table or view.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// Column names and types, in table order.
    pub columns: Vec<(String, String)>,
    /// Primary key (or the configured key), possibly empty for views.
    pub key: Vec<String>,
}

fn text(value: &str) -> String {
    json!(value).to_string()
}

fn rows(conn: &Connection, statement: &str, params: &[String]) -> Result<Vec<Vec<Value>>> {
    let set = conn.query(statement, params).map_err(sql::error)?;
    set.rows.iter().map(|r| sql::row_values(r)).collect()
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

impl Table {
    /// Load `schema.name`, with `configured_key` overriding the primary key.
    pub fn load(
        conn: &Connection,
        schema: &str,
        name: &str,
        configured_key: Option<&[String]>,
    ) -> Result<Self> {
        let columns: Vec<(String, String)> = rows(
            conn,
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[text(schema), text(name)],
        )?
        .iter()
        .map(|r| (string(&r[0]), string(&r[1])))
        .collect();
        if columns.is_empty() {
            return Err(ConnectorError::NotFound(format!(
                "no table or view `{name}` in schema `{schema}`"
            )));
        }
        let mut table = Table {
            schema: schema.to_string(),
            name: name.to_string(),
            columns,
            key: Vec::new(),
        };
        table.key = match configured_key {
            Some(key) => key
                .iter()
                .map(|k| table.column(k).map(str::to_string))
                .collect::<Result<_>>()?,
            None => rows(
                conn,
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
                 WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[text(schema), text(name)],
            )?
            .iter()
            .map(|r| string(&r[0]))
            .collect(),
        };
        Ok(table)
    }

    /// The column called `field`, or `invalid-request` listing the real ones.
    pub fn column(&self, field: &str) -> Result<&str> {
        self.columns
            .iter()
            .find(|(name, _)| name == field)
            .map(|(name, _)| name.as_str())
            .ok_or_else(|| {
                let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
                ConnectorError::InvalidRequest(format!(
                    "no column `{field}` in `{}.{}` (columns: {})",
                    self.schema,
                    self.name,
                    names.join(", ")
                ))
            })
    }

    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    /// JSON Schema of the table's records.
    pub fn schema_json(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .columns
            .iter()
            .map(|(name, ty)| {
                (
                    name.clone(),
                    json!({ "type": json_type(ty), "x-postgres-type": ty }),
                )
            })
            .collect();
        json!({ "type": "object", "properties": properties, "x-key": self.key })
    }
}

fn json_type(pg: &str) -> &'static str {
    let base = pg.split('(').next().unwrap_or(pg).trim();
    if base.ends_with("[]") {
        return "array";
    }
    match base {
        "boolean" => "boolean",
        "smallint" | "integer" | "bigint" | "oid" => "integer",
        "real" | "double precision" => "number",
        "json" | "jsonb" => "object",
        _ => "string",
    }
}

/// Tables and views of `schema`.
pub fn list(conn: &Connection, schema: &str) -> Result<Vec<String>> {
    Ok(rows(
        conn,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY c.relname",
        &[text(schema)],
    )?
    .iter()
    .map(|r| string(&r[0]))
    .collect())
}
