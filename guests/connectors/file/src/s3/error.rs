//! S3's error answers as typed errors.
//!
//! Only the `<Code>` and `<Message>` of an `<Error>` body are kept: S3 also
//! echoes the access key id, the string to sign and the canonical request,
//! which have no place in an error a tenant reads.

use sluice_sdk::http::Response;
use sluice_sdk::ConnectorError;

use super::xml;

/// Longest S3 message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// The typed error for a failed S3 answer about `name` from `origin`:
/// `NoSuchKey`/`NoSuchBucket`/`NoSuchUpload` → `not-found`; `AccessDenied`,
/// `SignatureDoesNotMatch` and the other credential codes → `denied`, naming
/// the grant's `aws-sigv4` auth; `SlowDown` and 503 → `rate-limited`; bad
/// requests → `invalid-request`; anything else → `unavailable`.
pub fn s3_error(name: &str, origin: &str, response: &Response) -> ConnectorError {
    let found = xml::elements(&response.body).unwrap_or_default();
    let code = xml::first(&found, "Error/Code").unwrap_or("").trim();
    let message: String = xml::first(&found, "Error/Message")
        .unwrap_or("")
        .trim()
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
    let said = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("status {}", response.status),
        (false, true) => code.to_string(),
        (false, false) => format!("{code}: {message}"),
    };
    match (code, response.status) {
        ("NoSuchKey" | "NoSuchBucket" | "NoSuchUpload", _) | ("", 404) => {
            ConnectorError::NotFound(format!("`{name}`: {said}"))
        }
        (
            "AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "ExpiredToken"
            | "InvalidToken" | "TokenRefreshRequired" | "AllAccessDisabled" | "AccountProblem"
            | "RequestTimeTooSkewed",
            _,
        )
        | ("", 401 | 403) => ConnectorError::Denied(format!(
            "S3 refused `{name}` ({said}): check the `aws-sigv4` auth of the http grant for {origin} \
             (its key secrets, region and service) and what those credentials may access"
        )),
        ("SlowDown" | "ServiceUnavailable" | "RequestLimitExceeded", _) | (_, 503) => {
            ConnectorError::RateLimited(
                response
                    .header("retry-after")
                    .and_then(|v| v.trim().parse().ok()),
            )
        }
        (_, 400 | 411 | 413 | 422) => {
            ConnectorError::InvalidRequest(format!("S3 refused the request for `{name}`: {said}"))
        }
        _ => ConnectorError::Unavailable(format!(
            "S3 failed for `{name}` ({}): {said}",
            response.status
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("retry-after".into(), b"3".to_vec())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn error_body(code: &str) -> String {
        format!(
            "<Error><Code>{code}</Code><Message>why</Message>\
             <AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId><StringToSign>x</StringToSign></Error>"
        )
    }

    #[test]
    fn s3_codes_map_to_typed_errors_without_the_echoed_credentials() {
        let origin = "http://127.0.0.1:9000";
        let typed =
            |status, code: &str| s3_error("s3://b/k", origin, &answer(status, &error_body(code)));
        assert!(
            matches!(typed(404, "NoSuchKey"), ConnectorError::NotFound(m) if m.contains("NoSuchKey: why"))
        );
        assert!(matches!(
            typed(404, "NoSuchBucket"),
            ConnectorError::NotFound(_)
        ));
        for code in [
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
        ] {
            match typed(403, code) {
                ConnectorError::Denied(m) => {
                    assert!(
                        m.contains(code) && m.contains("aws-sigv4") && m.contains(origin),
                        "{m}"
                    );
                    assert!(!m.contains("AKIDEXAMPLE"), "{m}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(matches!(
            typed(503, "SlowDown"),
            ConnectorError::RateLimited(Some(3))
        ));
        assert!(matches!(
            typed(400, "InvalidArgument"),
            ConnectorError::InvalidRequest(_)
        ));
        assert!(matches!(
            typed(500, "InternalError"),
            ConnectorError::Unavailable(_)
        ));
        // A HEAD answer has no body: the status decides.
        assert!(matches!(
            s3_error("s3://b/k", origin, &answer(404, "")),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            s3_error("s3://b/k", origin, &answer(403, "")),
            ConnectorError::Denied(_)
        ));
    }
}
