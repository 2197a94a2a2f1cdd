//! The `sluice:connector/sql` host: a borrowed [`SqlView`] of one store's
//! state implements the WIT interface, so the sql host reaches only its
//! grants, its resources and the session's denial and timeout logs.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{HasData, Resource, ResourceTable};

use super::failure::{SqlFailure, SqlResult};
use super::grant::{SqlGrant, SqlPolicy};
use super::pool::PooledClient;
use super::statement::run_statement;
use super::tasks::{ask, stream_task, transaction_task, StreamCommand, TxCommand};
use crate::bindings::sluice::connector::sql::{
    Column, Host as SqlHost, HostConnection, HostRowStream, HostTransaction, RowSet, SqlError,
};
use crate::capability::denial::{Capability, Denial, Denials, Expiries, GrantTimeout};

/// What the sql host borrows from a store's state for one call.
pub(crate) struct SqlView<'a> {
    /// The store's resources (connections, transactions, streams live here).
    pub table: &'a mut ResourceTable,
    /// The session's sql grants.
    pub policy: &'a SqlPolicy,
    /// Where a denied grant name is recorded.
    pub denials: &'a Denials,
    /// Where an expired statement timeout is recorded.
    pub expiries: &'a Expiries,
}

/// Links [`SqlView`] into `add_to_linker`.
pub(crate) struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlView<'a>;
}

/// Where a connection's client is: here, or lent to a transaction or stream task.
enum ClientSlot {
    Ready(PooledClient),
    Lent(oneshot::Receiver<PooledClient>),
    Empty,
}

/// A guest's connection resource.
pub struct SqlConnection {
    grant: Arc<SqlGrant>,
    slot: ClientSlot,
}

impl SqlConnection {
    /// The client, taking it back from a finished transaction or stream.
    async fn client(&mut self) -> SqlResult<&mut PooledClient> {
        if let ClientSlot::Lent(rx) = &mut self.slot {
            match rx.try_recv() {
                Ok(client) => self.slot = ClientSlot::Ready(client),
                Err(oneshot::error::TryRecvError::Empty) => {
                    return Err(SqlFailure::Denied(
                        "this connection is busy with an open transaction or stream; finish or drop it first".into(),
                    ))
                }
                Err(oneshot::error::TryRecvError::Closed) => self.slot = ClientSlot::Empty,
            }
        }
        if matches!(self.slot, ClientSlot::Empty) {
            self.slot = ClientSlot::Ready(self.grant.pool.get().await?);
        }
        match &mut self.slot {
            ClientSlot::Ready(client) => {
                if client.client().is_closed() {
                    self.slot = ClientSlot::Ready(self.grant.pool.get().await?);
                }
                match &mut self.slot {
                    ClientSlot::Ready(client) => Ok(client),
                    _ => Err(SqlFailure::Unavailable("connection unavailable".into())),
                }
            }
            _ => Err(SqlFailure::Unavailable("connection unavailable".into())),
        }
    }

    /// After a lost connection, drop the client so the next call checks out a fresh one.
    fn forget_if_lost<T>(&mut self, result: &SqlResult<T>) {
        if let Err(SqlFailure::Unavailable(_)) = result {
            if let ClientSlot::Ready(client) = std::mem::replace(&mut self.slot, ClientSlot::Empty)
            {
                client.discard();
            }
        }
    }

    /// Lend the client to a task; it comes back through the returned sender.
    async fn lend(&mut self) -> SqlResult<(PooledClient, oneshot::Sender<PooledClient>)> {
        self.client().await?;
        let (tx, rx) = oneshot::channel();
        match std::mem::replace(&mut self.slot, ClientSlot::Lent(rx)) {
            ClientSlot::Ready(client) => Ok((client, tx)),
            _ => Err(SqlFailure::Unavailable("connection unavailable".into())),
        }
    }
}

/// A guest's transaction resource: a task owns the connection while it is open.
pub struct SqlTransaction {
    commands: mpsc::Sender<TxCommand>,
}

