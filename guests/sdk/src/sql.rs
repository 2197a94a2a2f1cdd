//! Databases by grant name (the host owns URLs, passwords and pools).
//!
//! [`Connection::open`] takes the name of a sql grant; every call maps the
//! host's `sql-error` into a typed [`ConnectorError`] with [`error`].
//! `Connection::dialect` says which database the grant names: `postgres`
//! (placeholders `$1..$n`) or `mysql` (MySQL and MariaDB, placeholders `?`).
//! Each row arrives as a JSON array of the values' JSON text, in the host's
//! mapping for that database (see the README's "Grants"). A stream can
//! instead have the host render its rows as records of a [`RecordShape`]
//! and pass them on to the caller itself ([`RowStream::forward_records`]):
//! the rows never enter the guest.

pub use crate::bindings::sluice::connector::sql::{
    Column, Connection, DbError, Forwarded, RecordShape, RowSet, RowStream, SqlError, Transaction,
};
use crate::ConnectorError;

/// Turn a host `sql-error` into a connector error.
///
/// `denied` stays `denied`; a server error becomes `invalid-request` carrying
/// its SQLSTATE and message (connection failures become `unavailable`);
/// timeouts stay `timeout`.
pub fn error(err: SqlError) -> ConnectorError {
    match err {
        SqlError::Denied(m) => ConnectorError::Denied(m),
        SqlError::QueryFailed(DbError { sqlstate, message }) => match sqlstate.as_deref() {
            Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                ConnectorError::Unavailable(format!("SQLSTATE {code}: {message}"))
            }
            Some(code) => ConnectorError::InvalidRequest(format!("SQLSTATE {code}: {message}")),
            None => ConnectorError::InvalidRequest(message),
        },
        SqlError::Unavailable(m) => ConnectorError::Unavailable(m),
        SqlError::Timeout => ConnectorError::Timeout,
        SqlError::InvalidValue(m) => ConnectorError::InvalidRequest(m),
    }
}

/// Split one row (a JSON array) into the JSON text of each value, without
/// building values: the fast way to copy them into a record.
///
/// # Errors
///
/// `internal` when the host sent something that is not a JSON array.
pub fn row_raw(row: &str) -> Result<Vec<&serde_json::value::RawValue>, ConnectorError> {
    serde_json::from_str(row)
        .map_err(|_| ConnectorError::Internal(format!("row is not a JSON array: {row}")))
}

/// A row's values as JSON (see [`row_raw`] to splice them without parsing).
///
/// # Errors
///
/// `internal` when the row is not a JSON array.
pub fn row_values(row: &str) -> Result<Vec<serde_json::Value>, ConnectorError> {
    match serde_json::from_str(row) {
        Ok(serde_json::Value::Array(values)) => Ok(values),
        _ => Err(ConnectorError::Internal(format!(
            "row is not a JSON array: {row}"
        ))),
    }
}
