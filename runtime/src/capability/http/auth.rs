//! Credentials the host adds to a guest's requests, so secrets never enter
//! guest memory.
//!
//! An http grant may carry one `auth` entry per origin. Its secrets are named,
//! and their values come from the session's secrets ([`Secret`]), never from
//! the grant text. Kinds: `api-key` (header or query parameter), `basic`,
//! `bearer`, `jwt-hs256` (minted by the host with the configured claims and
//! renewed before expiry), `oauth2-client-credentials` (fetched from
//! `token_url`, cached, refreshed before expiry and once more on a 401) and
//! `aws-sigv4` (each request signed by the host with AWS Signature Version 4;
//! see [`super::sigv4`]).
//! Tokens are cached per grant and origin, so every session of the grant
//! shares them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions};

use super::injected::Injected;
use super::origin::HostPattern;
use super::sigv4;
use crate::error::Error;

/// A secret value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How credentials are added to requests for one origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthKind {
    /// A key in a header (`header`) or a query parameter (`query`).
    ApiKey {
        /// Header name, e.g. `X-Api-Key`.
        header: Option<String>,
        /// Query parameter name, e.g. `api_key`.
        query: Option<String>,
        /// Name of the secret holding the key.
        secret: String,
    },
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user name (not secret).
        username: String,
        /// Name of the secret holding the password.
        password_secret: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Name of the secret holding the token.
        secret: String,
    },
    /// `Authorization: Bearer <JWT>` signed with HMAC-SHA256, minted and renewed by the host.
    JwtHs256 {
        /// Name of the secret holding the signing key.
        secret: String,
        /// Claims to include (`iat` and `exp` are added).
        #[serde(default)]
        claims: Map<String, Value>,
        /// Lifetime of each token in seconds. Default 300.
        #[serde(default = "default_ttl")]
        ttl_s: u64,
    },
    /// OAuth2 client credentials: the host fetches and refreshes the access token.
    Oauth2ClientCredentials {
        /// The token endpoint (contacted by the host only).
        token_url: String,
        /// The client id.
        client_id: String,
        /// Name of the secret holding the client secret.
        client_secret: String,
        /// Requested scope.
        scope: Option<String>,
    },
    /// AWS Signature Version 4 (S3 and S3-compatible stores, other AWS
    /// APIs): the host signs every request after the guest built it.
    AwsSigv4 {
        /// Name of the secret holding the access key id.
        access_key_id_secret: String,
        /// Name of the secret holding the secret access key.
        secret_access_key_secret: String,
        /// Name of the secret holding a session token (temporary credentials).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_token_secret: Option<String>,
        /// The region the signature is for, e.g. `us-east-1`.
        region: String,
        /// The service the signature is for. Default `s3`.
        #[serde(default = "default_service")]
        service: String,
    },
}

fn default_service() -> String {
    "s3".into()
}

fn default_ttl() -> u64 {
    300
}

/// One origin's credentials as a grant declares them:
/// `{"origin": ..., "kind": ..., ...}`; unknown fields are refused by [`AuthKind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthConfig {
    /// The origin whose requests get the credentials.
    pub origin: HostPattern,
    /// Which credentials, and the names of the secrets they are made from.
    #[serde(flatten)]
    pub kind: AuthKind,
}

#[derive(Debug)]
struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// Credentials for one origin, with its token cache.
#[derive(Debug, Clone)]
pub struct OriginAuth {
    origin: HostPattern,
    kind: AuthKind,
    cache: Arc<Mutex<Option<CachedToken>>>,
    /// Tokens minted or fetched so far (for tests and metrics).
    issued: Arc<std::sync::atomic::AtomicU64>,
}

