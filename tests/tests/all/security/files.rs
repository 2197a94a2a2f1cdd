//! Findings 1 and 2: a tenant's mounts stay beneath its own file root, whatever
//! symlinks its guests plant, and nothing is created before a grant is accepted.

use std::net::SocketAddr;

use serde_json::{json, Value};
use sluice_tests::client::{api, Reply};
use sluice_tests::tempdir;

use super::start_with;
use crate::server::{new_instance, start, tenant, upload, ADMIN};

/// Invoke probe `action` with `params` on `instance`.
pub(crate) async fn probe(
    addr: SocketAddr,
    token: &str,
    instance: &str,
    action: &str,
    params: Value,
) -> Reply {
    api(addr, Some(token))
        .post_json(
            &format!("/v1/instances/{instance}/fetch"),
            &json!({ "resource": action, "options": params }),
        )
        .await
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test]
async fn a_mount_swapped_for_a_symlink_by_another_instance_stays_where_it_was() {
    let dir = tempdir();
    // No kept sessions: every invocation opens its mounts afresh.
    let (addr, _server) = start_with(dir.path(), |config| config.warm_sessions = 0).await;
    assert_mount_swap_contained(addr, dir.path()).await;
}

/// The symlink-swap attack against the server at `addr` with data in `data_dir` (any store).
pub(crate) async fn assert_mount_swap_contained(addr: SocketAddr, data_dir: &std::path::Path) {
    let (victim, _) = tenant(
        addr,
        json!({ "name": "victim", "ceiling": { "files": true } }),
    )
    .await;
    let victim_root = data_dir.join("files").join(&victim);
    std::fs::create_dir_all(&victim_root).unwrap();
    std::fs::write(victim_root.join("secret.txt"), "victim's data").unwrap();

    let (_, token) = tenant(
        addr,
        json!({ "name": "evil", "ceiling": { "files": true } }),
    )
    .await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let parent = new_instance(
        addr,
        &token,
        &json!({ "connector": connector,
                 "grants": { "files": [{ "host": "data", "guest": "/d", "mode": "rw" }] } }),
    )
    .await;
    let child = new_instance(
        addr,
        &token,
        &json!({ "connector": connector,
                 "grants": { "files": [{ "host": "data/sub", "guest": "/s", "mode": "rw" }] } }),
    )
    .await;
    // The child's grants are built (and kept) by a first invocation.
    let first = probe(
        addr,
        &token,
        &child,
        "write",
        json!({ "path": "/s/mine.txt", "text": "x" }),
    )
    .await;
    assert_eq!(first.status, 200, "{}", text(&first));

    // Through the parent, replace `sub` with a relative symlink to the victim's root.
    let removed = probe(
        addr,
        &token,
        &parent,
        "remove-dir",
        json!({ "path": "/d/sub" }),
    )
    .await;
    assert_eq!(removed.status, 200, "{}", text(&removed));
    let link = format!("../../{victim}");
    let linked = probe(
        addr,
        &token,
        &parent,
        "symlink",
        json!({ "path": "/d/sub", "text": link }),
    )
    .await;
    assert_eq!(linked.status, 200, "{}", text(&linked));

    let read = probe(
        addr,
        &token,
        &child,
        "read",
        json!({ "path": "/s/secret.txt" }),
    )
    .await;
    assert_ne!(
        read.status,
        200,
        "the child read the victim's file: {}",
        text(&read)
    );
    assert!(!text(&read).contains("victim's data"));
    let write = probe(
        addr,
        &token,
        &child,
        "write",
        json!({ "path": "/s/planted.txt", "text": "x" }),
    )
    .await;
    assert_ne!(write.status, 200, "{}", text(&write));
    assert!(!victim_root.join("planted.txt").exists());

    // The same swap with enough `../` aims at the host's root.
    let _ = probe(
        addr,
        &token,
        &parent,
        "remove-dir",
        json!({ "path": "/d/sub" }),
    )
    .await;
    let deep = "../".repeat(40);
    let _ = probe(
        addr,
        &token,
        &parent,
        "symlink",
        json!({ "path": "/d/sub", "text": deep }),
    )
    .await;
    let passwd = probe(
        addr,
        &token,
        &child,
        "read",
        json!({ "path": "/s/etc/passwd" }),
    )
    .await;
    assert_ne!(passwd.status, 200, "{}", text(&passwd));

    // A new instance (or a rebuilt one) naming the swapped path is refused.
    let again = api(addr, Some(&token))
        .post_json(
            "/v1/instances",
            &json!({ "connector": connector,
                 "grants": { "files": [{ "host": "data/sub", "guest": "/s" }] } }),
        )
        .await;
    assert_eq!(again.status, 403, "{}", text(&again));
    assert_eq!(again.json()["error"]["code"], "grant_outside_ceiling");
}

