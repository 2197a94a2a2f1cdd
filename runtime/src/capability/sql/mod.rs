//! SQL: PostgreSQL databases by grant *name*, on tokio-postgres.
//!
//! Threat model: the guest writes the SQL, so the grant is the boundary. The
//! guest names a grant and never sees its URL or password. A `read-only`
//! grant admits only single plain queries ([`guard`]: no transaction or
//! session control, no `COPY`, `LOCK`, large objects or session advisory
//! locks, through any function, in any order) and runs each inside a `READ
//! ONLY` transaction, so a write fails with `denied` whatever SQL the guest
//! sends. "Read-only" is not a privilege boundary against the database
//! server itself: the role is. A policy can refuse privileged roles
//! ([`SqlUrlPolicy::allow_privileged_roles`]), checked at every connect. Each grant owns one
//! bounded pool shared by every session opened with it; connections are reset
//! before reuse. Statements run under the grant's `statement_timeout`, set on
//! the server and enforced again by the host (which cancels the query), so a
//! guest `SET statement_timeout = 0` buys nothing. Grant URLs are checked
//! against a [`SqlUrlPolicy`] that can refuse Unix sockets, `hostaddr`,
//! multi-host lists and privileged roles (a multi-tenant server refuses them).
//!
//! Streams (`query-stream`) read a server-side portal in batches, so any
//! result size takes bounded memory; explicit transactions and streams run in
//! a task that owns the connection and hands it back when they end.

mod convert;
pub mod guard;
mod pool;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};
use wasmtime::component::Resource;

use convert::{JsonParam, RawColumn};
use pool::{Pool, PooledClient};

use crate::bindings::sluice::connector::sql::{
    Column, DbError, Host as SqlHost, HostConnection, HostRowStream, HostTransaction, RowSet,
    SqlError,
};
use crate::error::{Capability, Denial, Error, GrantTimeout};
use crate::state::HostState;

/// Default number of connections per grant.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Default statement timeout.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time the host waits past the statement timeout before cancelling itself.
const HOST_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// Whether a grant may write.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum SqlMode {
    /// Every statement runs in a read-only transaction (the default).
    #[default]
    ReadOnly,
    /// Statements may write.
    ReadWrite,
}

/// Which connection targets a grant URL may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlUrlPolicy {
    /// Allow `host=/path` Unix-socket connections.
    pub allow_unix_sockets: bool,
    /// Allow `hostaddr=` (bypasses host-name checks).
    pub allow_hostaddr: bool,
    /// Allow several hosts in one URL.
    pub allow_multiple_hosts: bool,
    /// Allow roles that reach beyond SQL: superusers, members of
    /// `pg_execute_server_program` / `pg_write_server_files` /
    /// `pg_read_server_files`, and roles with `BYPASSRLS` or `REPLICATION`.
    /// When refused, a connection as such a role is denied when it is made.
    pub allow_privileged_roles: bool,
}

impl SqlUrlPolicy {
    /// Everything allowed: the local command line.
    pub const PERMISSIVE: Self = Self {
        allow_unix_sockets: true,
        allow_hostaddr: true,
        allow_multiple_hosts: true,
        allow_privileged_roles: true,
    };
    /// One TCP host by name or address: what a multi-tenant server accepts.
    pub const STRICT: Self = Self {
        allow_unix_sockets: false,
        allow_hostaddr: false,
        allow_multiple_hosts: false,
        allow_privileged_roles: false,
    };
}

/// Where `config` connects, as `user@host:port/db`: never the password.
pub fn target_of(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{}:{port}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// One named database grant.
pub struct SqlGrant {
    name: String,
    mode: SqlMode,
    config: tokio_postgres::Config,
    pool: Arc<Pool>,
    /// The secret holding the password, when the URL carries none.
    password_secret: Option<String>,
    /// Whether the password has been filled in from that secret.
    password_provided: bool,
}

impl std::fmt::Debug for SqlGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlGrant")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("target", &self.target())
            .finish_non_exhaustive()
    }
}

impl SqlGrant {
    /// The grant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its mode.
    pub fn mode(&self) -> SqlMode {
        self.mode
    }

    /// `user@host:port/db`, never the password.
    pub fn target(&self) -> String {
        target_of(&self.config)
    }

