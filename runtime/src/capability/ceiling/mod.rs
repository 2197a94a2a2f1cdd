//! [`Ceiling`]: the most a platform lets one tenant's connectors be granted,
//! and [`GrantsConfig::within`], the one decision "do these grants fit".
//!
//! Threat model: a tenant writes its instances' grants; the platform's
//! operator writes the tenant's ceiling. Every entry of a ceiling is parsed
//! into a typed rule when the ceiling is read, so an entry that could match
//! nothing is refused then rather than silently ignored later; grants are
//! compared with those rules on typed values, never as text: two spellings of
//! one address are one address, a network admits the addresses and smaller
//! networks inside it, and a wildcard origin admits its subdomains. A host
//! *name* is never admitted by a network rule: it is resolved only when the
//! grant is opened, and may resolve anywhere. Mounts must be plain relative
//! paths, opened beneath the tenant's own directory by the caller.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::denial::Capability;
use super::files::is_plain_relative;
use super::grants::GrantsConfig;
use super::host::{canonical_host, split_host_port};
use super::http::HostPattern;
use super::sockets::SocketEntry;
use super::sql::{SqlGrantConfig, SqlHost, SqlMode};
use crate::error::Error;

/// The egress a tenant's instances may be granted, at most. The JSON form:
///
/// ```json
/// { "http": ["https://*.example.com"], "http_private_addresses": false,
///   "tcp": ["10.0.0.0/8:5432", "db.internal:*"],
///   "sql_hosts": ["db.internal", "10.0.0.5:5432"],
///   "sql": [{ "host": "db.internal", "port": 5432, "databases": ["app"],
///             "roles": ["reader"], "mode": "read-only" }],
///   "sql_privileged_roles": false, "sftp": ["files.example.com:22"], "files": true }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(try_from = "CeilingText")]
pub struct Ceiling {
    /// HTTP origins (`scheme://host[:port]`, `*.suffix` allowed).
    pub http: Vec<HostPattern>,
    /// Whether http grants may let granted names resolve to loopback,
    /// private or link-local addresses (`allow_private_addresses`).
    pub http_private_addresses: bool,
    /// TCP entries (`host:port`, `cidr:port`, `host:*`).
    pub tcp: Vec<SocketEntry>,
    /// Database hosts sql grants may name, with any database and role there:
    /// `host` (any port) or `host:port` (`[v6]:port`).
    pub sql_hosts: Vec<SqlHostRule>,
    /// Databases sql grants may name, each with its roles and highest mode.
    pub sql: Vec<SqlTarget>,
    /// Whether sql grants may connect as a privileged role (a superuser, a
    /// member of `pg_execute_server_program` / `pg_write_server_files` /
    /// `pg_read_server_files`, or with `BYPASSRLS` / `REPLICATION`).
    pub sql_privileged_roles: bool,
    /// SSH servers sftp grants may name (`host:port`, `cidr:port`, `host:*`),
    /// with any user and directory there.
    pub sftp: Vec<SocketEntry>,
    /// Whether instances may mount directories (beneath the tenant's own root).
    pub files: bool,
}

/// A [`Ceiling`] as written, before each entry is parsed.
#[derive(Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
struct CeilingText {
    /// HTTP origins (`scheme://host[:port]`, `*.suffix` allowed).
    http: Vec<String>,
    /// Whether http grants may let granted names resolve to loopback,
    /// private or link-local addresses (`allow_private_addresses`). Off by default.
    http_private_addresses: bool,
    /// TCP entries (`host:port`, `cidr:port`, `host:*`).
    tcp: Vec<String>,
    /// Database hosts sql grants may name, with any database and role there:
    /// `host` (any port) or `host:port` (`[v6]:port`).
    sql_hosts: Vec<String>,
    /// Databases sql grants may name, each with its roles and the highest mode.
    sql: Vec<SqlTarget>,
    /// Whether sql grants may connect as a privileged role. Off by default:
    /// such a role can reach the database server's files and shell.
    sql_privileged_roles: bool,
    /// SSH servers sftp grants may name (`host:port`, `cidr:port`, `host:*`).
    sftp: Vec<String>,
    /// Whether instances may mount directories of the tenant's own file root.
    files: bool,
}

