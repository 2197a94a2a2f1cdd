//! What never enters a recording: the values of every secret given to the
//! session's grants, credential-bearing headers and query parameters,
//! secret-looking config fields, and secret-named fields of the HTTP bodies
//! the connector sends and receives (a login answer's `access_token`),
//! whose values are then redacted wherever they appear later. The same
//! rules run over a replayed request before it is compared, so a redacted
//! value still matches.

use std::sync::RwLock;

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

/// The shortest value learned from a body: shorter ones (`"1000"`,
/// `"no"`) would redact ordinary text everywhere, and a replay — whose
/// connector receives `***` instead — would not redact them alike.
const MIN_LEARNED: usize = 8;

/// Pieces of a name that mark a position, not a credential (`nextPageToken`,
/// `ContinuationToken`): kept, so the recording shows how paging went.
const POSITION_WORDS: &[&str] = &["page", "cursor", "next", "continuation"];

/// Removes secrets from what is recorded.
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    /// Secret values, longest first (so one inside another goes whole).
    values: RwLock<Vec<String>>,
}

impl Redactor {
    /// A redactor of `values` (empty ones ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let redactor = Self::default();
        for value in values {
            redactor.learn(value, 1);
        }
        redactor
    }

    /// Redact `value` from now on (when at least `shortest` bytes long).
    fn learn(&self, value: String, shortest: usize) {
        if value.len() < shortest || value == REDACTED {
            return;
        }
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        if !values.contains(&value) {
            values.push(value);
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every secret value replaced.
    pub fn text(&self, text: &str) -> String {
        let mut text = text.to_string();
        for value in self.values.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), REDACTED);
            }
        }
        text
    }

    /// Bytes with every secret value replaced (when they are text).
    pub fn bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.text(text).into_bytes(),
            Err(_) => bytes.to_vec(),
        }
    }

    /// An HTTP body: the string values of secret-named JSON fields and
    /// form parameters replaced, and learned, then every secret value.
    pub fn body(&self, bytes: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return bytes.to_vec();
        };
        let (text, found) = secret_fields(text);
        for value in found {
            self.learn(value, MIN_LEARNED);
        }
        let text = self.form(&text);
        self.text(&text).into_bytes()
    }

    /// `name=value&…` text with the values of secret-named parameters
    /// replaced (and learned); other text as it is.
    fn form(&self, text: &str) -> String {
        if text.contains(['{', '[', '"', ' ', '\n']) || !text.contains('=') {
            return text.to_string();
        }
        text.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if is_secret_name(name) => {
                    self.learn(value.to_string(), MIN_LEARNED);
                    format!("{name}={REDACTED}")
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
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

/// `text` with the string value of every secret-named field of the JSON in
/// it replaced, and those values (as written). A scan of the text, not a
/// parse: it works on any piece of a body.
fn secret_fields(text: &str) -> (String, Vec<String>) {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut found = Vec::new();
    let mut copied = 0;
    let mut at = 0;
    // The end of the string token starting at `start` (a `"`), after its closing quote.
    let string_end = |start: usize| -> Option<usize> {
        let mut i = start + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    while at < bytes.len() {
        if bytes[at] != b'"' {
            at += 1;
            continue;
        }
        let Some(key_end) = string_end(at) else { break };
        let colon = skip_space(key_end);
        if colon >= bytes.len() || bytes[colon] != b':' {
            at = key_end;
            continue;
        }
        let value = skip_space(colon + 1);
        let is_secret = is_secret_name(&text[at + 1..key_end - 1]);
        if value < bytes.len() && bytes[value] == b'"' {
            let Some(value_end) = string_end(value) else {
                break;
            };
            if is_secret {
                out.push_str(&text[copied..value + 1]);
                out.push_str(REDACTED);
                out.push('"');
                found.push(text[value + 1..value_end - 1].to_string());
                copied = value_end;
            }
            at = value_end;
        } else {
            at = value;
        }
    }
    out.push_str(&text[copied..]);
    (out, found)
}

/// Whether a header, parameter or field named `name` holds a secret. A
/// paging token is a position, so it is kept.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if POSITION_WORDS.iter().any(|w| name.contains(w)) {
        return false;
    }
    SECRET_HEADERS.contains(&name.as_str()) || SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// Whether a connector config field named `name` holds a secret. A field
/// ending in `_secret` names a secret the host holds (its value is the
/// secret's name, which the connector asks for), so it is kept.
fn is_secret_config_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(lower.ends_with("_secret") || lower.ends_with("-secret")) && is_secret_name(name)
}

impl Redactor {
    /// A JSON value as recorded (the config, the invocation): string values
    /// of secret-named fields replaced at any depth and learned whatever
    /// their length; every other string redacted as a body would be (a
    /// string holding JSON, such as a request's options, field by field).
    pub fn json(&self, value: &mut Value) {
        match value {
            Value::Object(fields) => {
                for (name, field) in fields.iter_mut() {
                    match field {
                        Value::String(text) if is_secret_config_field(name) => {
                            self.learn(std::mem::replace(text, REDACTED.to_string()), 1);
                        }
                        other => self.json(other),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.json(item)),
            Value::String(text) => {
                let nested = serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(|v| v.is_object() || v.is_array());
                *text = match nested {
                    Some(mut inner) => {
                        self.json(&mut inner);
                        inner.to_string()
                    }
                    None => String::from_utf8(self.body(text.as_bytes()))
                        .unwrap_or_else(|_| text.clone()),
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

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
        let body = redactor.body(
            br#"{"user": "ann", "auth": {"access_token": "tok-123456", "expires_in": 60}, "refresh-token" : "r\"x99"}"#,
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"user": "ann", "auth": {"access_token": "***", "expires_in": 60}, "refresh-token" : "***"}"#
        );
        // Learned: redacted wherever it appears from now on.
        assert_eq!(
            redactor.uri("https://h/s/tok-123456/items"),
            "https://h/s/***/items"
        );
        let form = redactor.body(b"grant_type=password&username=ann&password=pw-secret-1");
        assert_eq!(form, b"grant_type=password&username=ann&password=***");
        assert_eq!(redactor.text("again pw-secret-1"), "again ***");
        // A paging token is a position, and a short value is not learned.
        let page = redactor.body(br#"{"nextPageToken": "p-77", "session": "short"}"#);
        assert_eq!(page, br#"{"nextPageToken": "p-77", "session": "***"}"#);
        assert_eq!(redactor.text("short"), "short");
        let mut config = serde_json::json!({
            "url": "https://h",
            "password": "pw1",
            "password_secret": "db-login",
            "nested": [{"api_token": "t0k"}],
            "page_size": 5
        });
        config["options"] = json!(json!({ "login": "user=a&password=hunter77" }).to_string());
        redactor.json(&mut config);
        assert_eq!(redactor.text("pw1 t0k hunter77"), "*** *** ***");
        assert_eq!(
            config,
            serde_json::json!({
                "url": "https://h",
                "password": "***",
                "password_secret": "db-login",
                "nested": [{"api_token": "***"}],
                "page_size": 5,
                "options": "{\"login\":\"user=a&password=***\"}"
            })
        );
    }
}
