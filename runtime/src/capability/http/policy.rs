//! [`HttpPolicy`]: which origins a session may call and how — parsed once
//! from the declared [`HttpConfig`], then only matched, in the send hook.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::RequestOptions;

use super::auth::{AuthConfig, OriginAuth, Secret};
use super::origin::{HostPattern, Target};
use super::resilience::{BreakerPolicy, CounterSnapshot, OriginStates, RateLimit, RetryPolicy};
use crate::capability::denial::{Capability, Denial, GrantTimeout};
use crate::error::Error;

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
    /// `http://` origins spoken to over HTTP/2 with prior knowledge (h2c).
    h2c: Vec<HostPattern>,
    /// Rate-limit budgets, breakers and counters, shared by every clone of this policy.
    pub(super) states: Arc<OriginStates>,
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
            h2c: Vec::new(),
            states: Arc::default(),
        }
    }
}

/// The HTTP egress a grant declares: origins, timeouts, the response cap,
/// rate limit, retries, breaker and credentials. Pure data: the buckets,
/// breakers and token caches live in the [`HttpPolicy`] opened from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins the guest may call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<HostPattern>,
    /// Time allowed to connect, ms (default 10 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed until the first response byte, ms (default 30 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout_ms: Option<u64>,
    /// Time allowed between response body chunks, ms (default 30 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub between_bytes_timeout_ms: Option<u64>,
    /// Largest response body, bytes (default 64 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Requests per second per origin (none: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Retries of idempotent requests (default: 3 attempts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The circuit breaker per origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerPolicy>,
    /// Credentials the host adds, per origin.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<AuthConfig>,
    /// Whether granted names may resolve to loopback, private or link-local addresses.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_addresses: bool,
    /// `http://` origins of `origins` spoken to over HTTP/2 with prior
    /// knowledge (h2c: a gRPC server without TLS, say). `https://` origins
    /// need no entry: they speak HTTP/2 when the server offers it (ALPN `h2`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub h2c: Vec<HostPattern>,
}

impl HttpConfig {
    /// Whether it declares nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl HttpPolicy {
    /// The policy a declared config opens, with fresh rate-limit budgets,
    /// breakers and token caches.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a setting out of range, or credentials
    /// for an origin the grant does not allow.
    pub fn from_config(spec: &HttpConfig) -> Result<Self, Error> {
        let mut policy = Self::default();
        for origin in &spec.origins {
            policy.allow(origin.clone());
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
        for origin in &spec.h2c {
            policy.speak_h2c(origin.clone())?;
        }
        if let Some(limit) = spec.rate_limit {
            if !(limit.rps > 0.0 && limit.rps.is_finite()) || limit.burst == 0 {
                return Err(Error::InvalidGrant(
                    "http rate_limit needs rps > 0 and burst >= 1".into(),
                ));
            }
            policy.rate_limit = Some(limit);
        }
        for entry in &spec.auth {
            let auth = OriginAuth::from_config(entry)?;
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
        policy.retry = spec.retry.clone().unwrap_or_default();
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

    /// Speak HTTP/2 with prior knowledge (h2c) to `origin`, an allowed
    /// `http://` origin.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for an `https://` origin (it negotiates
    /// HTTP/2 by ALPN) or one the grant does not allow.
    pub fn speak_h2c(&mut self, origin: HostPattern) -> Result<(), Error> {
        if !origin.matches_scheme("http") {
            return Err(Error::InvalidGrant(format!(
                "h2c origin {origin}: h2c is HTTP/2 without TLS, for `http://` origins; an `https://` origin speaks HTTP/2 when its server offers it"
            )));
        }
        if !self.origins.iter().any(|o| origin.within(o)) {
            return Err(Error::InvalidGrant(format!(
                "h2c origin {origin} is not granted; add it to `origins` (CLI: --allow-http-h2c grants it too)"
            )));
        }
        if !self.h2c.contains(&origin) {
            self.h2c.push(origin);
        }
        Ok(())
    }

    /// Whether requests to `uri` go over HTTP/2 with prior knowledge.
    pub(crate) fn prior_knowledge(&self, uri: &http::Uri) -> bool {
        let target = Target::of(uri);
        self.h2c.iter().any(|o| o.admits(&target))
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
        let target = Target::of(uri);
        if !target.host.is_empty() && self.origins.iter().any(|o| o.admits(&target)) {
            return Ok(());
        }
        let scheme = uri.scheme_str().unwrap_or("https");
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

    /// The secrets the `auth` entries use.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.auth.iter().flat_map(OriginAuth::secret_names)
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
    pub(super) fn auth_for(&self, uri: &http::Uri) -> Option<&OriginAuth> {
        let target = Target::of(uri);
        self.auth.iter().find(|a| a.origin().admits(&target))
    }

    /// Counters per origin: requests, retries, throttled waits, breaker
    /// opens and rejections, failures, bytes. Shared by every session of the grant.
    pub fn counters(&self) -> Vec<(String, CounterSnapshot)> {
        self.states.counters()
    }

    /// The grant timeout that expired while waiting for `wait`, when the
    /// grant (not the guest's shorter request option) set its limit.
    pub(super) fn expired(
        &self,
        wait: Wait,
        origin: &str,
        options: RequestOptions,
    ) -> Option<GrantTimeout> {
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
    pub(super) fn clamp(&self, asked: Option<RequestOptions>) -> RequestOptions {
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
pub(super) enum Wait {
    Connect,
    FirstByte,
    BetweenBytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2c_is_only_for_granted_http_origins() {
        let config = |h2c: &str| HttpConfig {
            origins: vec![
                HostPattern::parse("http://127.0.0.1:50051").unwrap(),
                HostPattern::parse("https://api.example.com").unwrap(),
            ],
            h2c: vec![HostPattern::parse(h2c).unwrap()],
            ..HttpConfig::default()
        };
        let policy = HttpPolicy::from_config(&config("http://127.0.0.1:50051")).unwrap();
        assert!(policy.prior_knowledge(&"http://127.0.0.1:50051/a.B/C".parse().unwrap()));
        assert!(!policy.prior_knowledge(&"http://127.0.0.1:50052/a.B/C".parse().unwrap()));
        assert!(!policy.prior_knowledge(&"https://api.example.com/".parse().unwrap()));
        let tls = HttpPolicy::from_config(&config("https://api.example.com")).unwrap_err();
        assert!(
            tls.to_string().contains("h2c is HTTP/2 without TLS"),
            "{tls}"
        );
        let ungranted = HttpPolicy::from_config(&config("http://127.0.0.1:9")).unwrap_err();
        assert!(ungranted.to_string().contains("not granted"), "{ungranted}");
    }

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