    /// Check the URL against `policy`; a policy that refuses privileged roles
    /// makes this grant's pool check the role of every connection it opens.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the refused feature.
    pub fn check_url(&self, policy: &SqlUrlPolicy) -> Result<(), Error> {
        let refuse = |what: &str| {
            Err(Error::InvalidGrant(format!(
                "sql grant `{}`: {what} is not allowed here",
                self.name
            )))
        };
        let hosts = self.config.get_hosts();
        if !policy.allow_unix_sockets && hosts.iter().any(|h| matches!(h, Host::Unix(_))) {
            return refuse("a Unix-socket host");
        }
        if !policy.allow_hostaddr && !self.config.get_hostaddrs().is_empty() {
            return refuse("`hostaddr`");
        }
        if !policy.allow_multiple_hosts && hosts.len() > 1 {
            return refuse("a multi-host list");
        }
        if !policy.allow_privileged_roles {
            self.pool.refuse_privileged_roles();
        }
        Ok(())
    }

    /// Refuse, for a read-only grant, any statement but a single plain query
    /// (see [`guard`]); a read-write grant admits everything its role may do.
    fn admit(&self, statement: &str) -> SqlResult<()> {
        if self.mode == SqlMode::ReadWrite {
            return Ok(());
        }
        guard::check_read_only(statement).map_err(|why| {
            SqlFailure::Denied(format!("sql grant `{}` is read-only: {why}", self.name))
        })
    }

    /// Connections idle in this grant's pool.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }
}

/// The sql grants of one session, by name.
#[derive(Debug, Clone, Default)]
pub struct SqlPolicy {
    grants: HashMap<String, Arc<SqlGrant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlGrantSpec {
    name: String,
    url: String,
    #[serde(default)]
    mode: SqlMode,
    max_connections: Option<usize>,
    statement_timeout_ms: Option<u64>,
    /// Name of the secret holding the password (instead of one in the URL).
    password_secret: Option<String>,
}

impl SqlPolicy {
    pub(crate) fn from_specs(specs: Vec<SqlGrantSpec>) -> Result<Self, Error> {
        let mut policy = Self::default();
        for spec in specs {
            policy.add(
                &spec.name,
                &spec.url,
                spec.mode,
                spec.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                spec.statement_timeout_ms
                    .map_or(DEFAULT_STATEMENT_TIMEOUT, Duration::from_millis),
            )?;
            if let Some(secret) = spec.password_secret {
                let grant = policy
                    .grants
                    .get_mut(&spec.name)
                    .and_then(Arc::get_mut)
                    .ok_or_else(|| {
                        Error::InvalidGrant(format!("sql grant `{}` vanished", spec.name))
                    })?;
                if grant.config.get_password().is_some() {
                    return Err(Error::InvalidGrant(format!(
                        "sql grant `{}`: give the password either in the URL or as `password_secret`, not both",
                        spec.name
                    )));
                }
                grant.password_secret = Some(secret);
            }
        }
        Ok(policy)
    }

    /// Fill in the password of every grant whose `password_secret` is `name`.
    pub(crate) fn provide_secret(&mut self, name: &str, value: &str) {
        for grant in self.grants.values_mut() {
            if grant.password_secret.as_deref() != Some(name) {
                continue;
            }
            let mut config = grant.config.clone();
            config.password(value);
            let pool = Arc::new(Pool::new(
                &grant.name,
                config.clone(),
                grant.pool.max_connections(),
                grant.pool.statement_timeout(),
            ));
            *grant = Arc::new(SqlGrant {
                name: grant.name.clone(),
                mode: grant.mode,
                config,
                pool,
                password_secret: grant.password_secret.clone(),
                password_provided: true,
            });
        }
    }

    /// Check that every `password_secret` was provided.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the missing secret (never a value).
    pub fn check_secrets(&self) -> Result<(), Error> {
        for grant in self.grants.values() {
            if let (Some(secret), false) = (&grant.password_secret, grant.password_provided) {
                return Err(Error::InvalidGrant(format!(
                    "sql grant `{}` needs the secret `{secret}` for its password, which was not provided (CLI: --secret {secret}=VALUE)",
                    grant.name
                )));
            }
        }
        Ok(())
    }

