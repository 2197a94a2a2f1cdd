//! [`SqlUrl`]: a grant's database URL, parsed when read, in either dialect
//! ([`SqlDialect`]), and [`SqlEndpoint`], where it connects in terms every
//! dialect shares (what a tenant's ceiling is checked against).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio_postgres::config::Host;

use crate::error::Error;

/// The database a grant URL names, which decides the driver, the SQL the
/// guard admits and the value mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// PostgreSQL (`postgres://`, `postgresql://` or a key=value string).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    Mysql,
}

impl SqlDialect {
    /// The name a guest reads (`postgres`, `mysql`).
    pub fn as_str(self) -> &'static str {
        match self {
            SqlDialect::Postgres => "postgres",
            SqlDialect::Mysql => "mysql",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            SqlDialect::Postgres => 5432,
            SqlDialect::Mysql => 3306,
        }
    }
}

impl fmt::Display for SqlDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host a grant URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlHost {
    /// A host name or address, reached over TCP.
    Tcp(String),
    /// A Unix-socket path.
    Unix(String),
}

/// Where a grant connects: hosts, port, role and database, never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlEndpoint {
    /// The hosts, in order (PostgreSQL URLs may list several).
    pub hosts: Vec<SqlHost>,
    /// The port.
    pub port: u16,
    /// The role (user name).
    pub user: String,
    /// The database (PostgreSQL's default: the role's name; MySQL's: none).
    pub database: String,
}

impl fmt::Display for SqlEndpoint {
    /// `user@host:port/db`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self
            .hosts
            .iter()
            .map(|h| match h {
                SqlHost::Tcp(name) | SqlHost::Unix(name) => name.as_str(),
            })
            .collect();
        write!(
            f,
            "{}@{}:{}/{}",
            self.user,
            hosts.join(","),
            self.port,
            self.database
        )
    }
}

/// The parsed form of a URL, by dialect.
#[derive(Clone)]
pub(crate) enum ParsedUrl {
    Postgres(Box<tokio_postgres::Config>),
    Mysql(mysql_async::Opts),
}

/// A database connection URL — PostgreSQL (`postgres://user@host:port/db`
/// or key=value) or MySQL/MariaDB (`mysql://user@host:3306/db`) — parsed
/// when read and kept as written. Neither `Debug` nor an error ever shows a
/// password in it.
#[derive(Clone)]
pub struct SqlUrl {
    text: String,
    parsed: ParsedUrl,
}

impl SqlUrl {
    /// Parse a URL naming at least one host; the scheme picks the dialect.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] saying what to write; it never repeats the
    /// text, which may hold a password.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let parsed = if let Some(rest) = text
            .strip_prefix("mysql://")
            .or_else(|| text.strip_prefix("mariadb://"))
        {
            let opts = mysql_async::Opts::from_url(&format!("mysql://{rest}")).map_err(|e| {
                Error::InvalidGrant(format!(
                    "a mysql grant URL does not parse ({e}); write `mysql://user@host:3306/database`"
                ))
            })?;
            if opts.ip_or_hostname().is_empty() && opts.socket().is_none() {
                return Err(Error::InvalidGrant("a sql grant URL names no host".into()));
            }
            ParsedUrl::Mysql(opts)
        } else {
            let config = tokio_postgres::Config::from_str(text).map_err(|e| {
                Error::InvalidGrant(format!(
                    "a sql grant URL does not parse ({e}); write `postgres://user@host:port/database` or `mysql://user@host:port/database`"
                ))
            })?;
            if config.get_hosts().is_empty() {
                return Err(Error::InvalidGrant("a sql grant URL names no host".into()));
            }
            ParsedUrl::Postgres(Box::new(config))
        };
        Ok(Self {
            text: text.to_string(),
            parsed,
        })
    }

    /// The database the URL names.
    pub fn dialect(&self) -> SqlDialect {
        match self.parsed {
            ParsedUrl::Postgres(_) => SqlDialect::Postgres,
            ParsedUrl::Mysql(_) => SqlDialect::Mysql,
        }
    }

    pub(crate) fn parsed(&self) -> &ParsedUrl {
        &self.parsed
    }

    /// Where it connects.
    pub fn endpoint(&self) -> SqlEndpoint {
        let port_default = self.dialect().default_port();
        match &self.parsed {
            ParsedUrl::Postgres(config) => {
                let user = config.get_user().unwrap_or_default().to_string();
                SqlEndpoint {
                    hosts: config
                        .get_hosts()
                        .iter()
                        .map(|h| match h {
                            Host::Tcp(name) => SqlHost::Tcp(name.clone()),
                            Host::Unix(path) => SqlHost::Unix(path.display().to_string()),
                        })
                        .collect(),
                    port: config.get_ports().first().copied().unwrap_or(port_default),
                    database: config.get_dbname().unwrap_or(&user).to_string(),
                    user,
                }
            }
            ParsedUrl::Mysql(opts) => SqlEndpoint {
                hosts: vec![match opts.socket() {
                    Some(path) => SqlHost::Unix(path.to_string()),
                    None => SqlHost::Tcp(opts.ip_or_hostname().to_string()),
                }],
                port: opts.tcp_port(),
                user: opts.user().unwrap_or_default().to_string(),
                database: opts.db_name().unwrap_or_default().to_string(),
            },
        }
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        match &self.parsed {
            ParsedUrl::Postgres(config) => config.get_password().is_some(),
            ParsedUrl::Mysql(opts) => opts.pass().is_some(),
        }
    }

    /// The URL as written when it carries no password; else
    /// `scheme://user:***@host:port/db`.
    pub fn redacted(&self) -> String {
        if !self.has_password() {
            return self.text.clone();
        }
        let target = self.endpoint().to_string();
        let scheme = self.dialect().as_str();
        match target.split_once('@') {
            Some((user, place)) => format!("{scheme}://{user}:***@{place}"),
            None => format!("{scheme}://***"),
        }
    }
}

impl PartialEq for SqlUrl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for SqlUrl {}

impl fmt::Debug for SqlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

crate::string_schema!(
    SqlUrl,
    "SqlUrl",
    "A database URL without a password: `postgres://user@host:port/database` or `mysql://user@host:port/database`."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_dialect_and_the_endpoint_never_shows_a_password() {
        let pg = SqlUrl::parse("postgres://reader:pw@db:5433/app").unwrap();
        assert_eq!(pg.dialect(), SqlDialect::Postgres);
        assert_eq!(pg.endpoint().to_string(), "reader@db:5433/app");
        assert_eq!(pg.redacted(), "postgres://reader:***@db:5433/app");
        for text in [
            "mysql://reader:pw@db:3307/app",
            "mariadb://reader:pw@db:3307/app",
        ] {
            let my = SqlUrl::parse(text).unwrap();
            assert_eq!(my.dialect(), SqlDialect::Mysql);
            assert_eq!(my.endpoint().to_string(), "reader@db:3307/app");
            assert_eq!(my.redacted(), "mysql://reader:***@db:3307/app");
            assert!(!format!("{my:?}").contains("pw"));
        }
        let default_port = SqlUrl::parse("mysql://reader@db/app").unwrap();
        assert_eq!(default_port.endpoint().port, 3306);
        let socket = SqlUrl::parse("mysql://reader@localhost/app?socket=/run/mysqld.sock").unwrap();
        assert_eq!(
            socket.endpoint().hosts,
            vec![SqlHost::Unix("/run/mysqld.sock".into())]
        );
        let err = SqlUrl::parse("mysql://reader:secret@db:notaport/app").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
