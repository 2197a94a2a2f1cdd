//! What protects an upstream from its guests: a token-bucket rate limit,
//! bounded retries with backoff, a circuit breaker, and counters — kept per
//! grant and origin, shared by every session opened with the grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::pool::ConnectionPool;

/// Token-bucket rate limit: `rps` requests per second, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub rps: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// Retries of idempotent requests on connect errors, 429, 502, 503 and 504.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retries). Default 3.
    pub max_attempts: u32,
    /// First backoff delay, doubled each retry, with jitter. Default 100 ms.
    pub base_delay_ms: u64,
    /// Largest single delay (a longer `Retry-After` stops retrying). Default 5 s.
    pub max_delay_ms: u64,
    /// Largest sum of delays for one request. Default 15 s.
    pub max_total_delay_ms: u64,
    /// Methods retried besides GET, HEAD, PUT, DELETE and OPTIONS (e.g. `POST`).
    pub also_retry: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 100,
            max_delay_ms: 5_000,
            max_total_delay_ms: 15_000,
            also_retry: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// Whether requests with `method` may be retried.
    pub fn retries(&self, method: &http::Method) -> bool {
        matches!(
            *method,
            http::Method::GET
                | http::Method::HEAD
                | http::Method::PUT
                | http::Method::DELETE
                | http::Method::OPTIONS
        ) || self
            .also_retry
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method.as_str()))
    }

    /// The delay before retry number `retry` (1-based): exponential, with jitter in [50%, 100%].
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
            .min(self.max_delay_ms);
        let jittered = exp / 2 + fastrand::u64(0..=exp / 2);
        Duration::from_millis(jittered)
    }
}

/// Whether a status is worth retrying.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Parse `Retry-After`: delay-seconds or an HTTP-date.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Consecutive failures (connect errors, 5xx, timeouts) that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// Time the breaker stays open before one probe request is let through. Default 30 s.
    pub cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// Counters of one origin (monotonic).
#[derive(Debug, Default)]
pub struct OriginCounters {
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    breaker_opens: AtomicU64,
    breaker_rejections: AtomicU64,
    failures: AtomicU64,
    bytes: AtomicU64,
}

/// A snapshot of an origin's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Requests sent upstream (each attempt counts).
    pub requests: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Requests that waited for the rate limit.
    pub throttled: u64,
    /// Times the breaker opened.
    pub breaker_opens: u64,
    /// Requests refused at once because the breaker was open.
    pub breaker_rejections: u64,
    /// Attempts that failed (connect error, timeout or 5xx).
    pub failures: u64,
    /// Response body bytes received.
    pub bytes: u64,
}

impl OriginCounters {
    pub(crate) fn add_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_rejection(&self) {
        self.breaker_rejections.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Read the counters.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            breaker_opens: self.breaker_opens.load(Ordering::Relaxed),
            breaker_rejections: self.breaker_rejections.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe is in flight after the cool-down.
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
}

/// Everything kept for one origin of one grant.
#[derive(Debug)]
pub struct OriginState {
    /// Its counters.
    pub counters: OriginCounters,
    bucket: Mutex<Bucket>,
    breaker: Mutex<Breaker>,
    /// Its keep-alive connections.
    pub(crate) connections: Arc<ConnectionPool>,
}

/// The breaker refused a request; retry after this long.
#[derive(Debug, Clone, Copy)]
pub struct BreakerOpen(pub Duration);

impl OriginState {
    fn new(burst: u32) -> Self {
        Self {
            counters: OriginCounters::default(),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                updated: Instant::now(),
            }),
            breaker: Mutex::new(Breaker {
                state: BreakerState::Closed,
                consecutive_failures: 0,
            }),
            connections: Arc::default(),
        }
    }

    /// Take a token, returning how long to wait for it (zero when one is free).
    pub fn reserve(&self, limit: &RateLimit) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.rps).min(f64::from(limit.burst.max(1)));
        bucket.updated = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / limit.rps.max(f64::MIN_POSITIVE))
        }
    }

    /// May a request go out now? The returned [`Attempt`] must be given its
    /// outcome ([`Attempt::finish`]); dropped without one (the call was
    /// cancelled, or failed before sending) it counts as a failure, so a
    /// half-open breaker never waits forever for a trial that went nowhere.
    pub fn admit(self: &Arc<Self>, policy: &BreakerPolicy) -> Result<Attempt, BreakerOpen> {
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        match breaker.state {
            BreakerState::Closed => {}
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now < until {
                    self.counters.add_rejection();
                    return Err(BreakerOpen(until - now));
                }
                breaker.state = BreakerState::HalfOpen;
            }
            BreakerState::HalfOpen => {
                self.counters.add_rejection();
                return Err(BreakerOpen(Duration::from_secs(1)));
            }
        }
        Ok(Attempt {
            state: Arc::clone(self),
            policy: *policy,
            finished: false,
        })
    }

    /// Record an attempt's outcome.
    fn record(&self, success: bool, policy: &BreakerPolicy) {
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        if success {
            breaker.consecutive_failures = 0;
            breaker.state = BreakerState::Closed;
            return;
        }
        self.counters.add_failure();
        breaker.consecutive_failures += 1;
        let reopen = breaker.state == BreakerState::HalfOpen;
        if reopen || breaker.consecutive_failures >= policy.failure_threshold.max(1) {
            if !matches!(breaker.state, BreakerState::Open { .. }) {
                self.counters.breaker_opens.fetch_add(1, Ordering::Relaxed);
            }
            breaker.state = BreakerState::Open {
                until: Instant::now() + Duration::from_millis(policy.cooldown_ms),
            };
        }
    }
}

