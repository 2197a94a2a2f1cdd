//! What the server shows: health, errors, the README walkthrough, bundled
//! connectors, the OpenAPI document and metrics.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_server::{Server, ServerConfig};
use sluice_tests::client::api;
use sluice_tests::{guest, tempdir};

use super::{instance_of, metrics_text, python_check, start, tenant, ADMIN};

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
    assert_eq!(
        names(&listed),
        [
            "file", "graphql", "grpc", "kafka", "mqtt", "mysql", "nats", "postgres", "rabbitmq",
            "redis", "rest"
        ]
    );
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
    assert_eq!(
        names(&listed),
        [
            "file", "graphql", "grpc", "kafka", "mqtt", "mysql", "nats", "postgres", "rabbitmq",
            "redis", "rest"
        ]
    );
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
