//! The `grpc` connector against a real gRPC server (grpcio, `tests/grpc`),
//! over the host's HTTP/2 (h2c): every call shape, the proto3 JSON mapping
//! checked against what the server saw and sent, reflection and descriptor
//! sets, paging by token, status codes as typed errors, and the host's
//! grant and response cap.

use serde_json::{json, Value};
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Record, Session,
};
use sluice_tests::grpc::GrpcServer;
use sluice_tests::{connector, data};

const ECHO: &str = "lab.v1.Lab/Echo";
const LIST: &str = "lab.v1.Lab/ListItems";
const COUNT: &str = "lab.v1.Lab/Count";
const COLLECT: &str = "lab.v1.Lab/Collect";
const FAIL: &str = "lab.v1.Lab/Fail";
const BIG: &str = "lab.v1.Lab/Big";

/// A shape with every kind of field, in the form the proto3 JSON mapping
/// writes it (so what was sent, what the server saw and what came back
/// can be compared as they are).
fn shape() -> Value {
    json!({
        "name": "triangle",
        "big": "9007199254740993",
        "ubig": "18446744073709551615",
        "blob": "AAEC/w==",
        "color": "GREEN",
        "points": [{ "x": 1, "y": 2 }, { "x": -3 }],
        "counts": { "a": 1, "b": -2 },
        "byId": { "7": { "x": 7 }, "-1": { "y": 1 } },
        "center": { "x": 5, "y": 6 },
        "at": "2024-02-29T12:34:56.789Z",
        "took": "1.500s",
        "extra": { "list": ["two", null, true, 1.5], "nested": { "deep": 2.5 } },
        "note": "hello",
        "limit": "42",
        "ratio": 0.25,
        "flag": true,
        "palette": ["RED", "GREEN", "RED"],
        "child": { "name": "kid", "label": "inner", "child": { "name": "grandkid" } },
        "delta": -7,
        "stamp": "123",
        "share": 0.5
    })
}

fn paging() -> Value {
    json!({
        LIST: { "request_field": "pageToken", "response_field": "nextPageToken",
                "records_field": "items", "page_size_field": "pageSize" },
        COUNT: { "request_field": "pageToken", "response_field": "id" }
    })
}

async fn open_with(server: &GrpcServer, config: Value) -> Session {
    connector("sluice_grpc")
        .open(&config.to_string(), &server.grants())
        .await
        .expect("grpc opens")
}

async fn open(server: &GrpcServer) -> Session {
    open_with(
        server,
        json!({ "endpoint": server.origin(), "paging": paging() }),
    )
    .await
}

fn item(id: u64) -> Value {
    json!({ "id": id.to_string(), "name": format!("item-{id}") })
}

#[tokio::test]
async fn a_unary_call_carries_every_json_mapping_rule_both_ways() {
    let server = GrpcServer::start();
    let mut session = open(&server).await;
    let page = session
        .fetch(&FetchRequest::new(ECHO).options(&shape()))
        .await
        .unwrap();
    assert_eq!(data(&page.records), vec![shape()], "what came back");
    assert_eq!(page.next_cursor, None);
    let calls = server.calls_of("Echo");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["requests"],
        json!([shape()]),
        "what the server saw"
    );
    assert_eq!(
        calls[0]["deadline"], true,
        "the deadline went as grpc-timeout"
    );
    // Fields are kept as asked, after the call.
    let page = session
        .fetch(
            &FetchRequest::new(ECHO)
                .options(&shape())
                .fields(["name", "big"]),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&page.records),
        vec![json!({ "name": "triangle", "big": "9007199254740993" })]
    );
}

