//! `sluice serve` over real HTTP: tenants, uploads, instances, invocations,
//! isolation, quotas, restarts.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_server::{Server, ServerConfig};
use sluice_tests::client::api;
use sluice_tests::{guest, tempdir};

pub(crate) const ADMIN: &str = "admin-test-token";

pub(crate) async fn start(data_dir: &std::path::Path) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let server = Server::bind(ServerConfig {
        admin_token: Some(ADMIN.into()),
        max_upload_bytes: 4 << 20,
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), data_dir.to_path_buf())
    })
    .await
    .expect("server binds");
    let addr = server.local_addr().unwrap();
    (addr, tokio::spawn(server.run()))
}

/// A tenant and its token.
pub(crate) async fn tenant(addr: SocketAddr, spec: Value) -> (String, String) {
    let created = api(addr, Some(ADMIN)).post_json("/v1/tenants", &spec).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let token = api(addr, Some(ADMIN))
        .post_json(&format!("/v1/tenants/{id}/tokens"), &json!({}))
        .await;
    assert_eq!(token.status, 201);
    (id, token.json()["token"].as_str().unwrap().to_string())
}

/// An instance of the file connector reading the tenant's `data` directory
/// at `/data` (read-only); returns its id.
pub(crate) async fn data_instance(addr: SocketAddr, token: &str) -> String {
    let connector = upload(addr, token, "sluice_file").await;
    new_instance(
        addr,
        token,
        &json!({ "connector": connector, "config": { "root": "/data" },
                 "grants": { "files": [{ "host": "data", "guest": "/data" }] } }),
    )
    .await
}

/// Upload guest `name` and create an instance of it with `spec` (connector filled in); returns the instance id.
async fn instance_of(addr: SocketAddr, token: &str, name: &str, spec: Value) -> String {
    let connector = upload(addr, token, name).await;
    let mut spec = spec;
    spec["connector"] = json!(connector);
    new_instance(addr, token, &spec).await
}

/// Create an instance from `spec`; returns its id.
pub(crate) async fn new_instance(addr: SocketAddr, token: &str, spec: &Value) -> String {
    let created = api(addr, Some(token))
        .post_json("/v1/instances", spec)
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    created.json()["id"].as_str().unwrap().to_string()
}

