//! `sluice test-connector` over the bundled connectors, each against its
//! real upstream: every check passes or is skipped saying why, none fails.
//! (The file and redis connectors are checked in `cli`.)

use std::process::Command;

use serde_json::json;
use sluice_tests::grpc::GrpcServer;
use sluice_tests::mysql::TestDatabase;
use sluice_tests::postgres::TestSchema;
use sluice_tests::rabbitmq::TestQueue;
use sluice_tests::{guest, root, sluice_bin};

/// Run `sluice test-connector` on `connector` with `args`: whether it
/// passed, its report, and what it wrote to stderr.
fn suite(connector: &str, args: &[&str]) -> (bool, String, String) {
    let wasm = guest(connector).display().to_string();
    let out = Command::new(sluice_bin())
        .arg("test-connector")
        .arg(&wasm)
        .args(args)
        .current_dir(root())
        .env_remove("SLUICE_LOG")
        .output()
        .expect("sluice runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`suite`]'s report, asserted to have passed with no failed check.
fn passes(connector: &str, args: &[&str]) -> String {
    let (passed, report, stderr) = suite(connector, args);
    assert!(passed, "{connector}:\n{report}{stderr}");
    assert!(
        report.trim_end().ends_with("passed, 0 failed"),
        "{connector}:\n{report}"
    );
    report
}

fn has(report: &str, line: &str) {
    assert!(
        report.lines().any(|l| l == line),
        "no `{line}` in:\n{report}"
    );
}

#[tokio::test]
async fn the_postgres_connector_passes_every_check() {
    let schema = TestSchema::new().await;
    schema
        .run("CREATE TABLE people (id int PRIMARY KEY, name text, age int); INSERT INTO people SELECT i, 'p' || i, 20 + i % 7 FROM generate_series(1, 9) i")
        .await;
    let grant = format!("main={}", sluice_tests::postgres::url());
    let config = json!({ "grant": "main", "schema": schema.name }).to_string();
    let report = passes(
        "sluice_postgres",
        &[
            "--allow-sql",
            &grant,
            "--config",
            &config,
            "--resource",
            "people",
        ],
    );
    for check in [
        "ok    fetch honours filters",
        "ok    fetch honours sort",
        "ok    pages cover the records once, in order",
        "ok    the largest page size is kept",
        "ok    a stream resumes from a checkpoint exactly",
    ] {
        has(&report, check);
    }
}

#[tokio::test]
async fn the_mysql_connector_passes_every_check() {
    let mut db = TestDatabase::new().await;
    db.run("CREATE TABLE people (id int PRIMARY KEY, name varchar(20), age int)")
        .await;
    db.run("INSERT INTO people VALUES (1,'a',20),(2,'b',21),(3,'c',22),(4,'d',20),(5,'e',23)")
        .await;
    let grant = format!("main={}", db.grant_url());
    let report = passes(
        "sluice_mysql",
        &[
            "--allow-sql",
            &grant,
            "--config",
            r#"{"grant": "main"}"#,
            "--resource",
            "people",
        ],
    );
    for check in [
        "ok    fetch honours filters",
        "ok    fetch honours sort",
        "ok    pages cover the records once, in order",
        "ok    a stream resumes from a checkpoint exactly",
    ] {
        has(&report, check);
    }
}

#[test]
fn the_grpc_connector_passes_every_check() {
    let server = GrpcServer::start();
    let config = json!({
        "endpoint": server.origin(),
        "paging": { "lab.v1.Lab/Count": { "request_field": "pageToken", "response_field": "id" } }
    })
    .to_string();
    let origin = server.origin();
    let report = passes(
        "sluice_grpc",
        &[
            "--allow-http-h2c",
            &origin,
            "--config",
            &config,
            "--resource",
            "lab.v1.Lab/Count",
            "--options",
            r#"{"count": 7}"#,
        ],
    );
    has(&report, "ok    pages cover the records once, in order");
    has(&report, "ok    a stream resumes from a checkpoint exactly");
    // Its filters set request fields: one on a response field is refused, and says so.
    assert!(
        report.contains("skip  fetch honours filters: `id` = \"1\" answered unsupported"),
        "{report}"
    );
}

#[test]
fn the_rabbitmq_connector_passes_every_check() {
    let queue = TestQueue::new();
    queue.publish(&(1..=7).map(|n| json!({ "n": n })).collect::<Vec<_>>());
    let report = passes(
        "sluice_rabbitmq",
        &[
            "--allow-tcp",
            "127.0.0.1:5672",
            "--config",
            r#"{"address": "127.0.0.1:5672", "block_ms": 300}"#,
            "--resource",
            &queue.name,
            "--options",
            r#"{"end_when_idle": true}"#,
        ],
    );
    has(&report, "ok    fetch honours fields");
}

#[test]
fn the_nats_connector_passes_every_check() {
    let stream = sluice_tests::nats::TestStream::new();
    stream.publish(&(1..=7).map(|n| json!({ "n": n })).collect::<Vec<_>>());
    let report = passes(
        "sluice_nats",
        &[
            "--allow-tcp",
            "127.0.0.1:4222",
            "--config",
            r#"{"address": "127.0.0.1:4222", "durable": "conformance", "block_ms": 300}"#,
            "--resource",
            &stream.name,
            "--options",
            r#"{"end_when_idle": true}"#,
        ],
    );
    has(&report, "ok    fetch honours fields");
    has(&report, "ok    pages cover the records once, in order");
}

#[test]
fn the_kafka_connector_passes_every_check() {
    let broker = sluice_tests::kafka::Broker::start();
    broker.create_topic("conformance", 1);
    broker.produce(
        "conformance",
        &(1..=7)
            .map(|n| json!({ "value": sluice_tests::kafka::base64(format!("{{\"n\": {n}}}").as_bytes()) }))
            .collect::<Vec<_>>(),
    );
    let config = json!({ "bootstrap": [broker.address()], "block_ms": 300 }).to_string();
    let report = passes(
        "sluice_kafka",
        &[
            "--allow-tcp",
            broker.address(),
            "--config",
            &config,
            "--resource",
            "conformance",
            "--options",
            r#"{"end_when_idle": true}"#,
        ],
    );
    has(&report, "ok    pages cover the records once, in order");
}

#[test]
fn the_mqtt_connector_passes_every_check() {
    let topic = sluice_tests::mqtt::TestTopic::new();
    let config =
        json!({ "address": "127.0.0.1:1883", "client_id": topic.client_id, "block_ms": 300 })
            .to_string();
    let report = passes(
        "sluice_mqtt",
        &[
            "--allow-tcp",
            "127.0.0.1:1883",
            "--config",
            &config,
            "--resource",
            &topic.topic,
            "--options",
            r#"{"end_when_idle": true}"#,
        ],
    );
    has(&report, "ok    an unknown resource is a typed error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_and_graphql_connectors_pass_every_check() {
    let upstream = sluice_tests::upstream::Upstream::start().await;
    let origin = upstream.origin();
    let rest = json!({
        "base_url": origin,
        "resources": { "items": { "path": "/api/items", "records_path": "/data", "id_field": "id",
            "pagination": { "type": "offset", "page_size": 10 }, "filters": { "status": "status" } } }
    })
    .to_string();
    let graphql = json!({
        "endpoint": upstream.url("/graphql"),
        "resources": { "items": {
            "query": "query($first: Int, $after: String, $status: String) { items(first: $first, after: $after, status: $status) { edges { node { id name status } cursor } pageInfo { hasNextPage endCursor } } }",
            "records_path": "/data/items/edges", "node_path": "/node", "id_field": "id",
            "pagination": { "type": "relay", "page_info_path": "/data/items/pageInfo", "page_size": 10 },
            "filters": { "status": "status" } } }
    })
    .to_string();
    let (rest, graphql) = tokio::task::spawn_blocking(move || {
        let grant = ["--allow-http", origin.as_str()];
        let rest = passes(
            "sluice_rest",
            &[grant[0], grant[1], "--config", &rest, "--resource", "items"],
        );
        let graphql = passes(
            "sluice_graphql",
            &[
                grant[0],
                grant[1],
                "--config",
                &graphql,
                "--resource",
                "items",
            ],
        );
        (rest, graphql)
    })
    .await
    .unwrap();
    for report in [&rest, &graphql] {
        has(report, "ok    pages cover the records once, in order");
        has(report, "ok    a stream resumes from a checkpoint exactly");
    }
}

#[test]
fn a_capability_used_outside_the_grants_fails_the_suite_naming_the_grant() {
    // A port nothing listens on: the host refuses the request before any connection.
    let config = json!({ "base_url": "http://127.0.0.1:9", "resources": { "items": { "path": "/x", "records_path": "/data" } } })
        .to_string();
    let (passed, report, _) = suite("sluice_rest", &["--config", &config]);
    assert!(!passed, "{report}");
    assert!(
        report.contains("FAIL  no capability used outside the grants given: 1 attempt(s) the grants do not allow, first: GET http://127.0.0.1:9/x (would need --allow-http http://127.0.0.1:9)"),
        "{report}"
    );
}