    /// Add a grant `name` for the PostgreSQL URL (or key=value string) `url`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a duplicate name, an unparsable URL (the
    /// message never repeats the URL, which may hold a password) or zero bounds.
    pub fn add(
        &mut self,
        name: &str,
        url: &str,
        mode: SqlMode,
        max_connections: usize,
        statement_timeout: Duration,
    ) -> Result<(), Error> {
        if name.is_empty() || self.grants.contains_key(name) {
            return Err(Error::InvalidGrant(format!(
                "sql grant name `{name}` is empty or used twice"
            )));
        }
        if max_connections == 0 || statement_timeout.is_zero() {
            return Err(Error::InvalidGrant(format!(
                "sql grant `{name}`: max_connections and statement_timeout must be positive"
            )));
        }
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            Error::InvalidGrant(format!(
                "sql grant `{name}`: the URL does not parse ({e}); write `postgres://user:password@host:port/database`"
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(Error::InvalidGrant(format!(
                "sql grant `{name}`: the URL names no host"
            )));
        }
        let pool = Arc::new(Pool::new(
            name,
            config.clone(),
            max_connections,
            statement_timeout,
        ));
        self.grants.insert(
            name.to_string(),
            Arc::new(SqlGrant {
                name: name.to_string(),
                mode,
                config,
                pool,
                password_secret: None,
                password_provided: false,
            }),
        );
        Ok(())
    }

    /// The grant called `name`.
    pub fn grant(&self, name: &str) -> Option<&Arc<SqlGrant>> {
        self.grants.get(name)
    }

    /// Check every grant's URL against `policy`.
    ///
    /// # Errors
    ///
    /// The first refusal.
    pub fn check_urls(&self, policy: &SqlUrlPolicy) -> Result<(), Error> {
        self.grants.values().try_for_each(|g| g.check_url(policy))
    }

    /// Whether there are no grants.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }
}

/// A failure before it becomes the WIT `sql-error`.
#[derive(Debug)]
pub(crate) enum SqlFailure {
    Denied(String),
    Query {
        sqlstate: Option<String>,
        message: String,
    },
    Unavailable(String),
    /// The statement timeout of the named grant expired.
    Timeout(String),
    InvalidValue(String),
}

impl SqlFailure {
    fn from_pg(grant: &str, err: &tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            let code = db.code().code();
            let message = db.message().to_string();
            return match code {
                "25006" => {
                    SqlFailure::Denied(format!("sql grant `{grant}` is read-only: {message}"))
                }
                "57014" => SqlFailure::Timeout(grant.to_string()),
                c if c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03" => {
                    SqlFailure::Unavailable(format!("sql grant `{grant}`: {message}"))
                }
                _ => SqlFailure::Query {
                    sqlstate: Some(code.to_string()),
                    message,
                },
            };
        }
        if err.is_closed() {
            return SqlFailure::Unavailable(format!(
                "the connection of sql grant `{grant}` was lost"
            ));
        }
        let text = err.to_string();
        if let Some(source) = std::error::Error::source(err) {
            // Parameter conversion errors come from our own encoder.
            if text.starts_with("error serializing parameter") {
                return SqlFailure::InvalidValue(format!("{text}: {source}"));
            }
            if text.starts_with("error deserializing column") {
                return SqlFailure::InvalidValue(format!("{text}: {source}"));
            }
        }
        SqlFailure::Unavailable(format!("sql grant `{grant}`: {}", pg_text(err)))
    }

    fn into_wit(self) -> SqlError {
        match self {
            SqlFailure::Denied(m) => SqlError::Denied(m),
            SqlFailure::Query { sqlstate, message } => {
                SqlError::QueryFailed(DbError { sqlstate, message })
            }
            SqlFailure::Unavailable(m) => SqlError::Unavailable(m),
            SqlFailure::Timeout(_) => SqlError::Timeout,
            SqlFailure::InvalidValue(m) => SqlError::InvalidValue(m),
        }
    }
}

type SqlResult<T> = Result<T, SqlFailure>;

