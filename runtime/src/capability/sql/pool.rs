//! A bounded connection pool per sql grant, owned by the host, for any
//! database [`Driver`].
//!
//! At most `max_connections` connections exist per grant, whatever the number
//! of sessions; a checkout waits for a free one (bounded by the call's
//! deadline). A connection handed back is reset by its driver before its next
//! use, so no session state, prepared statement or open transaction leaks
//! between uses; one that cannot be reset is closed.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::failure::SqlFailure;

/// How one database's connections are made, reset and known dead.
pub(crate) trait Driver: Send + Sync + 'static {
    /// One open connection.
    type Client: Send + 'static;

    /// Open a connection, checked and set up for the grant (its role, its
    /// statement timeout, its session settings).
    fn connect(&self, grant: &str)
        -> impl Future<Output = Result<Self::Client, SqlFailure>> + Send;

    /// Bring a used connection back to the state `connect` left it in.
    fn reset<'a>(
        &'a self,
        client: &'a mut Self::Client,
    ) -> impl Future<Output = Result<(), SqlFailure>> + Send + 'a;

    /// Whether the connection is known to be gone.
    fn is_closed(client: &Self::Client) -> bool;
}

/// The pool of one grant.
pub(crate) struct Pool<D: Driver> {
    grant: String,
    driver: D,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<D::Client>>,
}

impl<D: Driver> std::fmt::Debug for Pool<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the driver: it holds the password.
        f.debug_struct("Pool")
            .field("grant", &self.grant)
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl<D: Driver> Pool<D> {
    pub fn new(grant: &str, driver: D, max_connections: usize) -> Self {
        Self {
            grant: grant.to_string(),
            driver,
            permits: Arc::new(Semaphore::new(max_connections)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The driver, with the grant's connection settings.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// Check out a connection: a reset idle one, or a new one.
    pub async fn get(self: &Arc<Self>) -> Result<Pooled<D>, SqlFailure> {
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
            let Some(mut client) = candidate else { break };
            if D::is_closed(&client) {
                continue;
            }
            if self.driver.reset(&mut client).await.is_ok() {
                return Ok(self.lend(client, permit));
            }
        }
        let client = self.driver.connect(&self.grant).await?;
        Ok(self.lend(client, permit))
    }

    fn lend(self: &Arc<Self>, client: D::Client, permit: OwnedSemaphorePermit) -> Pooled<D> {
        Pooled {
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
}

/// A checked-out connection; dropping it returns it to the pool (unless it broke).
pub(crate) struct Pooled<D: Driver> {
    client: Option<D::Client>,
    pool: Arc<Pool<D>>,
    _permit: OwnedSemaphorePermit,
}

impl<D: Driver> Pooled<D> {
    /// The connection.
    pub fn client(&mut self) -> &mut D::Client {
        self.client.as_mut().expect("present until drop")
    }

    /// Close the connection instead of returning it (it failed mid-use).
    pub fn discard(mut self) {
        self.client = None;
    }

    /// Whether the connection is known to be gone.
    pub fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(D::is_closed)
    }
}

impl<D: Driver> Drop for Pooled<D> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !D::is_closed(&client) {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(client);
            }
        }
    }
}
