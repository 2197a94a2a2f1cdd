//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host decides which origins are reachable; a refused origin comes back
//! as `denied` naming the grant to add. Redirects are returned, never followed.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, StreamError};
use crate::{ConnectorError, Result};

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// This response when its status is 2xx, else the typed error for the status:
    /// 400/422 `invalid-request` with the upstream message (truncated), 401/403
    /// `denied`, 404 `not-found`, 429 `rate-limited` with `Retry-After` seconds,
    /// 5xx (and anything else) `unavailable`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn error_for_status(self) -> Result<Self> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let mut message = String::from_utf8_lossy(&self.body).trim().to_string();
        if message.len() > 300 {
            let mut end = 300;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Err(match self.status {
            400 | 422 => {
                ConnectorError::InvalidRequest(format!("upstream said {}: {message}", self.status))
            }
            401 | 403 => ConnectorError::Denied(format!(
                "upstream refused the credentials ({}): {message}",
                self.status
            )),
            404 => ConnectorError::NotFound(format!("upstream: {message}")),
            429 => ConnectorError::RateLimited(
                self.header("retry-after")
                    .and_then(|v| v.trim().parse().ok()),
            ),
            500..=599 => {
                ConnectorError::Unavailable(format!("upstream failed ({}): {message}", self.status))
            }
            other => ConnectorError::Unavailable(format!(
                "unexpected upstream status {other}: {message}"
            )),
        })
    }

    /// Every value of header `name` (case-insensitive) that is text, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect()
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode a URL query component or path segment: every byte but the
/// unreserved characters.
pub fn encode_component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// `url` with `params` in its query string: a parameter the URL already
/// carries under the same name is replaced, not repeated; the URL's other
/// parameters (a fixed sort, say) and its fragment are kept.
pub fn with_query(url: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return url.to_string();
    }
    let (url, fragment) = match url.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (url, None),
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let keys: Vec<String> = params.iter().map(|(k, _)| encode_component(k)).collect();
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && !keys.iter().any(|k| k == key)
        })
        .map(str::to_string)
        .collect();
    pairs.extend(
        params
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v))),
    );
    let mut out = format!("{base}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// `GET url`.
///
/// # Errors
///
/// See [`request`].
pub fn get(url: &str) -> Result<Response> {
    request("GET", url, &[], None)
}

/// Send one request and read the whole response.
///
/// # Errors
///
/// `invalid-request` for a URL without `http://` or `https://`; `denied` when
/// the host refuses the origin; `timeout` when a connect/first-byte/
/// between-bytes timeout fires; `unavailable` for other transport failures,
/// including a response over the host's size cap.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response> {
    let StreamingResponse {
        status,
        headers,
        mut body,
    } = send(method, url, headers, body)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut body, &mut bytes).map_err(|err| into_connector_error(&err))?;
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

/// A response whose body is read as it arrives ([`BodyReader`]), so a large
/// body never has to fit in memory.
pub struct StreamingResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: BodyReader,
}

impl StreamingResponse {
    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Read the rest of the body into a [`Response`].
    ///
    /// # Errors
    ///
    /// As reading the body: `timeout` or `unavailable`.
    pub fn into_response(mut self) -> Result<Response> {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut self.body, &mut body)
            .map_err(|err| into_connector_error(&err))?;
        Ok(Response {
            status: self.status,
            headers: self.headers,
            body,
        })
    }
}

