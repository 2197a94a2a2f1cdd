//! `execute`: insert, update, delete and upsert of a batch of records in one
//! transaction. Every statement is built and checked before the transaction
//! starts; any failing record rolls the whole batch back.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sluice_sdk::sql::{self, Connection, Transaction};
use sluice_sdk::{config, ConnectorError, ExecuteRequest, ExecuteResponse, Record, Result};

use crate::dialect::Dialect;
use crate::select::Statement;
use crate::table::Table;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct WriteOptions {
    /// Return the written rows.
    returning: bool,
    /// Columns identifying a row for update/delete/upsert (default: the primary key).
    key: Option<Vec<String>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Operation {
    Insert,
    Update,
    Delete,
    Upsert,
}

/// Run `req` (`insert`, `update`, `delete` or `upsert` of its records) on
/// `table` in one transaction; `{"returning": true}` (PostgreSQL) returns the
/// written rows, `{"key": [...]}` names the columns that identify a row.
///
/// # Errors
///
/// `unsupported` for another operation; `invalid-request` naming the record
/// for a bad one; the database's errors as [`sql::error`] maps them.
pub fn execute(conn: &Connection, table: &Table, req: &ExecuteRequest) -> Result<ExecuteResponse> {
    let operation = match req.operation.as_str() {
        "insert" => Operation::Insert,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        "upsert" => Operation::Upsert,
        other => {
            return Err(ConnectorError::Unsupported(format!(
                "operation `{other}`; use insert, update, delete or upsert"
            )))
        }
    };
    let options: WriteOptions = config::parse_options(req.options.as_deref())?;
    if options.returning && table.dialect == Dialect::Mysql {
        return Err(ConnectorError::Unsupported(
            "`returning`: MySQL has no RETURNING for every operation; fetch the rows by key instead"
                .into(),
        ));
    }
    let key: Vec<String> = match &options.key {
        Some(key) => key
            .iter()
            .map(|k| table.column(k).map(str::to_string))
            .collect::<Result<_>>()?,
        None => table.key.clone(),
    };
    if operation != Operation::Insert && key.is_empty() {
        return Err(ConnectorError::InvalidRequest(format!(
            "`{}` on `{}` needs a key: the table has no primary key, pass `{{\"key\": [...]}}` in the options",
            req.operation, table.name
        )));
    }
    // Build and validate every statement before starting the transaction.
    let statements = req
        .records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            // Each value's JSON text as written: numbers keep every digit.
            let row = match serde_json::from_str::<BTreeMap<String, &RawValue>>(&record.data) {
                Ok(row) => row,
                Err(_) => {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "record {i}: data is not a JSON object"
                    )))
                }
            };
            statement(table, operation, &key, &row, options.returning).map_err(|e| prefix(i, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let tx = conn.begin().map_err(sql::error)?;
    let outcome = run(&tx, &statements, options.returning);
    match outcome {
        Ok(response) => {
            Transaction::commit(tx).map_err(sql::error)?;
            Ok(response)
        }
        Err(e) => {
            let _ = Transaction::rollback(tx);
            Err(e)
        }
    }
}

fn run(tx: &Transaction, statements: &[Statement], returning: bool) -> Result<ExecuteResponse> {
    let mut affected = 0;
    let mut records = Vec::new();
    for (i, stmt) in statements.iter().enumerate() {
        if returning {
            let set = tx
                .query(&stmt.sql, &stmt.params)
                .map_err(|e| prefix(i, sql::error(e)))?;
            affected += set.rows.len() as u64;
            for row in &set.rows {
                records.push(returned(&set.columns, row)?);
            }
        } else {
            affected += tx
                .execute(&stmt.sql, &stmt.params)
                .map_err(|e| prefix(i, sql::error(e)))?;
        }
    }
    Ok(ExecuteResponse { affected, records })
}

/// A returned row as a record, each value's text spliced in as the host wrote it.
fn returned(columns: &[sql::Column], row: &str) -> Result<Record> {
    let values = sql::row_raw(row)?;
    let mut data = String::with_capacity(row.len() * 2);
    data.push('{');
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&Value::String(column.name.clone()).to_string());
        data.push(':');
        data.push_str(value.get());
    }
    data.push('}');
    Ok(Record {
        id: None,
        data,
        metadata: None,
        timestamp: None,
    })
}

