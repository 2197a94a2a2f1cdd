//! One gRPC call over `wasi:http`: length-prefixed messages in a POST to
//! `/package.Service/Method`, the answer's messages read as they arrive, and
//! the status from the trailers (or from the headers of a trailers-only
//! answer) turned into a typed error.
//!
//! The host decides the protocol: HTTP/2 by ALPN for `https://`, h2c for an
//! `http://` origin granted with `--allow-http-h2c`.

use std::io::Read;

use sluice_sdk::http::{self, BodyReader};
use sluice_sdk::{ConnectorError, Result};

/// What every call sends besides its messages.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Metadata headers (lower-case names).
    pub metadata: Vec<(String, String)>,
    /// The deadline, sent as `grpc-timeout`.
    pub deadline_ms: u64,
    /// Largest message accepted from the server, bytes.
    pub max_message_bytes: u32,
}

/// Frame each message: a zero compression flag, its length (big-endian
/// u32), its bytes.
pub fn frame(messages: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(messages.iter().map(|m| m.len() + 5).sum());
    for message in messages {
        let len = u32::try_from(message.len()).map_err(|_| {
            ConnectorError::InvalidRequest(format!(
                "a request message of {} bytes is over gRPC's 4 GiB frame",
                message.len()
            ))
        })?;
        body.push(0);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(message);
    }
    Ok(body)
}

/// A call whose answer is being read, one message at a time.
pub struct Answer {
    method: String,
    max_message_bytes: u32,
    body: Option<BodyReader>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Start a call: send every request message, and return the answer once its
/// headers have arrived.
///
/// # Errors
///
/// The transport's typed errors (`denied` for an ungranted origin, `timeout`,
/// `unavailable`); a non-200 HTTP status as its gRPC meaning; a trailers-only
/// answer's status.
pub fn start(
    endpoint: &str,
    method: &str,
    messages: &[Vec<u8>],
    options: &CallOptions,
) -> Result<Answer> {
    let url = format!("{}/{method}", endpoint.trim_end_matches('/'));
    let timeout = grpc_timeout(options.deadline_ms);
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", "application/grpc+proto"),
        ("te", "trailers"),
        ("grpc-accept-encoding", "identity"),
        ("grpc-timeout", &timeout),
        ("user-agent", "sluice-grpc/0.1"),
    ];
    headers.extend(
        options
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let body = frame(messages)?;
    let response = http::send("POST", &url, &headers, Some(&body)).map_err(|err| match err {
        // gRPC needs HTTP/2: over `http://` only when granted as h2c.
        ConnectorError::Denied(why) if endpoint.starts_with("http://") => ConnectorError::Denied(
            format!("{why}; a gRPC server without TLS is granted with --allow-http-h2c {}", origin(endpoint)),
        ),
        // An HTTP/1.1 request to an HTTP/2-only server: its answer does not parse.
        ConnectorError::Unavailable(why)
            if endpoint.starts_with("http://") && why.contains("HttpProtocolError") =>
        {
            ConnectorError::Unavailable(format!(
                "{why} (a gRPC server without TLS speaks HTTP/2 only: grant it with --allow-http-h2c {}, or `h2c` in the http grant)",
                origin(endpoint)
            ))
        }
        other => other,
    })?;
    if response.status != 200 {
        // Not a gRPC answer (a proxy's, say): its HTTP status says what happened.
        let status = response.status;
        let text = response.into_response()?.body;
        let text = String::from_utf8_lossy(&text);
        let code = match status {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502..=504 => 14,
            _ => 2,
        };
        let hint = if endpoint.starts_with("http://") {
            format!(" (a gRPC server without TLS speaks HTTP/2 only: grant it with --allow-http-h2c {})", origin(endpoint))
        } else {
            String::new()
        };
        return Err(status_error(
            code,
            &format!("HTTP {status} from {url}: {}{hint}", text.trim()),
            method,
        ));
    }
    let mut answer = Answer {
        method: method.to_string(),
        max_message_bytes: options.max_message_bytes,
        headers: response.headers,
        body: Some(response.body),
    };
    // A trailers-only answer carries its status in the headers.
    if let Some(code) = header(&answer.headers, "grpc-status") {
        let message = header(&answer.headers, "grpc-message").unwrap_or_default();
        answer.body = None;
        check_status(&code, &message, method)?;
    }
    if let Some(encoding) = header(&answer.headers, "grpc-encoding") {
        if encoding != "identity" {
            return Err(ConnectorError::Unavailable(format!(
                "{method}: the server compressed its answer with `{encoding}`, which was not offered"
            )));
        }
    }
    Ok(answer)
}

impl Answer {
    /// The next message, or `None` after the last one once the status said OK.
    ///
    /// # Errors
    ///
    /// The call's status as a typed error; `unavailable` for a message over
    /// the size limit, a compressed message or a body cut short.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        let mut prefix = [0u8; 5];
        let got = read_full(body, &mut prefix)?;
        if got == 0 {
            let body = self.body.take().expect("checked above");
            let trailers = body.trailers()?;
            let code = header(&trailers, "grpc-status").ok_or_else(|| {
                ConnectorError::Unavailable(format!(
                    "{}: the answer ended without a gRPC status: the stream was cut short",
                    self.method
                ))
            })?;
            let message = header(&trailers, "grpc-message").unwrap_or_default();
            check_status(&code, &message, &self.method)?;
            return Ok(None);
        }
        if got < prefix.len() {
            return Err(self.cut_short());
        }
        if prefix[0] != 0 {
            return Err(ConnectorError::Unavailable(format!(
                "{}: the server sent a compressed message, which was not offered",
                self.method
            )));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        if len > self.max_message_bytes {
            self.body = None;
            return Err(ConnectorError::Unavailable(format!(
                "{}: the server sent a message of {len} bytes, over `max_message_bytes` ({})",
                self.method, self.max_message_bytes
            )));
        }
        let mut message = vec![0; len as usize];
        if read_full(body, &mut message)? < message.len() {
            return Err(self.cut_short());
        }
        Ok(Some(message))
    }

