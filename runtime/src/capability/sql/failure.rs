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
    pub(super) fn from_pg(grant: &str, err: &tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            let code = db.code().code();
            let message = db.message().to_string();
            return match code {
                "25006" => {
                    SqlFailure::Denied(format!("sql grant `{grant}` is read-only: {message}"))
                }
                "57014" => SqlFailure::Timeout(grant.to_string()),
                c if c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03" => {
                    SqlFailure::Unavailable(format!("sql grant `{grant}`: {message}"))
                }
                _ => SqlFailure::Query {
                    sqlstate: Some(code.to_string()),
                    message,
                },
            };
        }
        if err.is_closed() {
            return SqlFailure::Unavailable(format!(
                "the connection of sql grant `{grant}` was lost"
            ));
        }
        let text = err.to_string();
        if let Some(source) = std::error::Error::source(err) {
            // Parameter conversion errors come from our own encoder.
            if text.starts_with("error serializing parameter") {
                return SqlFailure::InvalidValue(format!("{text}: {source}"));
            }
            if text.starts_with("error deserializing column") {
                return SqlFailure::InvalidValue(format!("{text}: {source}"));
            }
        }
        SqlFailure::Unavailable(format!("sql grant `{grant}`: {}", pg_text(err)))
    }

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

/// A tokio-postgres error in full: its own text says only "db error" or
/// "error connecting to server"; the server's message (with its SQLSTATE)
/// or the causes say why.
pub(crate) fn pg_text(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
