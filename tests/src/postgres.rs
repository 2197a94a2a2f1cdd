//! The real PostgreSQL on 127.0.0.1:5432, one fresh schema per test.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};

/// The server the tests use (override with `SLUICE_TEST_PG`).
pub fn url() -> String {
    std::env::var("SLUICE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// An admin connection.
///
/// # Panics
///
/// When PostgreSQL is unreachable, saying how to start it.
pub async fn admin() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} ({e}). These tests need a real server: start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` (or set SLUICE_TEST_PG)",
            url()
        )
    });
    tokio::spawn(connection);
    client
}

/// A schema of its own, dropped when the test ends.
pub struct TestSchema {
    /// Its name.
    pub name: String,
    /// An admin connection.
    pub client: Client,
}

impl TestSchema {
    /// Create a fresh schema.
    pub async fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sluice_t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = admin().await;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .expect("create test schema");
        Self { name, client }
    }

    /// Run SQL in the schema.
    pub async fn run(&self, sql: &str) {
        self.client
            .batch_execute(&format!("SET search_path TO {}; {sql}", self.name))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A URL whose connections use this schema (for `sluice serve --store`).
    pub fn store_url(&self) -> String {
        let base = url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{}", self.name)
    }

    /// The grant URL, tagged with an `application_name` so a test can find its backends.
    pub fn grant_url(&self, application_name: &str) -> String {
        let base = url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}application_name={application_name}")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's runtime may be gone; drop the schema on a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = admin().await;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
            .map_err(std::io::Error::other)
        })
        .join();
    }
}
