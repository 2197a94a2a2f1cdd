//! Secrets a connector presents itself: the login of a broker or server it
//! speaks to over its own sockets (AMQP, NATS, Redis, MQTT), where the host
//! cannot add credentials on the way as it does for http `auth` and sql.
//!
//! Threat model: a guest may ask for any name. It gets only the secrets its
//! grants mark readable (`sockets.secrets`, CLI `--socket-secret`); a secret
//! that http `auth` or a sql grant uses is host-held and can never be marked
//! readable too, so those keep their promise of never entering guest memory.
//! A readable secret can leave the guest only through the doors its grants
//! open (the granted socket addresses); the host also removes every readable
//! value from the connector's log events and error messages, so a connector
//! that echoes its login (or a broker that does, through the connector)
//! does not put it in a log or an API response.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use wasmtime::component::HasData;

use super::denial::{Capability, Denial, Denials};
use crate::bindings::sluice::connector::secrets::Host;
use crate::bindings::ConnectorError;
use crate::error::Error;

/// What replaces a secret value in log events and error messages.
pub const REDACTED: &str = "***";

/// The secrets one session's connector may read, with their values once provided.
#[derive(Clone, Default)]
pub struct SocketSecrets {
    readable: BTreeSet<String>,
    values: BTreeMap<String, Arc<str>>,
}

impl std::fmt::Debug for SocketSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketSecrets")
            .field("readable", &self.readable)
            .field("provided", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SocketSecrets {
    /// The names a grant declares readable.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for an empty name.
    pub fn from_config(names: &[String]) -> Result<Self, Error> {
        let mut secrets = Self::default();
        for name in names {
            secrets.allow(name)?;
        }
        Ok(secrets)
    }

    /// Let the connector read the secret `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for an empty name.
    pub fn allow(&mut self, name: &str) -> Result<(), Error> {
        if name.trim().is_empty() {
            return Err(Error::InvalidGrant(
                "sockets.secrets: a secret name cannot be empty".into(),
            ));
        }
        self.readable.insert(name.to_string());
        Ok(())
    }

    /// Provide a value. Every value is kept for redaction; the connector
    /// can read only those whose name is readable.
    pub(crate) fn provide(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), Arc::from(value));
    }

    fn readable_value(&self, name: &str) -> Option<&str> {
        self.readable
            .contains(name)
            .then(|| self.values.get(name).map(|v| &**v))
            .flatten()
    }

    /// Every value provided, readable or host-held (what a recording redacts).
    pub(crate) fn values(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(|v| &**v)
    }

    /// The names the connector may read.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.readable.iter().map(String::as_str)
    }

    /// Check that every readable secret was provided and that none is one
    /// the host holds for http `auth` or a sql grant (`host_held`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the secret.
    pub fn check(&self, host_held: &BTreeSet<&str>) -> Result<(), Error> {
        for name in &self.readable {
            if host_held.contains(name.as_str()) {
                return Err(Error::InvalidGrant(format!(
                    "the secret `{name}` is used by an http `auth` entry, a sql grant or an sftp grant, whose secrets never enter the connector; it cannot also be in sockets.secrets (give the connector a secret of its own)"
                )));
            }
            if !self.values.contains_key(name) {
                return Err(Error::InvalidGrant(format!(
                    "the connector is granted the secret `{name}` (sockets.secrets), which was not provided (CLI: --socket-secret {name}=VALUE)"
                )));
            }
        }
        Ok(())
    }

    /// `text` with every readable secret value replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for value in self.values.values() {
            if !value.is_empty() && text.contains(&**value) {
                text = Cow::Owned(text.replace(&**value, REDACTED));
            }
        }
        text
    }

    /// A connector error with every readable secret value removed from its message.
    pub(crate) fn redact_error(&self, error: ConnectorError) -> ConnectorError {
        if self.values.is_empty() {
            return error;
        }
        let clean = |message: String| self.redact(&message).into_owned();
        match error {
            ConnectorError::InvalidConfig(m) => ConnectorError::InvalidConfig(clean(m)),
            ConnectorError::InvalidRequest(m) => ConnectorError::InvalidRequest(clean(m)),
            ConnectorError::Unsupported(m) => ConnectorError::Unsupported(clean(m)),
            ConnectorError::Denied(m) => ConnectorError::Denied(clean(m)),
            ConnectorError::NotFound(m) => ConnectorError::NotFound(clean(m)),
            ConnectorError::Unavailable(m) => ConnectorError::Unavailable(clean(m)),
            ConnectorError::Internal(m) => ConnectorError::Internal(clean(m)),
            other @ (ConnectorError::RateLimited(_) | ConnectorError::Timeout) => other,
        }
    }
}

/// What the secrets host borrows from a store's state.
pub(crate) struct SecretsView<'a> {
    /// The session's readable secrets.
    pub secrets: &'a SocketSecrets,
    /// Where a refused name is recorded.
    pub denials: &'a Denials,
}

/// Links [`SecretsView`] into `add_to_linker`.
pub(crate) struct HasSecrets;

impl HasData for HasSecrets {
    type Data<'a> = SecretsView<'a>;
}

impl Host for SecretsView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, ConnectorError>> {
        if let Some(value) = self.secrets.readable_value(&name) {
            return Ok(Ok(value.to_string()));
        }
        let shown: String = name.chars().take(64).collect();
        let denial = Denial {
            capability: Capability::Secrets,
            attempted: format!("read of the secret `{shown}`"),
            grant: format!("--socket-secret {shown}=VALUE"),
            api_grant: format!(
                "`{shown}` to the instance's `grants.sockets.secrets` (and its value to `secrets`)"
            ),
            connector_error: None,
        };
        let message = denial.to_string();
        self.denials.record(denial);
        Ok(Err(ConnectorError::Denied(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(name: &str, value: &str) -> SocketSecrets {
        let mut secrets = SocketSecrets::from_config(&[name.to_string()]).unwrap();
        secrets.provide(name, value);
        secrets
    }

    #[test]
    fn only_readable_names_can_be_read_but_every_value_is_redacted() {
        let mut secrets = granted("broker", "s3cr3t");
        secrets.provide("db_password", "other");
        assert_eq!(secrets.readable_value("broker"), Some("s3cr3t"));
        assert_eq!(secrets.readable_value("db_password"), None);
        assert_eq!(secrets.redact("other s3cr3t"), "*** ***");
        assert!(secrets.check(&BTreeSet::new()).is_ok());
    }

    #[test]
    fn a_host_held_secret_cannot_be_readable_too() {
        let secrets = granted("token", "s3cr3t");
        let err = secrets.check(&BTreeSet::from(["token"])).unwrap_err();
        assert!(err.to_string().contains("`token`"), "{err}");
        assert!(
            err.to_string().contains("never enter the connector"),
            "{err}"
        );
    }

    #[test]
    fn a_readable_secret_without_a_value_is_refused() {
        let secrets = SocketSecrets::from_config(&["broker".into()]).unwrap();
        let err = secrets.check(&BTreeSet::new()).unwrap_err();
        assert!(
            err.to_string().contains("--socket-secret broker=VALUE"),
            "{err}"
        );
    }

    #[test]
    fn values_are_redacted_from_text_and_errors() {
        let secrets = granted("broker", "s3cr3t");
        assert_eq!(
            secrets.redact("login s3cr3t refused (s3cr3t)"),
            "login *** refused (***)"
        );
        assert!(matches!(
            secrets.redact_error(ConnectorError::Denied("bad password s3cr3t".into())),
            ConnectorError::Denied(m) if m == "bad password ***"
        ));
    }
}