/// One request let through by the breaker, until its outcome is recorded.
#[derive(Debug)]
#[must_use = "an attempt dropped without `finish` counts as a failure"]
pub struct Attempt {
    state: Arc<OriginState>,
    policy: BreakerPolicy,
    finished: bool,
}

impl Attempt {
    /// Record the outcome: `success` when the upstream answered below 500.
    pub fn finish(mut self, success: bool) {
        self.finished = true;
        self.state.record(success, &self.policy);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.finished {
            self.state.record(false, &self.policy);
        }
    }
}

/// The origin states of one grant.
#[derive(Debug, Default)]
pub struct OriginStates {
    origins: Mutex<HashMap<String, Arc<OriginState>>>,
}

impl OriginStates {
    /// The state of `origin`, created on first use.
    pub fn get(&self, origin: &str, burst: u32) -> Arc<OriginState> {
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            origins
                .entry(origin.to_string())
                .or_insert_with(|| Arc::new(OriginState::new(burst))),
        )
    }

    /// Every origin's counters.
    pub fn counters(&self) -> Vec<(String, CounterSnapshot)> {
        let origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = origins
            .iter()
            .map(|(origin, state)| (origin.clone(), state.counters.snapshot()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let policy = RetryPolicy::default();
        for retry in 1..10 {
            let delay = policy.backoff(retry);
            let cap = (100u64 << (retry - 1)).min(5_000);
            assert!(
                delay >= Duration::from_millis(cap / 2) && delay <= Duration::from_millis(cap),
                "{retry}: {delay:?}"
            );
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_paces() {
        let state = OriginState::new(3);
        let limit = RateLimit {
            rps: 10.0,
            burst: 3,
        };
        for _ in 0..3 {
            assert_eq!(state.reserve(&limit), Duration::ZERO);
        }
        let wait = state.reserve(&limit);
        assert!(
            wait > Duration::from_millis(50) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
    }

    #[test]
    fn the_breaker_opens_fails_fast_and_recovers_through_one_probe() {
        let state = Arc::new(OriginState::new(1));
        let policy = BreakerPolicy {
            failure_threshold: 2,
            cooldown_ms: 50,
        };
        state.admit(&policy).unwrap().finish(false);
        state.admit(&policy).unwrap().finish(false);
        assert!(state.admit(&policy).is_err(), "open after two failures");
        std::thread::sleep(Duration::from_millis(60));
        let probe = state.admit(&policy).expect("one probe after the cool-down");
        assert!(state.admit(&policy).is_err(), "only one probe at a time");
        probe.finish(true);
        state
            .admit(&policy)
            .expect("closed after a successful probe")
            .finish(true);
        let counters = state.counters.snapshot();
        assert_eq!(
            (
                counters.breaker_opens,
                counters.failures,
                counters.breaker_rejections
            ),
            (1, 2, 2)
        );
    }

    #[test]
    fn a_probe_dropped_without_an_outcome_reopens_the_breaker_instead_of_sticking() {
        let state = Arc::new(OriginState::new(1));
        let policy = BreakerPolicy {
            failure_threshold: 1,
            cooldown_ms: 30,
        };
        state.admit(&policy).unwrap().finish(false);
        std::thread::sleep(Duration::from_millis(40));
        // The half-open trial is cancelled (a call timeout, a client gone).
        drop(state.admit(&policy).expect("the trial"));
        assert!(state.admit(&policy).is_err(), "open again for a cool-down");
        std::thread::sleep(Duration::from_millis(40));
        let trial = state
            .admit(&policy)
            .expect("another trial, not stuck half-open");
        trial.finish(true);
        state.admit(&policy).expect("closed").finish(true);
    }
}
