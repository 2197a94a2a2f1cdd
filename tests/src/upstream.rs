//! A test HTTP upstream on `127.0.0.1:0`.
//!
//! Routes: `/hello` (200 "hello"), `/redirect?to=URL` (302 to URL),
//! `/bytes?n=N` (N bytes, with Content-Length), `/chunked?n=N` (N bytes,
//! chunked, no length), `/stall` (headers, then nothing),
//! `/flaky?id=ID&fail=N[&status=S][&retry_after=R]` (status S, default 503,
//! with `Retry-After: R` when given, for the first N requests of ID; then
//! 200 "ok"), `/close` (200 "bye" with `Connection: close`, and the
//! connection closed after it). Every request is counted per `id`
//! ([`Upstream::hits`]), every accepted connection too
//! ([`Upstream::connections`]).
//!
//! Auth routes answer 200 "welcome" with the right credentials and 401
//! otherwise: `/auth/bearer` (`Bearer s3cret-token`), `/auth/basic`
//! (`alice:pa55word`), `/auth/header` (`X-Api-Key: k3y-v4lue`),
//! `/auth/query` (`api_key=k3y-v4lue`), `/auth/jwt` (HS256 signed with
//! `jwt-signing-key`, unexpired), `/auth/oauth` (the latest token issued by
//! `/token` to client `app` with secret `cl1ent-secret`, unless revoked).
//!
//! A small API: `/api/items` lists 25 items `{"id", "name", "status"}` as
//! `{"data": [...], "next": token|null}`, paged by `offset`+`limit`,
//! `page`+`per_page` (1-based), `cursor`+`limit` (token also in
//! `X-Next-Cursor`) or `after`+`limit` (with a `Link: rel="next"` header),
//! filtered by `status`; `POST /api/items` echoes the item with `"created":
//! true`; `/api/err/CODE` answers CODE (429 with `Retry-After: 7`).
//!
//! `POST /graphql` fakes a GraphQL server by looking at the document: `items`
//! is a Relay connection over the same 25 items (`first`, `after`, `status`),
//! `list` takes `offset`/`limit`, a `mutation` echoes `$input` with `id: 100`,
//! `boom` answers an `errors` array, `secret` a FORBIDDEN error.

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
    tokens: Arc<Mutex<Tokens>>,
    accepted: Arc<std::sync::atomic::AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

type Hits = Arc<Mutex<HashMap<String, u32>>>;

/// Secrets the auth routes expect.
pub const BEARER_TOKEN: &str = "s3cret-token";
/// Basic auth password of `alice`.
pub const BASIC_PASSWORD: &str = "pa55word";
/// The API key.
pub const API_KEY: &str = "k3y-v4lue";
/// The JWT signing key.
pub const JWT_KEY: &str = "jwt-signing-key";
/// The OAuth2 client secret of client `app`.
pub const CLIENT_SECRET: &str = "cl1ent-secret";

/// OAuth2 token endpoint state.
#[derive(Debug, Default)]
struct Tokens {
    issued: u32,
    revoked: bool,
    expires_in: u64,
}

impl Upstream {
    /// Start one on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let hits = Hits::default();
        let shared = Arc::clone(&hits);
        let tokens = Arc::new(Mutex::new(Tokens {
            expires_in: 3600,
            ..Tokens::default()
        }));
        let shared_tokens = Arc::clone(&tokens);
        let accepted = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let hits = Arc::clone(&shared);
                let tokens = Arc::clone(&shared_tokens);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        route(req, Arc::clone(&hits), Arc::clone(&tokens))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            hits,
            tokens,
            accepted,
            task,
        }
    }

    /// How many TCP connections it accepted.
    pub fn connections(&self) -> u32 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// OAuth2 tokens issued so far.
    pub fn tokens_issued(&self) -> u32 {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).issued
    }

    /// Make `/token` issue tokens valid for `seconds`.
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expires_in = seconds;
    }

    /// Reject the current token until a new one is issued.
    pub fn revoke_token(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .revoked = true;
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

fn header<'r>(req: &'r Request<Incoming>, name: &str) -> &'r str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn jwt_valid(token: &str) -> bool {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(JWT_KEY.as_bytes())
    else {
        return false;
    };
    mac.update(format!("{header}.{payload}").as_bytes());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Ok(signature) = b64.decode(signature) else {
        return false;
    };
    if mac.verify_slice(&signature).is_err() {
        return false;
    }
    let Ok(claims) = b64.decode(payload) else {
        return false;
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&claims) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    claims["exp"].as_u64().is_some_and(|exp| exp > now) && claims["sub"] == "sluice-test"
}

