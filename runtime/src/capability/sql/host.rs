//! The `sluice:connector/sql` host: a borrowed [`SqlView`] of one store's
//! state implements the WIT interface, so the sql host reaches only its
//! grants, its resources and the session's denial and timeout logs.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{HasData, Resource, ResourceTable};

use super::command::{ask, StreamCommand, TxCommand};
use super::failure::{SqlFailure, SqlResult};
use super::forward::ForwardedRecords;
use super::grant::{Backend, SqlGrant, SqlPolicy};
use super::pool::{Driver, Pool, Pooled};
use super::shape::Shaper;
use super::{mysql, postgres};
use crate::bindings::sluice::connector::sql::{
    Column, Forwarded, Host as SqlHost, HostConnection, HostRowStream, HostTransaction,
    RecordShape, RowSet, SqlError,
};
use crate::capability::denial::{Capability, Denial, Denials, Expiries, GrantTimeout};
use crate::tape::sql::{self as taped, SqlAnswer, Taped};
use crate::tape::Tape;

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
    /// Records forwarded to the running `record-stream.next` call.
    pub forwarded: &'a mut ForwardedRecords,
    /// Where calls are recorded or replayed from, if anywhere.
    pub tape: Option<&'a Tape>,
}

/// Links [`SqlView`] into `add_to_linker`.
pub(crate) struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlView<'a>;
}

/// Where a connection's client is: here, or lent to a transaction or stream task.
enum SlotState<D: Driver> {
    Ready(Pooled<D>),
    Lent(oneshot::Receiver<Pooled<D>>),
    Empty,
}

/// A connection's client from one grant's pool.
struct Slot<D: Driver> {
    pool: Arc<Pool<D>>,
    state: SlotState<D>,
}

impl<D: Driver> Slot<D> {
    async fn open(pool: &Arc<Pool<D>>) -> SqlResult<Self> {
        Ok(Self {
            pool: Arc::clone(pool),
            state: SlotState::Ready(pool.get().await?),
        })
    }

    /// The client, taking it back from a finished transaction or stream.
    async fn client(&mut self) -> SqlResult<&mut Pooled<D>> {
        if let SlotState::Lent(rx) = &mut self.state {
            match rx.try_recv() {
                Ok(client) => self.state = SlotState::Ready(client),
                Err(oneshot::error::TryRecvError::Empty) => {
                    return Err(SqlFailure::Denied(
                        "this connection is busy with an open transaction or stream; finish or drop it first".into(),
                    ))
                }
                Err(oneshot::error::TryRecvError::Closed) => self.state = SlotState::Empty,
            }
        }
        let fresh = match &self.state {
            SlotState::Ready(client) => client.is_closed(),
            _ => true,
        };
        if fresh {
            self.state = SlotState::Ready(self.pool.get().await?);
        }
        match &mut self.state {
            SlotState::Ready(client) => Ok(client),
            _ => Err(SqlFailure::Unavailable("connection unavailable".into())),
        }
    }

    /// After a lost connection, drop the client so the next call checks out a fresh one.
    fn forget_if_lost<T>(&mut self, result: &SqlResult<T>) {
        if let Err(SqlFailure::Unavailable(_)) = result {
            if let SlotState::Ready(client) = std::mem::replace(&mut self.state, SlotState::Empty) {
                client.discard();
            }
        }
    }

    /// Lend the client to a task; it comes back through the returned sender.
    async fn lend(&mut self) -> SqlResult<(Pooled<D>, oneshot::Sender<Pooled<D>>)> {
        self.client().await?;
        let (tx, rx) = oneshot::channel();
        match std::mem::replace(&mut self.state, SlotState::Lent(rx)) {
            SlotState::Ready(client) => Ok((client, tx)),
            _ => Err(SqlFailure::Unavailable("connection unavailable".into())),
        }
    }
}

/// A connection's client, in its grant's dialect.
enum Link {
    Postgres(Slot<postgres::PgDriver>),
    Mysql(Slot<mysql::MyDriver>),
}

/// A guest's connection resource: a grant's client, or — in a replay —
/// nothing but the recorded dialect.
pub struct SqlConnection {
    live: Option<LiveConnection>,
    dialect: String,
}

/// A connection to a granted database.
struct LiveConnection {
    grant: Arc<SqlGrant>,
    link: Link,
}

