//! The file connector on S3, against a real S3-API server (s3s-fs) that
//! checks every request's signature: the host signs with the grant's
//! `aws-sigv4` auth, the guest never holds the secret.

use std::io::Write;

use serde_json::{json, Value};
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Limits, Record, Session,
    SortDirection,
};
use sluice_tests::s3::{CuttingRelay, S3Server, SECRET_ACCESS_KEY};
use sluice_tests::{
    assert_every_checkpoint_resumes_exactly, data, fetch_all, file_connector, gzip, ndjson, probe,
    probe_request, stream_all,
};

const CSV: &str = "id,name,age\n1,Ada,36\n2,Alan,41\n3,Grace,85\n";

fn people() -> Vec<Value> {
    vec![
        json!({"id": 1, "name": "Ada", "age": 36}),
        json!({"id": 2, "name": "Alan", "age": 41}),
        json!({"id": 3, "name": "Grace", "age": 85}),
    ]
}

async fn open(server: &S3Server, root: &str, extra: Value) -> Session {
    open_with(server, root, extra, &Limits::default())
        .await
        .expect("the file connector opens on S3")
}

async fn open_with(
    server: &S3Server,
    root: &str,
    extra: Value,
    limits: &Limits,
) -> Result<Session, Error> {
    let mut config = server.config(root, extra.get("s3").cloned().unwrap_or(json!({})));
    if let Some(csv) = extra.get("csv") {
        config["csv"] = csv.clone();
    }
    file_connector()
        .open_with_limits(
            &config.to_string(),
            &server.grants(SECRET_ACCESS_KEY),
            limits,
        )
        .await
}

#[tokio::test]
async fn objects_in_every_format_read_as_files_do() {
    let server = S3Server::start();
    let rows = people();
    server.put("data", "in/people.csv", CSV);
    server.put("data", "in/people.ndjson", ndjson(&rows));
    server.put(
        "data",
        "in/people.json",
        serde_json::to_string(&rows).unwrap(),
    );
    server.put(
        "data",
        "in/people.ndjson.gz",
        gzip(ndjson(&rows).as_bytes()),
    );
    // No extension: gzip by its magic bytes, NDJSON by its first byte.
    server.put("data", "in/people-gz", gzip(ndjson(&rows).as_bytes()));
    server.put(
        "data",
        "in/a key with spaces & signs+.ndjson",
        ndjson(&rows),
    );
    let mut session = open(
        &server,
        "s3://data/in/",
        json!({"csv": {"infer_types": true}}),
    )
    .await;
    for resource in [
        "people.csv",
        "people.ndjson",
        "people.json",
        "people.ndjson.gz",
        "people-gz",
        "a key with spaces & signs+.ndjson",
        "s3://data/in/people.ndjson",
    ] {
        assert_eq!(fetch_all(&mut session, resource).await, rows, "{resource}");
    }
    let page = session
        .fetch(
            &FetchRequest::new("people.ndjson")
                .filter("age", FilterOp::Gt, "40")
                .sort("age", SortDirection::Desc)
                .fields(["name"]),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&page.records),
        vec![json!({"name": "Grace"}), json!({"name": "Alan"})]
    );
    session.health().await.unwrap();
}

