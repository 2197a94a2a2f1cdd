//! PostgreSQL grants on tokio-postgres: the [`PgDriver`] the grant's pool
//! uses, statements, transactions and portal streams, the value mapping and
//! the read-only guard.

pub(super) mod convert;
pub mod guard;
pub(super) mod statement;
pub(super) mod tasks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::failure::{with_causes, SqlFailure};
use super::pool::{Driver, Pooled};

/// A pooled PostgreSQL connection.
pub(super) type PgPooled = Pooled<PgDriver>;

/// How a PostgreSQL grant's connections are made and reset.
pub(crate) struct PgDriver {
    config: Config,
    statement_timeout: Duration,
    /// Refuse to connect as a role that can reach beyond the database
    /// (superuser, or a member of the server-file and server-program roles).
    refuse_privileged: AtomicBool,
}

/// Whether the connected role is privileged beyond SQL: a superuser, or one
/// that may read or write the server's files or run programs there (what
/// `COPY … TO PROGRAM` needs), or that bypasses row security.
const PRIVILEGED_ROLE: &str = "SELECT r.rolsuper OR r.rolbypassrls OR r.rolreplication \
     OR pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') \
     OR pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') \
     OR pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') \
     FROM pg_roles r WHERE r.rolname = current_user";

impl PgDriver {
    pub fn new(config: Config, statement_timeout: Duration) -> Self {
        Self {
            config,
            statement_timeout,
            refuse_privileged: AtomicBool::new(false),
        }
    }

    /// From now on, refuse connections whose role is privileged (see [`PRIVILEGED_ROLE`]).
    pub fn refuse_privileged_roles(&self) {
        self.refuse_privileged.store(true, Ordering::Relaxed);
    }

    /// Deny a new connection whose role may act beyond SQL, when refused.
    async fn check_role(&self, grant: &str, client: &Client) -> Result<(), SqlFailure> {
        if !self.refuse_privileged.load(Ordering::Relaxed) {
            return Ok(());
        }
        let row = client
            .query_one(PRIVILEGED_ROLE, &[])
            .await
            .map_err(|e| from_pg(grant, &e))?;
        if row.try_get::<_, Option<bool>>(0).ok().flatten() == Some(false) {
            return Ok(());
        }
        Err(SqlFailure::Denied(format!(
            "sql grant `{grant}` connects as role `{}`, which is a superuser or may reach the database server's files or programs; grants here must use an unprivileged role",
            self.config.get_user().unwrap_or("")
        )))
    }

    fn settings(&self) -> String {
        format!(
            "SET statement_timeout = {}",
            self.statement_timeout.as_millis().max(1)
        )
    }
}

impl Driver for PgDriver {
    type Client = Client;

    async fn connect(&self, grant: &str) -> Result<Client, SqlFailure> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            SqlFailure::Unavailable(format!(
                "cannot connect through sql grant `{grant}`: {}",
                pg_text(&e)
            ))
        })?;
        let name = grant.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(grant = name, error = %e, "sql connection ended");
            }
        });
        self.check_role(grant, &client).await?;
        client
            .batch_execute(&self.settings())
            .await
            .map_err(|e| from_pg(grant, &e))?;
        Ok(client)
    }

    /// `ROLLBACK`, `DISCARD ALL`, then the grant's `statement_timeout` again.
    async fn reset<'a>(&'a self, client: &'a mut Client) -> Result<(), SqlFailure> {
        let lost = |e: tokio_postgres::Error| SqlFailure::Unavailable(pg_text(&e));
        client.batch_execute("ROLLBACK").await.map_err(lost)?;
        client.batch_execute("DISCARD ALL").await.map_err(lost)?;
        client.batch_execute(&self.settings()).await.map_err(lost)
    }

    fn is_closed(client: &Client) -> bool {
        client.is_closed()
    }
}

/// The failure a tokio-postgres error on grant `grant` is.
pub(super) fn from_pg(grant: &str, err: &tokio_postgres::Error) -> SqlFailure {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        let message = db.message().to_string();
        return match code {
            "25006" => SqlFailure::Denied(format!("sql grant `{grant}` is read-only: {message}")),
            // insufficient_privilege: the role's boundary.
            "42501" => SqlFailure::Denied(format!("sql grant `{grant}`: {message}")),
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
        return SqlFailure::Unavailable(format!("the connection of sql grant `{grant}` was lost"));
    }
    let text = err.to_string();
    if let Some(source) = std::error::Error::source(err) {
        // Parameter conversion errors come from our own encoder.
        if text.starts_with("error serializing parameter")
            || text.starts_with("error deserializing column")
        {
            return SqlFailure::InvalidValue(format!("{text}: {source}"));
        }
    }
    SqlFailure::Unavailable(format!("sql grant `{grant}`: {}", pg_text(err)))
}

/// A tokio-postgres error in full: its own text says only "db error" or
/// "error connecting to server"; the server's message (with its SQLSTATE)
/// or the causes say why.
pub(super) fn pg_text(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    with_causes(err)
}
