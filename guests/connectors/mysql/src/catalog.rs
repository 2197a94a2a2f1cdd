//! What MySQL's `information_schema` says exists: tables, views, columns,
//! their types and keys.

use serde_json::Value;
use sluice_sdk::sql::Connection;
use sluice_sdk::{ConnectorError, Result};
use sluice_sql_connector::session::{catalog_rows as rows, text as string};
use sluice_sql_connector::{Accept, Bind, Catalog, Column, Dialect, Read, Table};

/// The tables and views of one database.
pub struct MyCatalog {
    /// The database.
    pub database: String,
}

impl Catalog for MyCatalog {
    fn list(&self, conn: &Connection) -> Result<Vec<String>> {
        list(conn, &self.database)
    }

    fn load(&self, conn: &Connection, name: &str, configured: Option<&[String]>) -> Result<Table> {
        load(conn, &self.database, name, configured)
    }
}

/// The database the connection uses (`DATABASE()`).
pub fn current_database(conn: &Connection) -> Result<String> {
    let found = rows(conn, "SELECT DATABASE()", &[])?;
    match found.first().and_then(|r| r.first()) {
        Some(Value::String(name)) => Ok(name.clone()),
        _ => Err(ConnectorError::InvalidConfig(
            "field `database`: the grant's URL names no database, so the config must".into(),
        )),
    }
}

/// Tables and views of `database`.
fn list(conn: &Connection, database: &str) -> Result<Vec<String>> {
    Ok(rows(
        conn,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
        &[database],
    )?
    .iter()
    .map(|r| string(&r[0]))
    .collect())
}

/// Columns MariaDB keeps JSON in: `longtext` checked by `json_valid(col)`
/// (MySQL has a `json` type of its own, and no such view, so none there).
fn json_text_columns(conn: &Connection, database: &str, name: &str) -> Vec<String> {
    let clauses = rows(
        conn,
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
        &[database, name],
    )
    .unwrap_or_default();
    clauses
        .iter()
        .filter_map(|r| {
            let clause = string(&r[0]);
            let inner = clause.trim().strip_prefix("json_valid(`")?;
            let column = inner.strip_suffix("`)")?;
            Some(column.replace("``", "`"))
        })
        .collect()
}

/// Load `database.name`, with `configured_key` overriding the primary key.
fn load(
    conn: &Connection,
    database: &str,
    name: &str,
    configured_key: Option<&[String]>,
) -> Result<Table> {
    let described = rows(
        conn,
        "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
         ORDER BY ORDINAL_POSITION",
        &[database, name],
    )?;
    if described.is_empty() {
        return Err(ConnectorError::NotFound(format!(
            "no table or view `{name}` in database `{database}`"
        )));
    }
    let json_text = json_text_columns(conn, database, name);
    let columns = described
        .iter()
        .map(|r| {
            let name = string(&r[0]);
            let data_type = string(&r[2]).to_ascii_lowercase();
            let precision = r[3].as_u64().unwrap_or(65);
            let scale = r[4].as_u64().unwrap_or(0);
            column(
                name.clone(),
                string(&r[1]),
                &data_type,
                (precision, scale),
                json_text.contains(&name),
            )
        })
        .collect();
    let table = Table {
        dialect: Dialect::Mysql,
        schema: database.to_string(),
        name: name.to_string(),
        columns,
        key: Vec::new(),
    };
    let primary = match configured_key {
        Some(_) => Vec::new(),
        None => rows(
            conn,
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            &[database, name],
        )?
        .iter()
        .map(|r| string(&r[0]))
        .collect(),
    };
    table.with_key(configured_key, primary)
}

/// How one column is read, bound and described.
fn column(
    name: String,
    sql_type: String,
    data_type: &str,
    (precision, scale): (u64, u64),
    json_text: bool,
) -> Column {
    let plain = |json_type: &'static str, orderable: bool| Column {
        name: name.clone(),
        sql_type: sql_type.clone(),
        json_type,
        read: Read::Plain,
        bind: Bind::Plain,
        accept: Accept::Any,
        orderable,
    };
    match data_type {
        _ if json_text => Column {
            read: Read::JsonText,
            bind: Bind::JsonText,
            ..plain("object", false)
        },
        "json" => Column {
            bind: Bind::JsonText,
            ..plain("object", false)
        },
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" | "bit" => {
            Column {
                accept: Accept::Integer,
                ..plain("integer", true)
            }
        }
        "float" | "double" | "real" => Column {
            accept: Accept::Number,
            ..plain("number", true)
        },
        // A decimal compared with a string is compared as a double: cast the
        // value to a decimal wide enough for the column's whole digits.
        "decimal" | "numeric" => {
            let whole = precision.saturating_sub(scale);
            let fraction = 30.min(65u64.saturating_sub(whole));
            Column {
                bind: Bind::Wrap(format!("CAST({{}} AS DECIMAL(65, {fraction}))")),
                accept: Accept::Number,
                ..plain("string", true)
            }
        }
        // Binary values travel as base64.
        "binary" | "varbinary" => Column {
            bind: Bind::Wrap("FROM_BASE64({})".into()),
            ..plain("string", true)
        },
        "tinyblob" | "blob" | "mediumblob" | "longblob" => Column {
            bind: Bind::Wrap("FROM_BASE64({})".into()),
            ..plain("string", false)
        },
        // Text compares as text, whatever JSON type the value has. Long
        // texts sort by a prefix only (`max_sort_length`).
        "char" | "varchar" | "enum" | "set" => Column {
            bind: Bind::Text,
            ..plain("string", true)
        },
        "tinytext" | "text" | "mediumtext" | "longtext" => Column {
            bind: Bind::Text,
            ..plain("string", false)
        },
        // Geometry is read as base64 of MySQL's internal form (SRID, then WKB).
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => plain("string", false),
        _ => plain("string", true),
    }
}