fn prefix(i: usize, err: ConnectorError) -> ConnectorError {
    match err {
        ConnectorError::InvalidRequest(m) => {
            ConnectorError::InvalidRequest(format!("record {i}: {m}"))
        }
        ConnectorError::Denied(m) => ConnectorError::Denied(format!("record {i}: {m}")),
        other => other,
    }
}

fn statement(
    table: &Table,
    operation: Operation,
    key: &[String],
    row: &BTreeMap<String, &RawValue>,
    returning: bool,
) -> Result<Statement> {
    let mut stmt = Statement::new(table.dialect);
    let quote = |ident: &str| table.quote(ident);
    let columns: Vec<&str> = row.keys().map(|k| table.column(k)).collect::<Result<_>>()?;
    let key_condition = |stmt: &mut Statement| -> Result<String> {
        key.iter()
            .map(|k| {
                let value = row.get(k).ok_or_else(|| {
                    ConnectorError::InvalidRequest(format!("missing key field `{k}`"))
                })?;
                Ok(format!(
                    "{} = {}",
                    quote(k),
                    table.bind(stmt, k, value.get())?
                ))
            })
            .collect::<Result<Vec<_>>>()
            .map(|parts| parts.join(" AND "))
    };
    stmt.sql = match operation {
        Operation::Insert | Operation::Upsert => {
            if columns.is_empty() {
                return Err(ConnectorError::InvalidRequest(
                    "a record has no fields".into(),
                ));
            }
            let values: Vec<String> = columns
                .iter()
                .map(|c| table.bind(&mut stmt, c, row[*c].get()))
                .collect::<Result<_>>()?;
            let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
            let mut sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                table.qualified(),
                names.join(", "),
                values.join(", ")
            );
            if operation == Operation::Upsert {
                sql.push_str(&upsert_clause(table, key, &columns));
            }
            sql
        }
        Operation::Update => {
            let sets: Vec<String> = columns
                .iter()
                .filter(|c| !key.iter().any(|k| k == *c))
                .map(|c| {
                    Ok(format!(
                        "{} = {}",
                        quote(c),
                        table.bind(&mut stmt, c, row[*c].get())?
                    ))
                })
                .collect::<Result<_>>()?;
            if sets.is_empty() {
                return Err(ConnectorError::InvalidRequest(
                    "an update sets no field besides the key".into(),
                ));
            }
            let condition = key_condition(&mut stmt)?;
            format!(
                "UPDATE {} SET {} WHERE {condition}",
                table.qualified(),
                sets.join(", ")
            )
        }
        Operation::Delete => {
            let condition = key_condition(&mut stmt)?;
            format!("DELETE FROM {} WHERE {condition}", table.qualified())
        }
    };
    if returning {
        let list: Vec<String> = table
            .columns
            .iter()
            .map(|c| table.select_expr(&c.name))
            .collect();
        stmt.sql
            .push_str(&format!(" RETURNING {}", list.join(", ")));
    }
    Ok(stmt)
}

/// What an insert does when a row with the same key exists: update the
/// record's other fields (or nothing when it has none).
fn upsert_clause(table: &Table, key: &[String], columns: &[&str]) -> String {
    let others: Vec<&&str> = columns
        .iter()
        .filter(|c| !key.iter().any(|k| k == **c))
        .collect();
    match table.dialect {
        Dialect::Postgres => {
            let conflict: Vec<String> = key.iter().map(|k| table.quote(k)).collect();
            if others.is_empty() {
                format!(" ON CONFLICT ({}) DO NOTHING", conflict.join(", "))
            } else {
                let updates: Vec<String> = others
                    .iter()
                    .map(|c| format!("{0} = EXCLUDED.{0}", table.quote(c)))
                    .collect();
                format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    conflict.join(", "),
                    updates.join(", ")
                )
            }
        }
        // MySQL's conflict target is every unique key of the table, not a
        // chosen one; with no other field, the key sets itself (a no-op).
        Dialect::Mysql => {
            let updated: Vec<&str> = if others.is_empty() {
                key.iter().map(String::as_str).collect()
            } else {
                others.iter().map(|c| **c).collect()
            };
            let updates: Vec<String> = updated
                .iter()
                .map(|c| format!("{0} = VALUES({0})", table.quote(c)))
                .collect();
            format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
        }
    }
}