/// A tokio-postgres error in full: its own text says only "db error" or
/// "error connecting to server"; the server's message (with its SQLSTATE)
/// or the causes say why.
pub(crate) fn pg_text(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn params(values: &[String]) -> SqlResult<Vec<JsonParam>> {
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

fn param_refs(params: &[JsonParam]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A row as a JSON array, each value's text written straight from the
/// server's binary form.
fn row_json(row: &Row) -> SqlResult<String> {
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

fn columns_of(columns: &[tokio_postgres::Column]) -> Vec<Column> {
    columns
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            type_name: c.type_().name().to_string(),
        })
        .collect()
}

/// Run one statement on `client`, inside a read-only transaction for read-only grants.
async fn run_statement(
    grant: &SqlGrant,
    client: &mut Client,
    statement: &str,
    values: &[String],
    want_rows: bool,
) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
    grant.admit(statement)?;
    let params = params(values)?;
    let fail = |e: tokio_postgres::Error| SqlFailure::from_pg(&grant.name, &e);
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

async fn execute_on<C: tokio_postgres::GenericClient>(
    client: &C,
    statement: &str,
    params: &[JsonParam],
    want_rows: bool,
    grant: &str,
) -> SqlResult<(Vec<Column>, Vec<String>, u64)> {
    let fail = |e: tokio_postgres::Error| SqlFailure::from_pg(grant, &e);
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
async fn with_host_timeout<T>(
    grant: &SqlGrant,
    cancel: tokio_postgres::CancelToken,
    work: impl std::future::Future<Output = SqlResult<T>>,
) -> SqlResult<T> {
    let limit = grant.pool.statement_timeout() + HOST_TIMEOUT_MARGIN;
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            let _ = cancel.cancel_query(NoTls).await;
            Err(SqlFailure::Timeout(grant.name.clone()))
        }
    }
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

type Reply<T> = oneshot::Sender<SqlResult<T>>;

/// One batch of a row stream (JSON array rows); `None` at the end.
type Batch = Option<Vec<String>>;

enum TxCommand {
    Query(String, Vec<String>, Reply<(Vec<Column>, Vec<String>)>),
    Execute(String, Vec<String>, Reply<u64>),
    Finish(bool, Reply<()>),
}

/// A guest's transaction resource: a task owns the connection while it is open.
pub struct SqlTransaction {
    commands: mpsc::Sender<TxCommand>,
}

enum StreamCommand {
    Next(Reply<Batch>),
}

/// A guest's row-stream resource: a task reads the portal batch by batch.
pub struct SqlRowStream {
    columns: Vec<Column>,
    commands: mpsc::Sender<StreamCommand>,
}

async fn transaction_task(
    grant: Arc<SqlGrant>,
    mut pooled: PooledClient,
    ready: Reply<()>,
    mut commands: mpsc::Receiver<TxCommand>,
    give_back: oneshot::Sender<PooledClient>,
) {
    // The reply to commit/rollback waits until the connection is handed back,
    // so the guest can use its connection as soon as it has the answer.
    let finished: Option<(Reply<()>, SqlResult<()>)> = {
        let client = pooled.client();
        let cancel = client.cancel_token();
        let fail = |e: tokio_postgres::Error| SqlFailure::from_pg(&grant.name, &e);
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
async fn stream_task(
    grant: Arc<SqlGrant>,
    mut pooled: PooledClient,
    statement: String,
    values: Vec<String>,
    batch_size: i32,
    ready: Reply<Vec<Column>>,
    mut commands: mpsc::Receiver<StreamCommand>,
    give_back: oneshot::Sender<PooledClient>,
) {
    // The last batch is answered after the connection is handed back.
    let mut broken = false;
    let last: Option<(Reply<Batch>, SqlResult<Batch>)> = {
        let client = pooled.client();
        let cancel = client.cancel_token();
        let fail = |e: tokio_postgres::Error| SqlFailure::from_pg(&grant.name, &e);
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

/// Send a command to a task and wait for its reply.
async fn ask<T, C>(
    commands: &mpsc::Sender<C>,
    command: impl FnOnce(Reply<T>) -> C,
) -> SqlResult<T> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(command(reply))
        .await
        .map_err(|_| SqlFailure::Unavailable("the transaction or stream has ended".into()))?;
    answer
        .await
        .map_err(|_| SqlFailure::Unavailable("the transaction or stream has ended".into()))?
}

impl HostState {
    fn sql_grant(&self, name: &str) -> Result<Arc<SqlGrant>, SqlError> {
        match self.sql.grant(name) {
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
            if let Some(grant) = self.sql.grant(name) {
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

impl SqlHost for HostState {}

impl HostConnection for HostState {
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

impl HostTransaction for HostState {
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

impl HostRowStream for HostState {
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
