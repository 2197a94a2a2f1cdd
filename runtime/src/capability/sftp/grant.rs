//! Declared sftp grants ([`SftpGrantConfig`]) and what they open:
//! [`SftpPolicy`], one [`SftpGrant`] per name with its pinned host keys,
//! its login once provided, and its bound on connections.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::capability::host::{canonical_host, split_host_port};
use crate::error::Error;

/// Default number of connections one grant holds open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Default bound on connecting, logging in and each SFTP request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a grant may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SftpMode {
    /// Stat, list and read only (the default).
    #[default]
    ReadOnly,
    /// Also write (to a temporary name, then renamed) and remove.
    ReadWrite,
}

impl fmt::Display for SftpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SftpMode::ReadOnly => "read-only",
            SftpMode::ReadWrite => "read-write",
        })
    }
}

/// Where a grant logs in: `sftp://USER@HOST[:PORT][/ROOT]` (port 22, root
/// `/` by default). No password in it: that is a secret's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "schema", schemars(with = "String"))]
pub struct SftpUrl {
    /// The user it logs in as.
    pub user: String,
    /// The server's host name or address, as written (canonical for an address).
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The directory every path is confined to, absolute, without a trailing `/`
    /// (empty for the server's `/`).
    pub root: String,
}

impl SftpUrl {
    /// Parse `sftp://USER@HOST[:PORT][/ROOT]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] saying what is wrong (never echoing a password).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::InvalidGrant(format!(
                "sftp URL: {why}; write sftp://USER@HOST[:PORT][/ROOT]"
            ))
        };
        let rest = text
            .strip_prefix("sftp://")
            .ok_or_else(|| bad("it must start with sftp://"))?;
        let (authority, root) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (user, address) = authority
            .rsplit_once('@')
            .ok_or_else(|| bad("it must name the user"))?;
        if user.contains(':') {
            return Err(bad(
                "a password does not go in the URL; name its secret in `password_secret`",
            ));
        }
        if user.is_empty() {
            return Err(bad("the user is empty"));
        }
        let (host, port) = split_host_port(address).ok_or_else(|| bad("the port is malformed"))?;
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let root = root.trim_end_matches('/');
        if root.split('/').any(|part| part == "..") || root.chars().any(char::is_control) {
            return Err(bad("the root must not contain `..` or control characters"));
        }
        Ok(Self {
            user: user.to_string(),
            host: canonical_host(host),
            port: port.unwrap_or(22),
            root: root.to_string(),
        })
    }

    /// `HOST:PORT` (`[v6]:PORT`), as socket entries and ceilings write it.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SftpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sftp://{}@{}{}", self.user, self.address(), self.root)
    }
}

impl TryFrom<String> for SftpUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).map_err(|e| e.to_string())
    }
}

impl From<SftpUrl> for String {
    fn from(url: SftpUrl) -> String {
        url.to_string()
    }
}

/// The server keys a grant pins: the key part of OpenSSH `known_hosts`
/// lines (`[HOST]:PORT ssh-ed25519 AAAA…`, as `ssh-keyscan -p PORT HOST`
/// prints them; the host part may be left out). The server must prove it
/// holds one of them, or the connection is refused before the login is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts(Vec<PublicKey>);

