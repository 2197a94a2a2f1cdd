//! Grants: what one session may touch — declared ([`GrantsConfig`]), then opened ([`Grants`]).
//!
//! Deny by default: an empty [`Grants`] lets a connector compute and log,
//! nothing else. Each capability owns its declared type and its policy
//! ([`FilesPolicy`], [`SocketsPolicy`], [`HttpPolicy`], [`SqlPolicy`]);
//! these two types only gather them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::{FilesPolicy, Mount, MountConfig};
use super::http::auth::Secret;
use super::http::{HostPattern, HttpConfig, HttpPolicy};
use super::secrets::SocketSecrets;
use super::sftp::{SftpGrantConfig, SftpPolicy};
use super::sockets::{SocketsConfig, SocketsPolicy};
use super::sql::{SqlGrantConfig, SqlMode, SqlPolicy};
use crate::error::Error;

/// What a session's grants *declare*: pure data, comparable and
/// serializable. Opening it ([`Grants::from_config`]) makes the live
/// [`Grants`]: open directories, resolved addresses, sql pools, rate-limit
/// budgets, breakers, token caches. Every entry is parsed when the config is
/// read, so a config that exists is well-formed. The JSON form:
///
/// ```json
/// {
///   "files":   [{ "host": "./data", "guest": "/data", "mode": "ro" }],
///   "sockets": { "tcp": ["127.0.0.1:5432", "10.0.0.0/8:443"], "udp": [], "dns": false },
///   "http":    { "origins": ["https://api.example.com", "https://*.example.org"],
///                "connect_timeout_ms": 10000, "first_byte_timeout_ms": 30000,
///                "between_bytes_timeout_ms": 30000, "max_response_bytes": 67108864 },
///   "sql":     [{ "name": "main", "url": "postgres://reader@127.0.0.1:5432/app",
///                 "password_secret": "db_password",
///                 "mode": "read-only", "max_connections": 4, "statement_timeout_ms": 30000 }],
///   "sftp":    [{ "name": "drop", "url": "sftp://etl@files.example.com:22/upload",
///                 "known_hosts": "files.example.com ssh-ed25519 AAAAC3Nza…",
///                 "key_secret": "drop_key", "mode": "read-write" }]
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct GrantsConfig {
    /// Directories to mount.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<MountConfig>,
    /// Socket addresses.
    #[serde(skip_serializing_if = "SocketsConfig::is_empty")]
    pub sockets: SocketsConfig,
    /// HTTP origins and how they are called.
    #[serde(skip_serializing_if = "HttpConfig::is_empty")]
    pub http: HttpConfig,
    /// Databases by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<SqlGrantConfig>,
    /// SSH servers' files by name (SFTP).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sftp: Vec<SftpGrantConfig>,
}

impl GrantsConfig {
    /// Parse the JSON form shown on [`GrantsConfig`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the offending entry.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::InvalidGrant(format!("grants JSON: {e}")))
    }
}

/// Everything one session is allowed to touch, opened: what a
/// [`GrantsConfig`] declares, with the state it needs (directory handles,
/// resolved addresses, sql pools, rate-limit budgets, breakers, token
/// caches). Clones share that state, so every session opened with one
/// `Grants` shares its pools and budgets.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Directories mounted into the guest.
    pub files: FilesPolicy,
    /// Socket addresses the guest may reach.
    pub sockets: SocketsPolicy,
    /// HTTP origins the guest may call, and how.
    pub http: HttpPolicy,
    /// Databases the guest may open by name (each with its own pool).
    pub sql: SqlPolicy,
    /// SSH servers the guest may reach files on by name (SFTP).
    pub sftp: SftpPolicy,
    /// Secrets the connector presents itself over its sockets (`sockets.secrets`).
    pub secrets: SocketSecrets,
}

