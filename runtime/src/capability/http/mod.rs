//! HTTP: an origin allow-list enforced in the `wasi:http` `send_request` hook,
//! with timeouts and a response size cap.
//!
//! Threat model: the guest chooses method, URL, headers and body. Only
//! requests whose `scheme://host:port` matches a granted [`HostPattern`] leave
//! the host; an empty list denies all. The host follows no redirects, so a
//! granted origin cannot bounce the guest elsewhere: the redirect reaches the
//! guest, and a request to the new location is checked like any other.
//! Timeouts are the grant's (a guest may ask for shorter ones, never longer),
//! and a body larger than the cap fails with `HttpResponseBodySize`.
//!
//! The host also protects upstreams from guests, per grant and origin and
//! shared by every session opened with the grant (see [`resilience`]): a
//! token-bucket rate limit (requests over budget wait), retries of idempotent
//! requests with backoff and `Retry-After`, a circuit breaker that fails fast
//! with `unavailable` while open, and counters readable through
//! [`HttpPolicy::counters`]. A guest cannot bypass any of it.
//!
//! A granted name that resolves to a loopback, private or link-local address
//! is denied unless the grant opts in ([`address`]): DNS must not turn an
//! outside origin into a door to the host's own network.

pub mod address;
pub mod auth;
mod injected;
pub mod resilience;

use std::collections::HashMap;

use auth::{AuthSpec, OriginAuth, Secret};

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use resilience::{
    retry_after, retryable_status, BreakerOpen, BreakerPolicy, CounterSnapshot, OriginState,
    OriginStates, RateLimit, RetryPolicy,
};

use crate::error::{Capability, Denial, Error, GrantTimeout};
use crate::policy::HostPattern;
use crate::state::{Denials, Expiries};

/// Default time to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to the first byte of the response.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time between two chunks of the response body.
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body the host keeps to send again on a retry (1 MiB);
/// a retryable request with a larger declared body is sent once, and one
/// without a declared length that grows past this fails.
pub const MAX_RETRIED_BODY_BYTES: usize = 1 << 20;
/// Default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The HTTP grant of one session.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    origins: Vec<HostPattern>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed until the first response byte.
    pub first_byte_timeout: Duration,
    /// Time allowed between response body chunks.
    pub between_bytes_timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: u64,
    /// Requests per second per origin (none = unlimited).
    pub rate_limit: Option<RateLimit>,
    /// Retries of idempotent requests.
    pub retry: RetryPolicy,
    /// Circuit breaker per origin.
    pub breaker: BreakerPolicy,
    /// Credentials the host adds, per origin.
    pub auth: Vec<OriginAuth>,
    /// Secret values the credentials are filled in from.
    pub secrets: HashMap<String, Secret>,
    /// Whether granted names may resolve to loopback, private or link-local
    /// addresses (addresses written literally in the grant always may).
    pub allow_private_addresses: bool,
    /// Rate-limit budgets, breakers and counters, shared by every clone of this policy.
    states: Arc<OriginStates>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            between_bytes_timeout: DEFAULT_BETWEEN_BYTES_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            rate_limit: None,
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            auth: Vec::new(),
            secrets: HashMap::new(),
            allow_private_addresses: false,
            states: Arc::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSpec {
    #[serde(default)]
    origins: Vec<String>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    between_bytes_timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
    rate_limit: Option<RateLimit>,
    retry: Option<RetryPolicy>,
    breaker: Option<BreakerPolicy>,
    #[serde(default)]
    auth: Vec<AuthSpec>,
    #[serde(default)]
    allow_private_addresses: bool,
}

