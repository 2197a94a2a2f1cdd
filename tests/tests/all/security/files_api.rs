//! The tenant files API (`/v1/files/{path}`) as a hostile tenant would use
//! it: paths that climb out, symlinks that lead out, another tenant's files,
//! a quota to burst, and files enabled nowhere they were not granted.

use serde_json::json;
use sluice_tests::client::api;
use sluice_tests::tempdir;

use crate::server::{data_instance, start, tenant};

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn files_written_over_the_api_are_what_an_instance_mounts() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "f", "ceiling": { "files": true } })).await;
    let rows = b"{\"n\":1}\n{\"n\":2}\n".to_vec();
    let put = api(addr, Some(&token))
        .put("/v1/files/data/n.ndjson", rows.clone())
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(
        put.json(),
        json!({ "path": "data/n.ndjson", "size": rows.len() })
    );
    // Written again, it is replaced (200), whole.
    let again = api(addr, Some(&token))
        .put("/v1/files/data/n.ndjson", rows.clone())
        .await;
    assert_eq!(again.status, 200);
    let listed = api(addr, Some(&token)).get("/v1/files").await.json();
    assert_eq!(
        listed["items"],
        json!([{ "path": "data/n.ndjson", "size": rows.len() }])
    );
    let read = api(addr, Some(&token)).get("/v1/files/data/n.ndjson").await;
    assert_eq!(read.body.to_vec(), rows);
    assert_eq!(
        files_under(&dir.path().join("files").join(&tenant_id)),
        ["data/n.ndjson"],
        "no temporary file is left behind"
    );

    let instance = data_instance(addr, &token).await;
    let page = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/fetch"),
            &json!({ "resource": "n.ndjson" }),
        )
        .await;
    assert_eq!(
        page.json()["records"],
        json!([{ "data": { "n": 1 } }, { "data": { "n": 2 } }])
    );

    let deleted = api(addr, Some(&token))
        .delete("/v1/files/data/n.ndjson")
        .await;
    assert_eq!(deleted.status, 200);
    let gone = api(addr, Some(&token)).get("/v1/files/data/n.ndjson").await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn paths_that_climb_out_are_refused_and_touch_nothing() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "f", "ceiling": { "files": true } })).await;
    for path in [
        "/v1/files/..%2F..%2Fescaped",
        "/v1/files/%2E%2E/escaped",
        "/v1/files/a/%2E%2E/%2E%2E/escaped",
        "/v1/files/%2Fetc%2Fescaped",
        "/v1/files/a%00b",
        "/v1/files/a%5C..%5Cescaped",
        "/v1/files/.",
        "/v1/files/%FF",
    ] {
        let reply = api(addr, Some(&token)).put(path, b"x".to_vec()).await;
        assert_eq!(reply.status, 422, "{path}: {:?}", reply.body);
        assert_eq!(reply.json()["error"]["code"], "invalid_path", "{path}");
    }
    assert!(files_under(&dir.path().join("files").join(&tenant_id)).is_empty());
    assert!(
        !files_under(dir.path())
            .iter()
            .any(|f| f.contains("escaped")),
        "nothing was written anywhere"
    );
}

#[tokio::test]
async fn a_symlink_in_the_root_is_never_followed_out() {
    let dir = tempdir();
    let outside = tempdir();
    std::fs::write(outside.path().join("secret.txt"), "keep").unwrap();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "f", "ceiling": { "files": true } })).await;
    // As a guest could make through a read-write mount.
    let root = dir.path().join("files").join(&tenant_id);
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("link.txt")).unwrap();
    for (method, path) in [
        ("PUT", "/v1/files/out/secret.txt"),
        ("PUT", "/v1/files/out/new.txt"),
        ("PUT", "/v1/files/link.txt"),
        ("GET", "/v1/files/out/secret.txt"),
        ("GET", "/v1/files/link.txt"),
    ] {
        let reply = api(addr, Some(&token))
            .request(method, path, b"overwritten".to_vec())
            .await;
        assert!(
            reply.status == 403 || reply.status == 409,
            "{method} {path}: {} {:?}",
            reply.status,
            reply.body
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains("keep"));
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "keep"
    );
    assert!(!outside.path().join("new.txt").exists());
    // Deleting the link removes the link, never its target.
    let deleted = api(addr, Some(&token)).delete("/v1/files/link.txt").await;
    assert_eq!(deleted.status, 200);
    assert!(outside.path().join("secret.txt").exists());
    let listed = api(addr, Some(&token)).get("/v1/files").await.json();
    assert_eq!(
        listed["items"],
        json!([]),
        "symlinks are not listed as files"
    );
}

#[tokio::test]
async fn another_tenants_files_and_a_tenant_without_files_see_nothing() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let ceiling = json!({ "files": true });
    let (_, alice) = tenant(addr, json!({ "name": "a", "ceiling": ceiling })).await;
    let (_, bob) = tenant(addr, json!({ "name": "b", "ceiling": ceiling })).await;
    let (_, carol) = tenant(addr, json!({ "name": "c" })).await;
    let put = api(addr, Some(&alice))
        .put("/v1/files/mine.csv", b"a,b\n".to_vec())
        .await;
    assert_eq!(put.status, 201);
    let listed = api(addr, Some(&bob)).get("/v1/files").await.json();
    assert_eq!(listed["items"], json!([]));
    assert_eq!(
        api(addr, Some(&bob)).get("/v1/files/mine.csv").await.status,
        404
    );
    assert_eq!(
        api(addr, Some(&bob))
            .delete("/v1/files/mine.csv")
            .await
            .status,
        404
    );
    let refused = api(addr, Some(&carol))
        .put("/v1/files/x.csv", b"x".to_vec())
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["code"], "files_not_enabled");
    assert_eq!(
        api(addr, Some(&alice))
            .get("/v1/files/mine.csv")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn files_count_against_the_stored_bytes_quota() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(
        addr,
        json!({ "name": "q", "ceiling": { "files": true }, "quotas": { "max_stored_mib": 1 } }),
    )
    .await;
    let half = vec![b'x'; 600 << 10];
    assert_eq!(
        api(addr, Some(&token))
            .put("/v1/files/a.bin", half.clone())
            .await
            .status,
        201
    );
    // Replacing a file counts only what it adds.
    assert_eq!(
        api(addr, Some(&token))
            .put("/v1/files/a.bin", half.clone())
            .await
            .status,
        200
    );
    let over = api(addr, Some(&token)).put("/v1/files/b.bin", half).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.json()["error"]["code"], "quota_exceeded");
    let listed = api(addr, Some(&token)).get("/v1/files").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn a_file_larger_than_the_api_serves_is_refused_not_held_in_memory() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "f", "ceiling": { "files": true } })).await;
    // As a guest could write through a read-write mount: past the 4 MiB the
    // test server takes in one upload.
    let root = dir.path().join("files").join(&tenant_id);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("big.bin"), vec![0u8; (4 << 20) + 1]).unwrap();
    let reply = api(addr, Some(&token)).get("/v1/files/big.bin").await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "too_large");
}