pub(crate) async fn upload(addr: SocketAddr, token: &str, name: &str) -> String {
    let reply = api(addr, Some(token))
        .post("/v1/connectors", std::fs::read(guest(name)).unwrap())
        .await;
    assert!(
        reply.status == 201 || reply.status == 200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_whole_tenant_lifecycle_works_over_http() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) = tenant(
        addr,
        json!({ "name": "acme", "ceiling": { "files": true } }),
    )
    .await;
    let connector = upload(addr, &token, "sluice_file").await;
    let meta = api(addr, Some(&token))
        .get(&format!("/v1/connectors/{connector}"))
        .await
        .json();
    assert_eq!(meta["name"], "file");
    assert_eq!(connector.len(), 64);
    // The same bytes give the same id.
    assert_eq!(upload(addr, &token, "sluice_file").await, connector);

    let files = dir.path().join("files").join(&tenant_id).join("data");
    std::fs::create_dir_all(&files).unwrap();
    let rows: String = (1..=7).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(files.join("n.ndjson"), rows).unwrap();
    let created = api(addr, Some(&token))
        .post_json(
            "/v1/instances",
            &json!({
                "connector": connector,
                "config": { "root": "/data" },
                "secrets": { "api_key": "do-not-show" },
                "grants": { "files": [{ "host": "data", "guest": "/data", "mode": "ro" }] }
            }),
        )
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let instance = created.json()["id"].as_str().unwrap().to_string();
    let shown = api(addr, Some(&token))
        .get(&format!("/v1/instances/{instance}"))
        .await;
    assert_eq!(shown.json()["secrets"], json!({ "api_key": "***" }));
    assert!(!String::from_utf8_lossy(&shown.body).contains("do-not-show"));

    let health = api(addr, Some(&token))
        .post_json(&format!("/v1/instances/{instance}/health"), &json!({}))
        .await;
    assert_eq!(health.json(), json!({ "healthy": true }));
    let page = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/fetch"),
            &json!({
                "resource": "n.ndjson", "filters": [{ "field": "n", "op": "gt", "value": 5 }]
            }),
        )
        .await;
    assert_eq!(
        page.json()["records"],
        json!([{ "data": { "n": 6 } }, { "data": { "n": 7 } }])
    );

    let streamed = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/stream"),
            &json!({
                "resource": "n.ndjson", "batch_size": 3
            }),
        )
        .await;
    assert_eq!(streamed.headers["content-type"], "application/x-ndjson");
    let lines = streamed.lines();
    let records: Vec<&Value> = lines.iter().filter(|l| l.get("record").is_some()).collect();
    assert_eq!(records.len(), 7);
    let checkpoint = lines[3]["checkpoint"]
        .as_str()
        .expect("a checkpoint after the first batch")
        .to_string();
    let resumed = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/stream"),
            &json!({
                "resource": "n.ndjson", "checkpoint": checkpoint
            }),
        )
        .await;
    let ns: Vec<i64> = resumed
        .lines()
        .iter()
        .filter_map(|l| l["record"]["data"]["n"].as_i64())
        .collect();
    assert_eq!(ns, [4, 5, 6, 7]);

    let busy = api(addr, Some(&token))
        .delete(&format!("/v1/connectors/{connector}"))
        .await;
    assert_eq!(busy.status, 409, "a connector in use is not deleted");
    assert_eq!(
        api(addr, Some(&token))
            .delete(&format!("/v1/instances/{instance}"))
            .await
            .status,
        200
    );
    assert_eq!(
        api(addr, Some(&token))
            .delete(&format!("/v1/connectors/{connector}"))
            .await
            .status,
        200
    );
    assert_eq!(
        api(addr, Some(&token))
            .get(&format!("/v1/connectors/{connector}"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn tenants_cannot_see_or_touch_each_other() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    assert_tenants_isolated(addr).await;
}

/// Two tenants on the server at `addr` see nothing of each other (any store).
pub(crate) async fn assert_tenants_isolated(addr: SocketAddr) {
    let (_, alice) = tenant(addr, json!({ "name": "alice" })).await;
    let (_, bob) = tenant(addr, json!({ "name": "bob" })).await;
    let connector = upload(addr, &alice, "sluice_probe").await;
    let instance = new_instance(addr, &alice, &json!({ "connector": connector })).await;
    let missing = api(addr, Some(&bob))
        .get("/v1/instances/0000000000000000")
        .await;
    for (method, path) in [
        ("GET", format!("/v1/connectors/{connector}")),
        ("DELETE", format!("/v1/connectors/{connector}")),
        ("GET", format!("/v1/instances/{instance}")),
        ("DELETE", format!("/v1/instances/{instance}")),
        ("POST", format!("/v1/instances/{instance}/health")),
    ] {
        let reply = api(addr, Some(&bob)).request(method, &path, vec![]).await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert_eq!(
            reply.json()["error"]["code"],
            missing.json()["error"]["code"],
            "foreign ids look missing"
        );
    }
    let reply = api(addr, Some(&bob))
        .post_json("/v1/instances", &json!({ "connector": connector }))
        .await;
    assert_eq!(
        reply.status, 404,
        "bob cannot instantiate alice's connector"
    );
    assert_eq!(
        api(addr, Some(&bob)).get("/v1/instances").await.json()["items"],
        json!([])
    );
    assert_eq!(
        api(addr, Some(&bob)).get("/v1/connectors").await.json()["items"],
        json!([])
    );
    // Alice still has everything.
    assert_eq!(
        api(addr, Some(&alice))
            .get(&format!("/v1/instances/{instance}"))
            .await
            .status,
        200
    );
    // Tokens are not interchangeable with the admin token.
    assert_eq!(api(addr, Some(&alice)).get("/v1/tenants").await.status, 401);
    assert_eq!(api(addr, None).get("/v1/instances").await.status, 401);
}

#[tokio::test]
async fn bad_uploads_are_refused_and_nothing_is_stored() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    let module = wat::parse_str("(module)").unwrap();
    let wrong_world = wat::parse_str("(component)").unwrap();
    let probe = std::fs::read(guest("sluice_probe")).unwrap();
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (b"definitely not wasm".to_vec(), 422, "invalid_component"),
        (module, 422, "invalid_component"),
        (wrong_world, 422, "invalid_component"),
        (probe[..probe.len() / 3].to_vec(), 422, "invalid_component"),
        (vec![0u8; 5 << 20], 413, "too_large"),
    ];
    for (body, status, code) in cases {
        let reply = api(addr, Some(&token)).post("/v1/connectors", body).await;
        assert_eq!(
            reply.status,
            status,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let error = &reply.json()["error"];
        assert_eq!(error["code"], code);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        api(addr, Some(&token)).get("/v1/connectors").await.json()["items"],
        json!([])
    );
}

#[tokio::test]
async fn grants_outside_the_ceiling_are_refused_naming_them() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(
        addr,
        json!({ "name": "t", "ceiling": { "http": ["https://api.example.com"] } }),
    )
    .await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let cases = [
        (
            json!({ "http": { "origins": ["https://evil.example.com"] } }),
            "https://evil.example.com",
        ),
        (
            json!({ "sockets": { "tcp": ["127.0.0.1:5432"] } }),
            "127.0.0.1:5432",
        ),
        (
            json!({ "files": [{ "host": "../other", "guest": "/x" }] }),
            "../other",
        ),
        (
            json!({ "sql": [{ "name": "db", "url": "postgres://u@db.internal/x" }] }),
            "u@db.internal:5432/x (read-only)",
        ),
    ];
    for (grants, named) in cases {
        let reply = api(addr, Some(&token))
            .post_json(
                "/v1/instances",
                &json!({ "connector": connector, "grants": grants }),
            )
            .await;
        assert_eq!(
            reply.status,
            403,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["error"]["code"], "grant_outside_ceiling");
        assert_eq!(reply.json()["error"]["details"]["grant"], named);
    }
    let ok = api(addr, Some(&token)).post_json("/v1/instances", &json!({
            "connector": connector, "grants": { "http": { "origins": ["https://api.example.com"] } }
        }))
    .await;
    assert_eq!(ok.status, 201);
}