impl SqlConnection {
    /// The live connection; a replayed one has none.
    fn live(&mut self) -> SqlResult<&mut LiveConnection> {
        self.live
            .as_mut()
            .ok_or_else(|| SqlFailure::Unavailable("a replayed connection has no database".into()))
    }
}

impl LiveConnection {
    async fn open(grant: Arc<SqlGrant>) -> SqlResult<Self> {
        let link = match &grant.backend {
            Backend::Postgres(pool) => Link::Postgres(Slot::open(pool).await?),
            Backend::Mysql(pool) => Link::Mysql(Slot::open(pool).await?),
        };
        Ok(Self { grant, link })
    }

    /// Run one statement: its columns, rows (when `want_rows`) and row count.
    async fn run(
        &mut self,
        statement: &str,
        params: &[String],
        want_rows: bool,
    ) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
        let grant = &self.grant;
        match &mut self.link {
            Link::Postgres(slot) => {
                let result = async {
                    let client = slot.client().await?.client();
                    postgres::statement::run_statement(grant, client, statement, params, want_rows)
                        .await
                }
                .await;
                slot.forget_if_lost(&result);
                result
            }
            Link::Mysql(slot) => {
                let result = async {
                    let client = slot.client().await?.client();
                    mysql::statement::run_statement(grant, client, statement, params, want_rows)
                        .await
                }
                .await;
                slot.forget_if_lost(&result);
                result
            }
        }
    }

    /// Start a row stream in a task that owns the connection until it ends.
    async fn stream(
        &mut self,
        statement: String,
        params: Vec<String>,
        batch_size: u32,
    ) -> SqlResult<(Vec<Column>, mpsc::Sender<StreamCommand>)> {
        let grant = Arc::clone(&self.grant);
        grant.admit(&statement)?;
        let (commands, inbox) = mpsc::channel(1);
        let (ready, opened) = oneshot::channel();
        match &mut self.link {
            Link::Postgres(slot) => {
                let (pooled, give_back) = slot.lend().await?;
                let batch = i32::try_from(batch_size).unwrap_or(i32::MAX);
                tokio::spawn(postgres::tasks::stream_task(
                    grant, pooled, statement, params, batch, ready, inbox, give_back,
                ));
            }
            Link::Mysql(slot) => {
                let (pooled, give_back) = slot.lend().await?;
                tokio::spawn(mysql::tasks::stream_task(
                    grant, pooled, statement, params, batch_size, ready, inbox, give_back,
                ));
            }
        }
        let columns = opened
            .await
            .map_err(|_| SqlFailure::Unavailable("the stream task ended".into()))??;
        Ok((columns, commands))
    }

    /// Start a transaction in a task that owns the connection until it ends.
    async fn begin(&mut self) -> SqlResult<mpsc::Sender<TxCommand>> {
        let grant = Arc::clone(&self.grant);
        let (commands, inbox) = mpsc::channel(1);
        let (ready, started) = oneshot::channel();
        match &mut self.link {
            Link::Postgres(slot) => {
                let (pooled, give_back) = slot.lend().await?;
                tokio::spawn(postgres::tasks::transaction_task(
                    grant, pooled, ready, inbox, give_back,
                ));
            }
            Link::Mysql(slot) => {
                let (pooled, give_back) = slot.lend().await?;
                tokio::spawn(mysql::tasks::transaction_task(
                    grant, pooled, ready, inbox, give_back,
                ));
            }
        }
        started
            .await
            .map_err(|_| SqlFailure::Unavailable("the transaction task ended".into()))??;
        Ok(commands)
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
    /// Rows of the task's last batch that `forward-records` has not passed on
    /// yet (its `max` was smaller than the batch).
    pending: VecDeque<String>,
}

impl<'a> SqlView<'a> {
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

    /// What a call needs besides the table: error typing and the tape.
    fn taping(&self) -> Taping<'a> {
        Taping {
            policy: self.policy,
            expiries: self.expiries,
            tape: self.tape,
        }
    }

    /// A command channel whose task never runs: what a replayed
    /// transaction or stream holds (the tape answers instead).
    fn replayed_commands<C>() -> mpsc::Sender<C> {
        mpsc::channel(1).0
    }

    fn replaying(&self) -> bool {
        self.tape.is_some_and(|t| t.player().is_some())
    }
}

/// The parts of a [`SqlView`] a call uses while it holds a resource of the table.
#[derive(Clone, Copy)]
struct Taping<'a> {
    policy: &'a SqlPolicy,
    expiries: &'a Expiries,
    tape: Option<&'a Tape>,
}

