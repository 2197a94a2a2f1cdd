//! Storage behind one trait, two implementations: a local data directory
//! (the embedded default, [`LocalStore`]) and PostgreSQL ([`PostgresStore`]),
//! which several `sluice serve` nodes can share.
//!
//! Objects are opaque bytes addressed by a kind (`tenants`, `instances`, ...)
//! and a key made of `[A-Za-z0-9_-]` segments joined by `/`; keys are scoped
//! by tenant by putting the tenant id first.

mod local;
mod postgres;

pub use local::LocalStore;
pub use postgres::PostgresStore;

use crate::error::Error;

/// Object storage: values by kind and key. Every write is atomic: a reader
/// (or a restart after a crash) sees an object fully old or fully new.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Read an object.
    async fn get(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Write (create or replace) an object.
    async fn put(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), Error>;
    /// Write an object only if none exists under the key; `false` when one did.
    async fn create(&self, kind: &str, key: &str, value: &[u8]) -> Result<bool, Error>;
    /// Delete an object; `false` when it did not exist.
    async fn delete(&self, kind: &str, key: &str) -> Result<bool, Error>;
    /// Keys of `kind` starting with `prefix`, sorted bytewise.
    async fn list(&self, kind: &str, prefix: &str) -> Result<Vec<String>, Error>;
    /// Take the lock `name`, shared by every node on this store, until the
    /// guard is dropped: what is checked and written under it (a tenant's
    /// quotas and its new objects) is atomic.
    async fn lock(&self, name: &str) -> Result<StoreLock, Error>;
    /// Whether the store answers, cheaply (for `/readyz`).
    async fn check(&self) -> Result<(), Error>;
    /// What the store is, for logs (never a password).
    fn describe(&self) -> String;
}

/// A held store lock; dropping it releases the lock.
pub struct StoreLock {
    _held: Box<dyn Send + Sync>,
}

impl StoreLock {
    pub(crate) fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

/// In-process locks by name (clones share them).
#[derive(Debug, Default, Clone)]
pub(crate) struct NamedLocks(
    std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    >,
);

impl NamedLocks {
    /// Wait for the lock `name`.
    pub async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::sync::Arc::clone(locks.entry(name.to_string()).or_default())
        };
        lock.lock_owned().await
    }
}

/// Keys are made of `[A-Za-z0-9_-]` segments joined by `/`: never `..`, never absolute.
pub(crate) fn check_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "invalid storage key `{key}`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for good in ["t1", "t1/i-1", "a_b/c"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["../x", "/etc/passwd", "a//b", "a/../b", "", "a b", "a/"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