impl OriginAuth {
    pub(crate) fn from_config(spec: &AuthConfig) -> Result<Self, Error> {
        let origin = spec.origin.clone();
        if let AuthKind::ApiKey { header, query, .. } = &spec.kind {
            if header.is_some() == query.is_some() {
                return Err(Error::InvalidGrant(format!(
                    "auth for {origin}: an api-key goes in exactly one of `header` or `query`"
                )));
            }
            if let Some(name) = header {
                check_header_name(&origin, name)?;
            }
        }
        if let AuthKind::Oauth2ClientCredentials { token_url, .. } = &spec.kind {
            token_url
                .parse::<http::Uri>()
                .ok()
                .filter(|u| u.scheme().is_some() && u.authority().is_some())
                .ok_or_else(|| {
                    Error::InvalidGrant(format!(
                        "auth for {origin}: `token_url` must be an absolute http(s) URL"
                    ))
                })?;
        }
        if let AuthKind::AwsSigv4 {
            region, service, ..
        } = &spec.kind
        {
            for (field, value) in [("region", region), ("service", service)] {
                let valid = !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid {
                    return Err(Error::InvalidGrant(format!(
                        "auth for {origin}: `{field}` must be lower-case letters, digits and `-` (e.g. `us-east-1`, `s3`), not `{value}`"
                    )));
                }
            }
        }
        Ok(Self::new(origin, spec.kind.clone()))
    }

    /// Where an OAuth2 token is fetched from, for that kind.
    pub fn token_url(&self) -> Option<http::Uri> {
        match &self.kind {
            AuthKind::Oauth2ClientCredentials { token_url, .. } => token_url.parse().ok(),
            _ => None,
        }
    }

    /// Credentials `kind` for requests to `origin`.
    pub fn new(origin: HostPattern, kind: AuthKind) -> Self {
        Self {
            origin,
            kind,
            cache: Arc::default(),
            issued: Arc::default(),
        }
    }

    /// The origin it applies to.
    pub fn origin(&self) -> &HostPattern {
        &self.origin
    }

    /// Tokens minted (JWT) or fetched (OAuth2) so far.
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The secret names this entry needs.
    pub fn secret_names(&self) -> Vec<&str> {
        match &self.kind {
            AuthKind::ApiKey { secret, .. }
            | AuthKind::Bearer { secret }
            | AuthKind::JwtHs256 { secret, .. } => vec![secret],
            AuthKind::Basic {
                password_secret, ..
            } => vec![password_secret],
            AuthKind::Oauth2ClientCredentials { client_secret, .. } => vec![client_secret],
            AuthKind::AwsSigv4 {
                access_key_id_secret,
                secret_access_key_secret,
                session_token_secret,
                ..
            } => {
                let mut names = vec![access_key_id_secret.as_str(), secret_access_key_secret];
                names.extend(session_token_secret.as_deref());
                names
            }
        }
    }

    /// Whether a 401 should refresh the credentials and retry once.
    pub fn refreshes_on_401(&self) -> bool {
        matches!(
            self.kind,
            AuthKind::Oauth2ClientCredentials { .. } | AuthKind::JwtHs256 { .. }
        )
    }