#[tokio::test]
async fn a_symlink_in_the_file_root_cannot_take_a_mount_outside_it() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "t", "ceiling": { "files": true } })).await;
    let root = dir.path().join("files").join(&tenant_id);
    std::fs::create_dir_all(&root).unwrap();
    let outside = tempdir();
    std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
    let connector = upload(addr, &token, "sluice_probe").await;
    let reply = api(addr, Some(&token))
        .post_json(
            "/v1/instances",
            &json!({
                "connector": connector, "grants": { "files": [{ "host": "escape", "guest": "/x" }] }
            }),
        )
        .await;
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["details"]["grant"], "escape");
}

#[tokio::test]
async fn concurrency_quota_answers_429_while_other_tenants_are_served() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, busy) = tenant(
        addr,
        json!({ "name": "busy", "quotas": { "max_concurrent": 1 } }),
    )
    .await;
    let (_, calm) = tenant(addr, json!({ "name": "calm" })).await;
    let busy_instance = instance_of(addr, &busy, "sluice_probe", json!({})).await;
    let calm_instance = instance_of(addr, &calm, "sluice_probe", json!({})).await;
    let slow_path = format!("/v1/instances/{busy_instance}/fetch");
    let slow_token = busy.clone();
    let slow = tokio::spawn(async move {
        api(addr, Some(&slow_token))
            .post_json(
                &slow_path,
                &json!({ "resource": "sleep", "options": { "ms": 1500 } }),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let refused = api(addr, Some(&busy))
        .post_json(
            &format!("/v1/instances/{busy_instance}/fetch"),
            &json!({ "resource": "env" }),
        )
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.json()["error"]["code"], "too_many_invocations");
    let served = api(addr, Some(&calm))
        .post_json(
            &format!("/v1/instances/{calm_instance}/fetch"),
            &json!({ "resource": "env" }),
        )
        .await;
    assert_eq!(served.status, 200);
    assert_eq!(slow.await.unwrap().status, 200);
}

#[tokio::test]
async fn a_hostile_connector_in_one_tenant_does_not_stop_another() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, evil) = tenant(
        addr,
        json!({ "name": "evil", "quotas": { "cpu_ms": 300, "memory_mib": 32 } }),
    )
    .await;
    let (_, good) = tenant(addr, json!({ "name": "good" })).await;
    let evil_instance = instance_of(addr, &evil, "sluice_probe", json!({})).await;
    let good_instance = instance_of(addr, &good, "sluice_probe", json!({})).await;
    for (action, code) in [("loop", "timeout"), ("memory-bomb", "limit_exceeded")] {
        let path = format!("/v1/instances/{evil_instance}/fetch");
        let token = evil.clone();
        let attack = tokio::spawn(async move {
            api(addr, Some(&token))
                .post_json(&path, &json!({ "resource": action }))
                .await
        });
        for _ in 0..5 {
            let reply = api(addr, Some(&good))
                .post_json(
                    &format!("/v1/instances/{good_instance}/fetch"),
                    &json!({ "resource": "env" }),
                )
                .await;
            assert_eq!(reply.status, 200);
        }
        let reply = attack.await.unwrap();
        assert_eq!(reply.json()["error"]["code"], code, "{action}");
    }
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempdir();
    let (addr, server) = start(dir.path()).await;
    let (_, token) = tenant(addr, json!({ "name": "durable" })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(addr, &token, &json!({ "connector": connector })).await;
    server.abort();
    let _ = server.await;
    let (addr, _server) = start(dir.path()).await;
    let reply = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/fetch"),
            &json!({ "resource": "env" }),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["records"], json!([{ "data": {} }]));
}

