//! PostgreSQL storage: several `sluice serve` nodes share tenants, tokens,
//! connectors (metadata and component bytes) and instances through one
//! database. The schema is created and upgraded by numbered migrations,
//! applied once under an advisory lock, so nodes may start together.
//!
//! Every operation is one statement, so each write is atomic. Connections are
//! few, shared (tokio-postgres pipelines concurrent queries on one
//! connection) and re-opened when they break.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use super::{check_key, ObjectStore};
use crate::error::Error;

/// Schema changes in order; `MIGRATIONS[n]` moves the schema to version `n + 1`.
const MIGRATIONS: &[&str] = &["CREATE TABLE sluice_objects (
        kind text NOT NULL,
        key text NOT NULL,
        value bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, key)
    )"];

/// Connections kept open per node.
const CONNECTIONS: usize = 4;

/// A PostgreSQL database (tables live in the connection's `search_path`).
pub struct PostgresStore {
    config: Config,
    target: String,
    slots: Vec<Mutex<Option<Arc<Client>>>>,
    next: AtomicUsize,
    /// This node's waiters queue here before taking a database lock.
    locks: super::NamedLocks,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn storage(context: &str, err: &tokio_postgres::Error) -> Error {
    // tokio-postgres errors name the server's message, never the password.
    Error::Storage(format!("{context}: {err}"))
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/db[?options=-csearch_path%3Dschema]`)
    /// and bring the schema up to date.
    ///
    /// # Errors
    ///
    /// [`sluice::Error::InvalidConfig`] for a malformed URL; [`Error::Storage`] when the
    /// database cannot be reached, or its schema is newer than this build knows.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let config: Config = url
            .parse()
            .map_err(|e| Error::invalid_config(format!("--store: not a PostgreSQL URL ({e})")))?;
        let target = format!(
            "postgresql database `{}` as `{}` on {}",
            config.get_dbname().unwrap_or("(default)"),
            config.get_user().unwrap_or("(default)"),
            config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(host) => host.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        );
        let store = Self {
            config,
            target,
            slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            locks: super::NamedLocks::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i32 {
        MIGRATIONS.len() as i32
    }

    async fn open(&self) -> Result<Client, Error> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| storage(&format!("cannot connect to the {}", self.target), &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "store connection closed");
            }
        });
        Ok(client)
    }

    /// A live connection, re-opened when the previous one broke.
    async fn client(&self) -> Result<Arc<Client>, Error> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % CONNECTIONS];
        let mut slot = slot.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(self.open().await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn migrate(&self) -> Result<(), Error> {
        let mut client = self.open().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| storage("migrate", &e))?;
        // One node at a time; the others wait here and then find nothing to do.
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(hashtext('sluice-store-migrations'));
             CREATE TABLE IF NOT EXISTS sluice_schema_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|e| storage("migrate", &e))?;
        let current: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM sluice_schema_migrations",
                &[],
            )
            .await
            .map_err(|e| storage("migrate", &e))?
            .get(0);
        if current > Self::schema_version() {
            return Err(Error::Storage(format!(
                "the store's schema is at version {current}, newer than this sluice knows ({}); upgrade sluice",
                Self::schema_version()
            )));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let version = index as i32 + 1;
            tx.batch_execute(migration)
                .await
                .map_err(|e| storage(&format!("migration {version}"), &e))?;
            tx.execute(
                "INSERT INTO sluice_schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(|e| storage(&format!("migration {version}"), &e))?;
            tracing::info!(version, "store schema migrated");
        }
        tx.commit().await.map_err(|e| storage("migrate", &e))
    }
}

#[async_trait::async_trait]
impl ObjectStore for PostgresStore {
    async fn get(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        check_key(kind)?;
        check_key(key)?;
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT value FROM sluice_objects WHERE kind = $1 AND key = $2",
                &[&kind, &key],
            )
            .await
            .map_err(|e| storage("read", &e))?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn put(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), Error> {
        check_key(kind)?;
        check_key(key)?;
        self.client()
            .await?
            .execute(
                "INSERT INTO sluice_objects (kind, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                &[&kind, &key, &value],
            )
            .await
            .map_err(|e| storage("write", &e))?;
        Ok(())
    }

    async fn create(&self, kind: &str, key: &str, value: &[u8]) -> Result<bool, Error> {
        check_key(kind)?;
        check_key(key)?;
        let inserted = self
            .client()
            .await?
            .execute(
                "INSERT INTO sluice_objects (kind, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, key) DO NOTHING",
                &[&kind, &key, &value],
            )
            .await
            .map_err(|e| storage("write", &e))?;
        Ok(inserted == 1)
    }

    async fn delete(&self, kind: &str, key: &str) -> Result<bool, Error> {
        check_key(kind)?;
        check_key(key)?;
        let deleted = self
            .client()
            .await?
            .execute(
                "DELETE FROM sluice_objects WHERE kind = $1 AND key = $2",
                &[&kind, &key],
            )
            .await
            .map_err(|e| storage("delete", &e))?;
        Ok(deleted == 1)
    }

    async fn list(&self, kind: &str, prefix: &str) -> Result<Vec<String>, Error> {
        check_key(kind)?;
        let rows = self
            .client()
            .await?
            .query(
                "SELECT key FROM sluice_objects
                 WHERE kind = $1 AND left(key, length($2)) = $2
                 ORDER BY key COLLATE \"C\"",
                &[&kind, &prefix],
            )
            .await
            .map_err(|e| storage("list", &e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// A session-level advisory lock on a connection of its own: held until
    /// the guard drops the connection, so every node sharing the database
    /// waits for it, and a node that dies releases it.
    async fn lock(&self, name: &str) -> Result<super::StoreLock, Error> {
        let local = self.locks.lock(name).await;
        let client = self.open().await?;
        client
            .execute(
                "SELECT pg_advisory_lock(hashtextextended($1, 7418))",
                &[&name],
            )
            .await
            .map_err(|e| storage("lock", &e))?;
        Ok(super::StoreLock::new((local, client)))
    }

    async fn check(&self) -> Result<(), Error> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| storage("check", &e))
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}