impl HttpPolicy {
    pub(crate) fn from_spec(spec: HttpSpec) -> Result<Self, Error> {
        let mut policy = Self::default();
        for origin in &spec.origins {
            policy.allow(HostPattern::parse(origin)?);
        }
        let ms = Duration::from_millis;
        policy.connect_timeout = spec.connect_timeout_ms.map_or(policy.connect_timeout, ms);
        policy.first_byte_timeout = spec
            .first_byte_timeout_ms
            .map_or(policy.first_byte_timeout, ms);
        policy.between_bytes_timeout = spec
            .between_bytes_timeout_ms
            .map_or(policy.between_bytes_timeout, ms);
        policy.max_response_bytes = spec.max_response_bytes.unwrap_or(policy.max_response_bytes);
        policy.allow_private_addresses = spec.allow_private_addresses;
        if let Some(limit) = spec.rate_limit {
            if !(limit.rps > 0.0 && limit.rps.is_finite()) || limit.burst == 0 {
                return Err(Error::InvalidGrant(
                    "http rate_limit needs rps > 0 and burst >= 1".into(),
                ));
            }
            policy.rate_limit = Some(limit);
        }
        for entry in spec.auth {
            let auth = OriginAuth::from_spec(entry)?;
            if !policy.origins.contains(auth.origin()) {
                return Err(Error::InvalidGrant(format!(
                    "auth for {} names an origin this grant does not allow; add it to `origins` (CLI: or grant it with --allow-http)",
                    auth.origin()
                )));
            }
            if let Some(token_url) = auth.token_url() {
                // The host contacts only granted origins, on its own behalf too.
                if policy.check(&http::Method::POST, &token_url).is_err() {
                    return Err(Error::InvalidGrant(format!(
                        "auth for {}: the origin of `token_url` is not granted; add it to `origins`",
                        auth.origin()
                    )));
                }
            }
            if policy.auth.iter().any(|a| a.origin() == auth.origin()) {
                return Err(Error::InvalidGrant(format!(
                    "two auth entries for {}",
                    auth.origin()
                )));
            }
            policy.auth.push(auth);
        }
        policy.retry = spec.retry.unwrap_or_default();
        policy.breaker = spec.breaker.unwrap_or_default();
        if policy.retry.max_attempts == 0 || policy.breaker.failure_threshold == 0 {
            return Err(Error::InvalidGrant(
                "http retry.max_attempts and breaker.failure_threshold must be at least 1".into(),
            ));
        }
        if [
            policy.connect_timeout,
            policy.first_byte_timeout,
            policy.between_bytes_timeout,
        ]
        .contains(&Duration::ZERO)
        {
            return Err(Error::InvalidGrant(
                "http timeouts must be at least 1 ms".into(),
            ));
        }
        Ok(policy)
    }

    /// Allow an origin.
    pub fn allow(&mut self, origin: HostPattern) {
        if !self.origins.contains(&origin) {
            self.origins.push(origin);
        }
    }

    /// The allowed origins.
    pub fn origins(&self) -> &[HostPattern] {
        &self.origins
    }

    /// Decide one request URI.
    ///
    /// # Errors
    ///
    /// The [`Denial`] naming the origin and the flag that would grant it.
    pub fn check(&self, method: &http::Method, uri: &http::Uri) -> Result<(), Denial> {
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        if !host.is_empty() && self.origins.iter().any(|o| o.matches(scheme, host, port)) {
            return Ok(());
        }
        let origin = match uri.authority() {
            Some(authority) => format!("{scheme}://{authority}"),
            None => format!("{scheme}://"),
        };
        Err(Denial {
            capability: Capability::Http,
            attempted: format!("{method} {uri}"),
            grant: format!("--allow-http {origin}"),
            api_grant: format!("`{origin}` to the instance's `grants.http.origins`"),
            connector_error: None,
        })
    }