impl KnownHosts {
    /// Parse one or more lines; blank lines and `#` comments are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a line that holds no key, a marker line
    /// (`@cert-authority`, `@revoked`), or no key at all.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                Error::InvalidGrant(format!(
                    "sftp known_hosts line `{}`: {why}; write `[HOST]:PORT KEYTYPE BASE64` as `ssh-keyscan -p PORT HOST` prints it",
                    line.chars().take(60).collect::<String>()
                ))
            };
            if line.starts_with('@') {
                return Err(bad("markers (@cert-authority, @revoked) are not supported"));
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            // With or without the host part: the key type comes first or second.
            let at = match fields.first() {
                Some(first) if is_key_type(first) => 0,
                _ => 1,
            };
            let (Some(kind), Some(base64)) = (fields.get(at), fields.get(at + 1)) else {
                return Err(bad("it holds no key"));
            };
            let key = PublicKey::from_openssh(&format!("{kind} {base64}"))
                .map_err(|e| bad(&format!("the key does not parse ({e})")))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(Error::InvalidGrant(
                "sftp known_hosts: no key given; pin the server's key with `ssh-keyscan -p PORT HOST`".into(),
            ));
        }
        Ok(Self(keys))
    }

    /// The pinned keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// Whether `offered` is one of them.
    pub fn admits(&self, offered: &PublicKey) -> bool {
        self.0
            .iter()
            .any(|key| key.key_data() == offered.key_data())
    }
}

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-") || field.starts_with("sk-")
}

impl Serialize for KnownHosts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let lines: Vec<String> = self
            .0
            .iter()
            .filter_map(|key| key.to_openssh().ok())
            .collect();
        serializer.serialize_str(&lines.join("\n"))
    }
}

impl<'de> Deserialize<'de> for KnownHosts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for KnownHosts {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KnownHosts".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// An sftp grant as declared:
/// `{"name": "drop", "url": "sftp://etl@files.example.com/upload",
///   "known_hosts": "files.example.com ssh-ed25519 AAAA…", "key_secret": "drop_key"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SftpGrantConfig {
    /// The name the guest opens it by.
    pub name: String,
    /// Where it logs in, and the directory every path is confined to.
    pub url: SftpUrl,
    /// The server's host keys, as `known_hosts` lines; any other key is refused.
    pub known_hosts: KnownHosts,
    /// Name of the secret holding the private key (OpenSSH or PEM text, unencrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
    /// Name of the secret holding the password (when there is no key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<String>,
    /// Whether it may write and remove (read-only by default).
    #[serde(default)]
    pub mode: SftpMode,
    /// Connections open at once through it (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Bound on connecting and logging in, and on each request, ms (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// How a grant logs in, once its secret is provided.
#[derive(Clone)]
pub(super) enum Login {
    Key(Arc<russh::keys::PrivateKey>),
    Password(Arc<str>),
}

/// One named sftp grant.
#[derive(Clone)]
pub struct SftpGrant {
    pub(super) name: String,
    pub(super) url: SftpUrl,
    pub(super) known_hosts: KnownHosts,
    pub(super) mode: SftpMode,
    pub(super) timeout: Duration,
    /// Connections open at once, at most.
    pub(super) connections: Arc<Semaphore>,
    key_secret: Option<String>,
    password_secret: Option<String>,
    pub(super) login: Option<Login>,
    /// Why the provided key could not be read (the secret's name, never its text).
    key_problem: Option<String>,
}

impl fmt::Debug for SftpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpGrant")
            .field("name", &self.name)
            .field("url", &self.url.to_string())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SftpGrant {
    /// The grant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it logs in.
    pub fn url(&self) -> &SftpUrl {
        &self.url
    }

    /// Its mode.
    pub fn mode(&self) -> SftpMode {
        self.mode
    }

    /// The name of the secret it logs in with.
    fn secret_name(&self) -> Option<&str> {
        self.key_secret
            .as_deref()
            .or(self.password_secret.as_deref())
    }
}

/// The sftp grants of one session, by name.
#[derive(Debug, Clone, Default)]
pub struct SftpPolicy {
    grants: HashMap<String, Arc<SftpGrant>>,
}

impl SftpPolicy {
    /// The grants a declared config opens.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a duplicate or empty name, zero bounds, or
    /// not exactly one of `key_secret` and `password_secret`.
    pub fn from_config(specs: &[SftpGrantConfig]) -> Result<Self, Error> {
        let mut policy = Self::default();
        for spec in specs {
            policy.add(spec)?;
        }
        Ok(policy)
    }