impl Taping<'_> {
    /// The WIT error for a failure; an expired statement timeout is recorded,
    /// so the call's resulting `timeout` names the grant's setting.
    fn sql_error(&self, failure: SqlFailure) -> SqlError {
        if let SqlFailure::Timeout(name) = &failure {
            if let Some(grant) = self.policy.grant(name) {
                self.expiries.record(GrantTimeout {
                    capability: Capability::Sql,
                    waited_for: format!("a statement's result on sql grant `{name}`"),
                    setting: "statement_timeout_ms",
                    limit: grant.statement_timeout(),
                });
            }
        }
        failure.into_wit()
    }

    /// Answer `call` from the tape when replaying; else run `live` (its
    /// failure typed like every sql error) and record the answer when recording.
    async fn run<T: Taped>(
        self,
        call: &str,
        text: &str,
        params: &[String],
        live: impl std::future::Future<Output = SqlResult<T>>,
    ) -> SqlAnswer<T> {
        if self.tape.is_none() {
            return live.await.map_err(|e| self.sql_error(e));
        }
        let call = taped::call(call, text, params);
        if let Some(answer) = taped::replayed(self.tape, &call) {
            return answer;
        }
        let answer = live.await.map_err(|e| self.sql_error(e));
        taped::record(self.tape, &call, &answer);
        answer
    }

    /// The next batch of a row stream's task (or of the recording).
    async fn next_batch(
        self,
        commands: mpsc::Sender<StreamCommand>,
    ) -> SqlAnswer<Option<Vec<String>>> {
        self.run("next", "", &[], async move {
            ask(&commands, StreamCommand::Next).await
        })
        .await
    }
}

impl SqlHost for SqlView<'_> {}

