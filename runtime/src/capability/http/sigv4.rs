//! AWS Signature Version 4, computed by the host for the `aws-sigv4` auth
//! kind: the guest builds an S3 (or other AWS-API) request without any
//! credentials, and the host signs it just before it leaves.
//!
//! What is signed: the method, the path (each segment percent-encoded once
//! for `s3`, twice for other services, as AWS specifies), the query
//! parameters (sorted), the headers `host`, `content-md5`, `content-type`,
//! `range` and every `x-amz-*` header, and the payload hash. The payload hash
//! (`x-amz-content-sha256`) is:
//!
//! - the SHA-256 of the body, when the host holds the whole body (requests it
//!   may retry, up to [`MAX_RETRIED_BODY_BYTES`](super::MAX_RETRIED_BODY_BYTES));
//! - otherwise, for a body streamed through, the hash the guest declared in
//!   `x-amz-content-sha256` (64 hex digits; the server checks the body
//!   against it), or `UNSIGNED-PAYLOAD` when it declared none. Over `https://`
//!   TLS protects an unsigned body; over plain `http://` only a declared hash
//!   does.
//!
//! The host owns `authorization`, `x-amz-date` and `x-amz-security-token`:
//! values the guest set for them are replaced.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The payload hash that tells the server the body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The credentials one request is signed with.
pub struct Credentials<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// A session token (temporary credentials).
    pub session_token: Option<&'a str>,
}

/// Where the signature is valid: a region and a service (`s3`, ...).
pub struct Scope<'a> {
    /// The region, e.g. `us-east-1`.
    pub region: &'a str,
    /// The service, e.g. `s3`.
    pub service: &'a str,
}

