//! Declared sql grants ([`SqlGrantConfig`]) and what they open:
//! [`SqlPolicy`], one [`SqlGrant`] with its pool per name, in the dialect
//! its URL names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::failure::{SqlFailure, SqlResult};
use super::mysql::{self, MyDriver};
use super::pool::Pool;
use super::postgres::{self, PgDriver};
use super::url::{ParsedUrl, SqlDialect, SqlHost, SqlUrl};
use crate::error::Error;

/// Default number of connections per grant.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Default statement timeout.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time the host waits past the statement timeout before cancelling itself.
pub(super) const HOST_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// Whether a grant may write.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, Default,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Allow Unix-socket connections (PostgreSQL `host=/path`, MySQL `socket=`).
    pub allow_unix_sockets: bool,
    /// Allow `hostaddr=` (bypasses host-name checks).
    pub allow_hostaddr: bool,
    /// Allow several hosts in one URL.
    pub allow_multiple_hosts: bool,
    /// Allow roles that reach beyond SQL. PostgreSQL: superusers, members of
    /// `pg_execute_server_program` / `pg_write_server_files` /
    /// `pg_read_server_files`, and roles with `BYPASSRLS` or `REPLICATION`;
    /// MySQL: accounts with a global administrative privilege (`FILE`,
    /// `SUPER`, `PROCESS`, `SHUTDOWN`, `RELOAD`, `CREATE USER`, …). When
    /// refused, a connection as such a role is denied when it is made.
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

/// A database grant as declared:
/// `{"name": "main", "url": "postgres://reader@db:5432/app", "mode": "read-only"}`
/// (or a `mysql://` URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SqlGrantConfig {
    /// The name the guest opens it by.
    pub name: String,
    /// Where it connects.
    pub url: SqlUrl,
    /// Whether it may write (read-only by default).
    #[serde(default)]
    pub mode: SqlMode,
    /// Connections in its pool (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Statement timeout, ms (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout_ms: Option<u64>,
    /// Name of the secret holding the password (instead of one in the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<String>,
}

/// A grant's pool, in its dialect.
pub(super) enum Backend {
    Postgres(Arc<Pool<PgDriver>>),
    Mysql(Arc<Pool<MyDriver>>),
}

impl Backend {
    /// A fresh pool for `url`, with `password` when it comes from a secret.
    fn open(
        name: &str,
        url: &SqlUrl,
        password: Option<&str>,
        max_connections: usize,
        statement_timeout: Duration,
    ) -> Self {
        match url.parsed() {
            ParsedUrl::Postgres(config) => {
                let mut config = config.clone();
                if let Some(password) = password {
                    config.password(password);
                }
                let driver = PgDriver::new(*config, statement_timeout);
                Backend::Postgres(Arc::new(Pool::new(name, driver, max_connections)))
            }
            ParsedUrl::Mysql(opts) => {
                let driver = MyDriver::new(opts, password, statement_timeout);
                Backend::Mysql(Arc::new(Pool::new(name, driver, max_connections)))
            }
        }
    }
}

/// One named database grant, with its pool.
pub struct SqlGrant {
    pub(super) name: String,
    pub(super) mode: SqlMode,
    url: SqlUrl,
    max_connections: usize,
    pub(super) statement_timeout: Duration,
    pub(super) backend: Backend,
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

    /// The database its URL names.
    pub fn dialect(&self) -> SqlDialect {
        self.url.dialect()
    }

    /// `user@host:port/db`, never the password.
    pub fn target(&self) -> String {
        self.url.endpoint().to_string()
    }

