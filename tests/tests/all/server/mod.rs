//! `sluice serve` over real HTTP: tenants, uploads, instances, invocations,
//! isolation, quotas, restarts.

use std::net::SocketAddr;

use serde_json::{json, Value};
use sluice_server::{Server, ServerConfig};
use sluice_tests::client::api;
use sluice_tests::guest;

mod lifecycle;
mod operations;
mod surface;

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
pub(crate) async fn instance_of(addr: SocketAddr, token: &str, name: &str, spec: Value) -> String {
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

/// Open a consumer lease on `instance` with `body`; its id.
pub(crate) async fn open_lease(
    addr: SocketAddr,
    token: &str,
    instance: &str,
    body: Value,
) -> String {
    let reply = api(addr, Some(token))
        .post_json(&format!("/v1/instances/{instance}/consumers"), &body)
        .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_str().unwrap().to_string()
}

/// Ask a lease for up to `max` records: the status and the answer.
pub(crate) async fn next(
    addr: SocketAddr,
    token: &str,
    instance: &str,
    lease: &str,
    max: u32,
) -> (u16, Value) {
    let reply = api(addr, Some(token))
        .post_json(
            &format!("/v1/instances/{instance}/consumers/{lease}/next"),
            &json!({ "max": max }),
        )
        .await;
    (reply.status, reply.json())
}

/// The record ids of a lease's `next` answer.
pub(crate) fn lease_ids(batch: &Value) -> Vec<String> {
    batch["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}