    /// Whether the next message (or the end) has begun to arrive, so
    /// [`Answer::next_message`] would not wait for the server.
    pub fn is_ready(&self) -> bool {
        self.body.as_ref().is_none_or(BodyReader::is_ready)
    }

    /// Every remaining message, then the status.
    ///
    /// # Errors
    ///
    /// As [`Answer::next_message`].
    pub fn collect(mut self) -> Result<Vec<Vec<u8>>> {
        let mut messages = Vec::new();
        while let Some(message) = self.next_message()? {
            messages.push(message);
        }
        Ok(messages)
    }

    fn cut_short(&mut self) -> ConnectorError {
        self.body = None;
        ConnectorError::Unavailable(format!(
            "{}: the answer ended inside a message: the stream was cut short",
            self.method
        ))
    }
}

/// Read until `buf` is full or the body ends; how many bytes were read.
fn read_full(body: &mut BodyReader, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match body.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) => return Err(http::into_connector_error(&err)),
        }
    }
    Ok(filled)
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    &url[..end]
}

fn header(fields: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// `grpc-timeout` for a deadline: at most 8 digits, in the finest unit that fits.
fn grpc_timeout(ms: u64) -> String {
    if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", (ms / 1000).min(99_999_999))
    }
}

fn check_status(code: &str, message: &str, method: &str) -> Result<()> {
    let code: u32 = code.trim().parse().map_err(|_| {
        ConnectorError::Unavailable(format!("{method}: the server sent grpc-status `{code}`"))
    })?;
    if code == 0 {
        return Ok(());
    }
    Err(status_error(code, &percent_decode(message), method))
}

/// The name of a gRPC status code.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The typed error of a gRPC status: NOT_FOUND → not-found,
/// PERMISSION_DENIED and UNAUTHENTICATED → denied, RESOURCE_EXHAUSTED →
/// rate-limited, DEADLINE_EXCEEDED → timeout, INVALID_ARGUMENT (and
/// ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE) → invalid-request,
/// UNIMPLEMENTED → unsupported, the rest → unavailable; each with the
/// status and its message.
pub fn status_error(code: u32, message: &str, method: &str) -> ConnectorError {
    let text = format!(
        "{method}: gRPC status {} ({code}): {message}",
        code_name(code)
    );
    match code {
        3 | 6 | 9 | 11 => ConnectorError::InvalidRequest(text),
        4 => ConnectorError::Timeout,
        5 => ConnectorError::NotFound(text),
        7 | 16 => ConnectorError::Denied(text),
        8 => ConnectorError::RateLimited(None),
        12 => ConnectorError::Unsupported(text),
        _ => ConnectorError::Unavailable(text),
    }
}

/// `grpc-message` is percent-encoded UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_with_a_flag_and_a_big_endian_length() {
        let body = frame(&[b"ab".to_vec(), Vec::new()]).unwrap();
        assert_eq!(body, [0, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0, 0]);
    }

    #[test]
    fn deadlines_fit_grpc_timeouts_eight_digits() {
        assert_eq!(grpc_timeout(30_000), "30000m");
        assert_eq!(grpc_timeout(100_000_000), "100000S");
    }

    #[test]
    fn status_messages_are_percent_decoded() {
        assert_eq!(
            percent_decode("no%20such%20item%3A%20%E2%9C%93"),
            "no such item: ✓"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn each_status_code_maps_to_its_typed_error() {
        let kind = |code| match status_error(code, "why", "a.B/C") {
            ConnectorError::InvalidRequest(m) => format!("invalid-request {m}"),
            ConnectorError::Timeout => "timeout".into(),
            ConnectorError::NotFound(m) => format!("not-found {m}"),
            ConnectorError::Denied(m) => format!("denied {m}"),
            ConnectorError::RateLimited(_) => "rate-limited".into(),
            ConnectorError::Unsupported(m) => format!("unsupported {m}"),
            ConnectorError::Unavailable(m) => format!("unavailable {m}"),
            other => format!("{other:?}"),
        };
        assert_eq!(kind(5), "not-found a.B/C: gRPC status NOT_FOUND (5): why");
        assert_eq!(
            kind(7),
            "denied a.B/C: gRPC status PERMISSION_DENIED (7): why"
        );
        assert_eq!(
            kind(16),
            "denied a.B/C: gRPC status UNAUTHENTICATED (16): why"
        );
        assert_eq!(kind(8), "rate-limited");
        assert_eq!(kind(4), "timeout");
        assert_eq!(
            kind(3),
            "invalid-request a.B/C: gRPC status INVALID_ARGUMENT (3): why"
        );
        assert_eq!(
            kind(14),
            "unavailable a.B/C: gRPC status UNAVAILABLE (14): why"
        );
    }
}
