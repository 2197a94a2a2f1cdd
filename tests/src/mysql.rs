//! The real MariaDB (or MySQL) on 127.0.0.1:3306, one fresh database per test.

use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable as _;
use mysql_async::Conn;

/// The server the tests use, as an admin (override with `SLUICE_TEST_MYSQL`).
pub fn url() -> String {
    std::env::var("SLUICE_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// An admin connection.
///
/// # Panics
///
/// When the server is unreachable, saying how to start it.
pub async fn admin() -> Conn {
    Conn::from_url(url()).await.unwrap_or_else(|e| {
        panic!(
            "MariaDB/MySQL is not reachable at {} ({e}). These tests need a real server: install and \
             start it (`apt-get install mariadb-server && service mariadb start`) or set SLUICE_TEST_MYSQL",
            url()
        )
    })
}

/// A database of its own, dropped when the test ends.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// An admin connection, using it.
    pub conn: Conn,
}

impl TestDatabase {
    /// Create a fresh database.
    pub async fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sluice_t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = admin().await;
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4; USE {name}"
        ))
        .await
        .expect("create test database");
        Self { name, conn }
    }

    /// Run SQL (several statements allowed) in the database.
    pub async fn run(&mut self, sql: &str) {
        self.conn
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the first row of `sql`, as text (NULL as None).
    pub async fn text(&mut self, sql: &str) -> Option<String> {
        let row: Option<mysql_async::Row> = self
            .conn
            .query_first(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.and_then(|r| {
            r.get_opt::<Option<String>, _>(0)
                .and_then(Result::ok)
                .flatten()
        })
    }

    /// The grant URL of this database (the admin account).
    pub fn grant_url(&self) -> String {
        let base = url();
        let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
        format!("{server}/{}", self.name)
    }

    /// What the `mysql` command-line client prints for `sql` in this
    /// database (tab-separated, no headers).
    pub fn client_output(&self, sql: &str) -> String {
        let output = std::process::Command::new("mysql")
            .args([
                "-uroot",
                "-h127.0.0.1",
                "-P3306",
                "--default-character-set=utf8mb4",
                "-N",
                "-B",
                &self.name,
                "-e",
                sql,
            ])
            .output()
            .expect("the `mysql` client runs (install `mariadb-client` or `default-mysql-client`)");
        assert!(
            output.status.success(),
            "mysql client: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's runtime may be gone; drop the database on a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = admin().await;
                conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .map_err(std::io::Error::other)?;
                conn.disconnect().await.map_err(std::io::Error::other)
            })
        })
        .join();
    }
}