#[tokio::test]
async fn reflection_and_a_descriptor_set_describe_the_same_methods_and_agree() {
    let server = GrpcServer::start();
    let mut by_reflection = open(&server).await;
    let mut by_set = open_with(
        &server,
        json!({ "endpoint": server.origin(), "descriptor_set": server.descriptor_set(), "paging": paging() }),
    )
    .await;
    let reflected = by_reflection.discover().await.unwrap();
    let described = by_set.discover().await.unwrap();
    let names: Vec<&str> = reflected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [BIG, COLLECT, COUNT, ECHO, FAIL, LIST]);
    assert_eq!(
        reflected
            .iter()
            .map(|r| (&r.name, &r.schema))
            .collect::<Vec<_>>(),
        described
            .iter()
            .map(|r| (&r.name, &r.schema))
            .collect::<Vec<_>>(),
    );
    for session in [&mut by_reflection, &mut by_set] {
        let page = session
            .fetch(&FetchRequest::new(ECHO).options(&shape()))
            .await
            .unwrap();
        assert_eq!(data(&page.records), vec![shape()]);
    }
    // The schemas follow the JSON mapping.
    let schema = |name: &str| -> Value {
        let info = reflected.iter().find(|r| r.name == name).unwrap();
        serde_json::from_str(info.schema.as_deref().unwrap()).unwrap()
    };
    let echo = schema(ECHO);
    assert_eq!(echo["x-streaming"], "unary");
    assert_eq!(echo["$ref"], "#/$defs/lab.v1.Shape");
    assert_eq!(echo["x-request"]["$ref"], "#/$defs/lab.v1.Shape");
    let shape = &echo["$defs"]["lab.v1.Shape"]["properties"];
    assert_eq!(shape["big"]["type"], "string");
    assert_eq!(shape["blob"]["contentEncoding"], "base64");
    assert_eq!(
        shape["color"]["enum"],
        json!(["COLOR_UNSPECIFIED", "RED", "GREEN"])
    );
    assert_eq!(
        shape["byId"]["additionalProperties"]["$ref"],
        "#/$defs/lab.v1.Point"
    );
    assert_eq!(shape["at"]["format"], "date-time");
    assert_eq!(shape["note"]["type"], json!(["string", "null"]));
    assert_eq!(shape["child"]["$ref"], "#/$defs/lab.v1.Shape", "recursive");
    assert_eq!(schema(COUNT)["x-streaming"], "server");
    assert_eq!(schema(COLLECT)["x-streaming"], "client");
    assert_eq!(schema(COLLECT)["x-request"]["$ref"], "#/$defs/lab.v1.Item");
}

#[tokio::test]
async fn a_server_streaming_call_is_one_record_per_message_and_pages_by_its_cursor() {
    let server = GrpcServer::start();
    let mut session = open(&server).await;
    let all = session
        .fetch(&FetchRequest::new(COUNT).options(&json!({ "count": 5 })))
        .await
        .unwrap();
    assert_eq!(data(&all.records), (1..=5).map(item).collect::<Vec<_>>());
    // A filter sets a request field.
    let three = session
        .fetch(&FetchRequest::new(COUNT).filter("count", FilterOp::Eq, "3"))
        .await
        .unwrap();
    assert_eq!(data(&three.records), (1..=3).map(item).collect::<Vec<_>>());
    // Pages of two: each ends at the last message's id, where the next resumes.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let req = FetchRequest::new(COUNT)
            .options(&json!({ "count": 5 }))
            .page(2, None, cursor.clone());
        let page = session.fetch(&req).await.unwrap();
        pages += 1;
        seen.extend(data(&page.records));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=5).map(item).collect::<Vec<_>>());
    assert_eq!(pages, 3);
    let tokens: Vec<Value> = server
        .calls_of("Count")
        .iter()
        .skip(2)
        .map(|c| c["requests"][0]["pageToken"].clone())
        .collect();
    assert_eq!(tokens, [Value::Null, json!("2"), json!("4")]);

    // Without a paging entry a page is whole or refused, never cut short silently.
    let mut unpaged = open_with(&server, json!({ "endpoint": server.origin() })).await;
    let whole = unpaged
        .fetch(
            &FetchRequest::new(COUNT)
                .options(&json!({ "count": 2 }))
                .page(2, None, None),
        )
        .await
        .unwrap();
    assert_eq!(
        (data(&whole.records), whole.next_cursor),
        (vec![item(1), item(2)], None)
    );
    let more = unpaged
        .fetch(
            &FetchRequest::new(COUNT)
                .options(&json!({ "count": 3 }))
                .page(2, None, None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&more, Error::Connector(ConnectorError::Unsupported(m)) if m.contains("paging")),
        "{more}"
    );
    let one = unpaged
        .fetch(
            &FetchRequest::new(ECHO)
                .options(&json!({ "name": "n" }))
                .page(10, None, None),
        )
        .await
        .unwrap();
    assert_eq!(
        (data(&one.records), one.next_cursor),
        (vec![json!({ "name": "n" })], None)
    );
}

