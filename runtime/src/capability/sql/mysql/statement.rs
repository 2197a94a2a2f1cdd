//! One MySQL statement on a connection: parameters in, rows out as JSON,
//! under the grant's mode and statement timeout.

use std::future::Future;

use mysql_async::prelude::Queryable as _;
use mysql_async::Params;

use super::convert::{columns_of, params, row_json};
use super::{driver, from_mysql, MyClient};
use crate::bindings::sluice::connector::sql::Column;
use crate::capability::sql::failure::{SqlFailure, SqlResult};
use crate::capability::sql::grant::{SqlGrant, SqlMode, HOST_TIMEOUT_MARGIN};

/// The statement that opens a transaction in the grant's mode.
pub(super) fn start_transaction(grant: &SqlGrant) -> &'static str {
    match grant.mode {
        SqlMode::ReadOnly => "START TRANSACTION READ ONLY",
        SqlMode::ReadWrite => "START TRANSACTION READ WRITE",
    }
}

/// Run one statement on `client`, inside a read-only transaction for read-only grants.
pub(in crate::capability::sql) async fn run_statement(
    grant: &SqlGrant,
    client: &mut MyClient,
    statement: &str,
    values: &[String],
    want_rows: bool,
) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
    grant.admit(statement)?;
    let params = params(values)?;
    let read_only = grant.mode == SqlMode::ReadOnly;
    let id = client.conn.id();
    let work = async {
        let fail = |e: mysql_async::Error| from_mysql(&grant.name, &e);
        if read_only {
            client
                .conn
                .query_drop(start_transaction(grant))
                .await
                .map_err(fail)?;
        }
        let out = execute_on(client, statement, params, want_rows, &grant.name).await;
        if read_only && !client.broken {
            // Committed or rolled back before the connection goes back to the pool.
            let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
            client.conn.query_drop(end).await.map_err(fail)?;
        }
        out
    };
    let result = with_host_timeout(grant, id, work).await;
    mark_if_broken(client, &result);
    result
}

/// A connection that timed out or was lost mid-statement is never reused:
/// what it would read next is unknown.
pub(super) fn mark_if_broken<T>(client: &mut MyClient, result: &SqlResult<T>) {
    if matches!(
        result,
        Err(SqlFailure::Timeout(_) | SqlFailure::Unavailable(_))
    ) {
        client.broken = true;
    }
}

/// Run `statement` with `params`: its columns, rows (when `want_rows`) and
/// row count (rows read, or rows affected).
pub(super) async fn execute_on(
    client: &mut MyClient,
    statement: &str,
    params: Params,
    want_rows: bool,
    grant: &str,
) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
    let fail = |e: mysql_async::Error| from_mysql(grant, &e);
    let started = client.conn.exec_iter(statement, params).await;
    let mut result = match started {
        Ok(result) => result,
        Err(e) => {
            // The server asked for a local file the host does not send: it
            // now waits for file content, and whatever the connection sent
            // next would be read as such. It is never used again.
            if matches!(
                e,
                mysql_async::Error::Driver(mysql_async::DriverError::LocalInfile(_))
            ) {
                client.broken = true;
            }
            return Err(fail(e));
        }
    };
    let columns = columns_of(result.columns_ref());
    let mut rows = Vec::new();
    if want_rows {
        while let Some(row) = result.next().await.map_err(fail)? {
            rows.push(row_json(&row)?);
        }
    }
    let count = if want_rows {
        rows.len() as u64
    } else {
        result.affected_rows()
    };
    result.drop_result().await.map_err(fail)?;
    Ok((columns, rows, count))
}

/// Enforce the statement timeout in the host too, killing the query on the
/// server (`KILL QUERY`) when it expires.
pub(super) async fn with_host_timeout<T>(
    grant: &SqlGrant,
    connection_id: u32,
    work: impl Future<Output = SqlResult<T>>,
) -> SqlResult<T> {
    let limit = grant.statement_timeout + HOST_TIMEOUT_MARGIN;
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            if let Some(driver) = driver(grant) {
                driver.kill_query(connection_id).await;
            }
            Err(SqlFailure::Timeout(grant.name.clone()))
        }
    }
}