impl TryFrom<CeilingText> for Ceiling {
    type Error = String;

    fn try_from(text: CeilingText) -> Result<Self, String> {
        fn each<T, E: fmt::Display>(
            field: &str,
            entries: &[String],
            parse: impl Fn(&str) -> Result<T, E>,
        ) -> Result<Vec<T>, String> {
            entries
                .iter()
                .map(|entry| {
                    parse(entry).map_err(|why| {
                        format!("ceiling `{field}` entry `{entry}` can match nothing: {why}")
                    })
                })
                .collect()
        }
        // The grant parsers' own sentence, without the "invalid grant" prefix.
        let why = |e: Error| match e {
            Error::InvalidGrant(why) => why,
            other => other.to_string(),
        };
        Ok(Self {
            http: each("http", &text.http, |t| HostPattern::parse(t).map_err(why))?,
            http_private_addresses: text.http_private_addresses,
            tcp: each("tcp", &text.tcp, |t| SocketEntry::parse(t).map_err(why))?,
            sql_hosts: each("sql_hosts", &text.sql_hosts, SqlHostRule::parse)?,
            sql: text.sql,
            sql_privileged_roles: text.sql_privileged_roles,
            sftp: each("sftp", &text.sftp, |t| SocketEntry::parse(t).map_err(why))?,
            files: text.files,
        })
    }
}

/// A grant that does not fit a [`Ceiling`]: the capability and the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    /// The capability of the entry.
    pub capability: Capability,
    /// The entry as the grant wrote it (a sql grant as `role@host:port/db (mode)`).
    pub entry: String,
}

impl fmt::Display for Outside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} grant `{}` is outside the tenant's egress ceiling",
            self.capability, self.entry
        )
    }
}

impl std::error::Error for Outside {}

fn outside(capability: Capability, entry: impl fmt::Display) -> Outside {
    Outside {
        capability,
        entry: entry.to_string(),
    }
}

impl GrantsConfig {
    /// Whether every grant here fits `ceiling`.
    ///
    /// # Errors
    ///
    /// The first grant that does not, as an [`Outside`].
    pub fn within(&self, ceiling: &Ceiling) -> Result<(), Outside> {
        for origin in &self.http.origins {
            if !ceiling.http.iter().any(|allowed| origin.within(allowed)) {
                return Err(outside(Capability::Http, origin));
            }
        }
        if self.http.allow_private_addresses && !ceiling.http_private_addresses {
            return Err(outside(Capability::Http, "allow_private_addresses"));
        }
        for entry in &self.sockets.tcp {
            if !ceiling.tcp.iter().any(|allowed| entry.within(allowed)) {
                return Err(outside(Capability::Tcp, entry));
            }
        }
        if !self.sockets.udp.is_empty() {
            return Err(outside(Capability::Udp, "sockets.udp"));
        }
        if self.sockets.dns {
            return Err(outside(Capability::Dns, "sockets.dns"));
        }
        for mount in &self.files {
            if !ceiling.files || !is_plain_relative(&mount.host) {
                return Err(outside(Capability::Files, mount.host.display()));
            }
        }
        for grant in &self.sftp {
            let address = grant.url.address();
            let fits = SocketEntry::parse(&address)
                .is_ok_and(|entry| ceiling.sftp.iter().any(|allowed| entry.within(allowed)));
            if !fits {
                return Err(outside(Capability::Sftp, &grant.url));
            }
        }
        self.sql
            .iter()
            .try_for_each(|grant| sql_within(grant, ceiling))
    }
}

