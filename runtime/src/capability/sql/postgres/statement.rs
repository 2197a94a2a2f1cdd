//! One PostgreSQL statement on a connection: parameters in, rows out as JSON, under
//! the grant's mode and statement timeout.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use super::convert::{self, JsonParam, RawColumn};
use super::from_pg;
use crate::bindings::sluice::connector::sql::Column;
use crate::capability::sql::failure::{SqlFailure, SqlResult};
use crate::capability::sql::grant::{SqlGrant, SqlMode, HOST_TIMEOUT_MARGIN};

pub(super) fn params(values: &[String]) -> SqlResult<Vec<JsonParam>> {
    values
        .iter()
        .enumerate()
        .map(|(i, text)| {
            serde_json::from_str(text).map(JsonParam).map_err(|e| {
                SqlFailure::InvalidValue(format!("parameter ${}: not JSON ({e})", i + 1))
            })
        })
        .collect()
}

pub(super) fn param_refs(params: &[JsonParam]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A row as a JSON array, each value's text written straight from the
/// server's binary form.
pub(super) fn row_json(row: &Row) -> SqlResult<String> {
    let mut text = String::with_capacity(2 + 16 * row.len());
    text.push('[');
    for (i, column) in row.columns().iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let written = row
            .try_get::<_, RawColumn>(i)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .and_then(|raw| convert::write_json(column.type_(), raw.0, &mut text));
        written
            .map_err(|e| SqlFailure::InvalidValue(format!("column `{}`: {e}", column.name())))?;
    }
    text.push(']');
    Ok(text)
}

pub(super) fn columns_of(columns: &[tokio_postgres::Column]) -> Vec<Column> {
    columns
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            type_name: c.type_().name().to_string(),
        })
        .collect()
}

/// Run one statement on `client`, inside a read-only transaction for read-only grants.
pub(in crate::capability::sql) async fn run_statement(
    grant: &SqlGrant,
    client: &mut Client,
    statement: &str,
    values: &[String],
    want_rows: bool,
) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
    grant.admit(statement)?;
    let params = params(values)?;
    let fail = |e: tokio_postgres::Error| from_pg(&grant.name, &e);
    let cancel = client.cancel_token();
    let work = async {
        if grant.mode == SqlMode::ReadOnly {
            let tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(fail)?;
            match execute_on(&tx, statement, &params, want_rows, &grant.name).await {
                Ok(out) => {
                    tx.commit().await.map_err(fail)?;
                    Ok(out)
                }
                // Rolled back before the connection goes back to the pool,
                // not left to a ROLLBACK queued when the transaction drops.
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        } else {
            execute_on(&*client, statement, &params, want_rows, &grant.name).await
        }
    };
    with_host_timeout(grant, cancel, work).await
}

pub(super) async fn execute_on<C: tokio_postgres::GenericClient>(
    client: &C,
    statement: &str,
    params: &[JsonParam],
    want_rows: bool,
    grant: &str,
) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
    let fail = |e: tokio_postgres::Error| from_pg(grant, &e);
    let prepared = client.prepare(statement).await.map_err(fail)?;
    let refs = param_refs(params);
    if want_rows {
        let rows = client.query(&prepared, &refs).await.map_err(fail)?;
        let count = rows.len() as u64;
        let rows = rows.iter().map(row_json).collect::<SqlResult<Vec<_>>>()?;
        Ok((columns_of(prepared.columns()), rows, count))
    } else {
        let affected = client.execute(&prepared, &refs).await.map_err(fail)?;
        Ok((Vec::new(), Vec::new(), affected))
    }
}

/// Enforce the statement timeout in the host too, cancelling the query on the server.
pub(super) async fn with_host_timeout<T>(
    grant: &SqlGrant,
    cancel: tokio_postgres::CancelToken,
    work: impl std::future::Future<Output = SqlResult<T>>,
) -> SqlResult<T> {
    let limit = grant.statement_timeout + HOST_TIMEOUT_MARGIN;
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            let _ = cancel.cancel_query(NoTls).await;
            Err(SqlFailure::Timeout(grant.name.clone()))
        }
    }
}
