//! A bounded connection pool per sql grant, owned by the host.
//!
//! At most `max_connections` connections exist per grant, whatever the number
//! of sessions; a checkout waits for a free one (bounded by the call's
//! deadline). A connection handed back is reset before its next use
//! (`ROLLBACK`, `DISCARD ALL`, then the grant's `statement_timeout`), so no
//! session state, prepared statement or open transaction leaks between uses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use super::failure::SqlFailure;

/// The pool of one grant.
pub(crate) struct Pool {
    grant: String,
    config: Config,
    statement_timeout: Duration,
    max_connections: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Client>>,
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

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the config: it holds the password.
        f.debug_struct("Pool")
            .field("grant", &self.grant)
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(
        grant: &str,
        config: Config,
        max_connections: usize,
        statement_timeout: Duration,
    ) -> Self {
        Self {
            grant: grant.to_string(),
            config,
            statement_timeout,
            max_connections,
            permits: Arc::new(Semaphore::new(max_connections)),
            idle: Mutex::new(Vec::new()),
            refuse_privileged: AtomicBool::new(false),
        }
    }

    /// From now on, refuse connections whose role is privileged (see [`PRIVILEGED_ROLE`]).
    pub fn refuse_privileged_roles(&self) {
        self.refuse_privileged.store(true, Ordering::Relaxed);
    }

    /// Deny a new connection whose role may act beyond SQL, when refused.
    async fn check_role(&self, client: &Client) -> Result<(), SqlFailure> {
        if !self.refuse_privileged.load(Ordering::Relaxed) {
            return Ok(());
        }
        let row = client
            .query_one(PRIVILEGED_ROLE, &[])
            .await
            .map_err(|e| SqlFailure::from_pg(&self.grant, &e))?;
        if row.try_get::<_, Option<bool>>(0).ok().flatten() == Some(false) {
            return Ok(());
        }
        Err(SqlFailure::Denied(format!(
            "sql grant `{}` connects as role `{}`, which is a superuser or may reach the database server's files or programs; grants here must use an unprivileged role",
            self.grant,
            self.config.get_user().unwrap_or("")
        )))
    }

    fn settings(&self) -> String {
        format!(
            "SET statement_timeout = {}",
            self.statement_timeout.as_millis().max(1)
        )
    }

    /// Check out a connection: a reset idle one, or a new one.
    pub async fn get(self: &Arc<Self>) -> Result<PooledClient, SqlFailure> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| {
                SqlFailure::Unavailable(format!("the pool of `{}` is closed", self.grant))
            })?;
        loop {
            let candidate = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(client) = candidate else { break };
            if client.is_closed() {
                continue;
            }
            if self.reset(&client).await.is_ok() {
                return Ok(self.lend(client, permit));
            }
        }
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            SqlFailure::Unavailable(format!(
                "cannot connect through sql grant `{}`: {}",
                self.grant,
                super::pg_text(&e)
            ))
        })?;
        let grant = self.grant.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(grant, error = %e, "sql connection ended");
            }
        });
        self.check_role(&client).await?;
        client
            .batch_execute(&self.settings())
            .await
            .map_err(|e| SqlFailure::from_pg(&self.grant, &e))?;
        Ok(self.lend(client, permit))
    }

    async fn reset(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        client.batch_execute("ROLLBACK").await?;
        client.batch_execute("DISCARD ALL").await?;
        client.batch_execute(&self.settings()).await
    }

    fn lend(self: &Arc<Self>, client: Client, permit: OwnedSemaphorePermit) -> PooledClient {
        PooledClient {
            client: Some(client),
            pool: Arc::clone(self),
            _permit: permit,
        }
    }

    /// Connections currently idle (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Connections this pool opens at most.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The grant's statement timeout.
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }
}

/// A checked-out connection; dropping it returns it to the pool (unless it broke).
pub(crate) struct PooledClient {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledClient {
    /// The connection.
    pub fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl PooledClient {
    /// Close the connection instead of returning it (it failed mid-use).
    pub fn discard(mut self) {
        self.client = None;
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(client);
            }
        }
    }
}
