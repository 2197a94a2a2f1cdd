//! Tenants, uploads and instances over HTTP: the lifecycle, isolation, and
//! what is refused before anything is stored.

use serde_json::{json, Value};
use sluice_tests::client::api;
use sluice_tests::{guest, tempdir};

use super::{assert_tenants_isolated, new_instance, start, tenant, upload};

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
            "/format: \"xml\" is not one of \"csv\", \"json\" or 2 other candidates",
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

#[tokio::test]
async fn a_crash_answers_502_with_the_connectors_last_output_in_the_details() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(addr, json!({ "name": "crash" })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(addr, &token, &json!({ "connector": connector })).await;
    let reply = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/fetch"),
            &json!({ "resource": "trap", "options": { "text": "about to fail" } }),
        )
        .await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "connector_failed");
    let output = error["details"]["output"].as_str().expect("the output");
    assert!(output.starts_with("about to fail\n"), "{output}");
    assert!(output.contains("probe asked to trap"), "{output}");
}
