//! MySQL and MariaDB grants on mysql_async: the [`MyDriver`] the grant's
//! pool uses, statements, transactions and row streams, the value mapping
//! and the read-only guard.
//!
//! Every connection runs with `time_zone = '+00:00'` (so `timestamp` values
//! read and write as UTC), `utf8mb4`, and the grant's statement timeout on
//! the server (`max_statement_time` on MariaDB, `max_execution_time` on
//! MySQL, which covers `SELECT` only); the host enforces the same timeout
//! again and kills the query (`KILL QUERY`) when it expires. A connection
//! goes back to the pool through `COM_RESET_CONNECTION` (session variables,
//! temporary tables, prepared statements and open transactions gone), then
//! those settings again. It is never told a Unix socket unless the grant
//! names one (`prefer_socket` is off), and it has no `LOAD DATA LOCAL`
//! handler, so such a statement fails without reading any host file.

pub(super) mod convert;
pub mod guard;
pub(super) mod statement;
pub(super) mod tasks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::failure::{with_causes, SqlFailure};
use super::grant::{Backend, SqlGrant};
use super::pool::{Driver, Pooled};

/// A pooled MySQL connection.
pub(super) type MyPooled = Pooled<MyDriver>;

/// How a MySQL grant's connections are made, reset and killed.
pub(crate) struct MyDriver {
    opts: Opts,
    statement_timeout: Duration,
    /// Refuse to connect as an account with a global administrative privilege.
    refuse_privileged: AtomicBool,
}

/// One open connection and what the host knows of it.
pub(crate) struct MyClient {
    pub(super) conn: Conn,
    /// MariaDB (`max_statement_time`) rather than MySQL (`max_execution_time`).
    mariadb: bool,
    /// It failed mid-use (lost, timed out mid-result): never reused.
    pub(super) broken: bool,
}

