//! A test HTTP upstream on `127.0.0.1:0`.
//!
//! Routes: `/hello` (200 "hello"), `/redirect?to=URL` (302 to URL),
//! `/bytes?n=N` (N bytes, with Content-Length), `/chunked?n=N` (N bytes,
//! chunked, no length), `/stall` (headers, then nothing),
//! `/flaky?id=ID&fail=N[&status=S][&retry_after=R]` (status S, default 503,
//! with `Retry-After: R` when given, for the first N requests of ID; then
//! 200 "ok"). Every request is counted per `id` ([`Upstream::hits`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A running upstream; stops when dropped.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    hits: Hits,
    task: tokio::task::JoinHandle<()>,
}

type Hits = Arc<Mutex<HashMap<String, u32>>>;

impl Upstream {
    /// Start one on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let hits = Hits::default();
        let shared = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let hits = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| route(req, Arc::clone(&hits)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, hits, task }
    }

    /// How many requests carried `id=ID`.
    pub fn hits(&self, id: &str) -> u32 {
        self.hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `origin + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

async fn route(req: Request<Incoming>, hits: Hits) -> Result<Response<Body>, Infallible> {
    let count = query(&req, "id").map(|id| {
        let mut hits = hits.lock().unwrap_or_else(|e| e.into_inner());
        let n = hits.entry(id).or_insert(0);
        *n += 1;
        *n
    });
    let full = |status: u16, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)).boxed())
            .expect("response")
    };
    Ok(match req.uri().path() {
        "/hello" => full(200, b"hello".to_vec()),
        "/redirect" => {
            let to = query(&req, "to").unwrap_or_default();
            Response::builder()
                .status(302)
                .header("location", to)
                .body(Full::new(Bytes::new()).boxed())
                .expect("response")
        }
        "/bytes" => {
            let n: usize = query(&req, "n").and_then(|n| n.parse().ok()).unwrap_or(0);
            full(200, vec![b'x'; n])
        }
        "/chunked" => {
            let n: usize = query(&req, "n").and_then(|n| n.parse().ok()).unwrap_or(0);
            Response::new(Chunked { remaining: n }.boxed())
        }
        "/stall" => Response::new(Stalled.boxed()),
        "/flaky" => {
            let fail: u32 = query(&req, "fail")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if count.unwrap_or(0) <= fail {
                let status: u16 = query(&req, "status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(503);
                let mut response = full(status, b"try later".to_vec());
                if let Some(after) = query(&req, "retry_after") {
                    let value = after.replace("%20", " ").replace("%2C", ",");
                    response
                        .headers_mut()
                        .insert("retry-after", value.parse().expect("header value"));
                }
                response
            } else {
                full(200, b"ok".to_vec())
            }
        }
        _ => full(404, b"no such route".to_vec()),
    })
}

/// `remaining` bytes in 8 KiB chunks, with no declared length.
struct Chunked {
    remaining: usize,
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(8192);
        self.remaining -= len;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'y'; len])))))
    }
}

/// A body that never yields: the upstream stalls after its headers.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}