impl Grants {
    /// No access to anything.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parse the JSON form shown on [`GrantsConfig`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the offending entry.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        Self::from_config(&GrantsConfig::from_json(text)?)
    }

    /// Open what `config` declares: mount its directories (host paths as
    /// this process sees them), resolve its socket host names, and make
    /// fresh pools, budgets and breakers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the entry that cannot be opened.
    pub fn from_config(config: &GrantsConfig) -> Result<Self, Error> {
        Ok(Self {
            files: FilesPolicy::from_config(&config.files)?,
            sockets: SocketsPolicy::from_config(&config.sockets)?,
            http: HttpPolicy::from_config(&config.http)?,
            sql: SqlPolicy::from_config(&config.sql)?,
            sftp: SftpPolicy::from_config(&config.sftp)?,
            secrets: SocketSecrets::from_config(&config.sockets.secrets)?,
        })
    }

    /// Read [`Grants::from_json`] from a file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read, else as [`Grants::from_json`].
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Add a mount (`HOST:GUEST[:ro|rw]`, read-only by default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a malformed spec or a host path that is not a directory.
    pub fn mount(mut self, spec: &str) -> Result<Self, Error> {
        self.files.add(Mount::parse(spec)?)?;
        Ok(self)
    }

    /// Allow TCP connections to `HOST:PORT` or `CIDR:PORT` (`*` for any port).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a malformed entry or a host name that does not resolve.
    pub fn allow_tcp(mut self, entry: &str) -> Result<Self, Error> {
        self.sockets.allow_tcp(entry)?;
        Ok(self)
    }

    /// Grant the database at `url` under `name`, with default pool size and statement timeout.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a duplicate name or an unparsable URL.
    pub fn allow_sql(mut self, name: &str, url: &str, mode: SqlMode) -> Result<Self, Error> {
        self.sql.add(
            name,
            url,
            mode,
            super::sql::DEFAULT_MAX_CONNECTIONS,
            super::sql::DEFAULT_STATEMENT_TIMEOUT,
        )?;
        Ok(self)
    }

    /// Provide the value of the secret `name`, used by http `auth` entries,
    /// sql grants' `password_secret`, sftp grants' `key_secret` and
    /// `password_secret`, and the readable `sockets.secrets`.
    /// Only a readable secret reaches the guest; none reaches logs or errors.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.http
            .secrets
            .insert(name.to_string(), Secret::new(value));
        self.sql.provide_secret(name, value);
        self.sftp.provide_secret(name, value);
        self.secrets.provide(name, value);
        self
    }

    /// Let the connector read the secret `name` to present it over its own
    /// sockets (a broker login); give its value with [`Grants::secret`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for an empty name.
    pub fn allow_socket_secret(mut self, name: &str) -> Result<Self, Error> {
        self.secrets.allow(name)?;
        Ok(self)
    }

    /// Check the secrets: every one that http `auth`, a sql grant or
    /// `sockets.secrets` names was provided, and none the host holds for
    /// http or sql is readable by the connector too.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the secret.
    pub fn check_secrets(&self) -> Result<(), Error> {
        self.http.check_secrets()?;
        self.sql.check_secrets()?;
        self.sftp.check_secrets()?;
        self.check_socket_secrets()
    }

    /// Check that every readable secret (`sockets.secrets`) was provided
    /// and that none is held by the host for http `auth` or a sql grant.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the secret.
    pub fn check_socket_secrets(&self) -> Result<(), Error> {
        let host_held = self
            .http
            .secret_names()
            .chain(self.sql.secret_names())
            .chain(self.sftp.secret_names())
            .collect();
        self.secrets.check(&host_held)
    }

    /// Grant the SSH server `grant` describes (SFTP); give its login with
    /// [`Grants::secret`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a duplicate name, zero bounds, or not
    /// exactly one login secret.
    pub fn allow_sftp(mut self, grant: &SftpGrantConfig) -> Result<Self, Error> {
        self.sftp.add(grant)?;
        Ok(self)
    }

    /// Allow HTTP requests to an origin `scheme://host[:port]` (`*.suffix` hosts allowed).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a malformed origin.
    pub fn allow_http(mut self, origin: &str) -> Result<Self, Error> {
        self.http.allow(HostPattern::parse(origin)?);
        Ok(self)
    }

    /// Allow an `http://` origin and speak HTTP/2 to it with prior knowledge
    /// (h2c), as a gRPC server without TLS expects.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a malformed or `https://` origin.
    pub fn allow_http_h2c(mut self, origin: &str) -> Result<Self, Error> {
        let origin = HostPattern::parse(origin)?;
        self.http.allow(origin.clone());
        self.http.speak_h2c(origin)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sftp_login_is_host_held_and_can_never_be_readable_too() {
        let grants = Grants::from_json(
            r#"{ "sftp": [{ "name": "drop", "url": "sftp://etl@127.0.0.1:2222/upload",
                  "known_hosts": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID3PXBqtXbKQxJkKvDeXTnLGtYM4pkOHDRzU5xNl3qbv",
                  "key_secret": "drop_key" }] }"#,
        )
        .unwrap()
        .secret("drop_key", "-----BEGIN OPENSSH PRIVATE KEY----- not a key");
        let refused = grants.check_secrets().unwrap_err().to_string();
        assert!(
            refused.contains("not an unencrypted private key"),
            "{refused}"
        );
        let readable = grants.allow_socket_secret("drop_key").unwrap();
        let refused = readable.check_socket_secrets().unwrap_err().to_string();
        assert!(refused.contains("an sftp grant"), "{refused}");
        assert!(!refused.contains("not a key"), "{refused}");
    }
}