    /// Add one declared grant.
    ///
    /// # Errors
    ///
    /// As [`SftpPolicy::from_config`].
    pub fn add(&mut self, spec: &SftpGrantConfig) -> Result<(), Error> {
        let name = &spec.name;
        if name.is_empty() || self.grants.contains_key(name) {
            return Err(Error::InvalidGrant(format!(
                "sftp grant name `{name}` is empty or used twice"
            )));
        }
        if spec.key_secret.is_some() == spec.password_secret.is_some() {
            return Err(Error::InvalidGrant(format!(
                "sftp grant `{name}`: name the secret it logs in with, either `key_secret` (a private key) or `password_secret`"
            )));
        }
        let max_connections = spec.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let timeout = spec
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        if max_connections == 0 || timeout.is_zero() {
            return Err(Error::InvalidGrant(format!(
                "sftp grant `{name}`: max_connections and timeout_ms must be positive"
            )));
        }
        self.grants.insert(
            name.clone(),
            Arc::new(SftpGrant {
                name: name.clone(),
                url: spec.url.clone(),
                known_hosts: spec.known_hosts.clone(),
                mode: spec.mode,
                timeout,
                connections: Arc::new(Semaphore::new(max_connections)),
                key_secret: spec.key_secret.clone(),
                password_secret: spec.password_secret.clone(),
                login: None,
                key_problem: None,
            }),
        );
        Ok(())
    }

    /// Fill in the login of every grant that takes it from the secret `name`.
    pub(crate) fn provide_secret(&mut self, name: &str, value: &str) {
        for grant in self.grants.values_mut() {
            let grant = Arc::make_mut(grant);
            if grant.key_secret.as_deref() == Some(name) {
                match russh::keys::decode_secret_key(value, None) {
                    Ok(key) => {
                        grant.login = Some(Login::Key(Arc::new(key)));
                        grant.key_problem = None;
                    }
                    Err(_) => {
                        grant.login = None;
                        grant.key_problem = Some(format!(
                            "sftp grant `{}`: the secret `{name}` is not an unencrypted private key (OpenSSH or PEM text)",
                            grant.name
                        ));
                    }
                }
            } else if grant.password_secret.as_deref() == Some(name) {
                grant.login = Some(Login::Password(Arc::from(value)));
            }
        }
    }

    /// The secrets the grants log in with.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.grants.values().filter_map(|grant| grant.secret_name())
    }

    /// Check that every grant's secret was provided and, for a key, reads as one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the grant and the secret (never a value).
    pub fn check_secrets(&self) -> Result<(), Error> {
        for grant in self.grants.values() {
            if let Some(problem) = &grant.key_problem {
                return Err(Error::InvalidGrant(problem.clone()));
            }
            if let (Some(secret), None) = (grant.secret_name(), &grant.login) {
                return Err(Error::InvalidGrant(format!(
                    "sftp grant `{}` logs in with the secret `{secret}`, which was not provided (CLI: --secret {secret}=@FILE)",
                    grant.name
                )));
            }
        }
        Ok(())
    }

    /// The grant called `name`.
    pub fn grant(&self, name: &str) -> Option<&Arc<SftpGrant>> {
        self.grants.get(name)
    }

    /// Whether there are no grants.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID3PXBqtXbKQxJkKvDeXTnLGtYM4pkOHDRzU5xNl3qbv";

    #[test]
    fn urls_name_user_host_port_and_root() {
        let url = SftpUrl::parse("sftp://etl@Files.Example.com:2222/upload/in/").unwrap();
        assert_eq!(
            (
                url.user.as_str(),
                url.host.as_str(),
                url.port,
                url.root.as_str()
            ),
            ("etl", "files.example.com", 2222, "/upload/in")
        );
        assert_eq!(
            url.to_string(),
            "sftp://etl@files.example.com:2222/upload/in"
        );
        let plain = SftpUrl::parse("sftp://etl@[::1]").unwrap();
        assert_eq!(
            (plain.address(), plain.root.as_str()),
            ("[::1]:22".into(), "")
        );
    }

