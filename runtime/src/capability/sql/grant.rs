//! Declared sql grants ([`SqlGrantConfig`], [`SqlUrl`]) and what they open:
//! [`SqlPolicy`], one [`SqlGrant`] with its pool per name.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::config::Host;

use super::failure::{SqlFailure, SqlResult};
use super::guard;
use super::pool::Pool;
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
pub(crate) fn target_of(config: &tokio_postgres::Config) -> String {
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

/// A PostgreSQL connection URL (`postgres://user@host:port/db`) or
/// key=value string, parsed when read and kept as written. Neither `Debug`
/// nor an error ever shows a password in it.
#[derive(Clone)]
pub struct SqlUrl {
    text: String,
    config: tokio_postgres::Config,
}

impl SqlUrl {
    /// Parse a URL or key=value string naming at least one host.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] saying what to write; it never repeats the
    /// text, which may hold a password.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let config = tokio_postgres::Config::from_str(text).map_err(|e| {
            Error::InvalidGrant(format!(
                "a sql grant URL does not parse ({e}); write `postgres://user@host:port/database`"
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(Error::InvalidGrant("a sql grant URL names no host".into()));
        }
        Ok(Self {
            text: text.to_string(),
            config,
        })
    }

    /// The parsed connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// The URL as written when it carries no password; else
    /// `postgres://user:***@host:port/db`.
    pub fn redacted(&self) -> String {
        if !self.has_password() {
            return self.text.clone();
        }
        let target = target_of(&self.config);
        match target.split_once('@') {
            Some((user, place)) => format!("postgres://{user}:***@{place}"),
            None => "postgres://***".to_string(),
        }
    }
}

impl PartialEq for SqlUrl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for SqlUrl {}

impl std::fmt::Debug for SqlUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SqlUrl").field(&self.redacted()).finish()
    }
}

impl Serialize for SqlUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SqlUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A database grant as declared:
/// `{"name": "main", "url": "postgres://reader@db:5432/app", "mode": "read-only"}`.
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

/// One named database grant, with its pool.
pub struct SqlGrant {
    pub(super) name: String,
    pub(super) mode: SqlMode,
    config: tokio_postgres::Config,
    pub(super) pool: Arc<Pool>,
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
    pub(super) fn admit(&self, statement: &str) -> SqlResult<()> {
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
            policy.insert(
                &spec.name,
                &spec.url,
                spec.mode,
                spec.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                spec.statement_timeout_ms
                    .map_or(DEFAULT_STATEMENT_TIMEOUT, Duration::from_millis),
            )?;
            if let Some(secret) = spec.password_secret.clone() {
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
        let url = SqlUrl::parse(url).map_err(|e| match e {
            Error::InvalidGrant(why) => Error::InvalidGrant(format!("sql grant `{name}`: {why}")),
            other => other,
        })?;
        self.insert(name, &url, mode, max_connections, statement_timeout)
    }

    fn insert(
        &mut self,
        name: &str,
        url: &SqlUrl,
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
        let config = url.config.clone();
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

crate::string_schema!(
    SqlUrl,
    "SqlUrl",
    "A PostgreSQL URL without a password, `postgres://user@host:port/database`."
);
