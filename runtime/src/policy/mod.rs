//! Grants: what one session may touch, parsed and validated once.
//!
//! Deny by default: an empty [`Grants`] lets a connector compute and log,
//! nothing else. Each capability owns its policy type
//! ([`FilesPolicy`], [`SocketsPolicy`], [`HttpPolicy`]); `Grants` only
//! gathers them and reads the JSON form:
//!
//! ```json
//! {
//!   "files":   [{ "host": "./data", "guest": "/data", "mode": "ro" }],
//!   "sockets": { "tcp": ["127.0.0.1:5432", "10.0.0.0/8:443"], "udp": [], "dns": false },
//!   "http":    { "origins": ["https://api.example.com", "https://*.example.org"],
//!                "connect_timeout_ms": 10000, "first_byte_timeout_ms": 30000,
//!                "between_bytes_timeout_ms": 30000, "max_response_bytes": 67108864 },
//!   "sql":     [{ "name": "main", "url": "postgres://reader@127.0.0.1:5432/app",
//!                 "password_secret": "db_password",
//!                 "mode": "read-only", "max_connections": 4, "statement_timeout_ms": 30000 }]
//! }
//! ```

mod pattern;

use std::path::Path;

use serde::Deserialize;

pub use crate::capability::files::{is_plain_relative, FilesPolicy, Mount, MountMode};
pub use crate::capability::http::HttpPolicy;
pub use crate::capability::sockets::SocketsPolicy;
pub use crate::capability::sql::{SqlGrant, SqlMode, SqlPolicy, SqlUrlPolicy};
use crate::error::Error;
pub use pattern::HostPattern;

/// Everything one session is allowed to touch.
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsSpec {
    #[serde(default)]
    files: Vec<crate::capability::files::MountSpec>,
    #[serde(default)]
    sockets: crate::capability::sockets::SocketsSpec,
    #[serde(default)]
    http: crate::capability::http::HttpSpec,
    #[serde(default)]
    sql: Vec<crate::capability::sql::SqlGrantSpec>,
}

impl Grants {
    /// No access to anything.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parse the JSON form shown in the module docs.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the offending entry.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let spec: GrantsSpec = serde_json::from_str(text)
            .map_err(|e| Error::InvalidGrant(format!("grants JSON: {e}")))?;
        Ok(Self {
            files: FilesPolicy::from_specs(spec.files)?,
            sockets: SocketsPolicy::from_spec(spec.sockets)?,
            http: HttpPolicy::from_spec(spec.http)?,
            sql: SqlPolicy::from_specs(spec.sql)?,
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
            crate::capability::sql::DEFAULT_MAX_CONNECTIONS,
            crate::capability::sql::DEFAULT_STATEMENT_TIMEOUT,
        )?;
        Ok(self)
    }

    /// Provide the value of the secret `name`, used by http `auth` entries
    /// and sql grants' `password_secret`. Secret values never reach the
    /// guest, logs or errors.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.http.secrets.insert(
            name.to_string(),
            crate::capability::http::auth::Secret::new(value),
        );
        self.sql.provide_secret(name, value);
        self
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
}
