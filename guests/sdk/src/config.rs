//! Typed config parsing.

use serde::de::DeserializeOwned;

use crate::ConnectorError;

/// Parse the JSON config passed to `open` into `T`.
///
/// # Errors
///
/// `invalid-config` whose message names the offending field by its path,
/// e.g. `` field `csv.delimiter`: invalid type: integer `1`, expected a string``.
pub fn parse<T: DeserializeOwned>(config: &str) -> Result<T, ConnectorError> {
    let mut de = serde_json::Deserializer::from_str(config);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path.is_empty() || path == "." {
            ConnectorError::InvalidConfig(inner.to_string())
        } else {
            ConnectorError::InvalidConfig(format!("field `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|err| ConnectorError::InvalidConfig(format!("trailing input: {err}")))?;
    Ok(value)
}

/// Parse an optional JSON options object (e.g. `fetch-request.options`) into `T`,
/// using `T::default()` when absent.
///
/// # Errors
///
/// `invalid-request` naming the offending option.
pub fn parse_options<T: DeserializeOwned + Default>(
    options: Option<&str>,
) -> Result<T, ConnectorError> {
    match options {
        None => Ok(T::default()),
        Some(text) => parse(text).map_err(|err| match err {
            ConnectorError::InvalidConfig(msg) => {
                ConnectorError::InvalidRequest(format!("options: {msg}"))
            }
            other => other,
        }),
    }
}