/// A guest's row-stream resource: a task reads the portal batch by batch.
pub struct SqlRowStream {
    columns: Vec<Column>,
    commands: mpsc::Sender<StreamCommand>,
}

impl SqlView<'_> {
    fn sql_grant(&self, name: &str) -> Result<Arc<SqlGrant>, SqlError> {
        match self.policy.grant(name) {
            Some(grant) => Ok(Arc::clone(grant)),
            None => {
                let denial = Denial {
                    capability: Capability::Sql,
                    attempted: format!("open database `{name}`"),
                    grant: format!("a sql grant named `{name}`"),
                    api_grant: format!("a sql grant named `{name}` to the instance's `grants.sql`"),
                    connector_error: None,
                };
                let message = denial.to_string();
                self.denials.record(denial);
                Err(SqlError::Denied(message))
            }
        }
    }

    /// The WIT error for a failure; an expired statement timeout is recorded,
    /// so the call's resulting `timeout` names the grant's setting.
    fn sql_error(&self, failure: SqlFailure) -> SqlError {
        if let SqlFailure::Timeout(name) = &failure {
            if let Some(grant) = self.policy.grant(name) {
                self.expiries.record(GrantTimeout {
                    capability: Capability::Sql,
                    waited_for: format!("a statement's result on sql grant `{name}`"),
                    setting: "statement_timeout_ms",
                    limit: grant.pool.statement_timeout(),
                });
            }
        }
        failure.into_wit()
    }
}

impl SqlHost for SqlView<'_> {}

