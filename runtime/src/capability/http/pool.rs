//! Keep-alive connections, kept per grant and origin.
//!
//! Every [`OriginState`](super::resilience::OriginState) — one per origin of
//! one grant, shared by the grant's sessions and by nobody else — owns a
//! `ConnectionPool`. A request takes an idle connection to the same
//! address when one is there and opens one otherwise; the connection goes
//! back to the pool only when the guest has read the response to its end
//! (a body dropped early closes it, so no half-read response can leak into
//! the next request). At most [`MAX_IDLE_PER_ORIGIN`] connections wait,
//! each for at most [`IDLE_TIMEOUT`]. For `https://` the pool's one TLS
//! configuration keeps the sessions it was given, so a new connection to the
//! same server resumes instead of a full handshake.
//!
//! A connection the server closed while it waited is noticed before the
//! request goes out (hyper hands the unsent request back) and the request
//! goes out on a fresh connection, whatever its method: nothing was sent.
//!
//! HTTP/2 connections are shared instead: one per endpoint carries every
//! request at once, as streams. `https://` connections offer `h2` by ALPN
//! and speak what the server picks; an `http://` origin the grant lists
//! under `h2c` is spoken to in HTTP/2 with prior knowledge. Trailers pass
//! through both ways (gRPC's status lives in them).
//!
//! The connection is made to the address the host checked (see
//! [`address`](super::address)): for `https://` too, where the TLS handshake
//! must still prove the granted name.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use super::policy::{
    DEFAULT_BETWEEN_BYTES_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FIRST_BYTE_TIMEOUT,
};

/// Most connections one origin of one grant keeps waiting.
pub const MAX_IDLE_PER_ORIGIN: usize = 32;
/// How long an unused connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The idle connections of one origin of one grant.
#[derive(Default)]
pub(crate) struct ConnectionPool {
    idle: Mutex<Idle>,
    tls: OnceLock<Arc<rustls::ClientConfig>>,
}

/// A new connection's request sender, in the protocol it speaks.
enum Connected {
    Http1(SendRequest<WasiBody>),
    Http2(http2::SendRequest<WasiBody>),
}

/// Runs hyper's HTTP/2 connection tasks on the current tokio runtime.
#[derive(Clone, Copy)]
struct Spawn;

impl<F> hyper::rt::Executor<F> for Spawn
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

#[derive(Default)]
struct Idle {
    connections: Vec<Waiting>,
    /// The HTTP/2 connection of each endpoint that speaks it, shared by
    /// every request to it; dropped [`IDLE_TIMEOUT`] after the last request
    /// began (the connection ends once its streams have).
    shared: Vec<Shared>,
    /// Whether a task is sweeping out connections idle too long.
    sweeping: bool,
}

struct Shared {
    endpoint: Endpoint,
    sender: http2::SendRequest<WasiBody>,
    used: Instant,
}

impl Idle {
    /// Drop what was closed or unused for [`IDLE_TIMEOUT`].
    fn expire(&mut self, now: Instant) {
        self.connections
            .retain(|w| !w.sender.is_closed() && now.duration_since(w.since) < IDLE_TIMEOUT);
        self.shared
            .retain(|s| !s.sender.is_closed() && now.duration_since(s.used) < IDLE_TIMEOUT);
    }
}

struct Waiting {
    endpoint: Endpoint,
    sender: SendRequest<WasiBody>,
    since: Instant,
}

impl std::fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ConnectionPool")
            .field("idle", &idle.connections.len())
            .finish()
    }
}

/// Where a connection goes: the address dialled, the name TLS must prove,
/// and whether it speaks HTTP/2 without TLS (h2c, by prior knowledge).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    dial: String,
    tls_name: Option<String>,
    h2c: bool,
}

impl Endpoint {
    fn of(uri: &http::Uri, target: Option<SocketAddr>, h2c: bool) -> Result<Self, HttpError> {
        let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let dial = match target {
            Some(address) => address.to_string(),
            None => format!("{}:{port}", authority.host()),
        };
        Ok(Self {
            dial,
            tls_name: tls.then(|| authority.host().to_string()),
            h2c: h2c && !tls,
        })
    }
}

