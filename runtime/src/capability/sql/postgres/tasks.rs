//! The PostgreSQL tasks that own a lent connection while a guest's transaction or row
//! stream is open, and hand it back when it ends.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::statement::{columns_of, execute_on, param_refs, params, row_json, with_host_timeout};
use super::{from_pg, PgPooled};
use crate::bindings::sluice::connector::sql::Column;
use crate::capability::sql::command::{Batch, Reply, StreamCommand, TxCommand};
use crate::capability::sql::failure::{SqlFailure, SqlResult};
use crate::capability::sql::grant::{SqlGrant, SqlMode};

pub(in crate::capability::sql) async fn transaction_task(
    grant: Arc<SqlGrant>,
    mut pooled: PgPooled,
    ready: Reply<()>,
    mut commands: mpsc::Receiver<TxCommand>,
    give_back: oneshot::Sender<PgPooled>,
) {
    // The reply to commit/rollback waits until the connection is handed back,
    // so the guest can use its connection as soon as it has the answer.
    let finished: Option<(Reply<()>, SqlResult<()>)> = {
        let client = pooled.client();
        let cancel = client.cancel_token();
        let fail = |e: tokio_postgres::Error| from_pg(&grant.name, &e);
        let started = client
            .build_transaction()
            .read_only(grant.mode == SqlMode::ReadOnly)
            .start()
            .await
            .map_err(fail);
        let tx = match started {
            Ok(tx) => {
                let _ = ready.send(Ok(()));
                tx
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut finished = None;
        while let Some(command) = commands.recv().await {
            match command {
                TxCommand::Query(statement, values, reply) => {
                    let work = async {
                        grant.admit(&statement)?;
                        let params = params(&values)?;
                        execute_on(&tx, &statement, &params, true, &grant.name).await
                    };
                    let out = with_host_timeout(&grant, cancel.clone(), work).await;
                    let _ = reply.send(out.map(|(c, r, _)| (c, r)));
                }
                TxCommand::Execute(statement, values, reply) => {
                    let work = async {
                        grant.admit(&statement)?;
                        let params = params(&values)?;
                        execute_on(&tx, &statement, &params, false, &grant.name).await
                    };
                    let out = with_host_timeout(&grant, cancel.clone(), work).await;
                    let _ = reply.send(out.map(|(_, _, n)| n));
                }
                TxCommand::Finish(commit, reply) => {
                    let done = if commit {
                        tx.commit().await
                    } else {
                        tx.rollback().await
                    };
                    finished = Some((reply, done.map_err(fail)));
                    break;
                }
            }
        }
        // Without a finish, the guest dropped the transaction: dropping `tx` rolls it back.
        finished
    };
    let _ = give_back.send(pooled);
    if let Some((reply, result)) = finished {
        let _ = reply.send(result);
    }
}

#[allow(clippy::too_many_arguments)]
pub(in crate::capability::sql) async fn stream_task(
    grant: Arc<SqlGrant>,
    mut pooled: PgPooled,
    statement: String,
    values: Vec<String>,
    batch_size: i32,
    ready: Reply<Vec<Column>>,
    mut commands: mpsc::Receiver<StreamCommand>,
    give_back: oneshot::Sender<PgPooled>,
) {
    // The last batch is answered after the connection is handed back.
    let mut broken = false;
    let last: Option<(Reply<Batch>, SqlResult<Batch>)> = {
        let client = pooled.client();
        let cancel = client.cancel_token();
        let fail = |e: tokio_postgres::Error| from_pg(&grant.name, &e);
        let opened = async {
            let tx = client
                .build_transaction()
                .read_only(grant.mode == SqlMode::ReadOnly)
                .start()
                .await
                .map_err(fail)?;
            let params = params(&values)?;
            let prepared = tx.prepare(&statement).await.map_err(fail)?;
            let portal = tx
                .bind(&prepared, &param_refs(&params))
                .await
                .map_err(fail)?;
            Ok::<_, SqlFailure>((tx, portal, columns_of(prepared.columns())))
        };
        let (tx, portal) = match with_host_timeout(&grant, cancel.clone(), opened).await {
            Ok((tx, portal, columns)) => {
                let _ = ready.send(Ok(columns));
                (tx, portal)
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let fetch = || {
            with_host_timeout(&grant, cancel.clone(), async {
                let rows = tx.query_portal(&portal, batch_size).await.map_err(fail)?;
                rows.iter().map(row_json).collect::<SqlResult<Vec<_>>>()
            })
        };
        // One batch is read ahead: while the guest works on a batch, the next
        // one crosses the network and is converted. Memory stays bounded by two batches.
        let mut ahead = Some(fetch().await);
        let mut last = None;
        while let Some(StreamCommand::Next(reply)) = commands.recv().await {
            let batch = match ahead.take() {
                Some(batch) => batch,
                None => fetch().await,
            };
            match batch {
                Ok(rows) if rows.len() == batch_size as usize => {
                    let _ = reply.send(Ok(Some(rows)));
                    ahead = Some(fetch().await);
                }
                Ok(rows) => {
                    let _ = tx.commit().await;
                    last = Some((reply, Ok((!rows.is_empty()).then_some(rows))));
                    break;
                }
                Err(e) => {
                    broken = matches!(e, SqlFailure::Unavailable(_));
                    last = Some((reply, Err(e)));
                    break;
                }
            }
        }
        last
    };
    if broken {
        // Never hand back a connection that died mid-stream: the next use checks out a fresh one.
        pooled.discard();
        drop(give_back);
    } else {
        let _ = give_back.send(pooled);
    }
    if let Some((reply, result)) = last {
        let _ = reply.send(result);
    }
    // The portal is exhausted (or failed): every further `next` is the end.
    while let Some(StreamCommand::Next(reply)) = commands.recv().await {
        let _ = reply.send(Ok(None));
    }
}
