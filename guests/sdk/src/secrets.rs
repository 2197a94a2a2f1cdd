//! Secrets the connector presents itself: the login of a broker or server it
//! speaks to over its own sockets, where the host cannot add it on the way
//! (as it does for http `auth` and sql grants, whose secrets a connector never
//! sees).
//!
//! A config names the secret (`"password_secret": "broker_password"`), never
//! holds its value; the user grants it (`sluice run --socket-secret
//! broker_password=env:BROKER_PASSWORD`, or on the server the instance's
//! `secrets` plus its name in `grants.sockets.secrets`). The host removes its
//! value from this connector's log events and error messages; still, do not
//! put it in records.
//!
//! ```no_run
//! # fn login() -> sluice_sdk::Result<()> {
//! let password = sluice_sdk::secrets::get("broker_password")?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::sluice::connector::secrets;
use crate::Result;

/// The value of the secret `name`.
///
/// # Errors
///
/// `denied` naming the grant (`--socket-secret NAME=…`) when the connector
/// may not read it.
pub fn get(name: &str) -> Result<String> {
    secrets::get(name)
}

/// The value of the secret a config field names, if it names one.
///
/// # Errors
///
/// As [`get`].
pub fn optional(name: Option<&str>) -> Result<Option<String>> {
    name.map(get).transpose()
}