/// A sql grant fits when each of its hosts is in `sql_hosts`, or when host,
/// port, database, role and mode all fit one of the ceiling's `sql` targets.
fn sql_within(grant: &SqlGrantConfig, ceiling: &Ceiling) -> Result<(), Outside> {
    let endpoint = grant.url.endpoint();
    let (port, role, database) = (endpoint.port, &endpoint.user, &endpoint.database);
    for host in &endpoint.hosts {
        let name = match host {
            SqlHost::Tcp(name) => canonical_host(name),
            SqlHost::Unix(path) => path.clone(),
        };
        let fits = ceiling
            .sql_hosts
            .iter()
            .any(|rule| rule.admits(&name, port))
            || ceiling
                .sql
                .iter()
                .any(|target| target.admits(&name, port, database, role, grant.mode));
        if !fits {
            let mode = match grant.mode {
                SqlMode::ReadOnly => "read-only",
                SqlMode::ReadWrite => "read-write",
            };
            let shown = if name.contains(':') {
                format!("{role}@[{name}]:{port}/{database} ({mode})")
            } else {
                format!("{role}@{name}:{port}/{database} ({mode})")
            };
            return Err(outside(Capability::Sql, shown));
        }
    }
    Ok(())
}

/// A database host a ceiling admits with any database and role: `host`
/// (any port), `host:port` or `[v6]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlHostRule {
    host: String,
    port: Option<u16>,
}

impl SqlHostRule {
    /// Parse one entry.
    ///
    /// # Errors
    ///
    /// A sentence saying what to write instead.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("sql host `{entry}`: {why}; write `host` or `host:port`");
        let (host, port) =
            split_host_port(entry).ok_or_else(|| bad("a database port is a number from 1"))?;
        if port == Some(0) {
            return Err(bad("a database port is a number from 1"));
        }
        if host.contains(':') && !entry.starts_with('[') {
            return Err(bad("an IPv6 address goes in brackets, `[::1]:5432`"));
        }
        if host.is_empty() || host.contains(['/', '@', ' ', '*']) {
            return Err(bad("not a host name or address"));
        }
        Ok(Self {
            host: canonical_host(host),
            port,
        })
    }

    fn admits(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for SqlHostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.host.contains(':')) {
            (None, _) => f.write_str(&self.host),
            (Some(port), true) => write!(f, "[{}]:{port}", self.host),
            (Some(port), false) => write!(f, "{}:{port}", self.host),
        }
    }
}

/// One database a ceiling admits: host, port, the databases and roles
/// there (`*` for any), and the highest mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(try_from = "SqlTargetText")]
pub struct SqlTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Databases allowed (`*` for any).
    pub databases: Vec<String>,
    /// Roles (user names) allowed (`*` for any).
    pub roles: Vec<String>,
    /// The highest mode a grant may ask for.
    pub mode: SqlMode,
}

/// [`SqlTarget`] as written, before it is checked.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct SqlTargetText {
    host: String,
    #[serde(default = "default_pg_port")]
    port: u16,
    databases: Vec<String>,
    roles: Vec<String>,
    #[serde(default)]
    mode: SqlMode,
}

fn default_pg_port() -> u16 {
    5432
}

impl TryFrom<SqlTargetText> for SqlTarget {
    type Error = String;

    fn try_from(text: SqlTargetText) -> Result<Self, String> {
        let shown = format!("sql target `{}:{}`", text.host, text.port);
        if text.host.is_empty() || text.port == 0 {
            return Err(format!("{shown}: a target needs a host and a port from 1"));
        }
        if text.databases.is_empty() || text.roles.is_empty() {
            return Err(format!(
                "{shown}: `databases` and `roles` each need at least one name (`*` for any)"
            ));
        }
        Ok(Self {
            host: canonical_host(&text.host),
            port: text.port,
            databases: text.databases,
            roles: text.roles,
            mode: text.mode,
        })
    }
}

impl SqlTarget {
    fn admits(&self, host: &str, port: u16, database: &str, role: &str, mode: SqlMode) -> bool {
        let listed = |list: &[String], name: &str| list.iter().any(|n| n == "*" || n == name);
        self.host == host
            && self.port == port
            && listed(&self.databases, database)
            && listed(&self.roles, role)
            && mode <= self.mode
    }
}

crate::text_form!(
    SqlHostRule,
    "SqlHost",
    "A database host, `host` (any port) or `host:port` (`[v6]:port`)."
);

#[cfg(test)]
mod tests;
