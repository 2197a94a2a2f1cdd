//! Consuming Redis through `sluice serve`: consumer leases with explicit
//! ack/nack over HTTP, idle expiry that redelivers, leases no other tenant
//! can reach, the login a write-only secret, and the auto-ack NDJSON stream.

use std::net::SocketAddr;

use serde_json::{json, Value};
use sluice_tests::client::api;
use sluice_tests::redis::{TestStream, ADDRESS};
use sluice_tests::tempdir;

use crate::server::{lease_ids, new_instance, next, open_lease, start, tenant, upload};

async fn redis_tenant(addr: SocketAddr, name: &str) -> (String, String) {
    let (_, token) = tenant(
        addr,
        json!({ "name": name, "ceiling": { "tcp": [ADDRESS] } }),
    )
    .await;
    let connector = upload(addr, &token, "sluice_redis").await;
    (token, connector)
}

fn instance_spec(connector: &str, config: Value) -> Value {
    let mut base = json!({ "address": ADDRESS, "group": "g", "consumer": "web", "block_ms": 100 });
    base.as_object_mut()
        .unwrap()
        .extend(config.as_object().unwrap().clone());
    json!({ "connector": connector, "config": base, "grants": { "sockets": { "tcp": [ADDRESS] } } })
}

#[tokio::test]
async fn a_consumer_lease_acks_over_http_and_a_closed_lease_redelivers_the_rest() {
    let stream = TestStream::new();
    let added: Vec<String> = (0..6)
        .map(|n| stream.add(&[("n", &n.to_string())]))
        .collect();
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (token, connector) = redis_tenant(addr, "queue").await;
    let instance = new_instance(addr, &token, &instance_spec(&connector, json!({}))).await;
    let lease = open_lease(addr, &token, &instance, json!({ "resource": stream.key })).await;
    let (status, batch) = next(addr, &token, &instance, &lease, 6).await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(lease_ids(&batch), added);
    assert_eq!(batch["records"][2]["data"], json!({ "n": "2" }));
    assert_eq!(batch["end"], false);
    let acked = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/consumers/{lease}/ack"),
            &json!({ "ids": added[..3] }),
        )
        .await;
    assert_eq!(acked.status, 200);
    assert_eq!(acked.json(), json!({ "acked": 3 }));
    let nacked = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/consumers/{lease}/nack"),
            &json!({ "ids": [added[3]] }),
        )
        .await;
    assert_eq!(nacked.json(), json!({ "nacked": 1 }));
    let (_, again) = next(addr, &token, &instance, &lease, 6).await;
    assert_eq!(
        lease_ids(&again),
        [added[3].clone()],
        "the nacked record comes again"
    );
    assert_eq!(stream.pending("g"), 3);
    let closed = api(addr, Some(&token))
        .delete(&format!("/v1/instances/{instance}/consumers/{lease}"))
        .await;
    assert_eq!(closed.status, 200);
    let (status, gone) = next(addr, &token, &instance, &lease, 6).await;
    assert_eq!(status, 404, "{gone}");
    // A new lease gets exactly what was delivered and never acknowledged.
    let lease = open_lease(addr, &token, &instance, json!({ "resource": stream.key })).await;
    let (_, back) = next(addr, &token, &instance, &lease, 6).await;
    assert_eq!(lease_ids(&back), added[3..]);
}

#[tokio::test]
async fn an_idle_lease_expires_and_its_unacked_records_come_back() {
    let stream = TestStream::new();
    let added: Vec<String> = (0..2)
        .map(|n| stream.add(&[("n", &n.to_string())]))
        .collect();
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (token, connector) = redis_tenant(addr, "idle").await;
    let instance = new_instance(addr, &token, &instance_spec(&connector, json!({}))).await;
    let body = json!({ "resource": stream.key, "idle_timeout_ms": 300 });
    let lease = open_lease(addr, &token, &instance, body.clone()).await;
    let (_, batch) = next(addr, &token, &instance, &lease, 10).await;
    assert_eq!(lease_ids(&batch), added);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let (status, _) = next(addr, &token, &instance, &lease, 10).await;
    assert_eq!(status, 404, "the lease expired");
    let lease = open_lease(addr, &token, &instance, body).await;
    let (_, back) = next(addr, &token, &instance, &lease, 10).await;
    assert_eq!(lease_ids(&back), added);
    // Bounds are checked before anything opens.
    let too_long = json!({ "resource": stream.key, "idle_timeout_ms": 3_600_000 });
    let reply = api(addr, Some(&token))
        .post_json(&format!("/v1/instances/{instance}/consumers"), &too_long)
        .await;
    assert_eq!(reply.status, 422);
}

