//! [`SqlFailure`]: a database failure before it becomes the WIT `sql-error`.

use crate::bindings::sluice::connector::sql::{DbError, SqlError};

/// A failure before it becomes the WIT `sql-error`.
#[derive(Debug)]
pub(crate) enum SqlFailure {
    Denied(String),
    Query {
        sqlstate: Option<String>,
        message: String,
    },
    Unavailable(String),
    /// The statement timeout of the named grant expired.
    Timeout(String),
    InvalidValue(String),
}

impl SqlFailure {
    /// The WIT error.
    pub(super) fn into_wit(self) -> SqlError {
        match self {
            SqlFailure::Denied(m) => SqlError::Denied(m),
            SqlFailure::Query { sqlstate, message } => {
                SqlError::QueryFailed(DbError { sqlstate, message })
            }
            SqlFailure::Unavailable(m) => SqlError::Unavailable(m),
            SqlFailure::Timeout(_) => SqlError::Timeout,
            SqlFailure::InvalidValue(m) => SqlError::InvalidValue(m),
        }
    }
}

pub(crate) type SqlResult<T> = Result<T, SqlFailure>;

/// An error's text followed by each of its causes'.
pub(super) fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