#[tokio::test]
async fn discover_lists_the_prefix_through_every_continuation_page() {
    let server = S3Server::start();
    // More keys than one ListObjectsV2 page holds (1000).
    let keys: Vec<String> = (0..1003).map(|i| format!("many/k{i:05}.ndjson")).collect();
    for (i, key) in keys.iter().enumerate() {
        server.put("data", key, format!("{{\"i\":{i}}}\n"));
    }
    server.put("data", "elsewhere/outside.ndjson", "{\"i\":-1}\n");
    let mut session = open(&server, "s3://data/many/", json!({})).await;
    let found = session.discover().await.unwrap();
    let names: Vec<&str> = found.iter().map(|r| r.name.as_str()).collect();
    let expected: Vec<String> = keys.iter().map(|k| format!("s3://data/{k}")).collect();
    assert_eq!(names, expected);
    // The first 200 objects are read for their fields, the rest only named.
    for (i, resource) in found.iter().enumerate() {
        match (i < 200, resource.schema.as_deref()) {
            (true, Some(schema)) => {
                let schema: Value = serde_json::from_str(schema).unwrap();
                assert_eq!(schema["properties"]["i"]["type"], "integer");
            }
            (false, None) => {}
            (sampled, schema) => panic!("object {i}: sampled {sampled}, schema {schema:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_object_or_bucket_is_not_found() {
    let server = S3Server::start();
    server.create_bucket("data");
    let mut session = open(&server, "s3://data/", json!({})).await;
    for resource in ["nope.ndjson", "s3://no-such-bucket/x.ndjson"] {
        match session.fetch(&FetchRequest::new(resource)).await {
            Err(Error::Connector(ConnectorError::NotFound(m))) => {
                assert!(m.contains("NoSuch"), "{resource}: {m}")
            }
            other => panic!("{resource}: expected not-found, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_wrong_secret_is_denied_naming_the_grant_and_no_auth_is_denied_too() {
    let server = S3Server::start();
    server.put("data", "people.ndjson", ndjson(&people()));
    let config = server.config("s3://data/", json!({})).to_string();
    let wrong = file_connector()
        .open(&config, &server.grants("not-the-secret"))
        .await
        .unwrap();
    let anonymous = file_connector()
        .open(
            &config,
            &Grants::none().allow_http(&server.endpoint()).unwrap(),
        )
        .await
        .unwrap();
    for (what, mut session) in [("wrong secret", wrong), ("no auth", anonymous)] {
        match session.fetch(&FetchRequest::new("people.ndjson")).await {
            Err(Error::Connector(ConnectorError::Denied(m))) => {
                assert!(
                    m.contains("aws-sigv4") && m.contains(&server.endpoint()),
                    "{what}: {m}"
                );
                assert!(!m.contains("not-the-secret"), "{what}: {m}");
            }
            other => panic!("{what}: expected denied, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_ungranted_endpoint_is_denied_naming_the_grant() {
    let server = S3Server::start();
    server.create_bucket("data");
    let config = server.config("s3://data/", json!({})).to_string();
    let mut session = file_connector()
        .open(&config, &Grants::none())
        .await
        .unwrap();
    match session.fetch(&FetchRequest::new("x.ndjson")).await {
        Err(Error::Denied(denial)) => {
            assert_eq!(denial.grant, format!("--allow-http {}", server.endpoint()))
        }
        other => panic!("expected denied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_resumed_from_any_checkpoint_reads_exactly_the_rest_across_ranges() {
    let server = S3Server::start();
    let rows: Vec<Value> = (0..3000)
        .map(|i| json!({"n": i, "text": format!("row {i} {}", "y".repeat(i % 97))}))
        .collect();
    let csv: String = std::iter::once("n,text\n".to_string())
        .chain(
            rows.iter()
                .map(|r| format!("{},{}\n", r["n"], r["text"].as_str().unwrap())),
        )
        .collect();
    server.put("data", "rows.ndjson", ndjson(&rows));
    server.put("data", "rows.csv", csv);
    server.put("data", "rows.ndjson.gz", gzip(ndjson(&rows).as_bytes()));
    // 64 KiB ranges: each object is read in several, records straddle them.
    let mut session = open(
        &server,
        "s3://data",
        json!({"s3": {"read_chunk_bytes": 65536}, "csv": {"infer_types": true}}),
    )
    .await;
    for file in ["rows.ndjson", "rows.csv", "rows.ndjson.gz"] {
        let req = FetchRequest::new(file);
        let batches = stream_all(&mut session, &req, None, 700).await;
        let all: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
        assert_eq!(all, rows, "{file}: the whole stream");
        assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &rows, 1000, file)
            .await;
    }
    let past_end = session
        .stream(
            &FetchRequest::new("rows.ndjson"),
            Some("byte:99999999:line:5"),
        )
        .await
        .err();
    match past_end {
        Some(Error::Connector(ConnectorError::InvalidRequest(m))) => {
            assert!(m.contains("past the end of `s3://data/rows.ndjson`"), "{m}")
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
}

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_100_mb_object_streams_through_a_16_mib_guest_and_resumes_midway() {
    let server = S3Server::start();
    let filler = "x".repeat(480);
    let count = 200_000u64; // about 100 MB
    let mut body = Vec::with_capacity(100 << 20);
    for i in 0..count {
        writeln!(body, "{{\"n\":{i},\"filler\":\"{filler}\"}}").unwrap();
    }
    let size = body.len();
    assert!(size >= 100_000_000);
    server.put("data", "big.ndjson", &body);
    drop(body);
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut session = open_with(&server, "s3://data", json!({}), &limits)
        .await
        .unwrap();
    let rss_before = vm_kib("VmRSS:");
    let req = FetchRequest::new("big.ndjson").fields(["n"]);
    let mut stream = session.stream(&req, None).await.unwrap();
    let (mut seen, mut sum, mut midway) = (0u64, 0u64, None);
    let mut peak_rss = rss_before;
    while let Some(batch) = stream.next(1000).await.unwrap() {
        for value in data(&batch.records) {
            sum += value["n"].as_u64().unwrap();
            seen += 1;
        }
        if midway.is_none() && seen >= count / 2 {
            midway = Some((seen, batch.checkpoint.clone().unwrap()));
        }
        peak_rss = peak_rss.max(vm_kib("VmRSS:"));
    }
    stream.close().await.unwrap();
    assert_eq!(seen, count);
    assert_eq!(sum, count * (count - 1) / 2);
    eprintln!(
        "s3: streamed {} MB through a {} MiB guest; host RSS {} MiB before, peak {} MiB during (whole test process)",
        size / 1_000_000,
        limits.memory_bytes >> 20,
        rss_before >> 10,
        peak_rss >> 10
    );
    let (done, checkpoint) = midway.unwrap();
    let mut resumed = session.stream(&req, Some(&checkpoint)).await.unwrap();
    let mut first = None;
    let mut rest = 0u64;
    while let Some(batch) = resumed.next(5000).await.unwrap() {
        let values = data(&batch.records);
        first = first.or_else(|| values.first().map(|v| v["n"].as_u64().unwrap()));
        rest += values.len() as u64;
    }
    assert_eq!(
        first,
        Some(done),
        "the resumed stream starts at the next record"
    );
    assert_eq!(rest, count - done);
}

fn records(rows: &[Value]) -> Vec<Record> {
    rows.iter().map(Record::from_json).collect()
}

#[tokio::test]
async fn writes_go_up_in_one_put_or_by_multipart_upload() {
    let server = S3Server::start();
    server.create_bucket("out");
    let mut session = open(
        &server,
        "s3://out/exports",
        json!({"s3": {"part_size_bytes": 5 << 20}}),
    )
    .await;
    let rows = people();
    let small = session
        .execute(&ExecuteRequest::new(
            "people.ndjson",
            "write",
            records(&rows),
        ))
        .await
        .unwrap();
    assert_eq!(small.affected, 3);
    assert_eq!(
        std::fs::read_to_string(server.object_path("out", "exports/people.ndjson")).unwrap(),
        ndjson(&rows)
    );
    session
        .execute(&ExecuteRequest::new("people.csv", "write", records(&rows)))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(server.object_path("out", "exports/people.csv")).unwrap(),
        "id,name,age\n1,Ada,36\n2,Alan,41\n3,Grace,85\n"
    );
    // Compressed by the key's extension, read back through the connector.
    session
        .execute(&ExecuteRequest::new(
            "people.ndjson.zst",
            "write",
            records(&rows),
        ))
        .await
        .unwrap();
    assert_eq!(fetch_all(&mut session, "people.ndjson.zst").await, rows);
    // About 12 MiB: three parts of 5 MiB, 5 MiB and the rest.
    let big: Vec<Value> = (0..24_000)
        .map(|i| json!({"i": i, "pad": "p".repeat(500)}))
        .collect();
    let written = session
        .execute(&ExecuteRequest::new("big.ndjson", "write", records(&big)))
        .await
        .unwrap();
    assert_eq!(written.affected, 24_000);
    let stored = std::fs::read_to_string(server.object_path("out", "exports/big.ndjson")).unwrap();
    assert!(stored.len() > 10 << 20);
    assert_eq!(stored, ndjson(&big));
    // What the connector wrote reads back through it.
    assert_eq!(fetch_all(&mut session, "big.ndjson").await.len(), 24_000);
    // A multipart ETag ends in `-PARTS`.
    let etag = probe_etag(&server, "/out/exports/big.ndjson").await;
    assert!(etag.ends_with("-3\""), "{etag}");
    match session
        .execute(&ExecuteRequest::new(
            "people.ndjson",
            "append",
            records(&rows),
        ))
        .await
    {
        Err(Error::Connector(ConnectorError::Unsupported(m))) => {
            assert!(m.contains("cannot be appended"), "{m}")
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
}

/// The probe's answer to an HTTP request through the server's grant:
/// `{"status", "etag", "body", ...}`.
async fn probe_http(session: &mut Session, request: Value) -> Value {
    data(
        &session
            .fetch(&probe_request("http", request))
            .await
            .unwrap()
            .records,
    )
    .remove(0)
}

/// The ETag of an object, fetched by the probe with a HEAD through the same grant.
async fn probe_etag(server: &S3Server, path: &str) -> String {
    let mut session = probe()
        .open("{}", &server.grants(SECRET_ACCESS_KEY))
        .await
        .unwrap();
    let url = format!("{}{path}", server.endpoint());
    let answer = probe_http(&mut session, json!({ "url": url, "method": "HEAD" })).await;
    assert_eq!(answer["status"], 200, "{answer}");
    answer["etag"]
        .as_str()
        .unwrap_or_else(|| panic!("no etag in {answer}"))
        .to_string()
}

#[tokio::test]
async fn the_secret_access_key_never_enters_guest_memory() {
    let server = S3Server::start();
    server.put("data", "hello.ndjson", "{\"greeting\":\"hello from s3\"}\n");
    let mut session = probe()
        .open("{}", &server.grants(SECRET_ACCESS_KEY))
        .await
        .unwrap();
    let url = format!("{}/data/hello.ndjson", server.endpoint());
    let answer = probe_http(&mut session, json!({ "url": url })).await;
    assert_eq!(
        answer["status"], 200,
        "the host signed the request: {answer}"
    );
    let scan = |text: &str| {
        probe_request(
            "memscan",
            json!({ "text": text.chars().rev().collect::<String>() }),
        )
    };
    let found = data(
        &session
            .fetch(&scan(SECRET_ACCESS_KEY))
            .await
            .unwrap()
            .records,
    )
    .remove(0);
    assert_eq!(
        found["found"], false,
        "the secret key is nowhere in guest memory"
    );
    // The scan does find what the guest did see: the object's body.
    let found = data(&session.fetch(&scan("hello from s3")).await.unwrap().records).remove(0);
    assert_eq!(found["found"], true);
}

#[tokio::test]
async fn a_multipart_upload_cut_midway_is_aborted_and_leaves_nothing_behind() {
    let server = S3Server::start();
    server.create_bucket("out");
    // The connection that carries part 2 is cut before the server sees it.
    let relay = CuttingRelay::start(server.address(), "PUT /out/big.ndjson?partNumber=2&");
    let origin = format!("http://{}", relay.address);
    let config =
        json!({"root": "s3://out", "s3": {"endpoint": origin, "part_size_bytes": 5 << 20}});
    let mut session = file_connector()
        .open(&config.to_string(), &server.grants_via(&origin))
        .await
        .unwrap();
    let big: Vec<Value> = (0..24_000)
        .map(|i| json!({"i": i, "pad": "p".repeat(500)}))
        .collect();
    let failed = session
        .execute(&ExecuteRequest::new("big.ndjson", "write", records(&big)))
        .await;
    assert!(
        matches!(
            failed,
            Err(Error::Connector(ConnectorError::Unavailable(_)))
        ),
        "{failed:?}"
    );
    // Part 1 had arrived; the abort deleted it and the upload itself.
    assert_eq!(
        server.stored_files(),
        Vec::<String>::new(),
        "nothing is left"
    );
    assert!(
        !server.object_path("out", "big.ndjson").exists(),
        "no object appeared"
    );
    // The same write through an uncut connection succeeds.
    let mut direct = open(
        &server,
        "s3://out",
        json!({"s3": {"part_size_bytes": 5 << 20}}),
    )
    .await;
    direct
        .execute(&ExecuteRequest::new("big.ndjson", "write", records(&big)))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(server.object_path("out", "big.ndjson")).unwrap(),
        ndjson(&big)
    );
}