#[tokio::test]
async fn a_mount_through_a_symlink_creates_nothing_outside_the_tenant_root() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(
        addr,
        json!({ "name": "evil", "ceiling": { "files": true } }),
    )
    .await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let writer = new_instance(
        addr,
        &token,
        &json!({ "connector": connector,
                 "grants": { "files": [{ "host": "", "guest": "/root", "mode": "rw" }] } }),
    )
    .await;
    let outside = tempdir();
    let target = outside.path().join("made-by-attack");
    // An absolute symlink, and a relative one leading out of the root.
    let absolute = probe(
        addr,
        &token,
        &writer,
        "symlink",
        json!({ "path": "/root/abs", "text": outside.path().display().to_string() }),
    )
    .await;
    let relative = probe(
        addr,
        &token,
        &writer,
        "symlink",
        json!({ "path": "/root/rel", "text": "../.." }),
    )
    .await;
    for (link, made) in [("abs", &absolute), ("rel", &relative)] {
        if made.status != 200 {
            continue; // the guest could not even plant it
        }
        let reply = api(addr, Some(&token)).post_json("/v1/instances", &json!({ "connector": connector,
                     "grants": { "files": [{ "host": format!("{link}/made-by-attack/deeper"), "guest": "/x" }] } }))
        .await;
        assert_eq!(reply.status, 403, "{}", text(&reply));
    }
    assert!(
        !target.exists(),
        "a directory was created outside the tenant root"
    );
    assert!(!dir.path().join("made-by-attack").exists());
    assert!(!dir.path().join("files").join("made-by-attack").exists());
}

#[tokio::test]
async fn a_grant_refused_by_the_ceiling_creates_no_directory() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "t", "ceiling": { "files": true } })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    // The mount is fine, but a database outside the ceiling makes the whole grant fail.
    let reply = api(addr, Some(&token))
        .post_json(
            "/v1/instances",
            &json!({ "connector": connector,
                 "grants": { "files": [{ "host": "fresh", "guest": "/f" }],
                             "sql": [{ "name": "db", "url": "postgres://u@10.9.9.9/db" }] } }),
        )
        .await;
    assert_eq!(reply.status, 403, "{}", text(&reply));
    assert!(!dir
        .path()
        .join("files")
        .join(&tenant_id)
        .join("fresh")
        .exists());
}

#[tokio::test]
async fn an_instance_refused_after_its_grants_fit_creates_no_directory() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "t", "ceiling": { "files": true } })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    // Now nothing more may be stored, so the instance record itself is refused
    // — after its grants were checked and found to fit.
    let shrunk = api(addr, Some(ADMIN))
        .put_json(
            &format!("/v1/tenants/{tenant_id}"),
            &json!({ "name": "t", "ceiling": { "files": true }, "quotas": { "max_stored_mib": 0 } }),
        )
        .await;
    assert_eq!(shrunk.status, 200, "{}", text(&shrunk));
    let reply = api(addr, Some(&token))
        .post_json(
            "/v1/instances",
            &json!({ "connector": connector,
                     "grants": { "files": [{ "host": "fresh/inner", "guest": "/f" }] } }),
        )
        .await;
    assert_eq!(reply.status, 429, "{}", text(&reply));
    assert_eq!(reply.json()["error"]["code"], "quota_exceeded");
    assert!(!dir
        .path()
        .join("files")
        .join(&tenant_id)
        .join("fresh")
        .exists());
}
