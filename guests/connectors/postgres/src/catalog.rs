//! What PostgreSQL's catalogue says exists: tables, views, columns, their
//! types and keys.

use sluice_sdk::sql::Connection;
use sluice_sdk::{ConnectorError, Result};
use sluice_sql_connector::session::{catalog_rows as rows, text as string};
use sluice_sql_connector::{Accept, Bind, Catalog, Column, Dialect, Read, Table};

/// The tables and views of one schema.
pub struct PgCatalog {
    /// The schema.
    pub schema: String,
}

impl Catalog for PgCatalog {
    fn list(&self, conn: &Connection) -> Result<Vec<String>> {
        list(conn, &self.schema)
    }

    fn load(&self, conn: &Connection, name: &str, configured: Option<&[String]>) -> Result<Table> {
        load(conn, &self.schema, name, configured)
    }
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

/// Types without a btree order: a column of one cannot take part in an ORDER BY.
const UNORDERED_TYPES: &[&str] = &[
    "json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle",
];

/// Load `schema.name`, with `configured_key` overriding the primary key.
///
/// Columns of a type the host has no JSON mapping for (inet, ranges, money,
/// tsvector, composite, `"char"`, extension types, …) are read in their
/// PostgreSQL text form, and values written to them are parsed by the server
/// from text.
fn load(
    conn: &Connection,
    schema: &str,
    name: &str,
    configured_key: Option<&[String]>,
) -> Result<Table> {
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
        &[schema, name],
    )?;
    if described.is_empty() {
        return Err(ConnectorError::NotFound(format!(
            "no table or view `{name}` in schema `{schema}`"
        )));
    }
    let columns = described
        .iter()
        .map(|r| {
            let (base, is_enum, is_array) = (
                string(&r[2]),
                string(&r[3]) == "e",
                r[4].as_bool() == Some(true),
            );
            let mapped = is_enum || MAPPED_TYPES.contains(&base.as_str());
            let sql_type = string(&r[1]);
            Column {
                name: string(&r[0]),
                json_type: match (mapped, is_array) {
                    (false, _) => "string",
                    (true, true) => "array",
                    (true, false) => json_type(&base),
                },
                read: if mapped { Read::Plain } else { Read::Text },
                bind: Bind::Plain,
                // The host's mapping refuses a value that does not fit the type.
                accept: Accept::Any,
                orderable: !UNORDERED_TYPES.contains(&sql_type.trim_end_matches("[]")),
                sql_type,
            }
        })
        .collect();
    let table = Table {
        dialect: Dialect::Postgres,
        schema: schema.to_string(),
        name: name.to_string(),
        columns,
        key: Vec::new(),
    };
    let primary = match configured_key {
        Some(_) => Vec::new(),
        None => rows(
            conn,
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[schema, name],
        )?
        .iter()
        .map(|r| string(&r[0]))
        .collect(),
    };
    table.with_key(configured_key, primary)
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
fn list(conn: &Connection, schema: &str) -> Result<Vec<String>> {
    Ok(rows(
        conn,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY c.relname",
        &[schema],
    )?
    .iter()
    .map(|r| string(&r[0]))
    .collect())
}
