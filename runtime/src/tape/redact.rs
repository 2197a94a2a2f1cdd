//! What never enters a recording: the values of every secret given to the
//! session's grants, credential-bearing headers and query parameters, and
//! secret-looking config fields. The same rules run over a replayed
//! request before it is compared, so a redacted value still matches.

use serde_json::Value;

use crate::capability::secrets::REDACTED;

/// Header names whose values are credentials, whatever they hold.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Pieces of a header, query parameter or config field name that mark it as a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api-key",
    "api_key",
    "apikey",
    "credential",
    "private-key",
    "private_key",
    "signature",
    "session",
];

/// Removes secrets from what is recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    /// Secret values, longest first (so one inside another goes whole).
    values: Vec<String>,
}

impl Redactor {
    /// A redactor of `values` (empty ones ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    /// `text` with every secret value replaced.
    pub fn text(&self, text: &str) -> String {
        let mut text = text.to_string();
        for value in &self.values {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), REDACTED);
            }
        }
        text
    }

    /// Bytes with every secret value replaced (when they are text).
    pub fn bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(bytes) {
            Ok(text) if !self.values.is_empty() => self.text(text).into_bytes(),
            _ => bytes.to_vec(),
        }
    }

    /// A header's value as recorded.
    pub fn header(&self, name: &str, value: &[u8]) -> String {
        if is_secret_name(name) {
            return REDACTED.to_string();
        }
        self.text(&String::from_utf8_lossy(value))
    }

    /// A URI as recorded: secret values and secret-named query parameters redacted.
    pub fn uri(&self, uri: &str) -> String {
        let uri = self.text(uri);
        let Some((path, query)) = uri.split_once('?') else {
            return uri;
        };
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_name(name) => format!("{name}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        format!("{path}?{}", query.join("&"))
    }
}

/// Whether a header, parameter or field named `name` holds a secret. A
/// name ending in `_secret` names a secret the host holds (its value is
/// the secret's name, not the secret), so it is kept.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name.ends_with("_secret") || name.ends_with("-secret") {
        return false;
    }
    SECRET_HEADERS.contains(&name.as_str()) || SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// The config as recorded: string values of secret-named fields replaced,
/// at any depth; their values are returned so they are redacted wherever
/// else they appear.
pub(crate) fn redact_config(config: &mut Value) -> Vec<String> {
    let mut found = Vec::new();
    redact_value(config, &mut found);
    found
}

fn redact_value(value: &mut Value, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                match field {
                    Value::String(text) if is_secret_name(name) => {
                        found.push(std::mem::replace(text, REDACTED.to_string()));
                    }
                    other => redact_value(other, found),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_value(item, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_headers_parameters_and_fields_are_redacted() {
        let redactor = Redactor::new(["hunter22".to_string(), "hunter2".to_string()]);
        assert_eq!(redactor.text("a hunter22 b hunter2"), "a *** b ***");
        assert_eq!(redactor.header("Authorization", b"Bearer abc"), "***");
        assert_eq!(redactor.header("X-Api-Key", b"abc"), "***");
        assert_eq!(redactor.header("Accept", b"x hunter2"), "x ***");
        assert_eq!(
            redactor.uri("https://h/p?page=2&access_token=abc&q=hunter2"),
            "https://h/p?page=2&access_token=***&q=***"
        );
        let mut config = serde_json::json!({
            "url": "https://h",
            "password": "pw1",
            "password_secret": "db-login",
            "nested": [{"api_token": "t0k"}],
            "page_size": 5
        });
        let found = redact_config(&mut config);
        assert_eq!(found, vec!["pw1".to_string(), "t0k".to_string()]);
        assert_eq!(
            config,
            serde_json::json!({
                "url": "https://h",
                "password": "***",
                "password_secret": "db-login",
                "nested": [{"api_token": "***"}],
                "page_size": 5
            })
        );
    }
}