async fn route(
    req: Request<Incoming>,
    hits: Hits,
    tokens: Arc<Mutex<Tokens>>,
) -> Result<Response<Body>, Infallible> {
    use base64::Engine as _;
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
        "/close" => Response::builder()
            .header("connection", "close")
            .body(Full::new(Bytes::from_static(b"bye")).boxed())
            .expect("response"),
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
        "/hold" => {
            // Headers only after `ms` milliseconds: a slow first byte.
            let ms = query(&req, "ms")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            full(200, b"late".to_vec())
        }
        path if path.starts_with("/auth/") => {
            let ok = match path {
                "/auth/bearer" => header(&req, "authorization") == format!("Bearer {BEARER_TOKEN}"),
                "/auth/basic" => {
                    let pair = base64::engine::general_purpose::STANDARD
                        .encode(format!("alice:{BASIC_PASSWORD}"));
                    header(&req, "authorization") == format!("Basic {pair}")
                }
                "/auth/header" => header(&req, "x-api-key") == API_KEY,
                "/auth/query" => query(&req, "api_key").as_deref() == Some(API_KEY),
                "/auth/jwt" => header(&req, "authorization")
                    .strip_prefix("Bearer ")
                    .is_some_and(jwt_valid),
                "/auth/oauth" => {
                    let tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
                    !tokens.revoked
                        && header(&req, "authorization") == format!("Bearer tok-{}", tokens.issued)
                }
                _ => false,
            };
            if ok {
                full(200, b"welcome".to_vec())
            } else {
                full(401, b"who are you?".to_vec())
            }
        }
        "/token" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let form = String::from_utf8_lossy(&body).to_string();
            let fields: HashMap<&str, &str> =
                form.split('&').filter_map(|p| p.split_once('=')).collect();
            if fields.get("grant_type") != Some(&"client_credentials")
                || fields.get("client_id") != Some(&"app")
                || fields.get("client_secret") != Some(&CLIENT_SECRET)
            {
                return Ok(full(401, b"{\"error\": \"invalid_client\"}".to_vec()));
            }
            let mut tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.issued += 1;
            tokens.revoked = false;
            let reply = serde_json::json!({
                "access_token": format!("tok-{}", tokens.issued),
                "token_type": "Bearer",
                "expires_in": tokens.expires_in,
            });
            full(200, reply.to_string().into_bytes())
        }
        "/api/items" if req.method() == hyper::Method::POST => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut item: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            item["created"] = serde_json::json!(true);
            full(201, item.to_string().into_bytes())
        }
        "/api/items" => items_page(&req),
        "/api/echo-items" => echo_items_page(&req),
        "/api/rel-items" => rel_items_page(&req),
        "/graphql" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            full(200, graphql(&request).to_string().into_bytes())
        }
        path if path.starts_with("/api/err/") => {
            let code: u16 = path["/api/err/".len()..].parse().unwrap_or(500);
            let mut response = full(code, b"bad thing happened".to_vec());
            if code == 429 {
                response
                    .headers_mut()
                    .insert("retry-after", "7".parse().expect("header"));
            }
            response
        }
        "/flaky" => {
            let fail: u32 = query(&req, "fail")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let status: u16 = query(&req, "status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(503);
            let retry_after = query(&req, "retry_after");
            // Read the whole request body first, as a real API would.
            let _ = req.into_body().collect().await;
            if count.unwrap_or(0) <= fail {
                let mut response = full(status, b"try later".to_vec());
                if let Some(after) = retry_after {
                    let value = percent_encoding::percent_decode_str(&after).decode_utf8_lossy();
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

/// The fake GraphQL server's answer.
fn graphql(request: &serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let document = request["query"].as_str().unwrap_or("");
    let vars = &request["variables"];
    if document.contains("boom") {
        return json!({ "data": null, "errors": [{ "message": "Cannot query field `boom`" }, { "message": "second problem" }] });
    }
    if document.contains("secret") {
        return json!({ "errors": [{ "message": "not allowed", "extensions": { "code": "FORBIDDEN" } }] });
    }
    if document.contains("createUser") {
        // json-graphql-server's generated mutation: one argument per field.
        return match (vars["name"].as_str(), vars["team"].as_str()) {
            (Some(name), Some(team)) => {
                json!({ "data": { "createUser": { "id": "200", "name": name, "team": team } } })
            }
            _ => {
                json!({ "errors": [{ "message": "Variable \"$name\" of required type \"String!\" was not provided." }] })
            }
        };
    }
    if document.contains("allUsers") {
        // json-graphql-server's lists: `page` counts from 0, `perPage` rows each.
        let page = vars["page"].as_u64().unwrap_or(0) as usize;
        let per_page = vars["perPage"].as_u64().unwrap_or(25) as usize;
        let users: Vec<_> = (1..=120)
            .map(|i| json!({ "id": i.to_string(), "name": format!("user-{i}"), "team": format!("t{}", i % 3) }))
            .skip(page * per_page)
            .take(per_page)
            .collect();
        return json!({ "data": { "allUsers": users } });
    }
    if document.trim_start().starts_with("mutation") {
        let mut item = vars["input"].clone();
        item["id"] = json!(100);
        return json!({ "data": { "createItem": item } });
    }
    let items: Vec<serde_json::Value> = (1..=25)
        .map(|i| json!({ "id": i, "name": format!("item-{i}"), "status": if i % 2 == 0 { "even" } else { "odd" } }))
        .filter(|item| vars["status"].as_str().is_none_or(|s| item["status"] == s))
        .collect();
    if document.contains("list") {
        let offset = vars["offset"].as_u64().unwrap_or(0) as usize;
        let limit = vars["limit"].as_u64().unwrap_or(10) as usize;
        let page: Vec<_> = items.iter().skip(offset).take(limit).cloned().collect();
        return json!({ "data": { "list": page } });
    }
    let first = vars["first"].as_u64().unwrap_or(10) as usize;
    let start = vars["after"]
        .as_str()
        .and_then(|c| c.strip_prefix("cursor-"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let edges: Vec<_> = items
        .iter()
        .enumerate()
        .skip(start)
        .take(first)
        .map(|(i, node)| json!({ "node": node, "cursor": format!("cursor-{}", i + 1) }))
        .collect();
    let end = start + edges.len();
    json!({ "data": { "items": {
        "edges": edges,
        "pageInfo": { "hasNextPage": end < items.len(), "endCursor": format!("cursor-{end}") }
    } } })
}

/// One page of `/api/items`.
fn items_page(req: &Request<Incoming>) -> Response<Body> {
    let number = |key: &str| query(req, key).and_then(|v| v.parse::<usize>().ok());
    let status = query(req, "status");
    let items: Vec<serde_json::Value> = (1..=25)
        .map(|i| serde_json::json!({ "id": i, "name": format!("item-{i}"), "status": if i % 2 == 0 { "even" } else { "odd" } }))
        .filter(|item| status.as_deref().is_none_or(|s| item["status"] == s))
        .collect();
    let limit = number("limit").or_else(|| number("per_page")).unwrap_or(10);
    let start = number("offset")
        .or_else(|| number("page").map(|p| p.saturating_sub(1) * limit))
        .or_else(|| {
            query(req, "cursor").and_then(|c| c.strip_prefix('c').and_then(|n| n.parse().ok()))
        })
        .or_else(|| number("after"))
        .unwrap_or(0);
    let page: Vec<_> = items.iter().skip(start).take(limit).cloned().collect();
    let end = start + page.len();
    let more = end < items.len();
    let next = more.then(|| format!("c{end}"));
    let body = serde_json::json!({ "data": page, "next": next });
    let mut response = Response::builder().status(200);
    if more {
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let status_param = status.map(|s| format!("&status={s}")).unwrap_or_default();
        response = response
            .header("x-next-cursor", format!("c{end}"))
            .header("link", format!("<http://{host}/api/items?after={end}&limit={limit}{status_param}>; rel=\"next\", <http://{host}/api/items>; rel=\"first\""));
    }
    response
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("response")
}

/// The offset of the next page of an `items_page` response, if there is one.
fn next_offset(response: &Response<Body>) -> Option<String> {
    response
        .headers()
        .get("x-next-cursor")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.strip_prefix('c'))
        .map(str::to_string)
}

/// `/api/items` as an upstream that builds its URLs from the request URL (as
/// many do): the next `Link`, `Location` and `Content-Location` carry the
/// request's whole query, and `X-Echo-*` headers echo its credentials.
fn echo_items_page(req: &Request<Incoming>) -> Response<Body> {
    let mut response = items_page(req);
    let host = header(req, "host").to_string();
    let query: Vec<&str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("after="))
        .collect();
    let next = next_offset(&response);
    let here = format!("http://{host}{}", req.uri());
    let headers = response.headers_mut();
    headers.remove("link");
    if let Some(end) = next {
        let mut params = query.clone();
        let after = format!("after={end}");
        params.push(&after);
        let link = format!(
            "<http://{host}/api/echo-items?{}>; rel=\"next\"",
            params.join("&")
        );
        headers.insert("link", link.parse().expect("header"));
    }
    for name in ["location", "content-location"] {
        headers.insert(name, here.parse().expect("header"));
    }
    for (echo, from) in [
        ("x-echo-authorization", "authorization"),
        ("x-echo-api-key", "x-api-key"),
    ] {
        if let Ok(value) = header(req, from).parse() {
            headers.insert(echo, value);
        }
    }
    response
}

/// `/api/items` with RFC 8288 as real servers write it: a relative `next`
/// target whose query holds a comma (`_sort=team,id`), `rel="next last"`,
/// a quoted parameter holding a comma, and the `first` link in a second
/// `Link` field. With `nolink=1` in the query, no `Link` header at all.
fn rel_items_page(req: &Request<Incoming>) -> Response<Body> {
    let mut response = items_page(req);
    let next = next_offset(&response);
    let nolink = query(req, "nolink").is_some();
    let limit = query(req, "limit").unwrap_or_else(|| "10".into());
    let headers = response.headers_mut();
    headers.remove("link");
    if nolink {
        return response;
    }
    if let Some(end) = next {
        let link = format!(
            "</api/rel-items?_sort=team,id&after={end}&limit={limit}>; title=\"page, next\"; rel=\"next last\""
        );
        headers.append("link", link.parse().expect("header"));
    }
    headers.append(
        "link",
        "</api/rel-items?_sort=team,id>; rel=first"
            .parse()
            .expect("header"),
    );
    response
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