impl ConnectionPool {
    /// Send `request` on a waiting connection to its endpoint, or on a new one.
    /// `target` is the checked address a granted name resolved to; `h2c`
    /// says an `http://` endpoint speaks HTTP/2 with prior knowledge.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: http::Request<WasiBody>,
        options: RequestOptions,
        target: Option<SocketAddr>,
        h2c: bool,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let endpoint = Endpoint::of(request.uri(), target, h2c)?;
        let first_byte = options
            .first_byte_timeout
            .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
        if let Some(sender) = self.shared_with(&endpoint) {
            match self.send_http2(sender, request, first_byte, options).await {
                Ok(response) => return Ok(response),
                // The connection went away before the request was sent.
                Err(Unsent::Back(back)) => request = back,
                Err(Unsent::Failed(err)) => return Err(err),
            }
        }
        let uri = request.uri().clone();
        // HTTP/1.1's request line carries the path only (no proxy in between).
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<http::Uri>()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        *request.uri_mut() = path;
        while let Some(mut sender) = self.take(&endpoint) {
            // A waiting connection is ready at once, or closed; one that is
            // neither within the first-byte timeout is not used.
            if !matches!(
                tokio::time::timeout(first_byte, sender.ready()).await,
                Ok(Ok(()))
            ) {
                continue;
            }
            match tokio::time::timeout(first_byte, sender.try_send_request(request)).await {
                Ok(Ok(response)) => return Ok(self.wrap(response, sender, endpoint, options)),
                Err(_) => return Err(HttpError::ConnectionReadTimeout),
                Ok(Err(mut failed)) => match failed.take_message() {
                    // Closed before anything was written: nothing was sent.
                    Some(unsent) => request = unsent,
                    None => return Err(failed.into_error().into()),
                },
            }
        }
        match self.connect(&endpoint, options).await? {
            Connected::Http1(mut sender) => {
                match tokio::time::timeout(first_byte, sender.try_send_request(request)).await {
                    Ok(Ok(response)) => Ok(self.wrap(response, sender, endpoint, options)),
                    Err(_) => Err(HttpError::ConnectionReadTimeout),
                    Ok(Err(failed)) => Err(failed.into_error().into()),
                }
            }
            Connected::Http2(sender) => {
                *request.uri_mut() = uri;
                self.share(endpoint, sender.clone());
                match self.send_http2(sender, request, first_byte, options).await {
                    Ok(response) => Ok(response),
                    Err(Unsent::Back(_)) => Err(HttpError::ConnectionTerminated),
                    Err(Unsent::Failed(err)) => Err(err),
                }
            }
        }
    }

    /// Send `request` as a stream of a shared HTTP/2 connection. Its URI
    /// stays absolute (`:scheme` and `:authority`); the `Host` header the
    /// address check may have set becomes the `:authority`.
    async fn send_http2(
        &self,
        mut sender: http2::SendRequest<WasiBody>,
        mut request: http::Request<WasiBody>,
        first_byte: Duration,
        options: RequestOptions,
    ) -> Result<http::Response<WasiBody>, Unsent> {
        let host = request.headers_mut().remove(http::header::HOST);
        if let Some(host) = &host {
            let mut parts = request.uri().clone().into_parts();
            if let Ok(authority) = http::uri::Authority::try_from(host.as_bytes()) {
                parts.authority = Some(authority);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
            }
        }
        // Handed back as it came, for a connection of another protocol.
        let back = |mut request: http::Request<WasiBody>| {
            if let Some(host) = host.clone() {
                request.headers_mut().insert(http::header::HOST, host);
            }
            Unsent::Back(request)
        };
        if !matches!(
            tokio::time::timeout(first_byte, sender.ready()).await,
            Ok(Ok(()))
        ) {
            return Err(back(request));
        }
        match tokio::time::timeout(first_byte, sender.try_send_request(request)).await {
            Ok(Ok(response)) => Ok(wrap_body(response, options, None)),
            Err(_) => Err(Unsent::Failed(HttpError::ConnectionReadTimeout)),
            Ok(Err(mut failed)) => match failed.take_message() {
                Some(unsent) => Err(back(unsent)),
                None => Err(Unsent::Failed(failed.into_error().into())),
            },
        }
    }

    /// The open HTTP/2 connection to `endpoint`, if there is one.
    fn shared_with(&self, endpoint: &Endpoint) -> Option<http2::SendRequest<WasiBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        idle.expire(now);
        let shared = idle.shared.iter_mut().find(|s| &s.endpoint == endpoint)?;
        shared.used = now;
        Some(shared.sender.clone())
    }

    /// Keep `sender`'s connection for the next requests to `endpoint`; the
    /// one it replaces ends once its streams have.
    fn share(self: &Arc<Self>, endpoint: Endpoint, sender: http2::SendRequest<WasiBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.shared.retain(|s| s.endpoint != endpoint);
        idle.shared.push(Shared {
            endpoint,
            sender,
            used: Instant::now(),
        });
        self.sweep_later(&mut idle);
    }

    /// Start the task that expires unused connections, unless it runs.
    fn sweep_later(self: &Arc<Self>, idle: &mut Idle) {
        if !idle.sweeping {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                idle.sweeping = true;
                runtime.spawn(sweep(Arc::downgrade(self)));
            }
        }
    }

    /// How many HTTP/2 connections are kept.
    #[cfg(test)]
    fn shared(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shared
            .len()
    }

    /// How many connections wait.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .len()
    }

    fn take(&self, endpoint: &Endpoint) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.expire(Instant::now());
        // The most recently used first: the likeliest to be still open.
        let at = idle
            .connections
            .iter()
            .rposition(|w| &w.endpoint == endpoint)?;
        Some(idle.connections.remove(at).sender)
    }

    fn give_back(self: &Arc<Self>, endpoint: Endpoint, sender: SendRequest<WasiBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.connections.len() >= MAX_IDLE_PER_ORIGIN {
            // The oldest goes; dropping its sender closes it.
            idle.connections.remove(0);
        }
        idle.connections.push(Waiting {
            endpoint,
            sender,
            since: Instant::now(),
        });
        self.sweep_later(&mut idle);
    }

    async fn connect(
        &self,
        endpoint: &Endpoint,
        options: RequestOptions,
    ) -> Result<Connected, HttpError> {
        let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let tcp =
            match tokio::time::timeout(connect_timeout, TcpStream::connect(&endpoint.dial)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(err)) => return Err(HttpError::Connect(err)),
                Err(_) => return Err(HttpError::ConnectionTimeout),
            };
        let _ = tcp.set_nodelay(true);
        let (stream, http2): (Box<dyn Stream>, bool) = match &endpoint.tls_name {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.trim_matches(['[', ']']))
                    .map_err(|_| HttpError::HttpRequestUriInvalid)?
                    .to_owned();
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(self.tls_config()));
                match tokio::time::timeout(connect_timeout, connector.connect(name, tcp)).await {
                    Ok(Ok(tls)) => {
                        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        (Box::new(tls), http2)
                    }
                    Ok(Err(err)) => return Err(HttpError::Tls(err)),
                    Err(_) => return Err(HttpError::ConnectionTimeout),
                }
            }
            None => (Box::new(tcp), endpoint.h2c),
        };
        let io = TokioIo::new(stream);
        if http2 {
            let (sender, connection) =
                tokio::time::timeout(connect_timeout, http2::Builder::new(Spawn).handshake(io))
                    .await
                    .map_err(|_| HttpError::ConnectionTimeout)??;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!("shared HTTP/2 connection ended: {err}");
                }
            });
            return Ok(Connected::Http2(sender));
        }
        let (sender, connection) = tokio::time::timeout(
            connect_timeout,
            hyper::client::conn::http1::Builder::new().handshake(io),
        )
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("pooled HTTP connection ended: {err}");
            }
        });
        Ok(Connected::Http1(sender))
    }

    fn tls_config(&self) -> &Arc<rustls::ClientConfig> {
        self.tls.get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let mut config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            // The server picks: HTTP/2 when it speaks it, else HTTP/1.1.
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        })
    }

    fn wrap(
        self: &Arc<Self>,
        response: http::Response<hyper::body::Incoming>,
        sender: SendRequest<WasiBody>,
        endpoint: Endpoint,
        options: RequestOptions,
    ) -> http::Response<WasiBody> {
        wrap_body(
            response,
            options,
            Some((Arc::clone(self), endpoint, sender)),
        )
    }
}