/// Sign `request` at `now`: set `x-amz-date`, `x-amz-content-sha256`,
/// `x-amz-security-token` (with a session token), `host` (when absent) and
/// `authorization`. `body_sha256` is the hex SHA-256 of the body when the
/// host holds it. Returns the `authorization` value.
///
/// # Errors
///
/// When a credential is not a valid header value.
pub fn sign<B>(
    request: &mut http::Request<B>,
    credentials: &Credentials<'_>,
    scope: &Scope<'_>,
    body_sha256: Option<String>,
    now: SystemTime,
) -> Result<String, http::header::InvalidHeaderValue> {
    let when: DateTime<Utc> = now.into();
    let amz_date = when.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let headers = request.headers_mut();
    for owned in ["authorization", "x-amz-date", "x-amz-security-token"] {
        headers.remove(owned);
    }
    let declared = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_payload_hash(v))
        .map(str::to_string);
    let payload = body_sha256
        .or(declared)
        .unwrap_or_else(|| UNSIGNED_PAYLOAD.to_string());
    headers.insert("x-amz-content-sha256", payload.parse()?);
    headers.insert("x-amz-date", amz_date.parse()?);
    if let Some(token) = credentials.session_token {
        headers.insert("x-amz-security-token", token.parse()?);
    }
    if !headers.contains_key(http::header::HOST) {
        let authority = request.uri().authority().map(|a| a.to_string());
        if let Some(authority) = authority {
            request
                .headers_mut()
                .insert(http::header::HOST, authority.parse()?);
        }
    }
    let (signed_headers, canonical_headers) = canonical_headers(request.headers());
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload}",
        request.method(),
        canonical_path(request.uri().path(), scope.service == "s3"),
        canonical_query(request.uri().query().unwrap_or("")),
    );
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [scope.region, scope.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization.parse()?);
    Ok(authorization)
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// 64 lower-case hex digits, or `UNSIGNED-PAYLOAD`.
fn is_payload_hash(value: &str) -> bool {
    value == UNSIGNED_PAYLOAD
        || (value.len() == 64
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this never fails.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Whether a header is signed: the ones S3 requires plus the ones whose
/// change would change the answer.
fn is_signed(name: &str) -> bool {
    matches!(name, "host" | "content-md5" | "content-type" | "range") || name.starts_with("x-amz-")
}

/// `(signed header names, canonical header lines)`, both sorted by name.
fn canonical_headers(headers: &http::HeaderMap) -> (String, String) {
    let mut names: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| is_signed(n))
        .collect();
    names.sort_unstable();
    names.dedup();
    let lines: Vec<String> = names
        .iter()
        .map(|name| {
            let values: Vec<String> = headers
                .get_all(*name)
                .iter()
                .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
                .collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    (names.join(";"), lines.concat())
}

/// Trimmed, with each run of spaces written as one.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything but RFC 3986's unreserved characters, as AWS's `UriEncode`.
const AWS_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn uri_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, AWS_ENCODE).to_string()
}

fn decode(text: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(text).collect()
}

/// The path with each segment decoded and encoded again the AWS way (once
/// for S3, twice for other services).
fn canonical_path(path: &str, s3: bool) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(|segment| {
            let once = uri_encode(&decode(segment));
            if s3 {
                once
            } else {
                uri_encode(once.as_bytes())
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The query's parameters, each name and value encoded the AWS way, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&decode(name)), uri_encode(&decode(value)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn at(amz_date: &str) -> SystemTime {
        let parsed = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ").unwrap();
        parsed.and_utc().into()
    }

    /// AWS's worked example "GET Object" (Signature Version 4, S3 API
    /// reference): a ranged GET of `test.txt` in `examplebucket`.
    #[test]
    fn the_aws_get_object_example_signs_as_documented() {
        let mut request = http::Request::get("https://examplebucket.s3.amazonaws.com/test.txt")
            .header("range", "bytes=0-9")
            .body(())
            .unwrap();
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: SECRET,
            session_token: None,
        };
        let scope = Scope {
            region: "us-east-1",
            service: "s3",
        };
        let empty = sha256_hex(b"");
        let authorization = sign(
            &mut request,
            &credentials,
            &scope,
            Some(empty.clone()),
            at("20130524T000000Z"),
        )
        .unwrap();
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(request.headers()["x-amz-content-sha256"], empty.as_str());
        assert_eq!(request.headers()["x-amz-date"], "20130524T000000Z");
    }

    #[test]
    fn a_streamed_body_is_unsigned_unless_the_guest_declared_its_hash() {
        let credentials = Credentials {
            access_key_id: "AKID",
            secret_access_key: SECRET,
            session_token: Some("session/token"),
        };
        let scope = Scope {
            region: "eu-west-1",
            service: "s3",
        };
        let declared = sha256_hex(b"part");
        for (guest, expected) in [
            (None, UNSIGNED_PAYLOAD.to_string()),
            (Some(declared.as_str()), declared.clone()),
            (Some("not-a-hash"), UNSIGNED_PAYLOAD.to_string()),
        ] {
            let mut builder = http::Request::put("http://127.0.0.1:9000/b/k")
                .header("authorization", "guest-chosen")
                .header("x-amz-date", "19990101T000000Z");
            if let Some(hash) = guest {
                builder = builder.header("x-amz-content-sha256", hash);
            }
            let mut request = builder.body(()).unwrap();
            let authorization = sign(
                &mut request,
                &credentials,
                &scope,
                None,
                at("20240102T030405Z"),
            )
            .unwrap();
            let headers = request.headers();
            assert_eq!(headers["x-amz-content-sha256"], expected.as_str());
            assert_eq!(headers["x-amz-date"], "20240102T030405Z");
            assert_eq!(headers["x-amz-security-token"], "session/token");
            assert_eq!(headers["host"], "127.0.0.1:9000");
            assert_eq!(headers["authorization"], authorization.as_str());
            assert!(authorization.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            ));
        }
    }

    #[test]
    fn paths_and_queries_take_the_canonical_form() {
        assert_eq!(canonical_path("", true), "/");
        assert_eq!(canonical_path("/b/a b+c%2Fd", true), "/b/a%20b%2Bc%2Fd");
        assert_eq!(canonical_path("/b/a%20b", false), "/b/a%2520b");
        assert_eq!(
            canonical_query("uploads&prefix=a%2Fb&list-type=2"),
            "list-type=2&prefix=a%2Fb&uploads="
        );
        assert_eq!(canonical_query(""), "");
    }
}
