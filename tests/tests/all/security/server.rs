//! Findings 10, 12, 13 and 14: quotas hold under concurrency, the listener
//! survives slow and numerous clients, and metrics are for operators only,
//! with labels that never come from a URL.

use std::time::Duration;

use serde_json::json;
use sluice_tests::client::api;
use sluice_tests::{guest, tempdir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::start_with;
use crate::server::{new_instance, spawn_serving, tenant, upload, ADMIN};

/// The probe with a custom section appended: a valid, different component.
fn probe_variant(n: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(guest("sluice_probe")).unwrap();
    let name = b"variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    bytes.push(0); // custom section
    bytes.push(u8::try_from(size).unwrap());
    bytes.push(u8::try_from(name.len()).unwrap());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
    bytes
}

/// `count` different valid components uploaded by `token` at once.
async fn racing_uploads(
    addr: std::net::SocketAddr,
    token: &str,
    count: u32,
) -> Vec<sluice_tests::client::Reply> {
    let uploads: Vec<_> = (0..count)
        .map(|n| {
            let token = token.to_string();
            tokio::spawn(async move {
                api(addr, Some(&token))
                    .post("/v1/connectors", probe_variant(n))
                    .await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for upload in uploads {
        replies.push(upload.await.expect("the upload task"));
    }
    replies
}

#[tokio::test]
async fn concurrent_uploads_and_creations_cannot_pass_one_quota_check_together() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |_| {}).await;
    assert_quotas_hold_under_concurrency(addr).await;
}

/// Six racing uploads and twenty racing creations against quotas of one (any store).
pub(crate) async fn assert_quotas_hold_under_concurrency(addr: std::net::SocketAddr) {
    let quotas = json!({ "max_connectors": 1, "max_stored_mib": 1, "max_instances": 1 });
    let (_, token) = tenant(addr, json!({ "name": "t", "quotas": quotas })).await;
    let mut created = Vec::new();
    for reply in racing_uploads(addr, &token, 6).await {
        match reply.status {
            201 => created.push(reply.json()["id"].as_str().unwrap().to_string()),
            429 => assert_eq!(reply.json()["error"]["code"], "quota_exceeded"),
            other => panic!("{other}: {}", String::from_utf8_lossy(&reply.body)),
        }
    }
    assert_eq!(created.len(), 1, "exactly one upload fits the quota");
    let listed = api(addr, Some(&token)).get("/v1/connectors").await;
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);

    let connector = created.remove(0);
    let creations: Vec<_> = (0..20)
        .map(|_| {
            let token = token.clone();
            let spec = json!({ "connector": connector });
            tokio::spawn(async move {
                api(addr, Some(&token))
                    .post_json("/v1/instances", &spec)
                    .await
            })
        })
        .collect();
    let mut made = 0;
    for creation in creations {
        match creation.await.unwrap().status {
            201 => made += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(made, 1, "exactly one instance fits the quota");
}

#[tokio::test]
async fn stored_bytes_count_every_upload_and_the_records() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |_| {}).await;
    let quotas = json!({ "max_stored_mib": 1 });
    let (_, token) = tenant(addr, json!({ "name": "t", "quotas": quotas })).await;
    let size = probe_variant(0).len();
    let stored = racing_uploads(addr, &token, 6)
        .await
        .iter()
        .filter(|reply| reply.status == 201)
        .count();
    assert_eq!(
        stored,
        (1 << 20) / size,
        "as many as fit in 1 MiB with their records"
    );
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_the_server_keeps_answering() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |config| {
        config.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let health = api(addr, None).get("/healthz").await;
    assert_eq!(health.status, 200);
    for mut stream in slow {
        let mut buf = Vec::new();
        // The server closes the connection (perhaps after a 408); it never waits forever.
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slow client was kept open");
    }
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_for_a_free_slot() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |config| {
        config.max_connections = 4;
        config.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(async move { api(addr, None).get("/healthz").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a fifth connection was served past the cap"
    );
    drop(held.pop());
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn metrics_need_an_operator_token_and_label_only_known_operations() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |config| {
        config.metrics_token = Some("scraper-token".into());
    })
    .await;
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    assert_eq!(api(addr, None).get("/metrics").await.status, 401);
    assert_eq!(api(addr, Some(&token)).get("/metrics").await.status, 401);
    assert_eq!(api(addr, Some(ADMIN)).get("/metrics").await.status, 200);
    assert_eq!(
        api(addr, Some("scraper-token"))
            .get("/metrics")
            .await
            .status,
        200
    );

    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(addr, &token, &json!({ "connector": connector })).await;
    for i in 0..300 {
        let reply = api(addr, Some(&token))
            .post(&format!("/v1/instances/{instance}/op-{i}"), vec![])
            .await;
        assert_eq!(reply.status, 404);
    }
    let fetch = api(addr, Some(&token))
        .post(
            &format!("/v1/instances/{instance}/fetch"),
            br#"{"resource": "env"}"#.to_vec(),
        )
        .await;
    assert_eq!(fetch.status, 200);
    let text = crate::server::metrics_text(addr).await;
    assert!(
        !text.contains("op-"),
        "an operation from the URL became a label"
    );
    assert!(text.contains("operation=\"fetch\""));
}

/// Kills a spawned server when the test ends.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn out_of_file_descriptors_the_server_recovers_instead_of_spinning() {
    let dir = tempdir();
    // Few descriptors: a flood of idle connections runs the process out of them.
    let mut limited = std::process::Command::new("prlimit");
    limited
        .arg("--nofile=64:64")
        .arg(sluice_tests::sluice_bin());
    let (child, addr) = spawn_serving(
        limited,
        dir.path(),
        &[
            "--header-read-timeout-ms",
            "1000",
            "--pooling-instances",
            "0",
        ],
    );
    let _server = Spawned(child);
    let mut flood = Vec::new();
    for _ in 0..120 {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            flood.push(stream);
        }
    }
    // Accepting fails while the descriptors are gone; the idle connections time
    // out, descriptors come back, and the queued health check is answered.
    let health = tokio::time::timeout(Duration::from_secs(60), api(addr, None).get("/healthz"))
        .await
        .expect("the server answers again once the idle connections are cut");
    assert_eq!(health.status, 200);
    drop(flood);
}
