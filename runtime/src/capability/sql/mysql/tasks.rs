//! The MySQL tasks that own a lent connection while a guest's transaction or
//! row stream is open, and hand it back when it ends (or close it, when it
//! failed mid-use).

use std::sync::Arc;

use mysql_async::prelude::Queryable as _;
use tokio::sync::{mpsc, oneshot};

use super::convert::{columns_of, params, row_json};
use super::statement::{execute_on, mark_if_broken, start_transaction, with_host_timeout};
use super::{from_mysql, MyClient, MyPooled};
use crate::bindings::sluice::connector::sql::Column;
use crate::capability::sql::command::{Batch, Reply, StreamCommand, TxCommand};
use crate::capability::sql::failure::{SqlFailure, SqlResult};
use crate::capability::sql::grant::SqlGrant;

/// Hand the connection back, or close it when it broke.
fn give_back_or_close(pooled: MyPooled, give_back: oneshot::Sender<MyPooled>) {
    if pooled.is_closed() {
        pooled.discard();
    } else {
        let _ = give_back.send(pooled);
    }
}

/// One statement inside the open transaction.
async fn run_in_transaction(
    grant: &SqlGrant,
    client: &mut MyClient,
    statement: &str,
    values: &[String],
    want_rows: bool,
) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
    if client.broken {
        return Err(SqlFailure::Unavailable(
            "the transaction's connection was lost".into(),
        ));
    }
    grant.admit(statement)?;
    let params = params(values)?;
    let id = client.conn.id();
    let work = execute_on(client, statement, params, want_rows, &grant.name);
    let out = with_host_timeout(grant, id, work).await;
    mark_if_broken(client, &out);
    out
}

pub(in crate::capability::sql) async fn transaction_task(
    grant: Arc<SqlGrant>,
    mut pooled: MyPooled,
    ready: Reply<()>,
    mut commands: mpsc::Receiver<TxCommand>,
    give_back: oneshot::Sender<MyPooled>,
) {
    // The reply to commit/rollback waits until the connection is handed back,
    // so the guest can use its connection as soon as it has the answer.
    let finished: Option<(Reply<()>, SqlResult<()>)> = {
        let client = pooled.client();
        let id = client.conn.id();
        let fail = |e: mysql_async::Error| from_mysql(&grant.name, &e);
        let start = async {
            client
                .conn
                .query_drop(start_transaction(&grant))
                .await
                .map_err(fail)
        };
        let started = with_host_timeout(&grant, id, start).await;
        mark_if_broken(client, &started);
        if let Err(e) = started {
            let _ = ready.send(Err(e));
            give_back_or_close(pooled, give_back);
            return;
        }
        let _ = ready.send(Ok(()));
        let mut finished = None;
        while let Some(command) = commands.recv().await {
            match command {
                TxCommand::Query(statement, values, reply) => {
                    let out = run_in_transaction(&grant, client, &statement, &values, true).await;
                    let _ = reply.send(out.map(|(c, r, _)| (c, r)));
                }
                TxCommand::Execute(statement, values, reply) => {
                    let out = run_in_transaction(&grant, client, &statement, &values, false).await;
                    let _ = reply.send(out.map(|(_, _, n)| n));
                }
                TxCommand::Finish(commit, reply) => {
                    let end = if commit { "COMMIT" } else { "ROLLBACK" };
                    let done = if client.broken {
                        Err(SqlFailure::Unavailable(
                            "the transaction's connection was lost".into(),
                        ))
                    } else {
                        let work = async { client.conn.query_drop(end).await.map_err(fail) };
                        with_host_timeout(&grant, id, work).await
                    };
                    mark_if_broken(client, &done);
                    finished = Some((reply, done));
                    break;
                }
            }
        }
        if finished.is_none() && !client.broken {
            // The guest dropped the transaction: roll it back before reuse.
            if client.conn.query_drop("ROLLBACK").await.is_err() {
                client.broken = true;
            }
        }
        finished
    };
    give_back_or_close(pooled, give_back);
    if let Some((reply, result)) = finished {
        let _ = reply.send(result);
    }
}