impl HostConnection for SqlView<'_> {
    async fn open(
        &mut self,
        grant: String,
    ) -> wasmtime::Result<Result<Resource<SqlConnection>, SqlError>> {
        let grant = match self.sql_grant(&grant) {
            Ok(grant) => grant,
            Err(e) => return Ok(Err(e)),
        };
        let client = match grant.pool.get().await {
            Ok(client) => client,
            Err(e) => return Ok(Err(self.sql_error(e))),
        };
        let connection = SqlConnection {
            grant,
            slot: ClientSlot::Ready(client),
        };
        Ok(Ok(self.table.push(connection)?))
    }

    async fn query(
        &mut self,
        this: Resource<SqlConnection>,
        statement: String,
        params: Vec<String>,
    ) -> wasmtime::Result<Result<RowSet, SqlError>> {
        let conn = self.table.get_mut(&this)?;
        let grant = Arc::clone(&conn.grant);
        let result = async {
            let client = conn.client().await?;
            run_statement(&grant, client.client(), &statement, &params, true).await
        }
        .await;
        conn.forget_if_lost(&result);
        Ok(result
            .map(|(columns, rows, _)| RowSet { columns, rows })
            .map_err(|e| self.sql_error(e)))
    }

    async fn query_stream(
        &mut self,
        this: Resource<SqlConnection>,
        statement: String,
        params: Vec<String>,
        batch_size: u32,
    ) -> wasmtime::Result<Result<Resource<SqlRowStream>, SqlError>> {
        let conn = self.table.get_mut(&this)?;
        let grant = Arc::clone(&conn.grant);
        let batch_size = i32::try_from(batch_size.clamp(1, 100_000)).unwrap_or(1000);
        if let Err(e) = grant.admit(&statement) {
            return Ok(Err(self.sql_error(e)));
        }
        let (pooled, give_back) = match conn.lend().await {
            Ok(lent) => lent,
            Err(e) => return Ok(Err(self.sql_error(e))),
        };
        let (commands, inbox) = mpsc::channel(1);
        let (ready, opened) = oneshot::channel();
        tokio::spawn(stream_task(
            grant, pooled, statement, params, batch_size, ready, inbox, give_back,
        ));
        let columns = match opened.await {
            Ok(Ok(columns)) => columns,
            Ok(Err(e)) => return Ok(Err(self.sql_error(e))),
            Err(_) => return Ok(Err(SqlError::Unavailable("the stream task ended".into()))),
        };
        let stream = SqlRowStream { columns, commands };
        Ok(Ok(self.table.push_child(stream, &this)?))
    }

    async fn execute(
        &mut self,
        this: Resource<SqlConnection>,
        statement: String,
        params: Vec<String>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let conn = self.table.get_mut(&this)?;
        let grant = Arc::clone(&conn.grant);
        let result = async {
            let client = conn.client().await?;
            run_statement(&grant, client.client(), &statement, &params, false).await
        }
        .await;
        conn.forget_if_lost(&result);
        Ok(result.map(|(_, _, n)| n).map_err(|e| self.sql_error(e)))
    }

    async fn begin(
        &mut self,
        this: Resource<SqlConnection>,
    ) -> wasmtime::Result<Result<Resource<SqlTransaction>, SqlError>> {
        let conn = self.table.get_mut(&this)?;
        let grant = Arc::clone(&conn.grant);
        let (pooled, give_back) = match conn.lend().await {
            Ok(lent) => lent,
            Err(e) => return Ok(Err(self.sql_error(e))),
        };
        let (commands, inbox) = mpsc::channel(1);
        let (ready, started) = oneshot::channel();
        tokio::spawn(transaction_task(grant, pooled, ready, inbox, give_back));
        match started.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ok(Err(self.sql_error(e))),
            Err(_) => {
                return Ok(Err(SqlError::Unavailable(
                    "the transaction task ended".into(),
                )))
            }
        }
        Ok(Ok(self
            .table
            .push_child(SqlTransaction { commands }, &this)?))
    }

    async fn drop(&mut self, this: Resource<SqlConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostTransaction for SqlView<'_> {
    async fn query(
        &mut self,
        this: Resource<SqlTransaction>,
        statement: String,
        params: Vec<String>,
    ) -> wasmtime::Result<Result<RowSet, SqlError>> {
        let commands = self.table.get(&this)?.commands.clone();
        let result = ask(&commands, |reply| {
            TxCommand::Query(statement, params, reply)
        })
        .await;
        Ok(result
            .map(|(columns, rows)| RowSet { columns, rows })
            .map_err(|e| self.sql_error(e)))
    }

    async fn execute(
        &mut self,
        this: Resource<SqlTransaction>,
        statement: String,
        params: Vec<String>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let commands = self.table.get(&this)?.commands.clone();
        let result = ask(&commands, |reply| {
            TxCommand::Execute(statement, params, reply)
        })
        .await;
        Ok(result.map_err(|e| self.sql_error(e)))
    }

    async fn commit(
        &mut self,
        this: Resource<SqlTransaction>,
    ) -> wasmtime::Result<Result<(), SqlError>> {
        let tx = self.table.delete(this)?;
        Ok(ask(&tx.commands, |reply| TxCommand::Finish(true, reply))
            .await
            .map_err(|e| self.sql_error(e)))
    }

    async fn rollback(
        &mut self,
        this: Resource<SqlTransaction>,
    ) -> wasmtime::Result<Result<(), SqlError>> {
        let tx = self.table.delete(this)?;
        Ok(ask(&tx.commands, |reply| TxCommand::Finish(false, reply))
            .await
            .map_err(|e| self.sql_error(e)))
    }

    async fn drop(&mut self, this: Resource<SqlTransaction>) -> wasmtime::Result<()> {
        // Dropping the command channel makes the task roll back and hand the connection back.
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostRowStream for SqlView<'_> {
    async fn columns(&mut self, this: Resource<SqlRowStream>) -> wasmtime::Result<Vec<Column>> {
        Ok(self.table.get(&this)?.columns.clone())
    }

    async fn next(
        &mut self,
        this: Resource<SqlRowStream>,
    ) -> wasmtime::Result<Result<Option<Vec<String>>, SqlError>> {
        let commands = self.table.get(&this)?.commands.clone();
        Ok(ask(&commands, StreamCommand::Next)
            .await
            .map_err(|e| self.sql_error(e)))
    }

    async fn drop(&mut self, this: Resource<SqlRowStream>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
