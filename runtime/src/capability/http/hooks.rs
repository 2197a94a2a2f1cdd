//! The `wasi:http` `send_request` hook: where every guest request meets the
//! policy — the origin check, the address check, the rate limit, the breaker,
//! retries, injected credentials, timeouts and the response size cap.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::policy::{HttpPolicy, Wait, MAX_RETRIED_BODY_BYTES};
use super::resilience::{retry_after, retryable_status, BreakerOpen, OriginState};
use super::{address, injected};
use crate::capability::denial::{Capability, Denial, Denials, Expiries};
use crate::tape::{self, Tape};

impl HttpPolicy {
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
        let h2c = self.prior_knowledge(&parts.uri);
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
                        kept.as_ref(),
                    )
                    .await?
                }
                None => injected::Injected::default(),
            };
            if let Some(target) = target {
                address::pin(&mut request, target);
            }
            let can_retry = retryable && attempt < self.retry.max_attempts;
            match state.connections.send(request, options, target, h2c).await {
                Ok(mut response) => {
                    // What the host added never comes back to the guest in a
                    // header or a trailer.
                    injected.scrub(response.headers_mut());
                    if !injected.is_empty() {
                        response = response.map(|inner| {
                            injected::ScrubbedTrailers { inner, injected }.boxed_unsync()
                        });
                    }
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
                    return Ok((response, Arc::clone(&state)));
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
}

/// The `wasi:http` hooks of one session: the policy plus its denial and
/// expired-timeout logs, and the tape when the session is recorded or replayed.
#[derive(Clone)]
pub(crate) struct HttpHooks {
    pub policy: Arc<HttpPolicy>,
    pub denials: Denials,
    pub expiries: Expiries,
    pub tape: Option<Tape>,
}

/// The connection-driving future that accompanies a response.
pub(crate) type IoFuture = Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>;

/// A response and its connection future.
pub(crate) type Sent = (http::Response<WasiBody>, IoFuture);

/// A response as it came from upstream and the origin's state (its byte counter).
type Received = (http::Response<WasiBody>, Arc<OriginState>);

pub(crate) type SendFuture = Box<dyn std::future::Future<Output = Result<Sent, HttpError>> + Send>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        match &self.tape {
            None => self.send(request, options),
            Some(Tape::Replay(player)) => {
                tape::http::replay(Arc::clone(player), request, self.denials.clone())
            }
            Some(Tape::Record(recorder)) => {
                let hooks = self.clone();
                let denials = self.denials.clone();
                tape::http::record(Arc::clone(recorder), request, denials, move |request| {
                    hooks.send(request, options)
                })
            }
        }
    }
}

impl HttpHooks {
    /// Check `request` against the policy and send it.
    fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendFuture {
        if let Err(mut denial) = self.policy.check(request.method(), request.uri()) {
            if grpc_without_tls(&request) {
                // gRPC needs HTTP/2, which an `http://` origin speaks only as h2c.
                let origin = origin_of(request.uri());
                denial.grant = format!("--allow-http-h2c {origin}");
                denial.api_grant = format!(
                    "`{origin}` to the instance's `grants.http.origins` and `grants.http.h2c`"
                );
            }
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
            let head = request.method() == http::Method::HEAD;
            let (response, state) = match policy.send(request, options, target).await {
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
            // The error names the grant's cap (what the user can change), not
            // the size. A HEAD, 204 or 304 answer has no body, whatever length
            // it declares (a HEAD's is the resource's).
            let bodiless = head || matches!(response.status().as_u16(), 204 | 304);
            if !bodiless && declared(&response).is_some_and(|len| len > policy.max_response_bytes) {
                return Err(HttpError::HttpResponseBodySize(Some(
                    policy.max_response_bytes,
                )));
            }
            // The pool drives its connections; nothing is left for wasmtime to drive.
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// Whether `request` is a gRPC call to an `http://` origin.
fn grpc_without_tls(request: &http::Request<WasiBody>) -> bool {
    request.uri().scheme_str() == Some("http")
        && request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"))
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
