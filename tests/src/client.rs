//! A minimal HTTP client for the server tests (one connection per request).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A response: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as NDJSON lines.
    pub fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

/// A client for one server, acting as one caller (a bearer token, or none):
/// `api(addr, Some(&token)).get("/v1/instances")`.
#[derive(Debug, Clone)]
pub struct Api {
    addr: SocketAddr,
    token: Option<String>,
}

/// The client for the server at `addr`, sending `token` (when given) as its bearer token.
pub fn api(addr: SocketAddr, token: Option<&str>) -> Api {
    Api {
        addr,
        token: token.map(str::to_string),
    }
}

impl Api {
    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, Vec::new()).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, Vec::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, body.to_string().into_bytes())
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.request("PUT", path, body.to_string().into_bytes())
            .await
    }

    /// `POST path` with raw bytes (an upload).
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Reply {
        self.request("POST", path, body).await
    }

    /// `PUT path` with raw bytes (a file).
    pub async fn put(&self, path: &str, body: Vec<u8>) -> Reply {
        self.request("PUT", path, body).await
    }

    /// Any method, any body.
    pub async fn request(&self, method: &str, path: &str, body: Vec<u8>) -> Reply {
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        send_with(self.addr, method, path, &headers, body).await
    }
}

/// Send one request with the given headers (besides `host`).
pub async fn send_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}