/// A response body as [`std::io::Read`]. A failure while reading is an
/// [`std::io::Error`] carrying the typed [`ConnectorError`] (see
/// [`into_connector_error`]).
pub struct BodyReader {
    origin: String,
    // Declared in the order they must be dropped: the stream, then the body
    // it belongs to, then the response the body came from.
    stream: Option<InputStream>,
    incoming: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(stream) = &self.stream else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(64 * 1024) as u64;
        match stream.blocking_read(want) {
            Ok(chunk) => {
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
            Err(StreamError::Closed) => {
                // The body stays until its trailers are read or it is dropped.
                self.stream = None;
                Ok(0)
            }
            Err(StreamError::LastOperationFailed(err)) => {
                self.stream = None;
                let code = crate::bindings::wasi::http::types::http_error_code(&err);
                let error = match code {
                    Some(code) => http_error(&self.origin, code),
                    None => body_error(&self.origin, &err.to_debug_string()),
                };
                Err(std::io::Error::other(error))
            }
        }
    }
}

impl BodyReader {
    /// Whether a read would return at once: bytes have arrived, or the body
    /// has ended (or failed). A stream reading messages as they come asks
    /// this between messages, so a batch does not wait for the next one.
    pub fn is_ready(&self) -> bool {
        self.stream
            .as_ref()
            .is_none_or(|stream| stream.subscribe().ready())
    }

    /// The trailers that followed the body (gRPC's status lives in them),
    /// once the body has been read to its end; empty when there were none.
    ///
    /// # Errors
    ///
    /// `internal` when the body was not read to its end; the transport's
    /// typed error when the trailers could not be read.
    pub fn trailers(mut self) -> Result<Vec<(String, Vec<u8>)>> {
        if self.stream.is_some() {
            return Err(ConnectorError::Internal(
                "trailers asked for before the body was read to its end".into(),
            ));
        }
        let Some(incoming) = self.incoming.take() else {
            return Ok(Vec::new());
        };
        let future = IncomingBody::finish(incoming);
        let trailers = loop {
            match future.get() {
                Some(result) => break result,
                None => future.subscribe().block(),
            }
        };
        match trailers {
            Ok(Ok(Some(fields))) => Ok(fields.entries()),
            Ok(Ok(None)) => Ok(Vec::new()),
            Ok(Err(code)) => Err(http_error(&self.origin, code)),
            Err(()) => Err(ConnectorError::Internal("trailers taken twice".into())),
        }
    }
}

/// The typed error an I/O error carries (from a [`BodyReader`]), or
/// `unavailable` with its text.
pub fn into_connector_error(err: &std::io::Error) -> ConnectorError {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<ConnectorError>())
        .cloned()
        .unwrap_or_else(|| ConnectorError::Unavailable(err.to_string()))
}

/// Send one request; the response arrives with its body still to read.
///
/// # Errors
///
/// As [`request`], except that body errors come later, from the reader.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<StreamingResponse> {
    let (scheme, authority, path) = split_url(url)?;
    let fields = Fields::new();
    if let Some(bytes) = body {
        // A declared length lets the host retry small bodies and stream large ones.
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            fields
                .append("content-length", bytes.len().to_string().as_bytes())
                .map_err(|err| {
                    ConnectorError::Internal(format!("content-length refused: {err:?}"))
                })?;
        }
    }
    for (name, value) in headers {
        fields.append(name, value.as_bytes()).map_err(|err| {
            ConnectorError::InvalidRequest(format!("header `{name}` refused: {err:?}"))
        })?;
    }
    let req = OutgoingRequest::new(fields);
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    let refused =
        |what: &str| ConnectorError::InvalidRequest(format!("{what} refused for `{url}`"));
    req.set_method(&method).map_err(|()| refused("method"))?;
    req.set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    req.set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    req.set_path_with_query(Some(path))
        .map_err(|()| refused("path"))?;
    let outgoing = req.body().map_err(|()| refused("body"))?;
    let origin = format!(
        "{}://{authority}",
        if matches!(scheme, Scheme::Http) {
            "http"
        } else {
            "https"
        }
    );
    // Hand the request to the host first: it consumes the body while we write it.
    let future = outgoing_handler::handle(req, None).map_err(|e| http_error(&origin, e))?;
    let mut body_closed = false;
    if let Some(bytes) = body {
        let stream = outgoing.write().map_err(|()| refused("body"))?;
        for chunk in bytes.chunks(4096) {
            match stream.blocking_write_and_flush(chunk) {
                Ok(()) => {}
                // The upstream answered before reading the whole body: read its answer.
                Err(StreamError::Closed) => {
                    body_closed = true;
                    break;
                }
                Err(err) => {
                    return Err(ConnectorError::Unavailable(format!(
                        "sending body: {err:?}"
                    )))
                }
            }
        }
    }
    let finished = OutgoingBody::finish(outgoing, None);
    if !body_closed {
        finished.map_err(|e| http_error(&origin, e))?;
    }
    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| ConnectorError::Internal("response taken twice".into()))?
        .map_err(|e| http_error(&origin, e))?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| ConnectorError::Internal("response body taken twice".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| ConnectorError::Internal("body stream taken twice".into()))?;
    Ok(StreamingResponse {
        status,
        headers,
        body: BodyReader {
            origin,
            stream: Some(stream),
            incoming: Some(incoming),
            _response: response,
        },
    })
}