#[tokio::test]
async fn another_tenant_cannot_reach_a_lease_and_a_changed_instance_ends_it() {
    let stream = TestStream::new();
    stream.add(&[("n", "1")]);
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (alice, connector) = redis_tenant(addr, "alice").await;
    let (mallory, _) = redis_tenant(addr, "mallory").await;
    let spec = instance_spec(&connector, json!({}));
    let instance = new_instance(addr, &alice, &spec).await;
    let lease = open_lease(addr, &alice, &instance, json!({ "resource": stream.key })).await;
    for action in ["next", "ack", "nack"] {
        let reply = api(addr, Some(&mallory))
            .post_json(
                &format!("/v1/instances/{instance}/consumers/{lease}/{action}"),
                &json!({ "ids": ["0-1"] }),
            )
            .await;
        assert_eq!(reply.status, 404, "{action}");
    }
    let reply = api(addr, Some(&mallory))
        .delete(&format!("/v1/instances/{instance}/consumers/{lease}"))
        .await;
    assert_eq!(reply.status, 404);
    // Still Alice's, untouched.
    let (status, batch) = next(addr, &alice, &instance, &lease, 10).await;
    assert_eq!(status, 200);
    assert_eq!(lease_ids(&batch).len(), 1);
    // A change to the instance ends the lease: no session outlives its grants.
    let mut changed = spec.clone();
    changed["config"]["block_ms"] = json!(200);
    let reply = api(addr, Some(&alice))
        .put_json(&format!("/v1/instances/{instance}"), &changed)
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let (status, _) = next(addr, &alice, &instance, &lease, 10).await;
    assert!(status == 404 || status == 410, "{status}");
}

#[tokio::test]
async fn the_login_is_a_write_only_secret_and_the_stream_endpoint_auto_acks() {
    let mut stream = TestStream::new();
    let user = stream.user("server-side-secret");
    let added: Vec<String> = (0..3)
        .map(|n| stream.add(&[("n", &n.to_string())]))
        .collect();
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (token, connector) = redis_tenant(addr, "secret").await;
    let mut spec = instance_spec(
        &connector,
        json!({ "username": user, "password_secret": "redis_password" }),
    );
    spec["grants"]["sockets"]["secrets"] = json!(["redis_password"]);
    spec["secrets"] = json!({ "redis_password": "server-side-secret" });
    let instance = new_instance(addr, &token, &spec).await;
    let shown = api(addr, Some(&token))
        .get(&format!("/v1/instances/{instance}"))
        .await;
    assert!(!String::from_utf8_lossy(&shown.body).contains("server-side-secret"));
    let reply = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/stream"),
            &json!({ "resource": stream.key, "ack": "auto", "batch_size": 2,
                     "options": { "end_when_idle": true } }),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let streamed: Vec<String> = reply
        .lines()
        .iter()
        .filter_map(|line| line["record"]["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, added);
    assert_eq!(
        stream.pending("g"),
        0,
        "auto-ack settled every streamed record"
    );
    // Moving the readable secret to another connector needs the secret again.
    let mut moved = spec.clone();
    moved.as_object_mut().unwrap().remove("secrets");
    moved["connector"] = json!(upload(addr, &token, "sluice_probe").await);
    moved["config"] = json!({});
    let reply = api(addr, Some(&token))
        .put_json(&format!("/v1/instances/{instance}"), &moved)
        .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "secrets_required");
}