/// A request an HTTP/2 connection did not take: handed back when nothing
/// of it was sent, or the error when something was.
enum Unsent {
    Back(http::Request<WasiBody>),
    Failed(HttpError),
}

/// A pooled connection to give back once its response has been read.
type GiveBack = (Arc<ConnectionPool>, Endpoint, SendRequest<WasiBody>);

/// The response with its body timed between bytes (and, for HTTP/1.1,
/// giving its connection back once read to the end).
fn wrap_body(
    response: http::Response<hyper::body::Incoming>,
    options: RequestOptions,
    connection: Option<GiveBack>,
) -> http::Response<WasiBody> {
    let between = options
        .between_bytes_timeout
        .unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT)
        .max(Duration::from_nanos(1));
    response.map(|incoming| {
        let mut timeout = tokio::time::interval(between);
        timeout.reset();
        PooledBody {
            incoming,
            timeout,
            ended: false,
            connection,
        }
        .boxed_unsync()
    })
}

/// Drop connections unused for [`IDLE_TIMEOUT`] until none is left.
async fn sweep(pool: Weak<ConnectionPool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.expire(Instant::now());
        if idle.connections.is_empty() && idle.shared.is_empty() {
            idle.sweeping = false;
            return;
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// A response body that fails after the between-bytes timeout and gives its
/// connection back to the pool once read to the end.
struct PooledBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
    ended: bool,
    connection: Option<GiveBack>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                // The connection is in no state to carry another request.
                self.connection = None;
                Poll::Ready(Some(Err(if err.is_timeout() {
                    HttpError::HttpResponseTimeout
                } else {
                    HttpError::from(err)
                })))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                std::task::ready!(self.timeout.poll_tick(cx));
                self.connection = None;
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some((pool, endpoint, sender)) = self.connection.take() {
            if self.ended || self.incoming.is_end_stream() {
                pool.give_back(endpoint, sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty, Full};

    use super::*;

    /// A keep-alive HTTP/1.1 server answering "ok"; counts its connections.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr) -> http::Request<WasiBody> {
        let body = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut request = http::Request::new(body);
        *request.uri_mut() = format!("http://{addr}/").parse().unwrap();
        request
            .headers_mut()
            .insert(http::header::HOST, addr.to_string().parse().unwrap());
        request
    }

    async fn read(pool: Arc<ConnectionPool>, addr: SocketAddr) -> Bytes {
        let response = pool
            .send(get(addr), RequestOptions::default(), None, false)
            .await
            .unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn at_most_the_bound_waits_and_waiting_connections_are_reused() {
        let (addr, accepted) = server().await;
        let pool = Arc::new(ConnectionPool::default());
        // Requests in flight at once each need a connection of their own.
        let in_flight = MAX_IDLE_PER_ORIGIN + 8;
        let mut responses = Vec::new();
        for _ in 0..in_flight {
            responses.push(
                pool.send(get(addr), RequestOptions::default(), None, false)
                    .await
                    .unwrap(),
            );
        }
        for response in responses {
            assert_eq!(
                response.into_body().collect().await.unwrap().to_bytes(),
                "ok"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), in_flight);
        assert_eq!(pool.idle(), MAX_IDLE_PER_ORIGIN, "the rest were closed");
        for _ in 0..100 {
            assert_eq!(read(Arc::clone(&pool), addr).await, "ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            in_flight,
            "one after another, the requests reused a waiting connection"
        );
    }

    /// An h2c (HTTP/2, prior knowledge) server that answers each request
    /// with its HTTP version, its request trailer `x-sent` and the response
    /// trailer `grpc-status: 0`; counts its connections.
    async fn h2c_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let version = format!("{:?}", req.version());
                            let collected = req.into_body().collect().await.unwrap();
                            let sent = collected
                                .trailers()
                                .and_then(|t| t.get("x-sent"))
                                .map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            let body = Full::new(Bytes::from(format!("{version} {sent}")))
                                .with_trailers(async move { Some(Ok(trailers)) });
                            Ok::<_, std::convert::Infallible>(http::Response::new(body))
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(Spawn)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn h2c_requests_share_one_connection_and_carry_trailers_both_ways() {
        let (addr, accepted) = h2c_server().await;
        let pool = Arc::new(ConnectionPool::default());
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sent", "yes".parse().unwrap());
        let post = || {
            let trailers = trailers.clone();
            let body = Full::new(Bytes::from_static(b"message"))
                .with_trailers(async move { Some(Ok(trailers)) })
                .map_err(|never| match never {})
                .boxed_unsync();
            let mut request = http::Request::new(body);
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = format!("http://{addr}/lab.Lab/Echo").parse().unwrap();
            request
        };
        // Requests in flight at once are streams of one connection.
        let mut responses = Vec::new();
        for _ in 0..8 {
            responses.push(
                pool.send(post(), RequestOptions::default(), None, true)
                    .await
                    .unwrap(),
            );
        }
        for response in responses {
            assert_eq!(response.version(), http::Version::HTTP_2);
            let collected = response.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned().expect("response trailers");
            assert_eq!(trailers["grpc-status"], "0");
            assert_eq!(collected.to_bytes(), "HTTP/2.0 yes");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one shared connection");
        assert_eq!((pool.shared(), pool.idle()), (1, 0));
        // A plain HTTP/1.1 request to the same address is another endpoint.
        let (http1, _) = server().await;
        assert_eq!(read(Arc::clone(&pool), http1).await, "ok");
    }
}