    /// Check that every secret the auth entries name was provided.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the missing secret (never a value).
    pub fn check_secrets(&self) -> Result<(), Error> {
        for auth in &self.auth {
            for name in auth.secret_names() {
                if !self.secrets.contains_key(name) {
                    return Err(Error::InvalidGrant(format!(
                        "auth for {} needs the secret `{name}`, which was not provided (CLI: --secret {name}=VALUE)",
                        auth.origin()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The auth entry for a request URI, if any.
    fn auth_for(&self, uri: &http::Uri) -> Option<&OriginAuth> {
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        self.auth
            .iter()
            .find(|a| a.origin().matches(scheme, host, port))
    }

    /// Counters per origin: requests, retries, throttled waits, breaker
    /// opens and rejections, failures, bytes. Shared by every session of the grant.
    pub fn counters(&self) -> Vec<(String, CounterSnapshot)> {
        self.states.counters()
    }

    /// Send one request through the rate limit, the breaker and the retry loop.
    async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: RequestOptions,
        target: Option<std::net::SocketAddr>,
    ) -> Result<Received, HttpError> {
        let origin = origin_of(request.uri());
        let burst = self.rate_limit.map_or(1, |l| l.burst);
        let state = self.states.get(&origin, burst);
        // A retried request must be sent again, so its body is kept in the
        // host — only when it is small enough: a larger one goes once.
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let retryable = self.retry.max_attempts > 1
            && self.retry.retries(request.method())
            && declared.is_none_or(|len| len <= MAX_RETRIED_BODY_BYTES as u64);
        let (parts, body) = request.into_parts();
        let (mut streaming, kept) = if retryable {
            let bytes = http_body_util::Limited::new(body, MAX_RETRIED_BODY_BYTES)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(Some(MAX_RETRIED_BODY_BYTES as u64)))?
                .to_bytes();
            (None, Some(bytes))
        } else {
            (Some(body), None)
        };
        let auth = self.auth_for(&parts.uri);
        let mut refreshed = false;
        let mut delayed = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Dropped on any early return or cancellation, the trial counts as a failure.
            let trial = state.admit(&self.breaker).map_err(|BreakerOpen(after)| {
                HttpError::InternalError(Some(format!(
                    "circuit breaker open for {origin} after repeated failures: failing fast; retry in {} s",
                    after.as_secs().max(1)
                )))
            })?;
            if let Some(limit) = &self.rate_limit {
                let wait = state.reserve(limit);
                if !wait.is_zero() {
                    state.counters.add_throttled();
                    tokio::time::sleep(wait).await;
                }
            }
            if attempt > 1 {
                state.counters.add_retry();
            }
            state.counters.add_request();
            let body = match (&kept, streaming.take()) {
                (Some(bytes), _) => Full::new(bytes.clone())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
                (None, Some(body)) => body,
                (None, None) => {
                    return Err(HttpError::InternalError(Some(
                        "request body already sent".into(),
                    )))
                }
            };
            let mut request = rebuild(&parts, body)?;
            let injected = match auth {
                Some(auth) => {
                    auth.apply(
                        &mut request,
                        &self.secrets,
                        options,
                        self.allow_private_addresses,
                    )
                    .await?
                }
                None => injected::Injected::default(),
            };
            if let Some(target) = target {
                address::pin(&mut request, target);
            }
            let can_retry = retryable && attempt < self.retry.max_attempts;
            match wasmtime_wasi_http::default_send_request(request, Some(options)).await {
                Ok((mut response, io)) => {
                    // What the host added never comes back to the guest in a header.
                    injected.scrub(response.headers_mut());
                    let status = response.status().as_u16();
                    trial.finish(status < 500);
                    if status == 401 && !refreshed {
                        if let Some(auth) = auth.filter(|a| a.refreshes_on_401()) {
                            // The token may have been revoked or expired early: refresh it
                            // once, and send again when the body can be sent again.
                            auth.invalidate();
                            refreshed = true;
                            if kept.is_some() {
                                drop(response);
                                continue;
                            }
                        }
                    }
                    if can_retry && retryable_status(status) {
                        let hinted = response
                            .headers()
                            .get(http::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| retry_after(v, SystemTime::now()));
                        let delay = hinted.unwrap_or_else(|| self.retry.backoff(attempt));
                        if self.within_budget(delay, delayed) {
                            drop(response);
                            delayed += delay;
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    }
                    let response = response.map(BodyExt::boxed_unsync);
                    return Ok((response, Box::new(io), Arc::clone(&state)));
                }
                Err(err) => {
                    let connect_failure = matches!(
                        err,
                        HttpError::Connect(_)
                            | HttpError::ConnectionRefused
                            | HttpError::ConnectionTimeout
                    );
                    trial.finish(false);
                    if can_retry && connect_failure {
                        let delay = self.retry.backoff(attempt);
                        if self.within_budget(delay, delayed) {
                            delayed += delay;
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    }
                    return Err(err);
                }
            }
        }
    }

    fn within_budget(&self, delay: Duration, delayed: Duration) -> bool {
        delay <= Duration::from_millis(self.retry.max_delay_ms)
            && delayed + delay <= Duration::from_millis(self.retry.max_total_delay_ms)
    }

    /// The grant timeout that expired while waiting for `wait`, when the
    /// grant (not the guest's shorter request option) set its limit.
    fn expired(&self, wait: Wait, origin: &str, options: RequestOptions) -> Option<GrantTimeout> {
        let (waited_for, setting, limit, asked) = match wait {
            Wait::Connect => (
                format!("a connection to {origin}"),
                "connect_timeout_ms",
                self.connect_timeout,
                options.connect_timeout,
            ),
            Wait::FirstByte => (
                format!("the first response byte from {origin}"),
                "first_byte_timeout_ms",
                self.first_byte_timeout,
                options.first_byte_timeout,
            ),
            Wait::BetweenBytes => (
                format!("the next response bytes from {origin}"),
                "between_bytes_timeout_ms",
                self.between_bytes_timeout,
                options.between_bytes_timeout,
            ),
        };
        (asked == Some(limit)).then_some(GrantTimeout {
            capability: Capability::Http,
            waited_for,
            setting,
            limit,
        })
    }

    /// The guest's timeouts, never longer than the grant's.
    fn clamp(&self, asked: Option<RequestOptions>) -> RequestOptions {
        let asked = asked.unwrap_or_default();
        let pick = |guest: Option<Duration>, cap: Duration| Some(guest.map_or(cap, |g| g.min(cap)));
        RequestOptions {
            connect_timeout: pick(asked.connect_timeout, self.connect_timeout),
            first_byte_timeout: pick(asked.first_byte_timeout, self.first_byte_timeout),
            between_bytes_timeout: pick(asked.between_bytes_timeout, self.between_bytes_timeout),
        }
    }
}

/// What a request waits for, each bounded by one of the grant's timeouts.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Connect,
    FirstByte,
    BetweenBytes,
}

/// The `wasi:http` hooks of one session: the policy plus its denial and
/// expired-timeout logs.
pub(crate) struct HttpHooks {
    pub policy: Arc<HttpPolicy>,
    pub denials: Denials,
    pub expiries: Expiries,
}

/// The connection-driving future that accompanies a response.
type IoFuture = Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>;

/// A response and its connection future.
type Sent = (http::Response<WasiBody>, IoFuture);

/// A response as it came from upstream, its connection future, and the
/// origin's state (its byte counter).
type Received = (http::Response<WasiBody>, IoFuture, Arc<OriginState>);

type SendFuture = Box<dyn std::future::Future<Output = Result<Sent, HttpError>> + Send>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        if let Err(denial) = self.policy.check(request.method(), request.uri()) {
            self.denials.record(denial);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = self.policy.clamp(options);
        let policy = Arc::clone(&self.policy);
        let denials = self.denials.clone();
        let expiries = self.expiries.clone();
        Box::new(async move {
            let target = match address::resolve(request.uri(), policy.allow_private_addresses).await
            {
                Ok(target) => target,
                Err(why) => {
                    denials.record(Denial {
                        capability: Capability::Http,
                        attempted: format!("{} {} ({why})", request.method(), request.uri()),
                        grant: "`allow_private_addresses: true` in the http grant (CLI: --allow-http-private)".into(),
                        api_grant: "`allow_private_addresses: true` to the instance's `grants.http`".into(),
                        connector_error: None,
                    });
                    return Err(HttpError::HttpRequestDenied);
                }
            };
            let declared = |response: &http::Response<WasiBody>| {
                response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let origin = origin_of(request.uri());
            let (response, io, state) = match policy.send(request, options, target).await {
                Ok(sent) => sent,
                Err(err) => {
                    let wait = match err {
                        HttpError::ConnectionTimeout => Some(Wait::Connect),
                        HttpError::ConnectionReadTimeout => Some(Wait::FirstByte),
                        _ => None,
                    };
                    if let Some(expired) = wait.and_then(|w| policy.expired(w, &origin, options)) {
                        expiries.record(expired);
                    }
                    return Err(err);
                }
            };
            let cap = policy.max_response_bytes;
            let response = response.map(|body| {
                CappedBody {
                    inner: body,
                    remaining: cap,
                    cap,
                    state,
                    policy: Arc::clone(&policy),
                    origin,
                    options,
                    expiries,
                }
                .boxed_unsync()
            });
            // The error names the grant's cap (what the user can change), not the size.
            if declared(&response).is_some_and(|len| len > policy.max_response_bytes) {
                return Err(HttpError::HttpResponseBodySize(Some(
                    policy.max_response_bytes,
                )));
            }
            Ok((response, io))
        })
    }
}

/// `scheme://authority` of a request.
fn origin_of(uri: &http::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// A fresh request with the same method, URI, version and headers.
fn rebuild(
    parts: &http::request::Parts,
    body: WasiBody,
) -> Result<http::Request<WasiBody>, HttpError> {
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    Ok(request)
}

/// The response body as the guest reads it: counted, failing once more than
/// `cap` bytes have arrived, and recording the grant's between-bytes timeout
/// when it expires (so the connector's resulting `timeout` names the setting).
struct CappedBody {
    inner: WasiBody,
    remaining: u64,
    cap: u64,
    state: Arc<OriginState>,
    policy: Arc<HttpPolicy>,
    origin: String,
    options: RequestOptions,
    expiries: Expiries,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                self.state.counters.add_bytes(len);
                if len > self.remaining {
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(self.cap)))));
                }
                self.remaining -= len;
            }
        }
        if let Some(Err(HttpError::ConnectionReadTimeout)) = &frame {
            let expired = self
                .policy
                .expired(Wait::BetweenBytes, &self.origin, self.options);
            if let Some(expired) = expired {
                self.expiries.record(expired);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> HttpPolicy {
        let mut p = HttpPolicy::default();
        for o in origins {
            p.allow(HostPattern::parse(o).unwrap());
        }
        p
    }

    #[test]
    fn only_granted_origins_pass() {
        let p = policy(&["http://127.0.0.1:8080", "https://*.example.com"]);
        let get = http::Method::GET;
        assert!(p
            .check(&get, &"http://127.0.0.1:8080/x?y".parse().unwrap())
            .is_ok());
        assert!(p
            .check(&get, &"https://api.example.com/".parse().unwrap())
            .is_ok());
        let denial = p
            .check(&get, &"http://127.0.0.1:9090/x".parse().unwrap())
            .unwrap_err();
        assert_eq!(denial.grant, "--allow-http http://127.0.0.1:9090");
        assert_eq!(denial.attempted, "GET http://127.0.0.1:9090/x");
        assert!(p
            .check(&get, &"https://example.com/".parse().unwrap())
            .is_err());
    }

    #[test]
    fn guest_timeouts_are_clamped_to_the_grant() {
        let p = HttpPolicy::default();
        let asked = RequestOptions {
            connect_timeout: Some(Duration::from_secs(3600)),
            first_byte_timeout: Some(Duration::from_millis(5)),
            between_bytes_timeout: None,
        };
        let got = p.clamp(Some(asked));
        assert_eq!(got.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(got.first_byte_timeout, Some(Duration::from_millis(5)));
        assert_eq!(
            got.between_bytes_timeout,
            Some(DEFAULT_BETWEEN_BYTES_TIMEOUT)
        );
    }
}