    /// Forget the cached token (after a 401).
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Add the credentials to `request`; `body` is its whole body when the
    /// host holds it (a signature can then cover it).
    pub(crate) async fn apply(
        &self,
        request: &mut http::Request<wasmtime_wasi_http::WasiBody>,
        secrets: &HashMap<String, Secret>,
        options: RequestOptions,
        allow_private: bool,
        body: Option<&Bytes>,
    ) -> Result<Injected, HttpError> {
        let secret = |name: &str| {
            secrets.get(name).ok_or_else(|| {
                HttpError::InternalError(Some(format!(
                    "auth for {}: the secret `{name}` was not provided to this session",
                    self.origin
                )))
            })
        };
        // Secret values besides the whole header value (a basic password).
        let mut also = Vec::new();
        let authorization = match &self.kind {
            AuthKind::ApiKey {
                header: Some(header),
                secret: name,
                ..
            } => {
                let header = http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| bad_header(&self.origin))?;
                let key = secret(name)?.expose();
                let value =
                    http::HeaderValue::from_str(key).map_err(|_| bad_header(&self.origin))?;
                request.headers_mut().insert(header, value);
                return Ok(Injected {
                    query_param: None,
                    values: vec![key.to_string()],
                });
            }
            AuthKind::ApiKey {
                query: Some(param),
                secret: name,
                ..
            } => {
                let key = secret(name)?.expose().to_string();
                add_query(request, param, &key)?;
                return Ok(Injected {
                    query_param: Some(param.clone()),
                    values: vec![key],
                });
            }
            AuthKind::ApiKey { .. } => return Err(bad_header(&self.origin)),
            AuthKind::AwsSigv4 {
                access_key_id_secret,
                secret_access_key_secret,
                session_token_secret,
                region,
                service,
            } => {
                let credentials = sigv4::Credentials {
                    access_key_id: secret(access_key_id_secret)?.expose(),
                    secret_access_key: secret(secret_access_key_secret)?.expose(),
                    session_token: match session_token_secret {
                        Some(name) => Some(secret(name)?.expose()),
                        None => None,
                    },
                };
                let scope = sigv4::Scope { region, service };
                let body_sha256 = body.map(|bytes| sigv4::sha256_hex(bytes));
                let authorization = sigv4::sign(
                    request,
                    &credentials,
                    &scope,
                    body_sha256,
                    SystemTime::now(),
                )
                .map_err(|_| bad_header(&self.origin))?;
                // The secret access key never leaves the host; what went out
                // that came from secrets is scrubbed from response headers.
                let mut values = vec![authorization, credentials.access_key_id.to_string()];
                values.extend(credentials.session_token.map(str::to_string));
                return Ok(Injected {
                    query_param: None,
                    values,
                });
            }
            AuthKind::Basic {
                username,
                password_secret,
            } => {
                let password = secret(password_secret)?.expose();
                let pair = format!("{username}:{password}");
                also.push(password.to_string());
                also.push(base64::engine::general_purpose::STANDARD.encode(&pair));
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            AuthKind::Bearer { secret: name } => format!("Bearer {}", secret(name)?.expose()),
            AuthKind::JwtHs256 {
                secret: name,
                claims,
                ttl_s,
            } => {
                let key = secret(name)?.clone();
                let token = self
                    .cached_or(|| async { Ok(mint_jwt(key.expose(), claims, *ttl_s)) })
                    .await?;
                format!("Bearer {token}")
            }
            AuthKind::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                let client_secret = secret(client_secret)?.clone();
                let token = self
                    .cached_or(|| {
                        fetch_oauth2_token(
                            token_url,
                            client_id,
                            &client_secret,
                            scope.as_deref(),
                            options,
                            allow_private,
                        )
                    })
                    .await?;
                format!("Bearer {token}")
            }
        };
        let value =
            http::HeaderValue::from_str(&authorization).map_err(|_| bad_header(&self.origin))?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
        // The token alone (after `Bearer `/`Basic `) and the whole value.
        if let Some((_, token)) = authorization.split_once(' ') {
            also.push(token.to_string());
        }
        also.push(authorization);
        Ok(Injected {
            query_param: None,
            values: also,
        })
    }

    /// The cached token, or a new one from `make` (which returns the token and its lifetime).
    async fn cached_or<F, Fut>(&self, make: F) -> Result<String, HttpError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), HttpError>>,
    {
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(token) = cache.as_ref().filter(|t| Instant::now() < t.renew_at) {
                return Ok(token.value.clone());
            }
        }
        let (value, lifetime) = make().await?;
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Renew once 80% of the lifetime has passed.
        let renew_at = Instant::now() + lifetime.mul_f64(0.8);
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(CachedToken {
            value: value.clone(),
            renew_at,
        });
        Ok(value)
    }
}

/// Header names the host itself owns: routing (`Host`), framing
/// (`Content-Length`, `Transfer-Encoding`) and hop-by-hop headers. A
/// credential written into one would spoof the target or smuggle a request.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Refuse a credential header that is not a valid name or is one the host owns.
fn check_header_name(origin: &HostPattern, name: &str) -> Result<(), Error> {
    let lower = name.to_ascii_lowercase();
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.starts_with(':') {
        return Err(Error::InvalidGrant(format!(
            "auth for {origin}: `{name}` is not a valid header name"
        )));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(Error::InvalidGrant(format!(
            "auth for {origin}: a credential cannot go in the `{name}` header (routing, framing and hop-by-hop headers belong to the host); use e.g. `X-Api-Key`"
        )));
    }
    Ok(())
}