/// Global privileges that reach beyond the account's own data: the server's
/// files, other sessions, the server itself, other accounts, replication.
const PRIVILEGED_ACCOUNT: &str = "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES \
     WHERE GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
     SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''') AND PRIVILEGE_TYPE IN ('FILE', 'SUPER', \
     'PROCESS', 'SHUTDOWN', 'RELOAD', 'CREATE USER', 'REPLICATION SLAVE', 'BINLOG ADMIN', \
     'CONNECTION ADMIN', 'READ_ONLY ADMIN', 'REPLICATION MASTER ADMIN', 'SYSTEM_VARIABLES_ADMIN')";

impl MyDriver {
    /// The driver for `opts`, with `password` when it comes from a secret.
    pub fn new(opts: &Opts, password: Option<&str>, statement_timeout: Duration) -> Self {
        let mut builder = OptsBuilder::from_opts(opts.clone()).prefer_socket(false);
        if let Some(password) = password {
            builder = builder.pass(Some(password));
        }
        Self {
            opts: builder.into(),
            statement_timeout,
            refuse_privileged: AtomicBool::new(false),
        }
    }

    /// From now on, refuse connections as privileged accounts.
    pub fn refuse_privileged_roles(&self) {
        self.refuse_privileged.store(true, Ordering::Relaxed);
    }

    /// The session settings every use starts from.
    pub(super) async fn settle(&self, client: &mut MyClient) -> Result<(), SqlFailure> {
        let timeout = if client.mariadb {
            format!(
                "max_statement_time = {:.3}",
                self.statement_timeout.as_secs_f64().max(0.001)
            )
        } else {
            format!(
                "max_execution_time = {}",
                self.statement_timeout.as_millis().max(1)
            )
        };
        let settings = format!("SET NAMES utf8mb4, time_zone = '+00:00', {timeout}");
        client
            .conn
            .query_drop(settings)
            .await
            .map_err(|e| SqlFailure::Unavailable(error_text(&e)))
    }

    /// Stop the statement running on connection `id` (the host's timeout
    /// expired), from a connection of its own.
    pub(super) async fn kill_query(&self, id: u32) {
        if let Ok(mut conn) = Conn::new(self.opts.clone()).await {
            let _ = conn.query_drop(format!("KILL QUERY {id}")).await;
            let _ = conn.disconnect().await;
        }
    }

    /// Deny a new connection as a privileged account, when refused.
    async fn check_account(&self, grant: &str, conn: &mut Conn) -> Result<(), SqlFailure> {
        if !self.refuse_privileged.load(Ordering::Relaxed) {
            return Ok(());
        }
        let privileges: Option<u64> = conn
            .query_first(PRIVILEGED_ACCOUNT)
            .await
            .map_err(|e| from_mysql(grant, &e))?;
        if privileges == Some(0) {
            return Ok(());
        }
        Err(SqlFailure::Denied(format!(
            "sql grant `{grant}` connects as `{}`, an account with a global administrative privilege (FILE, SUPER, PROCESS, …); grants here must use an unprivileged account",
            self.opts.user().unwrap_or("")
        )))
    }
}

impl MyClient {
    /// Settings for a stream's statement, which runs as long as its reader
    /// reads: no server-side limit on the whole (the host bounds each batch
    /// instead, killing the query when one takes longer than the statement
    /// timeout), and ten minutes for the reader to come back for the next batch.
    pub(super) fn stream_settings(&self) -> &'static str {
        if self.mariadb {
            "SET SESSION max_statement_time = 0, net_write_timeout = 600"
        } else {
            "SET SESSION max_execution_time = 0, net_write_timeout = 600"
        }
    }
}

impl Driver for MyDriver {
    type Client = MyClient;

    async fn connect(&self, grant: &str) -> Result<MyClient, SqlFailure> {
        let mut conn = Conn::new(self.opts.clone()).await.map_err(|e| {
            SqlFailure::Unavailable(format!(
                "cannot connect through sql grant `{grant}`: {}",
                error_text(&e)
            ))
        })?;
        self.check_account(grant, &mut conn).await?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| from_mysql(grant, &e))?;
        let mut client = MyClient {
            conn,
            mariadb: version.is_some_and(|v| v.contains("MariaDB")),
            broken: false,
        };
        self.settle(&mut client).await?;
        Ok(client)
    }

    async fn reset<'a>(&'a self, client: &'a mut MyClient) -> Result<(), SqlFailure> {
        match client.conn.reset().await {
            Ok(true) => self.settle(client).await,
            Ok(false) => Err(SqlFailure::Unavailable(
                "the server cannot reset a connection (COM_RESET_CONNECTION needs MySQL 5.7.3 or MariaDB 10.2.4)".into(),
            )),
            Err(e) => Err(SqlFailure::Unavailable(error_text(&e))),
        }
    }

    fn is_closed(client: &MyClient) -> bool {
        client.broken || client.conn.is_disconnected()
    }
}

/// The MySQL driver of `grant` (None for another dialect's grant).
pub(super) fn driver(grant: &SqlGrant) -> Option<&MyDriver> {
    match &grant.backend {
        Backend::Mysql(pool) => Some(pool.driver()),
        Backend::Postgres(_) => None,
    }
}

/// MariaDB's `max_statement_time` and MySQL's `max_execution_time` expired.
const TIMEOUT_CODES: &[u16] = &[1969, 3024];
/// The session is read-only (`START TRANSACTION READ ONLY`).
const READ_ONLY_CODE: u16 = 1792;
/// The account lacks a privilege (database, table, column, routine,
/// operation): the role's boundary, so `denied`.
const PRIVILEGE_CODES: &[u16] = &[1044, 1142, 1143, 1227, 1370];
/// The connection was killed, lost or refused by a server going away.
const LOST_CODES: &[u16] = &[1053, 1927, 2006, 2013];

/// The failure a mysql_async error on grant `grant` is.
pub(super) fn from_mysql(grant: &str, err: &mysql_async::Error) -> SqlFailure {
    match err {
        mysql_async::Error::Server(server) => {
            let code = server.code;
            if TIMEOUT_CODES.contains(&code) {
                SqlFailure::Timeout(grant.to_string())
            } else if PRIVILEGE_CODES.contains(&code) {
                SqlFailure::Denied(format!("sql grant `{grant}`: {}", server.message))
            } else if code == READ_ONLY_CODE {
                SqlFailure::Denied(format!(
                    "sql grant `{grant}` is read-only: {}",
                    server.message
                ))
            } else if LOST_CODES.contains(&code) || server.state.starts_with("08") {
                SqlFailure::Unavailable(format!("sql grant `{grant}`: {}", server.message))
            } else {
                SqlFailure::Query {
                    sqlstate: Some(server.state.clone()),
                    message: server.message.clone(),
                }
            }
        }
        mysql_async::Error::Driver(mysql_async::DriverError::LocalInfile(_)) => {
            SqlFailure::Denied(format!(
                "sql grant `{grant}`: LOAD DATA LOCAL reads files of the client, and the host gives none"
            ))
        }
        mysql_async::Error::Driver(
            e @ (mysql_async::DriverError::StmtParamsMismatch { .. }
            | mysql_async::DriverError::StmtParamsNumberExceedsLimit { .. }
            | mysql_async::DriverError::Params(_)
            | mysql_async::DriverError::MixedParams),
        ) => SqlFailure::InvalidValue(e.to_string()),
        other => SqlFailure::Unavailable(format!(
            "the connection of sql grant `{grant}` failed: {}",
            error_text(other)
        )),
    }
}

/// A mysql_async error in full: the server's message with its code and
/// SQLSTATE, or the error and its causes.
fn error_text(err: &mysql_async::Error) -> String {
    if let mysql_async::Error::Server(server) = err {
        return format!(
            "{} (ERROR {}, SQLSTATE {})",
            server.message, server.code, server.state
        );
    }
    with_causes(err)
}