    #[test]
    fn urls_refuse_passwords_escapes_and_missing_parts() {
        let refused = |text: &str| SftpUrl::parse(text).unwrap_err().to_string();
        assert!(refused("sftp://etl:hunter2@h/").contains("password does not go in the URL"));
        assert!(!refused("sftp://etl:hunter2@h/").contains("hunter2"));
        assert!(refused("sftp://h/x").contains("must name the user"));
        assert!(refused("sftp://u@h/a/../../etc").contains("`..`"));
        assert!(refused("ftp://u@h/").contains("must start with sftp://"));
        assert!(refused("sftp://u@h:99999/").contains("port is malformed"));
    }

    #[test]
    fn known_hosts_take_lines_with_or_without_hosts() {
        let pinned = KnownHosts::parse(&format!(
            "# pinned\n[127.0.0.1]:2222 {KEY}\n\n{KEY} comment"
        ))
        .unwrap();
        assert_eq!(pinned.keys().len(), 2);
        assert!(pinned.admits(&pinned.keys()[0]));
        let other = KnownHosts::parse(
            "h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPfeyid8y74HV9NiRGmFK7TXRgCkMYpL55boq++wuGiK",
        )
        .unwrap();
        assert!(!pinned.admits(&other.keys()[0]));
        for bad in [
            "",
            "# nothing",
            "h ssh-ed25519",
            "h ssh-ed25519 AAAAnotakey",
            &format!("@revoked h {KEY}"),
        ] {
            assert!(KnownHosts::parse(bad).is_err(), "{bad}");
        }
    }

    fn spec(key_secret: Option<&str>, password_secret: Option<&str>) -> SftpGrantConfig {
        SftpGrantConfig {
            name: "drop".into(),
            url: SftpUrl::parse("sftp://etl@127.0.0.1:2222/upload").unwrap(),
            known_hosts: KnownHosts::parse(KEY).unwrap(),
            key_secret: key_secret.map(str::to_string),
            password_secret: password_secret.map(str::to_string),
            mode: SftpMode::ReadOnly,
            max_connections: None,
            timeout_ms: None,
        }
    }

    #[test]
    fn a_grant_logs_in_with_exactly_one_secret_that_was_provided() {
        assert!(SftpPolicy::from_config(&[spec(None, None)]).is_err());
        assert!(SftpPolicy::from_config(&[spec(Some("k"), Some("p"))]).is_err());
        let mut policy = SftpPolicy::from_config(&[spec(None, Some("pw"))]).unwrap();
        let missing = policy.check_secrets().unwrap_err().to_string();
        assert!(
            missing.contains("`pw`") && missing.contains("not provided"),
            "{missing}"
        );
        policy.provide_secret("pw", "hunter2");
        policy.check_secrets().unwrap();
        assert_eq!(policy.secret_names().collect::<Vec<_>>(), ["pw"]);
    }

    #[test]
    fn a_key_secret_that_is_not_a_key_is_refused_without_its_text() {
        let mut policy = SftpPolicy::from_config(&[spec(Some("k"), None)]).unwrap();
        policy.provide_secret("k", "not-a-key-hunter2");
        let refused = policy.check_secrets().unwrap_err().to_string();
        assert!(
            refused.contains("not an unencrypted private key"),
            "{refused}"
        );
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    #[test]
    fn the_declared_form_round_trips() {
        let text = format!(
            r#"{{"name": "drop", "url": "sftp://etl@127.0.0.1:2222/upload", "known_hosts": "[127.0.0.1]:2222 {KEY}", "key_secret": "k", "mode": "read-write"}}"#
        );
        let parsed: SftpGrantConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.mode, SftpMode::ReadWrite);
        let again: SftpGrantConfig =
            serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
    }
}