/// Largest OAuth2 token response the host reads (64 KiB): a token endpoint
/// cannot make the host buffer without bound.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 << 10;

fn bad_header(origin: &HostPattern) -> HttpError {
    // Never include the value: it is a secret.
    HttpError::InternalError(Some(format!(
        "auth for {origin}: the credential is not a valid header value"
    )))
}

fn add_query(
    request: &mut http::Request<wasmtime_wasi_http::WasiBody>,
    param: &str,
    value: &str,
) -> Result<(), HttpError> {
    let uri = request.uri().clone();
    let encoded = form_encode(&[(param, value)]);
    let name = url_encode(param, false);
    // A parameter the URL already carries is replaced, never added twice.
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            pair.split('=').next() != Some(name.as_str()) && pair.split('=').next() != Some(param)
        })
        .collect();
    let path = uri.path_and_query().map_or("/", |pq| pq.path());
    let path_and_query = if kept.is_empty() {
        format!("{path}?{encoded}")
    } else {
        format!("{path}?{}&{encoded}", kept.join("&"))
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| {
        HttpError::InternalError(Some("auth: cannot add the api key to the URL".into()))
    })?);
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| {
        HttpError::InternalError(Some("auth: cannot add the api key to the URL".into()))
    })?;
    Ok(())
}

/// `application/x-www-form-urlencoded` pairs.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k, false), url_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode all but the unreserved characters (a space as `+` when
/// `space_as_plus`, as form encoding writes it).
pub(crate) fn url_encode(text: &str, space_as_plus: bool) -> String {
    let encoded = percent_encoding::utf8_percent_encode(text, NOT_UNRESERVED).to_string();
    if space_as_plus {
        encoded.replace("%20", "+")
    } else {
        encoded
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A compact HS256 JWT with `claims` plus `iat` and `exp`.
fn mint_jwt(key: &str, claims: &Map<String, Value>, ttl_s: u64) -> (String, Duration) {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let iat = now_unix();
    let mut claims = claims.clone();
    claims.insert("iat".into(), Value::from(iat));
    claims.insert("exp".into(), Value::from(iat + ttl_s));
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(Value::Object(claims).to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    // HMAC takes keys of any length, so this never fails.
    let signature = match <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            b64(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (
        format!("{signing_input}.{signature}"),
        Duration::from_secs(ttl_s.max(1)),
    )
}

/// Fetch an access token with the client-credentials grant.
async fn fetch_oauth2_token(
    token_url: &str,
    client_id: &str,
    client_secret: &Secret,
    scope: Option<&str>,
    options: RequestOptions,
    allow_private: bool,
) -> Result<(String, Duration), HttpError> {
    let failed = |why: String| {
        HttpError::InternalError(Some(format!(
            "OAuth2 token request to {token_url} failed: {why}"
        )))
    };
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let body = Full::new(Bytes::from(form_encode(&form)))
        .map_err(|never| match never {})
        .boxed_unsync();
    let uri: http::Uri = token_url
        .parse()
        .map_err(|_| failed("bad token_url".into()))?;
    let target = super::address::resolve(&uri, allow_private)
        .await
        .map_err(failed)?;
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let mut request = http::Request::post(uri)
        .header(http::header::HOST, host)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(body)
        .map_err(|e| failed(e.to_string()))?;
    if let Some(target) = target {
        super::address::pin(&mut request, target);
    }
    let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
    tokio::spawn(async move {
        let _ = io.await;
    });
    let status = response.status();
    let bytes = http_body_util::Limited::new(response.into_body(), MAX_TOKEN_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|_| {
            failed(format!(
                "the reply is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes, or broke off"
            ))
        })?
        .to_bytes();
    if !status.is_success() {
        return Err(failed(format!("status {status}")));
    }
    let reply: Value =
        serde_json::from_slice(&bytes).map_err(|_| failed("the reply is not JSON".into()))?;
    let token = reply["access_token"]
        .as_str()
        .ok_or_else(|| failed("the reply has no access_token".into()))?
        .to_string();
    let lifetime = Duration::from_secs(reply["expires_in"].as_u64().unwrap_or(3600).max(1));
    Ok((token, lifetime))
}