#[allow(clippy::too_many_arguments)]
pub(in crate::capability::sql) async fn stream_task(
    grant: Arc<SqlGrant>,
    mut pooled: MyPooled,
    statement: String,
    values: Vec<String>,
    batch_size: u32,
    ready: Reply<Vec<Column>>,
    mut commands: mpsc::Receiver<StreamCommand>,
    give_back: oneshot::Sender<MyPooled>,
) {
    let batch_size = batch_size as usize;
    // The last batch is answered after the connection is handed back.
    let last: Option<(Reply<Batch>, SqlResult<Batch>)> = {
        let client = pooled.client();
        let id = client.conn.id();
        let settings = client.stream_settings();
        let fail = |e: mysql_async::Error| from_mysql(&grant.name, &e);
        let conn = &mut client.conn;
        let opened = async {
            let params = params(&values)?;
            conn.query_drop(settings).await.map_err(fail)?;
            conn.query_drop(start_transaction(&grant))
                .await
                .map_err(fail)?;
            let result = conn
                .exec_iter(statement.as_str(), params)
                .await
                .map_err(fail)?;
            let columns = columns_of(result.columns_ref());
            Ok::<_, SqlFailure>((result, columns))
        };
        let mut result = match with_host_timeout(&grant, id, opened).await {
            Ok((result, columns)) => {
                let _ = ready.send(Ok(columns));
                result
            }
            Err(e) => {
                // Whatever state the session is in, it is not reused.
                client.broken = true;
                let _ = ready.send(Err(e));
                drop(give_back);
                return;
            }
        };
        // One batch is read ahead: while the guest works on a batch, the next
        // one crosses the network and is converted. Memory stays bounded by two batches.
        let mut ahead = Some(next_batch(&grant, id, &mut result, batch_size).await);
        let mut last = None;
        let mut exhausted = false;
        while let Some(StreamCommand::Next(reply)) = commands.recv().await {
            let batch = match ahead.take() {
                Some(batch) => batch,
                None => next_batch(&grant, id, &mut result, batch_size).await,
            };
            match batch {
                Ok(rows) if rows.len() == batch_size => {
                    let _ = reply.send(Ok(Some(rows)));
                    ahead = Some(next_batch(&grant, id, &mut result, batch_size).await);
                }
                Ok(rows) => {
                    exhausted = true;
                    last = Some((reply, Ok((!rows.is_empty()).then_some(rows))));
                    break;
                }
                Err(e) => {
                    last = Some((reply, Err(e)));
                    break;
                }
            }
        }
        drop(result);
        if exhausted {
            // Back to the grant's settings (the stream lifted the server's
            // statement timeout) before the guest's next statement.
            let restored = match super::driver(&grant) {
                Some(driver) => {
                    client.conn.query_drop("COMMIT").await.is_ok()
                        && driver.settle(client).await.is_ok()
                }
                None => false,
            };
            client.broken |= !restored;
        } else {
            // Failed, or dropped before its end: the server may still be
            // sending rows. Stop it, and never reuse the connection.
            client.broken = true;
            if let Some(driver) = super::driver(&grant) {
                driver.kill_query(id).await;
            }
        }
        last
    };
    give_back_or_close(pooled, give_back);
    if let Some((reply, result)) = last {
        let _ = reply.send(result);
    }
    // The result is exhausted (or failed): every further `next` is the end.
    while let Some(StreamCommand::Next(reply)) = commands.recv().await {
        let _ = reply.send(Ok(None));
    }
}

/// The next `batch_size` rows of a streamed result (fewer at its end), read
/// under the grant's statement timeout.
async fn next_batch(
    grant: &SqlGrant,
    connection_id: u32,
    result: &mut mysql_async::QueryResult<'_, '_, mysql_async::BinaryProtocol>,
    batch_size: usize,
) -> SqlResult<Vec<String>> {
    with_host_timeout(grant, connection_id, async {
        let mut rows = Vec::with_capacity(batch_size.min(1024));
        while rows.len() < batch_size {
            match result.next().await {
                Ok(Some(row)) => rows.push(row_json(&row)?),
                Ok(None) => break,
                Err(e) => return Err(from_mysql(&grant.name, &e)),
            }
        }
        Ok(rows)
    })
    .await
}