impl HostConnection for SqlView<'_> {
    async fn open(
        &mut self,
        grant: String,
    ) -> wasmtime::Result<Result<Resource<SqlConnection>, SqlError>> {
        let mut live = None;
        let answer = if self.replaying() {
            self.taping()
                .run("open", &grant, &[], async { Ok(String::new()) })
                .await
        } else {
            match self.sql_grant(&grant) {
                Err(e) => {
                    let answer = Err(e);
                    taped::record::<String>(self.tape, &taped::call("open", &grant, &[]), &answer);
                    answer
                }
                Ok(granted) => {
                    self.taping()
                        .run("open", &grant, &[], async {
                            let connection = LiveConnection::open(granted).await?;
                            let dialect = connection.grant.dialect().as_str().to_string();
                            live = Some(connection);
                            Ok(dialect)
                        })
                        .await
                }
            }
        };
        match answer {
            Ok(dialect) => Ok(Ok(self.table.push(SqlConnection { live, dialect })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn dialect(&mut self, this: Resource<SqlConnection>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.dialect.clone())
    }

    async fn query(
        &mut self,
        this: Resource<SqlConnection>,
        statement: String,
        params: Vec<String>,
    ) -> wasmtime::Result<Result<RowSet, SqlError>> {
        let taping = self.taping();
        let conn = self.table.get_mut(&this)?;
        Ok(taping
            .run("query", &statement, &params, async {
                let (columns, rows, _) = conn.live()?.run(&statement, &params, true).await?;
                Ok(RowSet { columns, rows })
            })
            .await)
    }

    async fn query_stream(
        &mut self,
        this: Resource<SqlConnection>,
        statement: String,
        params: Vec<String>,
        batch_size: u32,
    ) -> wasmtime::Result<Result<Resource<SqlRowStream>, SqlError>> {
        let taping = self.taping();
        let conn = self.table.get_mut(&this)?;
        let batch_size = batch_size.clamp(1, 100_000);
        let mut commands = None;
        let answer = taping
            .run("query-stream", &statement, &params, async {
                let (columns, sender) = conn
                    .live()?
                    .stream(statement.clone(), params.clone(), batch_size)
                    .await?;
                commands = Some(sender);
                Ok(columns)
            })
            .await;
        match answer {
            Ok(columns) => {
                let stream = SqlRowStream {
                    columns,
                    commands: commands.unwrap_or_else(Self::replayed_commands),
                    pending: VecDeque::new(),
                };
                Ok(Ok(self.table.push_child(stream, &this)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute(
        &mut self,
        this: Resource<SqlConnection>,
        statement: String,
        params: Vec<String>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let taping = self.taping();
        let conn = self.table.get_mut(&this)?;
        Ok(taping
            .run("execute", &statement, &params, async {
                let (_, _, count) = conn.live()?.run(&statement, &params, false).await?;
                Ok(count)
            })
            .await)
    }

    async fn begin(
        &mut self,
        this: Resource<SqlConnection>,
    ) -> wasmtime::Result<Result<Resource<SqlTransaction>, SqlError>> {
        let taping = self.taping();
        let conn = self.table.get_mut(&this)?;
        let mut commands = None;
        let answer = taping
            .run("begin", "", &[], async {
                commands = Some(conn.live()?.begin().await?);
                Ok(())
            })
            .await;
        match answer {
            Ok(()) => {
                let commands = commands.unwrap_or_else(Self::replayed_commands);
                Ok(Ok(self
                    .table
                    .push_child(SqlTransaction { commands }, &this)?))
            }
            Err(e) => Ok(Err(e)),
        }
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
        Ok(self
            .taping()
            .run("tx-query", &statement, &params, async {
                let (columns, rows) = ask(&commands, |reply| {
                    TxCommand::Query(statement.clone(), params.clone(), reply)
                })
                .await?;
                Ok(RowSet { columns, rows })
            })
            .await)
    }

    async fn execute(
        &mut self,
        this: Resource<SqlTransaction>,
        statement: String,
        params: Vec<String>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let commands = self.table.get(&this)?.commands.clone();
        Ok(self
            .taping()
            .run("tx-execute", &statement, &params, async {
                ask(&commands, |reply| {
                    TxCommand::Execute(statement.clone(), params.clone(), reply)
                })
                .await
            })
            .await)
    }

    async fn commit(
        &mut self,
        this: Resource<SqlTransaction>,
    ) -> wasmtime::Result<Result<(), SqlError>> {
        let tx = self.table.delete(this)?;
        Ok(self
            .taping()
            .run("commit", "", &[], async {
                ask(&tx.commands, |reply| TxCommand::Finish(true, reply)).await
            })
            .await)
    }

    async fn rollback(
        &mut self,
        this: Resource<SqlTransaction>,
    ) -> wasmtime::Result<Result<(), SqlError>> {
        let tx = self.table.delete(this)?;
        Ok(self
            .taping()
            .run("rollback", "", &[], async {
                ask(&tx.commands, |reply| TxCommand::Finish(false, reply)).await
            })
            .await)
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
        let stream = self.table.get_mut(&this)?;
        if !stream.pending.is_empty() {
            return Ok(Ok(Some(stream.pending.drain(..).collect())));
        }
        let commands = stream.commands.clone();
        Ok(self.taping().next_batch(commands).await)
    }

    async fn forward_records(
        &mut self,
        this: Resource<SqlRowStream>,
        shape: RecordShape,
        max: u32,
    ) -> wasmtime::Result<Result<Option<Forwarded>, SqlError>> {
        let taping = self.taping();
        let room = match self.forwarded.room() {
            Ok(room) => room,
            Err(e) => return Ok(Err(taping.sql_error(e))),
        };
        let stream = self.table.get_mut(&this)?;
        // A shape that does not fit the columns is refused before any row is taken.
        let shaper = match Shaper::new(&shape, &stream.columns) {
            Ok(shaper) => shaper,
            Err(e) => return Ok(Err(taping.sql_error(e))),
        };
        if stream.pending.is_empty() {
            let commands = stream.commands.clone();
            match taping.next_batch(commands).await {
                Ok(Some(rows)) => self.table.get_mut(&this)?.pending.extend(rows),
                Ok(None) => return Ok(Ok(None)),
                Err(e) => return Ok(Err(e)),
            }
        }
        let stream = self.table.get_mut(&this)?;
        let take = (max.max(1) as usize).min(room).min(stream.pending.len());
        let rows: Vec<String> = stream.pending.drain(..take).collect();
        // A row that cannot be rendered (JSON text that is not JSON) fails the
        // call and the stream; the checkpoint has not moved past it.
        match shaper.batch(&rows, &stream.columns) {
            Ok((records, last_position)) => {
                let count = records.len() as u32;
                self.forwarded.push(records);
                Ok(Ok(Some(Forwarded {
                    count,
                    last_position,
                })))
            }
            Err(e) => Ok(Err(taping.sql_error(e))),
        }
    }

    async fn drop(&mut self, this: Resource<SqlRowStream>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