#[tokio::test]
async fn a_stream_resumes_exactly_after_its_checkpoint() {
    let server = GrpcServer::start();
    let mut session = open(&server).await;
    let req = FetchRequest::new(COUNT).options(&json!({ "count": 5 }));
    let first = {
        let mut stream = session.stream(&req, None).await.unwrap();
        let batch = stream.next(2).await.unwrap().expect("a first batch");
        stream.close().await.unwrap();
        batch
    };
    // A batch holds what has arrived, one or two messages here.
    let read = first.records.len() as u64;
    assert!((1..=2).contains(&read));
    assert_eq!(
        data(&first.records),
        (1..=read).map(item).collect::<Vec<_>>()
    );
    let checkpoint = read.to_string();
    assert_eq!(first.checkpoint.as_deref(), Some(checkpoint.as_str()));
    let mut stream = session.stream(&req, Some(&checkpoint)).await.unwrap();
    let mut rest = Vec::new();
    while let Some(batch) = stream.next(2).await.unwrap() {
        let records = data(&batch.records);
        assert!((1..=2).contains(&records.len()));
        // Each batch's checkpoint is the position of its last message.
        let last = records.last().unwrap()["id"].as_str().unwrap().to_string();
        assert_eq!(batch.checkpoint, Some(last));
        rest.extend(records);
    }
    stream.close().await.unwrap();
    assert_eq!(rest, (read + 1..=5).map(item).collect::<Vec<_>>());

    // A batch holds what has arrived: it does not wait for the next message.
    let slow = FetchRequest::new(COUNT).options(&json!({ "count": 3, "delay_ms": 1500 }));
    let mut stream = session.stream(&slow, None).await.unwrap();
    let first = stream.next(100).await.unwrap().unwrap();
    assert_eq!(data(&first.records), vec![item(1)]);
    let mut rest = Vec::new();
    while let Some(batch) = stream.next(100).await.unwrap() {
        rest.extend(data(&batch.records));
    }
    stream.close().await.unwrap();
    assert_eq!(rest, vec![item(2), item(3)]);

    // A paged unary method streams page by page, the token as checkpoint.
    let req = FetchRequest::new(LIST).options(&json!({ "count": 5 }));
    let mut stream = session.stream(&req, None).await.unwrap();
    let batch = stream.next(100).await.unwrap().unwrap();
    assert_eq!(
        (data(&batch.records), batch.checkpoint.as_deref()),
        (vec![item(1), item(2)], Some("2"))
    );
    stream.close().await.unwrap();
    let mut stream = session.stream(&req, Some("2")).await.unwrap();
    let mut rest = Vec::new();
    let mut last = None;
    while let Some(batch) = stream.next(100).await.unwrap() {
        rest.extend(data(&batch.records));
        last = batch.checkpoint;
    }
    stream.close().await.unwrap();
    assert_eq!(rest, vec![item(3), item(4), item(5)]);
    assert_eq!(last.as_deref(), Some("end"));
    let mut stream = session.stream(&req, Some("end")).await.unwrap();
    assert!(
        stream.next(100).await.unwrap().is_none(),
        "resumed at its end"
    );
}

#[tokio::test]
async fn a_paged_unary_method_is_read_whole_or_a_page_at_a_time() {
    let server = GrpcServer::start();
    let mut session = open(&server).await;
    let all = session
        .fetch(&FetchRequest::new(LIST).options(&json!({ "count": 5 })))
        .await
        .unwrap();
    assert_eq!(data(&all.records), (1..=5).map(item).collect::<Vec<_>>());
    assert_eq!(all.next_cursor, None);
    assert_eq!(server.calls_of("ListItems").len(), 3, "every page was read");
    let page = session
        .fetch(
            &FetchRequest::new(LIST)
                .options(&json!({ "count": 5 }))
                .page(3, None, None),
        )
        .await
        .unwrap();
    assert_eq!(data(&page.records), (1..=3).map(item).collect::<Vec<_>>());
    assert_eq!(page.next_cursor.as_deref(), Some("3"));
    let seen = server.calls_of("ListItems").pop().unwrap();
    assert_eq!(seen["requests"][0], json!({ "count": 5, "pageSize": 3 }));
}

