//! A running server: quotas, hostile neighbours, restarts, disconnects,
//! shutdown, kill -9, and the sessions and state it keeps between calls.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use sluice_server::{Server, ServerConfig};
use sluice_tests::client::api;
use sluice_tests::{guest, tempdir};

use super::{instance_of, metric, new_instance, spawn_server_with, start, tenant, upload, ADMIN};

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

/// How many sessions the server has instantiated so far.
async fn instantiations(addr: SocketAddr) -> f64 {
    metric(addr, "sluice_instantiation_seconds_count")
        .await
        .expect("the instantiation histogram is exported")
}

/// Start `sluice serve` as a process on `data_dir`; returns it and its address.
fn spawn_server(data_dir: &std::path::Path) -> (std::process::Child, SocketAddr) {
    spawn_server_with(data_dir, &[])
}
