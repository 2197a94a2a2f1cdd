//! The server's error: the library's errors, plus what only a server does
//! (its store, its compile budget).

use std::time::Duration;

/// Everything that can go wrong serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading, opening or calling a connector, or a bad grant or setting.
    #[error(transparent)]
    Runtime(#[from] sluice::Error),
    /// The server's store (data directory or PostgreSQL) failed or is unreachable.
    #[error("storage: {0}")]
    Storage(String),
    /// Compiling an uploaded component took longer than the budget allows.
    #[error("compiling the component took longer than the budget of {0:?}")]
    CompileTimeout(Duration),
}

impl Error {
    /// A store's own setting is malformed (its URL, a key).
    pub(crate) fn invalid_config(message: String) -> Self {
        Error::Runtime(sluice::Error::InvalidConfig(message))
    }
}