#[tokio::test]
async fn execute_sends_each_record_or_all_of_them_to_a_client_stream() {
    let server = GrpcServer::start();
    let mut session = open(&server).await;
    let items: Vec<Record> = [
        json!({ "id": "1", "name": "a" }),
        json!({ "id": "20", "name": "b" }),
    ]
    .iter()
    .map(Record::from_json)
    .collect();
    let collected = session
        .execute(&ExecuteRequest::new(COLLECT, "call", items.clone()))
        .await
        .unwrap();
    assert_eq!(collected.affected, 2);
    assert_eq!(
        data(&collected.records),
        vec![json!({ "count": 2, "total": "21", "names": ["a", "b"] })]
    );
    assert_eq!(
        server.calls_of("Collect")[0]["requests"],
        json!([{ "id": "1", "name": "a" }, { "id": "20", "name": "b" }])
    );
    let shapes = vec![
        Record::from_json(&shape()),
        Record::from_json(&json!({ "name": "square" })),
    ];
    let echoed = session
        .execute(&ExecuteRequest::new(ECHO, "call", shapes))
        .await
        .unwrap();
    assert_eq!(
        data(&echoed.records),
        vec![shape(), json!({ "name": "square" })]
    );
    assert_eq!(server.calls_of("Echo").len(), 2, "one call per record");
    let refused = session
        .execute(&ExecuteRequest::new(
            ECHO,
            "call",
            vec![Record::from_json(&json!({ "nope": 1 }))],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Connector(ConnectorError::InvalidRequest(m)) if m.contains("record 0") && m.contains("nope")),
        "{refused}"
    );
    assert_eq!(server.calls_of("Echo").len(), 2, "nothing was sent");
    // A call that fails after others were made says how many were.
    let failing = [
        json!({ "code": 0, "message": "fine" }),
        json!({ "code": 5, "message": "gone" }),
    ]
    .iter()
    .map(Record::from_json)
    .collect();
    let err = session
        .execute(&ExecuteRequest::new(FAIL, "call", failing))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::NotFound(m))
            if m.starts_with("record 1: ") && m.contains("gone") && m.contains("the 1 record(s) before it were sent and answered")),
        "{err}"
    );
}

#[tokio::test]
async fn every_grpc_status_maps_to_its_typed_error_with_the_message() {
    let server = GrpcServer::start();
    let mut session = open(&server).await;
    for (code, expected) in [
        (5, "not-found"),
        (7, "denied"),
        (16, "denied"),
        (8, "rate-limited"),
        (14, "unavailable"),
        (4, "timeout"),
        (3, "invalid-request"),
        (12, "unsupported"),
    ] {
        let message = format!("because {code}: ünïcode");
        let err = session
            .fetch(&FetchRequest::new(FAIL).options(&json!({ "code": code, "message": message })))
            .await
            .unwrap_err();
        let Error::Connector(err) = err else {
            panic!("{err}")
        };
        let (kind, text) = match &err {
            ConnectorError::NotFound(m) => ("not-found", m.clone()),
            ConnectorError::Denied(m) => ("denied", m.clone()),
            ConnectorError::RateLimited(_) => ("rate-limited", String::new()),
            ConnectorError::Unavailable(m) => ("unavailable", m.clone()),
            ConnectorError::Timeout => ("timeout", String::new()),
            ConnectorError::InvalidRequest(m) => ("invalid-request", m.clone()),
            ConnectorError::Unsupported(m) => ("unsupported", m.clone()),
            other => panic!("code {code}: {other:?}"),
        };
        assert_eq!(kind, expected, "code {code}: {err:?}");
        if !text.is_empty() {
            assert!(text.contains(&message), "code {code}: {text}");
            assert!(text.contains(FAIL), "code {code}: {text}");
        }
    }
    // A request that does not fit the message is refused before any call.
    let err = session
        .fetch(&FetchRequest::new(ECHO).options(&json!({ "big": "twelve" })))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::InvalidRequest(m)) if m.contains("lab.v1.Shape")),
        "{err}"
    );
    let err = session
        .fetch(&FetchRequest::new(COUNT).filter("count", FilterOp::Gt, "3"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err}"
    );
    let err = session
        .fetch(&FetchRequest::new("lab.v1.Lab/Nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::NotFound(m)) if m.contains(ECHO)),
        "{err}"
    );
}

