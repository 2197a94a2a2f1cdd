//! Findings 6, 7 and 8: one tenant cannot take the shared pooling allocator,
//! a memory quota covers all of a session's memories, and an upload's
//! `describe` runs under the tenant's own limits and concurrency.

use std::time::Duration;

use serde_json::json;
use sluice::{Error, Limits, PoolingConfig, Runtime, RuntimeConfig};
use sluice_tests::client::api;
use sluice_tests::components::{api_export, component, dummy_wat, with_body, with_memory};
use sluice_tests::{runtime, tempdir};

use super::files::probe;
use super::start_with;
use crate::server::{metric, new_instance, tenant, upload};

/// A component of `instances` core instances, each with `memories` memories.
fn many_instances(instances: usize, memories: usize) -> Vec<u8> {
    let memory = "(memory 1)".repeat(memories);
    let instantiate = "(core instance (instantiate $m))".repeat(instances);
    wat::parse_str(format!(
        "(component (core module $m {memory}) {instantiate})"
    ))
    .unwrap()
}

/// A connector whose `describe` runs `body` first.
fn describing(body: &str, pages: u32, extra: &str) -> Vec<u8> {
    let wat = with_memory(&dummy_wat(), pages, extra);
    component(&with_body(&wat, &api_export("describe"), body))
}

#[tokio::test]
async fn a_component_over_the_per_component_pool_bounds_is_refused_when_loaded() {
    let pooled = Runtime::with_config(RuntimeConfig {
        pooling: Some(PoolingConfig {
            max_instances: 16,
            max_memory_bytes: 16 << 20,
            ..PoolingConfig::default()
        }),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let bounds = PoolingConfig::default().per_component;
    let memories = many_instances(bounds.max_memories as usize + 1, 1);
    let err = pooled.load(&memories).unwrap_err().to_string();
    assert!(err.contains("linear memories"), "{err}");
    let instances = many_instances(bounds.max_core_instances as usize + 1, 0);
    let err = pooled.load(&instances).unwrap_err().to_string();
    assert!(err.contains("core module instances"), "{err}");

    // Through the server: refused at upload, nothing stored.
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |_| {}).await;
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    let reply = api(addr, Some(&token))
        .post("/v1/connectors", memories)
        .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(String::from_utf8_lossy(&reply.body).contains("linear memories"));
    let listed = api(addr, Some(&token)).get("/v1/connectors").await;
    assert_eq!(listed.json()["items"], json!([]));
}

#[tokio::test]
async fn the_memory_limit_covers_every_memory_of_a_session_together() {
    // Four extra memories grown by 8 MiB each: each alone is under 16 MiB.
    let grow: String = (1..=4)
        .map(|m| format!("(drop (memory.grow {m} (i32.const 128)))\n"))
        .collect();
    let bytes = describing(&format!("{grow} unreachable"), 1, &"(memory 1)".repeat(4));
    let connector = runtime().load(&bytes).unwrap();
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let err = connector.describe_with_limits(&limits).await.unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit } if limit == 16 << 20),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_upload_is_described_under_the_tenants_limits_and_concurrency() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |_| {}).await;
    let quotas = json!({ "cpu_ms": 100, "memory_mib": 16, "max_concurrent": 1 });
    let (_, token) = tenant(addr, json!({ "name": "t", "quotas": quotas })).await;

    let spinning = describing("(loop $spin (br $spin)) unreachable", 1, "");
    let reply = api(addr, Some(&token))
        .post("/v1/connectors", spinning)
        .await;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, 504, "{body}");
    assert!(
        body.contains("100ms"),
        "the tenant's 100 ms, not the default: {body}"
    );

    // 200 MiB touched by describe against a 16 MiB quota.
    let greedy = describing("(drop (memory.grow (i32.const 3200))) unreachable", 1, "");
    let reply = api(addr, Some(&token)).post("/v1/connectors", greedy).await;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, 502, "{body}");
    assert_eq!(reply.json()["error"]["code"], "limit_exceeded", "{body}");

    // One concurrent call: a second upload while the first describes gets 429.
    let (_, token) = tenant(
        addr,
        json!({ "name": "u", "quotas": { "cpu_ms": 5000, "max_concurrent": 1 } }),
    )
    .await;
    let slow = describing("(loop $spin (br $spin)) unreachable", 1, "");
    let first = {
        let (token, slow) = (token.clone(), slow.clone());
        tokio::spawn(async move { api(addr, Some(&token)).post("/v1/connectors", slow).await })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let other = describing("(loop $other (br $other)) unreachable", 1, "");
    let second = api(addr, Some(&token)).post("/v1/connectors", other).await;
    assert_eq!(
        second.status,
        429,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    assert_eq!(first.await.unwrap().status, 504);
}

#[tokio::test]
async fn kept_and_running_sessions_of_one_tenant_leave_the_pool_to_others() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |config| {
        config.pooling = Some(PoolingConfig {
            max_instances: 8,
            max_memory_bytes: 64 << 20,
            ..PoolingConfig::default()
        });
        config.warm_sessions = 4;
    })
    .await;
    let (_, greedy) = tenant(
        addr,
        json!({ "name": "greedy", "quotas": { "max_concurrent": 4 } }),
    )
    .await;
    let (_, calm) = tenant(addr, json!({ "name": "calm" })).await;
    let probe_id = upload(addr, &greedy, "sluice_probe").await;
    let mut instances = Vec::new();
    for _ in 0..8 {
        instances.push(new_instance(addr, &greedy, &json!({ "connector": probe_id })).await);
    }
    // Four invocations leave four kept sessions...
    for instance in &instances[..4] {
        let reply = probe(addr, &greedy, instance, "env", json!({})).await;
        assert_eq!(reply.status, 200);
    }
    // ...then four long calls run at once on the other instances.
    let mut sleeping = Vec::new();
    for instance in &instances[4..] {
        let (token, instance) = (greedy.clone(), instance.clone());
        sleeping.push(tokio::spawn(async move {
            probe(addr, &token, &instance, "sleep", json!({ "ms": 6000 })).await
        }));
    }
    // Wait until the four long calls are running (however slow the machine).
    for _ in 0..100 {
        if metric(addr, "sluice_active_sessions ").await == Some(4.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(addr, "sluice_active_sessions ").await, Some(4.0));
    // The greedy tenant holds at most its four permits; a fifth call is refused...
    let fifth = probe(addr, &greedy, &instances[0], "env", json!({})).await;
    assert_eq!(
        fifth.status,
        429,
        "{}",
        String::from_utf8_lossy(&fifth.body)
    );
    // ...and another tenant is still served from the pool.
    let calm_probe = upload(addr, &calm, "sluice_probe").await;
    let calm_instance = new_instance(addr, &calm, &json!({ "connector": calm_probe })).await;
    let reply = probe(addr, &calm, &calm_instance, "env", json!({})).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    for call in sleeping {
        assert_eq!(call.await.unwrap().status, 200);
    }
}