fn split_url(url: &str) -> Result<(Scheme, &str, &str)> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(ConnectorError::InvalidRequest(format!(
            "URL `{url}` must start with http:// or https://"
        )));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = if path.is_empty() { "/" } else { path };
    Ok((scheme, authority, path))
}

/// Classify a body error the host reported only as text. Only the first line
/// is kept: hosts running with `RUST_BACKTRACE` append a host backtrace.
fn body_error(origin: &str, debug: &str) -> ConnectorError {
    let first = debug.lines().next().unwrap_or("").trim();
    let lower = first.to_ascii_lowercase();
    if lower.contains("body size exceeds") {
        ConnectorError::Unavailable(format!(
            "response from {origin} is larger than the host's cap ({first})"
        ))
    } else if lower.contains("timeout") || lower.contains("timed out") {
        ConnectorError::Timeout
    } else {
        ConnectorError::Unavailable(format!("reading body from {origin}: {first}"))
    }
}

/// Turn a `wasi:http` error code into a typed connector error.
pub fn http_error(origin: &str, code: ErrorCode) -> ConnectorError {
    match code {
        ErrorCode::HttpRequestDenied => ConnectorError::Denied(format!(
            "HTTP request to {origin} denied: the origin is not granted (grant it with --allow-http {origin})"
        )),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::DnsTimeout
        | ErrorCode::HttpResponseTimeout => ConnectorError::Timeout,
        ErrorCode::HttpResponseBodySize(limit) => ConnectorError::Unavailable(format!(
            "response from {origin} is larger than the host's cap{}",
            limit.map(|l| format!(" of {l} bytes")).unwrap_or_default()
        )),
        ErrorCode::InternalError(Some(message)) => ConnectorError::Unavailable(message),
        other => ConnectorError::Unavailable(format!("HTTP request to {origin} failed: {other:?}")),
    }
}

#[cfg(test)]
mod query_tests {
    use super::with_query;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn params_are_appended_after_the_paths_own_query() {
        assert_eq!(
            with_query("http://a/users?_sort=team,id", &params(&[("_limit", "30")])),
            "http://a/users?_sort=team,id&_limit=30"
        );
        assert_eq!(
            with_query("http://a/users", &params(&[("q", "a b&c")])),
            "http://a/users?q=a%20b%26c"
        );
        assert_eq!(with_query("http://a/x?y=1", &[]), "http://a/x?y=1");
    }

    #[test]
    fn a_parameter_the_url_carries_is_replaced_not_repeated() {
        assert_eq!(
            with_query(
                "http://a/items?_page=1&_sort=id",
                &params(&[("_page", "2"), ("_limit", "10")])
            ),
            "http://a/items?_sort=id&_page=2&_limit=10"
        );
        assert_eq!(
            with_query("http://a/items?page=1#top", &params(&[("page", "3")])),
            "http://a/items?page=3#top"
        );
    }
}