#[tokio::test]
async fn health_endpoints_and_the_error_shape() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    assert_eq!(api(addr, None).get("/healthz").await.status, 200);
    assert_eq!(api(addr, None).get("/readyz").await.status, 200);
    let reply = api(addr, Some(ADMIN)).get("/v1/nothing-here").await;
    let error = &reply.json()["error"];
    assert!(
        error["code"].is_string() && error["message"].is_string() && error["details"].is_object(),
        "{error}"
    );
}

/// The `/metrics` text, read with the admin token.
pub(crate) async fn metrics_text(addr: SocketAddr) -> String {
    let reply = api(addr, Some(ADMIN)).get("/metrics").await;
    String::from_utf8(reply.body.to_vec()).expect("metrics are text")
}

pub(crate) async fn metric(addr: SocketAddr, line_prefix: &str) -> Option<f64> {
    let text = metrics_text(addr).await;
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_client_disconnect_mid_stream_frees_the_session() {
    use http_body_util::BodyExt;
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "s", "ceiling": { "files": true } })).await;
    let files = dir.path().join("files").join(&tenant_id).join("data");
    std::fs::create_dir_all(&files).unwrap();
    let rows: String = (0..100_000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(files.join("big.ndjson"), rows).unwrap();
    let connector = upload(addr, &token, "sluice_file").await;
    let instance = new_instance(
        addr,
        &token,
        &json!({
            "connector": connector, "config": { "root": "/data" },
            "grants": { "files": [{ "host": "data", "guest": "/data" }] }
        }),
    )
    .await;
    {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let driver = tokio::spawn(connection);
        let body = json!({ "resource": "big.ndjson", "batch_size": 10 }).to_string();
        let request = hyper::Request::post(format!("/v1/instances/{instance}/stream"))
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let mut response = sender.send_request(request).await.unwrap();
        let first = response.body_mut().frame().await.unwrap().unwrap();
        assert!(!first.data_ref().unwrap().is_empty());
        assert_eq!(metric(addr, "sluice_active_sessions").await, Some(1.0));
        driver.abort();
    }
    let mut freed = false;
    for _ in 0..100 {
        if metric(addr, "sluice_active_sessions").await == Some(0.0) {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the session closed after the client left");
    let gone = format!("sluice_invocations_total{{tenant=\"{tenant_id}\",connector=\"{connector}\",operation=\"stream\",outcome=\"client_gone\"}}");
    assert_eq!(metric(addr, &gone).await, Some(1.0));
}

#[tokio::test]
async fn host_state_of_an_instance_outlives_each_invocation() {
    let upstream = sluice_tests::upstream::Upstream::start().await;
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) = tenant(
        addr,
        json!({ "name": "h", "ceiling": { "http": [upstream.origin()] } }),
    )
    .await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = api(addr, Some(&token)).post_json("/v1/instances", &json!({
        "connector": connector,
        "grants": { "http": { "origins": [upstream.origin()], "rate_limit": { "rps": 2, "burst": 1 } } }
    }))
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        let reply = api(addr, Some(&token))
            .post_json(
                &format!("/v1/instances/{instance}/fetch"),
                &json!({
                    "resource": "http", "options": { "url": upstream.url("/hello") }
                }),
            )
            .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let labels = format!(
        "{{tenant=\"{tenant_id}\",instance=\"{instance}\",origin=\"{}\"}}",
        upstream.origin()
    );
    assert_eq!(
        metric(
            addr,
            &format!("sluice_upstream_http_requests_total{labels}")
        )
        .await,
        Some(3.0)
    );
    assert_eq!(
        metric(
            addr,
            &format!("sluice_upstream_http_throttled_total{labels}")
        )
        .await,
        Some(2.0),
        "one shared bucket across invocations: only the first request was free"
    );
    let ok = format!("sluice_invocations_total{{tenant=\"{tenant_id}\",connector=\"{connector}\",operation=\"fetch\",outcome=\"ok\"}}");
    assert_eq!(metric(addr, &ok).await, Some(3.0));
}

#[tokio::test]
async fn the_readme_walkthrough_runs_against_a_spawned_server() {
    use std::io::BufRead;
    let dir = tempdir();
    let bundled = sluice_tests::bundled_connectors();
    let mut server = std::process::Command::new(sluice_tests::sluice_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--connectors")
        .arg(bundled.path())
        .env("SLUICE_ADMIN_TOKEN", "walkthrough-admin")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sluice serve starts");
    let stderr = server.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("serving http://"))
        .expect("the server says where it serves");
    let url = serving
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in `{serving}`"))
        .to_string();
    // Keep reading the server's logs (so it never writes into a closed pipe);
    // they are shown if the walkthrough fails.
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let refused = api(addr, Some("not-a-token")).get("/v1/instances").await;
    assert_eq!(refused.status, 401);
    let out = std::process::Command::new("sh")
        .arg("examples/walkthrough.sh")
        .current_dir(sluice_tests::root())
        .env("URL", &url)
        .env("SLUICE_ADMIN_TOKEN", "walkthrough-admin")
        .output()
        .expect("sh runs (the walkthrough needs curl and python3)");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed: {stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    );
    assert!(
        stdout.contains(r#"{"data":{"name":"Barbara Liskov","age":86}}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"checkpoint":"byte:127:line:3"}"#),
        "{stdout}"
    );
    // The request log says who, which instance, which error, and how long a
    // stream really took (the reader thread may still be draining the pipe).
    for _ in 0..50 {
        if logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.contains("stream ended"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs: Vec<Value> = logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["fields"].clone())
        .collect();
    let logged = |check: &dyn Fn(&Value) -> bool| logs.iter().any(check);
    assert!(
        logged(&|f| f["message"] == "request"
            && f["status"] == 401
            && f["error"] == "unauthorized"),
        "{logs:?}"
    );
    assert!(
        logged(&|f| f["message"] == "request"
            && f["path"].as_str().is_some_and(|p| p.ends_with("/fetch"))
            && f["tenant"].is_string()
            && f["instance"].is_string()),
        "{logs:?}"
    );
    assert!(
        logged(&|f| f["message"] == "stream ended"
            && f["outcome"] == "ok"
            && f["instance"].is_string()
            && f["ms"].is_u64()),
        "{logs:?}"
    );
}

#[tokio::test]
async fn bundled_connectors_are_offered_to_every_tenant() {
    let dir = tempdir();
    let bundled = sluice_tests::bundled_connectors();
    let server = Server::bind(ServerConfig {
        admin_token: Some(ADMIN.into()),
        max_upload_bytes: 4 << 20,
        builtin_dir: Some(bundled.path().to_path_buf()),
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf())
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let _server = tokio::spawn(server.run());
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    let names = |listed: &Value| -> Vec<String> {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let listed = api(addr, Some(&token)).get("/v1/connectors").await.json();
    // The shipped connectors, and never the hostile test probe.
    assert_eq!(names(&listed), ["file", "graphql", "postgres", "rest"]);
    let file = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "file" && c["builtin"] == true)
        .expect("the bundled file connector is listed")
        .clone();
    let id = file["id"].as_str().unwrap();
    let created = api(addr, Some(&token))
        .post_json("/v1/instances", &json!({ "connector": id }))
        .await;
    assert_eq!(created.status, 201);
    // Uploading its bytes again is the bundled one, listed once.
    let bytes = std::fs::read(guest("sluice_file")).unwrap();
    let again = api(addr, Some(&token)).post("/v1/connectors", bytes).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["id"], id);
    assert_eq!(again.json()["builtin"], true);
    let listed = api(addr, Some(&token)).get("/v1/connectors").await.json();
    assert_eq!(names(&listed), ["file", "graphql", "postgres", "rest"]);
    let deleted = api(addr, Some(&token))
        .delete(&format!("/v1/connectors/{id}"))
        .await;
    assert_eq!(deleted.status, 409);
    assert_eq!(deleted.json()["error"]["code"], "bundled_connector");
    assert!(deleted.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bundled with the server"));
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_each_one_answers() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) = tenant(addr, json!({ "name": "doc" })).await;
    let doc = api(addr, None).get("/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for (template, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            let path = template
                .replace("{tenant}", &tenant_id)
                .replace("{token}", "0000000000000000")
                .replace("{connector}", "0000000000000000")
                .replace("{instance}", "0000000000000000");
            let auth = match operation["security"][0]
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .as_deref()
            {
                Some("admin") => Some(ADMIN),
                Some(_) => Some(token.as_str()),
                None => None,
            };
            // Skip destroying the tenant the other calls use.
            if method == "delete" && template == "/v1/tenants/{tenant}" {
                continue;
            }
            let reply = api(addr, auth)
                .request(&method.to_uppercase(), &path, b"{}".to_vec())
                .await;
            if reply.status >= 400
                && reply
                    .headers
                    .get("content-type")
                    .is_some_and(|c| c == "application/json")
            {
                assert_ne!(
                    reply.json()["error"]["code"],
                    "no_route",
                    "{method} {template} is documented but not routed"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 24, "{checked} routes checked");
}

#[tokio::test]
async fn shutdown_drains_in_flight_invocations() {
    let dir = tempdir();
    let server = Server::bind(ServerConfig {
        admin_token: Some(ADMIN.into()),
        max_upload_bytes: 4 << 20,
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf())
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));
    let (_, token) = tenant(addr, json!({ "name": "d" })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(addr, &token, &json!({ "connector": connector })).await;
    let path = format!("/v1/instances/{instance}/fetch");
    let slow = tokio::spawn(async move {
        api(addr, Some(&token))
            .post_json(
                &path,
                &json!({ "resource": "sleep", "options": { "ms": 800 } }),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight invocation finished");
    running.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

/// Start `sluice serve` as a process on `data_dir`; returns it and its address.
fn spawn_server(data_dir: &std::path::Path) -> (std::process::Child, SocketAddr) {
    spawn_server_with(data_dir, &[])
}

/// Start `sluice serve` on `data_dir` with more arguments; returns it and its address.
pub(crate) fn spawn_server_with(
    data_dir: &std::path::Path,
    args: &[&str],
) -> (std::process::Child, SocketAddr) {
    spawn_serving(
        std::process::Command::new(sluice_tests::sluice_bin()),
        data_dir,
        args,
    )
}

/// Run `command` (the sluice binary, or a wrapper ending with it) as
/// `serve` on a free port with `data_dir` and `args`; returns it once it serves.
pub(crate) fn spawn_serving(
    mut command: std::process::Command,
    data_dir: &std::path::Path,
    args: &[&str],
) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("SLUICE_ADMIN_TOKEN", ADMIN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sluice serve starts");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| {
            seen.push(line.clone());
            line.contains("serving http://")
        })
        .unwrap_or_else(|| panic!("sluice serve did not start:\n{}", seen.join("\n")));
    std::thread::spawn(move || lines.for_each(drop));
    let addr = serving
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .expect("an address");
    (child, addr)
}

#[tokio::test]
async fn sigkill_during_updates_and_uploads_never_leaves_a_torn_object() {
    let dir = tempdir();
    let (mut child, addr) = spawn_server(dir.path());
    let (_, token) = tenant(addr, json!({ "name": "crash" })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(
        addr,
        &token,
        &json!({ "connector": connector, "config": { "v": 0 } }),
    )
    .await;
    let mut addr = addr;
    let mut updates_seen = 0;
    for round in 1..=5u64 {
        // Hammer the instance and re-upload components while the server is killed at a random point.
        let writer = {
            let (token, instance, connector) = (token.clone(), instance.clone(), connector.clone());
            tokio::spawn(async move {
                for i in 0..10_000u64 {
                    // Every value written in this round is at least 1 000 000 × round.
                    let v = round * 1_000_000 + i;
                    let body = json!({ "connector": connector, "config": { "v": v, "pad": "x".repeat(4096) } });
                    let stream = tokio::net::TcpStream::connect(addr).await;
                    if stream.is_err() {
                        return;
                    }
                    drop(stream);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        api(addr, Some(&token))
                            .put_json(&format!("/v1/instances/{instance}"), &body),
                    )
                    .await;
                    if i % 7 == 0 {
                        let bytes = std::fs::read(guest("sluice_file")).unwrap();
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            api(addr, Some(&token)).post("/v1/connectors", bytes),
                        )
                        .await;
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100 + fastrand_ms(round) % 400)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        writer.abort();
        let (next, next_addr) = spawn_server(dir.path());
        child = next;
        addr = next_addr;
        let shown = api(addr, Some(&token))
            .get(&format!("/v1/instances/{instance}"))
            .await;
        assert_eq!(
            shown.status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&shown.body)
        );
        let config = &shown.json()["config"];
        assert!(
            config["v"].is_u64(),
            "round {round}: the instance is whole: {config}"
        );
        updates_seen = updates_seen.max(config["v"].as_u64().unwrap_or(0));
        let listed = api(addr, Some(&token)).get("/v1/connectors").await;
        assert_eq!(listed.status, 200);
        for item in listed.json()["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            let got = api(addr, Some(&token))
                .get(&format!("/v1/connectors/{id}"))
                .await;
            assert_eq!(got.status, 200, "round {round}: connector {id} is whole");
        }
        let health = api(addr, Some(&token))
            .post_json(
                &format!("/v1/instances/{instance}/fetch"),
                &json!({ "resource": "env" }),
            )
            .await;
        assert_eq!(health.status, 200, "round {round}: the instance still runs");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        updates_seen > 0,
        "updates were landing when the server was killed"
    );
}

/// A pseudo-random number of milliseconds for round `n` (no RNG dependency in tests).
fn fastrand_ms(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    nanos.wrapping_mul(6364136223846793005).wrapping_add(n) >> 33
}

#[tokio::test]
async fn an_instance_config_that_breaks_the_connector_schema_is_refused_naming_each_field() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(addr, json!({ "name": "cfg" })).await;
    let connector = upload(addr, &token, "sluice_file").await;
    let bad = json!({ "connector": connector, "config": {
        "root": 5, "format": "xml", "csv": { "delimiter": ";;" }, "bogus": true
    } });
    let refused = api(addr, Some(&token))
        .post_json("/v1/instances", &bad)
        .await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "invalid_config");
    let mut problems: Vec<String> = error["details"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    problems.sort();
    assert_eq!(
        problems,
        [
            "/bogus: unknown field",
            "/csv/delimiter: \";;\" is longer than 1 character",
            "/format: \"xml\" is not one of \"csv\", \"json\" or \"ndjson\"",
            "/root: 5 is not of type \"string\"",
        ]
    );
    let listed = api(addr, Some(&token)).get("/v1/instances").await.json();
    assert_eq!(listed["items"], json!([]), "nothing was stored");

    // An update is checked the same way, and leaves the instance as it was.
    let good = json!({ "connector": connector, "config": { "root": "/data" } });
    let instance = new_instance(addr, &token, &good).await;
    let path = format!("/v1/instances/{instance}");
    let refused = api(addr, Some(&token)).put_json(&path, &bad).await;
    assert_eq!(refused.status, 422);
    let kept = api(addr, Some(&token)).get(&path).await.json();
    assert_eq!(kept["config"], json!({ "root": "/data" }));
}

#[tokio::test]
async fn uploads_past_the_stored_bytes_quota_are_refused_with_429() {
    // The two smallest guests, then the largest: the first two must fit in
    // 1 MiB and the three together must not.
    let mut guests: Vec<(u64, &str)> = [
        "sluice_file",
        "sluice_rest",
        "sluice_graphql",
        "sluice_postgres",
        "sluice_probe",
    ]
    .iter()
    .map(|name| (std::fs::metadata(guest(name)).unwrap().len(), *name))
    .collect();
    guests.sort();
    let chosen = [guests[0], guests[1], guests[guests.len() - 1]];
    let mib = 1u64 << 20;
    assert!(
        chosen[0].0 + chosen[1].0 <= mib && chosen.iter().map(|g| g.0).sum::<u64>() > mib,
        "the test needs two guests to fit in 1 MiB and three not to: {chosen:?}"
    );
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(
        addr,
        json!({ "name": "small", "quotas": { "max_stored_mib": 1 } }),
    )
    .await;
    upload(addr, &token, chosen[0].1).await;
    upload(addr, &token, chosen[1].1).await;
    let bytes = std::fs::read(guest(chosen[2].1)).unwrap();
    let refused = api(addr, Some(&token)).post("/v1/connectors", bytes).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["code"], "quota_exceeded");
    assert!(refused.headers.contains_key("retry-after"));
    let listed = api(addr, Some(&token)).get("/v1/connectors").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
}

/// How many sessions the server has instantiated so far.
async fn instantiations(addr: SocketAddr) -> f64 {
    metric(addr, "sluice_instantiation_seconds_count")
        .await
        .expect("the instantiation histogram is exported")
}

#[tokio::test]
async fn an_instance_keeps_a_warm_session_only_while_it_is_unchanged_and_healthy() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) = tenant(
        addr,
        json!({ "name": "warm", "ceiling": { "files": true } }),
    )
    .await;
    let files = dir.path().join("files").join(&tenant_id);
    for (sub, n) in [("a", 3), ("b", 5)] {
        std::fs::create_dir_all(files.join(sub)).unwrap();
        let rows: String = (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        std::fs::write(files.join(sub).join("n.ndjson"), rows).unwrap();
    }
    let connector = upload(addr, &token, "sluice_file").await;
    let spec = |sub: &str| {
        json!({ "connector": connector, "config": { "root": "/data" },
                "grants": { "files": [{ "host": sub, "guest": "/data", "mode": "ro" }] } })
    };
    let instance = new_instance(addr, &token, &spec("a")).await;
    let fetch = format!("/v1/instances/{instance}/fetch");
    let count = |reply: sluice_tests::client::Reply| {
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["records"].as_array().unwrap().len()
    };
    let body = json!({ "resource": "n.ndjson" });
    for _ in 0..3 {
        assert_eq!(
            count(api(addr, Some(&token)).post_json(&fetch, &body).await),
            3
        );
    }
    assert_eq!(
        instantiations(addr).await,
        1.0,
        "one session served all three"
    );
    assert_eq!(metric(addr, "sluice_warm_sessions ").await, Some(1.0));

    // A changed instance never gets the old session: the new grant is in force at once.
    let path = format!("/v1/instances/{instance}");
    let updated = api(addr, Some(&token)).put_json(&path, &spec("b")).await;
    assert_eq!(updated.status, 200);
    assert_eq!(
        count(api(addr, Some(&token)).post_json(&fetch, &body).await),
        5
    );
    assert_eq!(instantiations(addr).await, 2.0);

    // A failed invocation's session is not kept.
    let missing = api(addr, Some(&token))
        .post_json(&fetch, &json!({ "resource": "nope.ndjson" }))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        count(api(addr, Some(&token)).post_json(&fetch, &body).await),
        5
    );
    assert_eq!(instantiations(addr).await, 3.0);

    // Deleting the instance closes what it kept.
    let deleted = api(addr, Some(&token)).delete(&path).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(metric(addr, "sluice_warm_sessions ").await, Some(0.0));
}

#[tokio::test]
async fn with_warm_sessions_off_every_invocation_gets_a_fresh_session() {
    let dir = tempdir();
    let server = Server::bind(ServerConfig {
        admin_token: Some(ADMIN.into()),
        warm_sessions: 0,
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf())
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let _server = tokio::spawn(server.run());
    let (_, token) = tenant(addr, json!({ "name": "fresh" })).await;
    let instance = instance_of(addr, &token, "sluice_probe", json!({})).await;
    for _ in 0..3 {
        let reply = api(addr, Some(&token))
            .post_json(&format!("/v1/instances/{instance}/health"), &json!({}))
            .await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(instantiations(addr).await, 3.0);
    assert_eq!(metric(addr, "sluice_warm_sessions ").await, Some(0.0));
}

/// Every sample's family was typed before it (`# TYPE`), and no family is typed twice.
fn assert_prometheus_text(text: &str) {
    let mut typed: Vec<&str> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split_whitespace().next().unwrap();
            assert!(!typed.contains(&family), "`{family}` typed twice");
            typed.push(family);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(f)))
            .unwrap_or(name);
        assert!(
            typed.contains(&family),
            "sample `{name}` has no # TYPE before it"
        );
    }
}

/// Parses Prometheus text from stdin with prometheus_client; prints each
/// family's type and sample count as JSON.
const PROMETHEUS_PARSE: &str = "
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = text_string_to_metric_families(sys.stdin.read())
print(json.dumps({f.name: {'type': f.type, 'samples': len(f.samples)} for f in families}))
";

/// Run a Python `script` of `make pytools` with `input` on stdin; its stdout.
pub(crate) fn python_check(script: &str, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(sluice_tests::pytools_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the checker refused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn metrics_are_typed_count_denials_and_answer_head() {
    let upstream = sluice_tests::upstream::Upstream::start().await;
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let ceiling = json!({ "http": [upstream.origin()] });
    let (tenant_id, token) = tenant(addr, json!({ "name": "m", "ceiling": ceiling })).await;
    let instance = instance_of(
        addr,
        &token,
        "sluice_probe",
        json!({ "grants": { "http": { "origins": [upstream.origin()] } } }),
    )
    .await;
    let path = format!("/v1/instances/{instance}/fetch");
    let allowed = json!({ "resource": "http", "options": { "url": upstream.url("/hello") } });
    assert_eq!(
        api(addr, Some(&token))
            .post_json(&path, &allowed)
            .await
            .status,
        200
    );
    let denied = json!({ "resource": "http", "options": { "url": "http://127.0.0.1:9/x" } });
    assert_eq!(
        api(addr, Some(&token))
            .post_json(&path, &denied)
            .await
            .status,
        403
    );

    let text = metrics_text(addr).await;
    assert_prometheus_text(&text);
    // Prometheus's own client library parses it, every family typed.
    let families = python_check(PROMETHEUS_PARSE, text.as_bytes());
    let families: Value = serde_json::from_str(&families).unwrap();
    let families = families.as_object().unwrap();
    assert!(
        families.values().all(|f| f["type"] != "unknown"),
        "{families:?}"
    );
    assert_eq!(families["sluice_upstream_http_requests"]["type"], "counter");
    assert_eq!(families["sluice_denials"]["type"], "counter");
    assert!(
        text.contains("sluice_upstream_http_requests_total{"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sluice_denials_total{{tenant=\"{tenant_id}\",capability=\"http\"}} 1"
        )),
        "{text}"
    );
    for (path, token) in [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", Some(ADMIN)),
    ] {
        let head = api(addr, token).request("HEAD", path, vec![]).await;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty());
    }
}
