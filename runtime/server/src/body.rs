//! Request bodies in, JSON responses out: the server's edge of HTTP.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ResponseBody;
use crate::{ApiError, BODY_READ_TIMEOUT};

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(crate) fn text_json_response(status: StatusCode, text: String) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(text)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(crate) fn error_response(err: &ApiError) -> Response<ResponseBody> {
    let mut response = Response::builder()
        .status(err.status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if err.status == StatusCode::TOO_MANY_REQUESTS {
        response = response.header(http::header::RETRY_AFTER, "1");
    }
    if err.status == StatusCode::UNAUTHORIZED {
        response = response.header(http::header::WWW_AUTHENTICATE, "Bearer realm=\"sluice\"");
    }
    if let Some(allow) = err.details["allow"].as_array() {
        let methods: Vec<&str> = allow.iter().filter_map(Value::as_str).collect();
        response = response.header(http::header::ALLOW, methods.join(", "));
    }
    response
        .body(Full::new(err.body()).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// What a route answers: a response, or an error the API shows.
pub(crate) type Reply = Result<Response<ResponseBody>, ApiError>;

/// The token of an `Authorization: Bearer …` header; the scheme is matched
/// case-insensitively (RFC 9110 §11.1).
pub(crate) fn bearer(req: &Request<Incoming>) -> Option<String> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

pub(crate) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )
    })?;
    collected.map(|b| b.to_bytes()).map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
        )
    })
}

pub(crate) async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req, 1 << 20).await?;
    parse_body(&body)
}

/// A body that may be empty (no fields to give).
pub(crate) async fn read_optional_json<T: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<Option<T>, ApiError> {
    let body = read_body(req, 1 << 20).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    parse_body(&body).map(Some)
}

/// A JSON body: 400 when it is not JSON, 422 when it is JSON of the wrong
/// shape (an unknown field, a missing one, a wrong type), naming the field.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body does not fit this request: {e}"),
        ),
        _ => ApiError::bad_request(format!("invalid JSON body: {e}")),
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `{}`: the default of an optional JSON object field, as documented.
pub(crate) fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A body field kept as JSON to be read into its typed form here, so a bad
/// value is a 422 with its own `code` (and the message after `prefix`)
/// rather than a generic `invalid_body`; `null` is the type's default.
pub(crate) fn typed_field<T: DeserializeOwned + Default>(
    value: Value,
    code: &'static str,
    prefix: &str,
) -> Result<T, ApiError> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            format!("{prefix}{e}"),
        )
    })
}