#[tokio::test]
async fn metadata_goes_with_every_call_and_health_asks_the_server() {
    let server = GrpcServer::start();
    let mut session = open_with(
        &server,
        json!({ "endpoint": server.origin(), "metadata": { "X-Tenant": "t-7" }, "methods": ["lab.v1.Lab"] }),
    )
    .await;
    session.health().await.unwrap();
    session
        .fetch(&FetchRequest::new(ECHO).options(&json!({ "name": "m" })))
        .await
        .unwrap();
    assert_eq!(
        server.calls_of("Echo")[0]["metadata"],
        json!({ "x-tenant": "t-7" })
    );
    // Only the methods asked for are exposed.
    let bad = connector("sluice_grpc")
        .open(
            &json!({ "endpoint": server.origin(), "methods": ["lab.v1.Nope"] }).to_string(),
            &server.grants(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, Error::Connector(ConnectorError::InvalidConfig(m)) if m.contains("lab.v1.Nope")),
        "{bad}"
    );
}

#[tokio::test]
async fn an_ungranted_server_is_denied_naming_the_grant() {
    let server = GrpcServer::start();
    let config = json!({ "endpoint": server.origin() }).to_string();
    let err = connector("sluice_grpc")
        .open(&config, &Grants::none())
        .await
        .unwrap_err();
    let Error::Denied(denial) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        denial.grant,
        format!("--allow-http-h2c {}", server.origin())
    );
    assert!(
        err.to_string()
            .contains(&format!("--allow-http-h2c {}", server.origin())),
        "{err}"
    );
    assert!(server.calls().is_empty(), "nothing reached the server");
    // Granted as plain HTTP/1.1, the gRPC server cannot answer: the error says how to grant it.
    let http1 = Grants::none().allow_http(&server.origin()).unwrap();
    let err = connector("sluice_grpc")
        .open(&config, &http1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--allow-http-h2c"), "{err}");
}

#[tokio::test]
async fn an_oversized_message_is_stopped_by_the_response_cap_and_the_message_limit() {
    let server = GrpcServer::start();
    let mut grants = server.grants();
    grants.http.max_response_bytes = 1 << 20;
    let mut session = connector("sluice_grpc")
        .open(
            &json!({ "endpoint": server.origin(), "max_message_bytes": 64 << 20 }).to_string(),
            &grants,
        )
        .await
        .unwrap();
    let small = session
        .fetch(&FetchRequest::new(BIG).options(&json!({ "bytes": 1000 })))
        .await
        .unwrap();
    assert_eq!(
        data(&small.records)[0]["data"].as_str().unwrap().len(),
        1336,
        "1000 bytes in base64"
    );
    let err = session
        .fetch(&FetchRequest::new(BIG).options(&json!({ "bytes": 4 << 20 })))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains("cap")),
        "{err}"
    );
    let mut session = open_with(
        &server,
        json!({ "endpoint": server.origin(), "max_message_bytes": 4096 }),
    )
    .await;
    let err = session
        .fetch(&FetchRequest::new(BIG).options(&json!({ "bytes": 5000 })))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains("max_message_bytes")),
        "{err}"
    );
}

#[test]
fn learn_mode_learns_the_h2c_grant_a_grpc_server_needs() {
    let server = GrpcServer::start();
    let config = json!({ "endpoint": server.origin() }).to_string();
    let wasm = sluice_tests::guest("sluice_grpc").display().to_string();
    let out = std::process::Command::new(sluice_tests::sluice_bin())
        .args(["run", &wasm, "--learn", "--config", &config, "discover"])
        .env_remove("SLUICE_LOG")
        .output()
        .expect("sluice runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let learned: Value = serde_json::from_slice(&out.stdout).expect("a grants file");
    assert_eq!(
        learned,
        json!({ "http": { "origins": [server.origin()], "h2c": [server.origin()] } })
    );
}
