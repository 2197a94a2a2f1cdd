//! `sluice serve` under load: 64 keep-alive clients on loopback invoking a
//! small fetch, against a native hyper handler doing the same work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sluice_server::{Server, ServerConfig};
use sluice_tests::client::api;
use tokio::net::TcpListener;

use crate::report::{Report, Row, Target};
use crate::sys::percentile_us;
use crate::Scale;

const CLIENTS: usize = 64;
const ADMIN: &str = "bench-admin";
const BODY: &str = r#"{"resource":"people.ndjson","pagination":{"page_size":10}}"#;

/// Results of one load run.
struct Load {
    requests: u64,
    failures: u64,
    latencies: Vec<Duration>,
    took: Duration,
}

/// `CLIENTS` clients, one keep-alive connection each, sending `method` (POST
/// carries `BODY`) to `path` until `duration` is up.
async fn load(
    addr: SocketAddr,
    method: &'static str,
    path: String,
    token: Option<String>,
    duration: Duration,
) -> Load {
    let deadline = Instant::now() + duration;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (path, token) = (path.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let mut req = hyper::Request::builder()
                    .method(method)
                    .uri(path.as_str())
                    .header("host", addr.to_string())
                    .header("content-type", "application/json");
                if let Some(token) = &token {
                    req = req.header("authorization", format!("Bearer {token}"));
                }
                let body: &'static [u8] = if method == "POST" {
                    BODY.as_bytes()
                } else {
                    b""
                };
                let req = req.body(Full::new(Bytes::from_static(body))).unwrap();
                let sent = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(res) => {
                        let ok = res.status() == 200;
                        ok && res.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                if !ok {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut result = Load {
        requests: 0,
        failures: 0,
        latencies: Vec::new(),
        took: Duration::ZERO,
    };
    for task in tasks {
        let (latencies, failures) = task.await.unwrap();
        result.requests += latencies.len() as u64;
        result.failures += failures;
        result.latencies.extend(latencies);
    }
    result.took = began.elapsed();
    result
}

/// The native handler: parse the request, read and parse the file, answer the page.
async fn native_server(file: std::path::PathBuf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let file = Arc::new(file);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            let file = Arc::clone(&file);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let file = Arc::clone(&file);
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let spec: Value = serde_json::from_slice(&body).unwrap();
                            let size =
                                spec["pagination"]["page_size"].as_u64().unwrap_or(100) as usize;
                            let text = tokio::fs::read_to_string(file.as_path()).await.unwrap();
                            let records: Vec<Value> = text
                                .lines()
                                .filter(|l| !l.trim().is_empty())
                                .take(size)
                                .map(|l| json!({ "data": serde_json::from_str::<Value>(l).unwrap() }))
                                .collect();
                            let reply = json!({ "records": records, "total_count": null, "next_cursor": null });
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(reply.to_string())))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A server with one tenant and one instance of the file connector; returns its address, the token and the fetch path.
async fn sluice_server(
    dir: &std::path::Path,
    warm_sessions: usize,
) -> (SocketAddr, String, String) {
    let server = Server::bind(ServerConfig {
        warm_sessions,
        admin_token: Some(ADMIN.into()),
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir)
    })
    .await
    .expect("server binds");
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    let tenant = api(addr, Some(ADMIN)).post_json("/v1/tenants", &json!({
            "name": "bench", "quotas": { "max_concurrent": CLIENTS }, "ceiling": { "files": true }
        }))
    .await
    .json();
    let tenant_id = tenant["id"].as_str().unwrap().to_string();
    let token = api(addr, Some(ADMIN))
        .post_json(&format!("/v1/tenants/{tenant_id}/tokens"), &json!({}))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let files = dir.join("files").join(&tenant_id).join("data");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::copy(
        sluice_tests::root().join("examples/data/people.ndjson"),
        files.join("people.ndjson"),
    )
    .unwrap();
    let bytes = std::fs::read(sluice_tests::guest("sluice_file")).unwrap();
    let connector = api(addr, Some(&token))
        .post("/v1/connectors", bytes)
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let instance = api(addr, Some(&token))
        .post_json(
            "/v1/instances",
            &json!({
                "connector": connector, "config": { "root": "/data" },
                "grants": { "files": [{ "host": "data", "guest": "/data", "mode": "ro" }] }
            }),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (addr, token, format!("/v1/instances/{instance}/fetch"))
}

pub async fn run(scale: Scale, report: &mut Report) {
    let duration = Duration::from_secs(scale.pick(10, 3));
    let dir = tempfile::tempdir().unwrap();
    let (addr, token, path) = sluice_server(dir.path(), sluice_server::DEFAULT_WARM_SESSIONS).await;
    let check = api(addr, Some(&token))
        .post_json(&path, &serde_json::from_str(BODY).unwrap())
        .await;
    assert_eq!(
        check.status,
        200,
        "{}",
        String::from_utf8_lossy(&check.body)
    );
    let records = check.json()["records"].as_array().map_or(0, Vec::len);
    let warmup = Duration::from_millis(500);
    let _ = load(addr, "POST", path.clone(), Some(token.clone()), warmup).await;
    let mut sluice = load(addr, "POST", path.clone(), Some(token.clone()), duration).await;
    // The same server answering without a guest: authentication, store, JSON, HTTP.
    let instance = path.trim_end_matches("/fetch").to_string();
    let plumbing = load(addr, "GET", instance, Some(token), duration).await;
    // The other choice: a fresh session for every invocation.
    let fresh_dir = tempfile::tempdir().unwrap();
    let (fresh_addr, fresh_token, fresh_path) = sluice_server(fresh_dir.path(), 0).await;
    let fresh = load(fresh_addr, "POST", fresh_path, Some(fresh_token), duration).await;

    let native_addr = native_server(sluice_tests::root().join("examples/data/people.ndjson")).await;
    let _ = load(native_addr, "POST", "/fetch".into(), None, warmup).await;
    let mut native = load(native_addr, "POST", "/fetch".into(), None, duration).await;

    let rps = |l: &Load| l.requests as f64 / l.took.as_secs_f64();
    let note = format!(
        "{CLIENTS} keep-alive clients for {} s on loopback, a fetch of {records} records from the file connector (warm sessions, the default); \
         sluice: {} requests, {} failed; native: {} requests, {} failed; load generator in the same process",
        duration.as_secs(),
        sluice.requests,
        sluice.failures,
        native.requests,
        native.failures
    );
    report.add(Row {
        metric: format!("server: invocations/s, {CLIENTS} clients"),
        unit: "req/s",
        sluice: rps(&sluice),
        baseline: rps(&native),
        target: Target::RatioAtLeast(0.5),
        note: note.clone(),
    });
    let mut fresh_latencies = fresh.latencies.clone();
    report.add(Row {
        metric: format!("server: invocations/s, {CLIENTS} clients, --warm-sessions 0"),
        unit: "req/s",
        sluice: rps(&fresh),
        baseline: rps(&native),
        target: Target::Informational,
        note: format!(
            "as above with a fresh session for every invocation (p99 {:.1} ms; {} requests, {} failed)",
            percentile_us(&mut fresh_latencies, 99.0) / 1e3,
            fresh.requests,
            fresh.failures
        ),
    });
    report.add(Row {
        metric: format!("server: GET instance (no guest), {CLIENTS} clients"),
        unit: "req/s",
        sluice: rps(&plumbing),
        baseline: rps(&native),
        target: Target::Informational,
        note: format!(
            "the same server and clients reading the instance record instead of invoking it: what the HTTP, \
             authentication, store and JSON layers cost without a guest ({} requests, {} failed)",
            plumbing.requests, plumbing.failures
        ),
    });
    report.add(Row {
        metric: "server: latency p50".into(),
        unit: "ms",
        sluice: percentile_us(&mut sluice.latencies, 50.0) / 1e3,
        baseline: percentile_us(&mut native.latencies, 50.0) / 1e3,
        target: Target::Informational,
        note: note.clone(),
    });
    report.add(Row {
        metric: "server: latency p99".into(),
        unit: "ms",
        sluice: percentile_us(&mut sluice.latencies, 99.0) / 1e3,
        baseline: percentile_us(&mut native.latencies, 99.0) / 1e3,
        target: Target::AtMost(10.0),
        note,
    });
}
