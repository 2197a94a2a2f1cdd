//! Denials and grant timeouts: what a capability check refused, and which
//! grant setting bounded a wait that expired. Each capability records them in
//! the session's shared lists; the session turns them into [`crate::Error`]s
//! that name the grant to add or the setting to raise.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::bindings::ConnectorError;

/// Which capability a denial concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `wasi:sockets` TCP.
    Tcp,
    /// `wasi:sockets` UDP.
    Udp,
    /// `wasi:sockets/ip-name-lookup`.
    Dns,
    /// `wasi:http/outgoing-handler`.
    Http,
    /// `sluice:connector/sql`.
    Sql,
    /// `sluice:connector/sftp`.
    Sftp,
    /// Mounted directories (`wasi:filesystem` preopens).
    Files,
    /// `sluice:connector/secrets`.
    Secrets,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::Tcp => "tcp",
            Capability::Udp => "udp",
            Capability::Dns => "dns",
            Capability::Http => "http",
            Capability::Sql => "sql",
            Capability::Sftp => "sftp",
            Capability::Files => "files",
            Capability::Secrets => "secrets",
        })
    }
}

/// A timeout a grant set that expired during a call: what was waited for and
/// which grant setting bounds the wait, so the message blames the setting a
/// user can change rather than the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTimeout {
    /// The capability whose grant set the timeout.
    pub capability: Capability,
    /// What did not arrive in time, e.g. `the first response byte from http://api.test`.
    pub waited_for: String,
    /// The grant setting, e.g. `first_byte_timeout_ms`.
    pub setting: &'static str,
    /// The setting's value.
    pub limit: Duration,
}

impl fmt::Display for GrantTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeout: {} did not come within the {} grant's {} of {} ms; raise it in the grant if the upstream is this slow",
            self.waited_for,
            self.capability,
            self.setting,
            self.limit.as_millis()
        )
    }
}

/// A capability the host refused: what was asked for and the grant that would allow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The capability.
    pub capability: Capability,
    /// What was attempted, e.g. `connect to 127.0.0.1:9` or `GET http://evil.test/`.
    pub attempted: String,
    /// The grant that would allow it, as the command line says it, e.g.
    /// `--allow-tcp 127.0.0.1:9`.
    pub grant: String,
    /// The same grant as an instance's grants say it on the server API, e.g.
    /// `` `127.0.0.1:9` to the instance's `grants.sockets.tcp` ``.
    pub api_grant: String,
    /// The error the connector returned after the denial, if any.
    pub connector_error: Option<ConnectorError>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "denied: {} {} is not granted; to allow it, grant `{}`",
            self.capability, self.attempted, self.grant
        )
    }
}

/// Denials recorded by capability checks, shared with the checks' closures.
#[derive(Debug, Clone, Default)]
pub(crate) struct Denials(Arc<Mutex<Vec<Denial>>>);

impl Denials {
    /// Record a denial and log it.
    pub fn record(&self, denial: Denial) {
        tracing::warn!(capability = %denial.capability, attempted = %denial.attempted, grant = %denial.grant, "capability denied");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(denial);
    }

    /// How many denials have been recorded.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The first denial recorded at or after index `from`.
    pub fn first_since(&self, from: usize) -> Option<Denial> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(from)
            .cloned()
    }

    /// All denials so far.
    pub fn all(&self) -> Vec<Denial> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The grant timeouts that expired during the current call, shared with the
/// capabilities' closures; the session turns a connector `timeout` that
/// follows one into [`crate::Error::GrantTimeout`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Expiries(Arc<Mutex<Option<GrantTimeout>>>);

impl Expiries {
    /// Record an expired grant timeout and log it; the first of a call is kept.
    pub fn record(&self, expired: GrantTimeout) {
        tracing::warn!(capability = %expired.capability, setting = expired.setting, limit_ms = expired.limit.as_millis() as u64, "{}", expired.waited_for);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(expired);
    }

    /// The first grant timeout since the last `take`, clearing it.
    pub fn take(&self) -> Option<GrantTimeout> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}
