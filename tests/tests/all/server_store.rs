//! `sluice serve` storage: several nodes on one PostgreSQL store, and the
//! compiled-artifact cache (restart without recompiling, integrity check,
//! tenant-supplied artifacts refused).

use serde_json::json;
use sluice_tests::client::api;
use sluice_tests::postgres::TestSchema;
use sluice_tests::{guest, tempdir};

use super::server::{metric, new_instance, spawn_server_with, tenant, upload, ADMIN};

/// Kills a spawned server when the test ends, however it ends.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn two_nodes_on_one_postgres_store_share_tenants_connectors_and_instances() {
    let upstream = sluice_tests::upstream::Upstream::start().await;
    let schema = TestSchema::new().await;
    let store = schema.store_url();
    let (dir_a, dir_b) = (tempdir(), tempdir());
    // Both start at once: the migrations run once, under the advisory lock.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn_server_with(dir_a.path(), &["--store", &store]));
        let b = s.spawn(|| spawn_server_with(dir_b.path(), &["--store", &store]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (_node_a, a) = (Node(a.0), a.1);
    let (_node_b, b) = (Node(b.0), b.1);

    for node in [a, b] {
        let ready = api(node, None).get("/readyz").await;
        assert_eq!(ready.status, 200, "{:?}", ready.body);
    }

    // Admin and tenant objects made on A are valid on B.
    let (tenant_id, token) = tenant(
        a,
        json!({ "name": "shared", "ceiling": { "http": [upstream.origin()] } }),
    )
    .await;
    let on_b = api(b, Some(ADMIN))
        .get(&format!("/v1/tenants/{tenant_id}"))
        .await;
    assert_eq!(on_b.status, 200, "{:?}", on_b.body);

    // Upload on A, invoke on B (B compiles the bytes it reads from the store).
    let connector = upload(a, &token, "sluice_probe").await;
    let instance = new_instance(
        a,
        &token,
        &json!({ "connector": connector, "grants": { "http": { "origins": [upstream.origin()] } } }),
    )
    .await;
    let fetch = |addr| {
        let (token, path, url) = (
            token.clone(),
            format!("/v1/instances/{instance}/fetch"),
            upstream.url("/hello"),
        );
        async move {
            api(addr, Some(&token))
                .post_json(
                    &path,
                    &json!({ "resource": "http", "options": { "url": url } }),
                )
                .await
        }
    };
    let reply = fetch(b).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["records"][0]["data"]["body"], "hello");

    // A grant removed on A is gone on B at once, though B built that instance's grants before.
    let updated = api(a, Some(&token))
        .put_json(
            &format!("/v1/instances/{instance}"),
            &json!({ "connector": connector }),
        )
        .await;
    assert_eq!(updated.status, 200);
    let denied = fetch(b).await;
    assert_eq!(
        denied.status,
        403,
        "{}",
        String::from_utf8_lossy(&denied.body)
    );
    assert_eq!(denied.json()["error"]["code"], "denied");

    // Delete on B: gone on A.
    let deleted = api(b, Some(&token))
        .delete(&format!("/v1/instances/{instance}"))
        .await;
    assert_eq!(deleted.status, 200);
    let gone = api(a, Some(&token))
        .get(&format!("/v1/instances/{instance}"))
        .await;
    assert_eq!(gone.status, 404);
    let deleted = api(b, Some(&token))
        .delete(&format!("/v1/connectors/{connector}"))
        .await;
    assert_eq!(
        deleted.status,
        200,
        "{}",
        String::from_utf8_lossy(&deleted.body)
    );
    let gone = api(a, Some(&token))
        .get(&format!("/v1/connectors/{connector}"))
        .await;
    assert_eq!(gone.status, 404);
    let listed = api(a, Some(&token)).get("/v1/connectors").await.json();
    assert_eq!(listed["items"], json!([]));

    // A tenant deleted on A: its token no longer opens B, and nothing of it is left.
    let deleted = api(a, Some(ADMIN))
        .delete(&format!("/v1/tenants/{tenant_id}"))
        .await;
    assert_eq!(deleted.status, 200);
    let refused = api(b, Some(&token)).get("/v1/instances").await;
    assert_eq!(refused.status, 401);
    let left: i64 = schema
        .client
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.sluice_objects WHERE key LIKE $1 OR kind = 'tokens'",
                schema.name
            ),
            &[&format!("{tenant_id}%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        left, 0,
        "the tenant's tokens and objects were deleted with it"
    );

    // The schema is versioned: one migration row, applied once.
    let rows = schema
        .client
        .query(
            &format!(
                "SELECT version FROM {}.sluice_schema_migrations",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn an_unreachable_store_stops_the_server_with_a_clear_error() {
    let dir = tempdir();
    let out = std::process::Command::new(sluice_tests::sluice_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--store", "postgres://sluice:s3cret-pw@127.0.0.1:1/nowhere"])
        .env("SLUICE_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cannot connect to the postgresql database `nowhere` as `sluice` on 127.0.0.1"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password leaked: {stderr}"
    );
}

/// The one cached artifact file under `dir/artifacts`.
fn cached_artifact(dir: &std::path::Path) -> std::path::PathBuf {
    let mut found = Vec::new();
    for fingerprint in std::fs::read_dir(dir.join("artifacts")).unwrap() {
        let fingerprint = fingerprint.unwrap().path();
        if fingerprint.is_dir() {
            for entry in std::fs::read_dir(&fingerprint).unwrap() {
                found.push(entry.unwrap().path());
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

async fn cache_counter(addr: std::net::SocketAddr, event: &str) -> Option<f64> {
    metric(
        addr,
        &format!("sluice_artifact_cache_total{{event=\"{event}\"}}"),
    )
    .await
}

#[tokio::test]
async fn a_restart_serves_from_the_artifact_cache_and_a_tampered_artifact_is_recompiled() {
    let dir = tempdir();
    let (node, addr) = spawn_server_with(dir.path(), &[]);
    let node = Node(node);
    let (_, token) = tenant(addr, json!({ "name": "cache" })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(addr, &token, &json!({ "connector": connector })).await;
    let health = format!("/v1/instances/{instance}/health");
    assert_eq!(cache_counter(addr, "compiled").await, Some(1.0));
    drop(node);

    // Restart: the invocation is served without compiling.
    let (node, addr) = spawn_server_with(dir.path(), &[]);
    let node = Node(node);
    let reply = api(addr, Some(&token)).post_json(&health, &json!({})).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(cache_counter(addr, "hit").await, Some(1.0));
    assert_eq!(cache_counter(addr, "compiled").await, Some(0.0));
    drop(node);

    // Flip one byte of the cached artifact: the seal no longer matches, so the
    // file is deleted and the component compiled again, never deserialized.
    let path = cached_artifact(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (node, addr) = spawn_server_with(dir.path(), &[]);
    let _node = Node(node);
    let reply = api(addr, Some(&token)).post_json(&health, &json!({})).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(cache_counter(addr, "rejected").await, Some(1.0));
    assert_eq!(cache_counter(addr, "compiled").await, Some(1.0));
    assert_eq!(cache_counter(addr, "hit").await, Some(0.0));
    assert_ne!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a fresh sealed artifact replaced it"
    );
}

#[tokio::test]
async fn a_precompiled_artifact_upload_is_refused_and_nothing_is_stored() {
    let dir = tempdir();
    let (node, addr) = spawn_server_with(dir.path(), &[]);
    let _node = Node(node);
    let (_, token) = tenant(addr, json!({ "name": "sneaky" })).await;
    upload(addr, &token, "sluice_probe").await;
    // A real wasmtime artifact, compiled by this very host (the seal removed).
    let mut artifact = std::fs::read(cached_artifact(dir.path())).unwrap();
    artifact.truncate(artifact.len() - 32);
    assert_eq!(&artifact[..4], b"\x7fELF");
    let (_, other) = tenant(addr, json!({ "name": "other" })).await;
    let reply = api(addr, Some(&other))
        .post("/v1/connectors", artifact)
        .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "precompiled_artifact");
    let listed = api(addr, Some(&other)).get("/v1/connectors").await.json();
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn a_compilation_past_its_budget_is_refused_and_nothing_is_stored() {
    let dir = tempdir();
    let (node, addr) = spawn_server_with(dir.path(), &["--compile-timeout-ms", "1"]);
    let _node = Node(node);
    let (_, token) = tenant(addr, json!({ "name": "slow" })).await;
    let bytes = std::fs::read(guest("sluice_probe")).unwrap();
    let reply = api(addr, Some(&token)).post("/v1/connectors", bytes).await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "compile_timeout");
    let listed = api(addr, Some(&token)).get("/v1/connectors").await.json();
    assert_eq!(listed["items"], json!([]));
}
