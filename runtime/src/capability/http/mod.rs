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
//! # What a granted name may resolve to
//!
//! The layered decision, in order, for every request:
//!
//! 1. **Origin.** `scheme://host:port` must match a granted pattern
//!    ([`HostPattern`]): exact host, or a subdomain of a `*.suffix`; IP
//!    literals compare in canonical form (`[::ffff:10.0.0.1]` is `10.0.0.1`).
//!    Otherwise: `denied`, naming `--allow-http ORIGIN`.
//! 2. **Address.** A granted *name* is resolved by the host, and every answer
//!    is checked ([`address`]): loopback (`127.0.0.0/8`, `::1`), private
//!    (`10/8`, `172.16/12`, `192.168/16`, `fc00::/7`), link-local
//!    (`169.254.0.0/16` — `169.254.169.254`, the cloud metadata service, among
//!    them — and `fe80::/10`), shared (`100.64/10`), unspecified, multicast,
//!    reserved, and IPv4-mapped or NAT64 forms of any of these are denied
//!    unless the grant sets `allow_private_addresses` (and, on a server, the
//!    tenant's ceiling allows it). DNS must not turn an outside origin into a
//!    door to the host's own network, nor rebinding into a second answer: the
//!    host connects to the very address it checked, and for `https://` the
//!    TLS handshake must also prove the granted name. An address
//!    written literally in a grant was granted on purpose and is not
//!    re-checked.
//! 3. **Credentials and protection.** Only then are credentials injected
//!    ([`auth`]; the host contacts an OAuth2 `token_url` only when its origin
//!    is granted too) and the rate limit, breaker and retries applied.
//! 4. **Response.** No redirect is followed; the body is capped.
//!
//! Connections are kept alive per grant and origin ([`pool`]) and reused
//! only by the same grant's sessions, after a response was read to its end.

pub mod address;
pub mod auth;
mod hooks;
mod injected;
mod origin;
mod policy;
pub mod pool;
pub mod resilience;
pub mod sigv4;

pub(crate) use hooks::{HttpHooks, IoFuture, SendFuture};
pub use origin::HostPattern;
pub use policy::{
    HttpConfig, HttpPolicy, DEFAULT_BETWEEN_BYTES_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FIRST_BYTE_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, MAX_RETRIED_BODY_BYTES,
};
