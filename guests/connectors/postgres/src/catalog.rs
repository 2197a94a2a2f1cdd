//! What the database says exists: tables, views, columns and keys. Every
//! identifier a request names is checked here before it reaches SQL.

use std::collections::{HashMap, HashSet};

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
    /// Columns whose type the host has no JSON mapping for (inet, ranges,
    /// money, tsvector, composite, `"char"`, extension types, …): they are
    /// read in their PostgreSQL text form, and values written to them are
    /// parsed by the server from text.
    pub text_form: HashSet<String>,
    /// The JSON type of each column's values, for `discover`.
    json_types: HashMap<String, &'static str>,
}

/// Types the host converts to and from JSON itself (`sluice::capability::sql`'s
/// table); enums too. A column of any other type is read as text.
const MAPPED_TYPES: &[&str] = &[
    "bool",
    "int2",
    "int4",
    "int8",
    "oid",
    "float4",
    "float8",
    "numeric",
    "text",
    "varchar",
    "bpchar",
    "name",
    "bytea",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
];

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
        // Each column's type, and the type the host converts: the element
        // type of an array, the base type of a domain.
        let described = rows(
            conn,
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    COALESCE(d.typname, b.typname)::text, COALESCE(d.typtype, b.typtype)::text, \
                    t.typcategory = 'A' \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_type t ON t.oid = a.atttypid \
             JOIN pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 \
                                            THEN t.typelem ELSE t.oid END \
             LEFT JOIN pg_type d ON b.typtype = 'd' AND d.oid = b.typbasetype \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[text(schema), text(name)],
        )?;
        let columns: Vec<(String, String)> = described
            .iter()
            .map(|r| (string(&r[0]), string(&r[1])))
            .collect();
        let mut text_form = HashSet::new();
        let mut json_types = HashMap::new();
        for r in &described {
            let (name, base, is_enum) = (string(&r[0]), string(&r[2]), string(&r[3]) == "e");
            let mapped = is_enum || MAPPED_TYPES.contains(&base.as_str());
            let json_type = match (mapped, r[4].as_bool() == Some(true)) {
                (false, _) => "string",
                (true, true) => "array",
                (true, false) => json_type(&base),
            };
            json_types.insert(name.clone(), json_type);
            if !mapped {
                text_form.insert(name);
            }
        }
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
            text_form,
            json_types,
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

    /// The expression that reads `column`: the column itself, or its text
    /// form for a type without a JSON mapping.
    pub fn select_expr(&self, column: &str) -> String {
        if self.text_form.contains(column) {
            format!("{}::text", quote(column))
        } else {
            quote(column)
        }
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
                let json_type = self.json_types.get(name).copied().unwrap_or("string");
                (
                    name.clone(),
                    json!({ "type": json_type, "x-postgres-type": ty }),
                )
            })
            .collect();
        json!({ "type": "object", "properties": properties, "x-key": self.key })
    }
}

/// The JSON type of a mapped PostgreSQL type (by its catalogue name).
fn json_type(typname: &str) -> &'static str {
    match typname {
        "bool" => "boolean",
        "int2" | "int4" | "int8" | "oid" => "integer",
        "float4" | "float8" => "number",
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