    /// The grant's statement timeout.
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
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
        let endpoint = self.url.endpoint();
        if !policy.allow_unix_sockets
            && endpoint.hosts.iter().any(|h| matches!(h, SqlHost::Unix(_)))
        {
            return refuse("a Unix-socket host");
        }
        if let ParsedUrl::Postgres(config) = self.url.parsed() {
            if !policy.allow_hostaddr && !config.get_hostaddrs().is_empty() {
                return refuse("`hostaddr`");
            }
        }
        if !policy.allow_multiple_hosts && endpoint.hosts.len() > 1 {
            return refuse("a multi-host list");
        }
        if !policy.allow_privileged_roles {
            match &self.backend {
                Backend::Postgres(pool) => pool.driver().refuse_privileged_roles(),
                Backend::Mysql(pool) => pool.driver().refuse_privileged_roles(),
            }
        }
        Ok(())
    }

    /// Refuse, for a read-only grant, any statement but a single plain query
    /// (see each dialect's guard); a read-write grant admits everything its
    /// role may do.
    pub(super) fn admit(&self, statement: &str) -> SqlResult<()> {
        if self.mode == SqlMode::ReadWrite {
            return Ok(());
        }
        let checked = match self.dialect() {
            SqlDialect::Postgres => postgres::guard::check_read_only(statement),
            SqlDialect::Mysql => mysql::guard::check_read_only(statement),
        };
        checked.map_err(|why| {
            SqlFailure::Denied(format!("sql grant `{}` is read-only: {why}", self.name))
        })
    }

    /// Connections idle in this grant's pool.
    pub fn idle_connections(&self) -> usize {
        match &self.backend {
            Backend::Postgres(pool) => pool.idle_count(),
            Backend::Mysql(pool) => pool.idle_count(),
        }
    }
}

/// The sql grants of one session, by name.
#[derive(Debug, Clone, Default)]
pub struct SqlPolicy {
    grants: HashMap<String, Arc<SqlGrant>>,
}

impl SqlPolicy {
    /// The grants a declared config opens, each with a fresh pool.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a duplicate name, zero bounds, or a
    /// password given both in the URL and as a secret.
    pub fn from_config(specs: &[SqlGrantConfig]) -> Result<Self, Error> {
        let mut policy = Self::default();
        for spec in specs {
            if spec.password_secret.is_some() && spec.url.has_password() {
                return Err(Error::InvalidGrant(format!(
                    "sql grant `{}`: give the password either in the URL or as `password_secret`, not both",
                    spec.name
                )));
            }
            policy.insert(
                &spec.name,
                &spec.url,
                spec.mode,
                spec.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                spec.statement_timeout_ms
                    .map_or(DEFAULT_STATEMENT_TIMEOUT, Duration::from_millis),
                spec.password_secret.clone(),
            )?;
        }
        Ok(policy)
    }

    /// Fill in the password of every grant whose `password_secret` is `name`.
    pub(crate) fn provide_secret(&mut self, name: &str, value: &str) {
        for grant in self.grants.values_mut() {
            if grant.password_secret.as_deref() != Some(name) {
                continue;
            }
            let backend = Backend::open(
                &grant.name,
                &grant.url,
                Some(value),
                grant.max_connections,
                grant.statement_timeout,
            );
            *grant = Arc::new(SqlGrant {
                name: grant.name.clone(),
                mode: grant.mode,
                url: grant.url.clone(),
                max_connections: grant.max_connections,
                statement_timeout: grant.statement_timeout,
                backend,
                password_secret: grant.password_secret.clone(),
                password_provided: true,
            });
        }
    }

    /// The secrets the grants take their passwords from.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.grants
            .values()
            .filter_map(|grant| grant.password_secret.as_deref())
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

    /// Add a grant `name` for the database URL `url` (`postgres://…`, a
    /// PostgreSQL key=value string, or `mysql://…`).
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
        let url = SqlUrl::parse(url).map_err(|e| match e {
            Error::InvalidGrant(why) => Error::InvalidGrant(format!("sql grant `{name}`: {why}")),
            other => other,
        })?;
        self.insert(name, &url, mode, max_connections, statement_timeout, None)
    }

    fn insert(
        &mut self,
        name: &str,
        url: &SqlUrl,
        mode: SqlMode,
        max_connections: usize,
        statement_timeout: Duration,
        password_secret: Option<String>,
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
        let backend = Backend::open(name, url, None, max_connections, statement_timeout);
        self.grants.insert(
            name.to_string(),
            Arc::new(SqlGrant {
                name: name.to_string(),
                mode,
                url: url.clone(),
                max_connections,
                statement_timeout,
                backend,
                password_secret,
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
