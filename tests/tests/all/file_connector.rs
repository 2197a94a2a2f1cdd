//! The file connector on CSV, JSON and NDJSON, plain and gzip, including
//! malformed input, pagination, streaming with checkpoints and writes.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Limits, Record, Session,
    SortDirection,
};
use sluice_tests::{
    assert_every_checkpoint_resumes_exactly, data, fetch_all, file_connector, gzip, ndjson,
    stream_all, tempdir,
};

const CSV: &str = "id,name,age,city\n1,Ada,36,London\n2,Alan,41,Wilmslow\n3,Grace,85,Arlington\n4,Edsger,72,Nuenen\n5,Barbara,86,Boston\n";

fn people() -> Vec<Value> {
    vec![
        json!({"id": 1, "name": "Ada", "age": 36, "city": "London"}),
        json!({"id": 2, "name": "Alan", "age": 41, "city": "Wilmslow"}),
        json!({"id": 3, "name": "Grace", "age": 85, "city": "Arlington"}),
        json!({"id": 4, "name": "Edsger", "age": 72, "city": "Nuenen"}),
        json!({"id": 5, "name": "Barbara", "age": 86, "city": "Boston"}),
    ]
}

async fn open(dir: &Path, mode: &str, config: Value) -> Session {
    let grants = Grants::none()
        .mount(&format!("{}:/data:{mode}", dir.display()))
        .unwrap();
    let mut config = config;
    config["root"] = json!("/data");
    file_connector()
        .open(&config.to_string(), &grants)
        .await
        .expect("file connector opens")
}

#[tokio::test]
async fn csv_with_type_inference_reads_typed_records() {
    let dir = tempdir();
    std::fs::write(dir.path().join("people.csv"), CSV).unwrap();
    let mut session = open(dir.path(), "ro", json!({"csv": {"infer_types": true}})).await;
    assert_eq!(fetch_all(&mut session, "people.csv").await, people());
}

#[tokio::test]
async fn csv_without_inference_keeps_text_and_filters_numerically() {
    let dir = tempdir();
    std::fs::write(dir.path().join("people.csv"), CSV).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let req = FetchRequest::new("people.csv")
        .filter("age", FilterOp::Gt, "80")
        .fields(["name", "age"]);
    let page = session.fetch(&req).await.unwrap();
    assert_eq!(
        data(&page.records),
        vec![
            json!({"name": "Grace", "age": "85"}),
            json!({"name": "Barbara", "age": "86"})
        ]
    );
}

#[tokio::test]
async fn csv_delimiter_option_is_honoured() {
    let dir = tempdir();
    std::fs::write(dir.path().join("people.tsv"), CSV.replace(',', "\t")).unwrap();
    let mut session = open(
        dir.path(),
        "ro",
        json!({"csv": {"delimiter": "\t", "infer_types": true}}),
    )
    .await;
    assert_eq!(fetch_all(&mut session, "people.tsv").await, people());
}

#[tokio::test]
async fn json_array_and_ndjson_read_the_same_records() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("people.json"),
        serde_json::to_string_pretty(&people()).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("people.ndjson"), ndjson(&people())).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    assert_eq!(fetch_all(&mut session, "people.json").await, people());
    assert_eq!(fetch_all(&mut session, "people.ndjson").await, people());
}

#[tokio::test]
async fn gzip_is_detected_by_extension_and_by_magic_bytes() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("people.ndjson.gz"),
        gzip(ndjson(&people()).as_bytes()),
    )
    .unwrap();
    std::fs::write(dir.path().join("people.csv.gz"), gzip(CSV.as_bytes())).unwrap();
    std::fs::write(
        dir.path().join("mystery"),
        gzip(ndjson(&people()).as_bytes()),
    )
    .unwrap();
    let mut session = open(dir.path(), "ro", json!({"csv": {"infer_types": true}})).await;
    assert_eq!(fetch_all(&mut session, "people.ndjson.gz").await, people());
    assert_eq!(fetch_all(&mut session, "people.csv.gz").await, people());
    assert_eq!(fetch_all(&mut session, "mystery").await, people());
}

#[tokio::test]
async fn fetch_filters_sorts_and_selects_fields() {
    let dir = tempdir();
    std::fs::write(dir.path().join("people.ndjson"), ndjson(&people())).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let req = FetchRequest::new("people.ndjson")
        .filter("age", FilterOp::Ge, "41")
        .filter("city", FilterOp::Ne, "\"Nuenen\"")
        .sort("age", SortDirection::Desc)
        .fields(["name"]);
    let page = session.fetch(&req).await.unwrap();
    assert_eq!(
        data(&page.records),
        vec![
            json!({"name": "Barbara"}),
            json!({"name": "Grace"}),
            json!({"name": "Alan"})
        ]
    );
    assert_eq!(page.total_count, Some(3));
    let like = FetchRequest::new("people.ndjson")
        .filter("name", FilterOp::Like, "\"%a%\"")
        .fields(["id"]);
    let ids: Vec<Value> = data(&session.fetch(&like).await.unwrap().records);
    assert_eq!(
        ids,
        vec![
            json!({"id": 1}),
            json!({"id": 2}),
            json!({"id": 3}),
            json!({"id": 5})
        ]
    );
    let within = FetchRequest::new("people.ndjson")
        .filter("id", FilterOp::In, "[2, 4]")
        .fields(["id"]);
    assert_eq!(
        data(&session.fetch(&within).await.unwrap().records),
        vec![json!({"id": 2}), json!({"id": 4})]
    );
}

#[tokio::test]
async fn offset_and_cursor_pagination_cover_every_record_once() {
    let dir = tempdir();
    let rows: Vec<Value> = (0..23).map(|i| json!({"n": i})).collect();
    std::fs::write(dir.path().join("n.ndjson"), ndjson(&rows)).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    for sorted in [false, true] {
        let base = if sorted {
            FetchRequest::new("n.ndjson").sort("n", SortDirection::Asc)
        } else {
            FetchRequest::new("n.ndjson")
        };
        // Cursor pagination.
        let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = session
                .fetch(&base.clone().page(5, None, cursor.clone()))
                .await
                .unwrap();
            seen.extend(data(&page.records));
            pages += 1;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, rows, "cursor pages (sorted: {sorted})");
        assert_eq!(pages, 5);
        // Offset pagination.
        let page = session
            .fetch(&base.clone().page(5, Some(20), None))
            .await
            .unwrap();
        assert_eq!(data(&page.records), rows[20..].to_vec());
        assert_eq!(page.next_cursor, None);
    }
}

#[tokio::test]
async fn a_foreign_cursor_is_an_invalid_request() {
    let dir = tempdir();
    std::fs::write(dir.path().join("n.ndjson"), ndjson(&people())).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let err = session
        .fetch(&FetchRequest::new("n.ndjson").page(2, None, Some("page=7".into())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(_))),
        "{err:?}"
    );
}

async fn assert_malformed(file: &str, contents: &[u8], line: u64, byte: u64) {
    let dir = tempdir();
    std::fs::write(dir.path().join(file), contents).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let err = session.fetch(&FetchRequest::new(file)).await.unwrap_err();
    match err {
        Error::Connector(ConnectorError::InvalidRequest(message)) => {
            assert!(
                message.contains(&format!("/data/{file}: line {line} (byte {byte}):")),
                "{file}: {message}"
            )
        }
        other => panic!("{file}: expected invalid-request, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_rows_name_the_file_line_and_byte() {
    assert_malformed(
        "bad.ndjson",
        b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": oops}\n",
        3,
        18,
    )
    .await;
    assert_malformed("bad.ndjson.gz", &gzip(b"{\"a\": 1}\n\n[1, 2]\n"), 3, 10).await;
    assert_malformed("bad.csv", b"a,b\n1,2\n3,4,5\n", 3, 8).await;
    assert_malformed("bad.json", b"[\n  {\"a\": 1},\n  {\"a\": }\n]\n", 3, 16).await;
    assert_malformed("notarray.json", b"{\"a\": 1}", 1, 0).await;
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn bzip2(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    bzip2::read::BzEncoder::new(bytes, bzip2::Compression::default())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn zstd_and_bzip2_are_read_by_extension_and_magic_bytes_and_every_member_counts() {
    let dir = tempdir();
    let text = ndjson(&people());
    let (first, rest) = text.split_at(text.find("{\"id\":3").unwrap());
    let files: [(&str, Vec<u8>); 6] = [
        ("people.ndjson.zst", zstd(text.as_bytes())),
        ("people.csv.bz2", bzip2(CSV.as_bytes())),
        ("zstd-mystery", zstd(text.as_bytes())),
        ("bzip2-mystery", bzip2(text.as_bytes())),
        // Two members, as `cat a.gz b.gz` (or pzstd, pbzip2) makes them:
        // the file is both, never silently the first.
        (
            "two.ndjson.gz",
            [gzip(first.as_bytes()), gzip(rest.as_bytes())].concat(),
        ),
        (
            "two.ndjson.zst",
            [zstd(first.as_bytes()), zstd(rest.as_bytes())].concat(),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(
        dir.path().join("two.ndjson.bz2"),
        [bzip2(first.as_bytes()), bzip2(rest.as_bytes())].concat(),
    )
    .unwrap();
    let mut session = open(dir.path(), "ro", json!({"csv": {"infer_types": true}})).await;
    for (name, _) in &files {
        assert_eq!(fetch_all(&mut session, name).await, people(), "{name}");
    }
    assert_eq!(fetch_all(&mut session, "two.ndjson.bz2").await, people());
    let req = FetchRequest::new("two.ndjson.zst");
    let batches = stream_all(&mut session, &req, None, 2).await;
    assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &people(), 2, "zstd")
        .await;
}

#[tokio::test]
async fn a_truncated_compressed_file_is_invalid_naming_the_file_and_byte() {
    let dir = tempdir();
    let text = ndjson(
        &(0..5000)
            .map(|i| json!({"n": i, "text": format!("row {i}")}))
            .collect::<Vec<_>>(),
    );
    for (name, whole) in [
        ("cut.ndjson.gz", gzip(text.as_bytes())),
        ("cut.ndjson.zst", zstd(text.as_bytes())),
        ("cut.ndjson.bz2", bzip2(text.as_bytes())),
    ] {
        std::fs::write(dir.path().join(name), &whole[..whole.len() / 2]).unwrap();
    }
    let mut session = open(dir.path(), "ro", json!({})).await;
    for name in ["cut.ndjson.gz", "cut.ndjson.zst", "cut.ndjson.bz2"] {
        match session.fetch(&FetchRequest::new(name)).await {
            Err(Error::Connector(ConnectorError::InvalidRequest(m))) => assert!(
                m.contains(&format!("/data/{name}: line ")) && m.contains("(byte "),
                "{name}: {m}"
            ),
            other => panic!("{name}: expected invalid-request, got {other:?}"),
        }
    }
}

/// `head`, then `fill` repeated to `len` bytes, gzipped, without holding it whole.
fn gzip_endless(head: &str, fill: u8, len: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(head.as_bytes()).unwrap();
    let chunk = vec![fill; 1 << 20];
    for _ in 0..len / chunk.len() {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_small_file_that_expands_to_one_endless_record_is_invalid_not_a_trap() {
    let dir = tempdir();
    // Each is a megabyte or so, and 300 MB decompressed: more than the
    // session's memory, in one record.
    let files = [
        (
            "line.ndjson.gz",
            gzip_endless("{\"a\": \"", b'a', 300 << 20),
        ),
        (
            "element.json.gz",
            gzip_endless("[{\"a\": \"", b'a', 300 << 20),
        ),
        ("row.csv.gz", gzip_endless("a,b\n1,2\n\"", b'x', 300 << 20)),
    ];
    for (name, bytes) in &files {
        assert!(bytes.len() < 2 << 20, "{name}: {} bytes", bytes.len());
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("fine.ndjson"), "{\"n\": 1}\n").unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    for (name, starts) in [
        ("line.ndjson.gz", "line 1 (byte 0)"),
        ("element.json.gz", "line 1 (byte 1)"),
        ("row.csv.gz", "line 3 (byte 8)"),
    ] {
        match session.fetch(&FetchRequest::new(name)).await {
            Err(Error::Connector(ConnectorError::InvalidRequest(m))) => assert!(
                m.contains(&format!("/data/{name}: {starts}"))
                    && m.contains("a record longer than 33554432 bytes"),
                "{name}: {m}"
            ),
            other => panic!("{name}: expected invalid-request, got {other:?}"),
        }
    }
    // The session survived every one of them.
    assert_eq!(
        data(
            &session
                .fetch(&FetchRequest::new("fine.ndjson"))
                .await
                .unwrap()
                .records
        ),
        [json!({"n": 1})]
    );
}

#[tokio::test]
async fn compressed_files_are_written_and_appended_to_by_extension() {
    let dir = tempdir();
    let mut session = open(dir.path(), "rw", json!({"csv": {"infer_types": true}})).await;
    let all = people();
    let (head, tail) = all.split_at(2);
    for name in [
        "out.ndjson.gz",
        "out.ndjson.zst",
        "out.csv.bz2",
        "out.csv.zst",
    ] {
        session
            .execute(&ExecuteRequest::new(name, "write", records(head)))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        session
            .execute(&ExecuteRequest::new(name, "append", records(tail)))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(fetch_all(&mut session, name).await, people(), "{name}");
    }
    // What was written is what the reference tools read.
    let stored = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let text = |mut reader: Box<dyn std::io::Read + '_>| {
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        out
    };
    let gz = text(Box::new(flate2::read::MultiGzDecoder::new(
        &stored("out.ndjson.gz")[..],
    )));
    assert_eq!(gz, ndjson(&people()));
    assert_eq!(
        String::from_utf8(zstd::decode_all(&stored("out.ndjson.zst")[..]).unwrap()).unwrap(),
        ndjson(&people())
    );
    let bz = text(Box::new(bzip2::read::MultiBzDecoder::new(
        &stored("out.csv.bz2")[..],
    )));
    assert_eq!(bz.lines().next(), Some("id,name,age,city"));
    assert_eq!(bz.lines().count(), 6, "one header, five rows: {bz}");
}

#[tokio::test]
async fn a_missing_file_is_not_found() {
    let dir = tempdir();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let err = session
        .fetch(&FetchRequest::new("absent.csv"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::NotFound(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_bad_config_names_the_field() {
    let dir = tempdir();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.path().display()))
        .unwrap();
    for (config, field) in [
        (r#"{"csv": {"delimiter": 5}}"#, "csv.delimiter"),
        (r#"{"root": "/data", "colour": "blue"}"#, "colour"),
        (r#"{"format": "xml"}"#, "format"),
    ] {
        let err = file_connector().open(config, &grants).await.unwrap_err();
        match err {
            Error::Connector(ConnectorError::InvalidConfig(message)) => {
                assert!(message.contains(field), "{config}: {message}")
            }
            other => panic!("{config}: expected invalid-config, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stream_resumed_from_any_checkpoint_yields_exactly_the_rest() {
    let dir = tempdir();
    let rows: Vec<Value> = (0..50)
        .map(|i| json!({"n": i, "text": format!("row, \"{i}\"\nline two")}))
        .collect();
    let csv_rows: String = rows
        .iter()
        .map(|r| {
            format!(
                "{},\"{}\"\n",
                r["n"],
                r["text"].as_str().unwrap().replace('"', "\"\"")
            )
        })
        .collect();
    std::fs::write(dir.path().join("rows.ndjson"), ndjson(&rows)).unwrap();
    std::fs::write(
        dir.path().join("rows.json"),
        serde_json::to_string_pretty(&rows).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rows.ndjson.gz"),
        gzip(ndjson(&rows).as_bytes()),
    )
    .unwrap();
    std::fs::write(dir.path().join("rows.csv"), format!("n,text\n{csv_rows}")).unwrap();
    let mut session = open(dir.path(), "ro", json!({"csv": {"infer_types": true}})).await;
    for file in ["rows.ndjson", "rows.json", "rows.ndjson.gz", "rows.csv"] {
        let req = FetchRequest::new(file);
        let batches = stream_all(&mut session, &req, None, 7).await;
        let all: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
        assert_eq!(all, rows, "{file}: full stream");
        assert_eq!(batches.len(), 8, "{file}: 50 records in batches of 7");
        assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &rows, 13, file)
            .await;
    }
}

#[tokio::test]
async fn a_stream_applies_filters_and_fields() {
    let dir = tempdir();
    std::fs::write(dir.path().join("people.ndjson"), ndjson(&people())).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let req = FetchRequest::new("people.ndjson")
        .filter("age", FilterOp::Lt, "50")
        .fields(["name"]);
    let batches = stream_all(&mut session, &req, None, 100).await;
    let all: Vec<Value> = batches.into_iter().flat_map(|(r, _)| r).collect();
    assert_eq!(all, vec![json!({"name": "Ada"}), json!({"name": "Alan"})]);
}

#[tokio::test]
async fn a_stream_reads_a_file_much_larger_than_the_memory_limit() {
    let dir = tempdir();
    let path = dir.path().join("big.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let filler = "x".repeat(200);
    let count = 200_000u64; // about 44 MB
    for i in 0..count {
        writeln!(out, "{{\"n\":{i},\"filler\":\"{filler}\"}}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let size = std::fs::metadata(&path).unwrap().len();
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.path().display()))
        .unwrap();
    let mut session = file_connector()
        .open_with_limits(r#"{"root": "/data"}"#, &grants, &limits)
        .await
        .unwrap();
    assert!(size > 2 * limits.memory_bytes as u64);
    let req = FetchRequest::new("big.ndjson").fields(["n"]);
    let mut stream = session.stream(&req, None).await.unwrap();
    let (mut seen, mut sum) = (0u64, 0u64);
    while let Some(batch) = stream.next(1000).await.unwrap() {
        for value in data(&batch.records) {
            sum += value["n"].as_u64().unwrap();
            seen += 1;
        }
    }
    assert_eq!(seen, count);
    assert_eq!(sum, count * (count - 1) / 2);
}

#[tokio::test]
async fn discover_lists_files_with_inferred_fields() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("people.ndjson"), ndjson(&people())).unwrap();
    std::fs::write(dir.path().join("sub/people.csv"), CSV).unwrap();
    let mut session = open(dir.path(), "ro", json!({"csv": {"infer_types": true}})).await;
    let resources = session.discover().await.unwrap();
    let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["/data/people.ndjson", "/data/sub/people.csv"]);
    for resource in &resources {
        let schema: Value = serde_json::from_str(resource.schema.as_deref().unwrap()).unwrap();
        assert_eq!(
            schema["properties"]["age"]["type"], "integer",
            "{}",
            resource.name
        );
        assert_eq!(
            schema["properties"]["name"]["type"], "string",
            "{}",
            resource.name
        );
    }
}

fn records(rows: &[Value]) -> Vec<Record> {
    rows.iter().map(Record::from_json).collect()
}

#[tokio::test]
async fn execute_appends_and_writes_ndjson_and_csv_on_a_rw_mount() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("people.csv"),
        "id,name,age,city\n1,Ada,36,London\n",
    )
    .unwrap();
    let mut session = open(dir.path(), "rw", json!({"csv": {"infer_types": true}})).await;
    let more = people()[1..].to_vec();
    let result = session
        .execute(&ExecuteRequest::new("people.csv", "append", records(&more)))
        .await
        .unwrap();
    assert_eq!(result.affected, 4);
    assert_eq!(fetch_all(&mut session, "people.csv").await, people());

    let result = session
        .execute(&ExecuteRequest::new(
            "out.ndjson",
            "write",
            records(&people()),
        ))
        .await
        .unwrap();
    assert_eq!(result.affected, 5);
    session
        .execute(&ExecuteRequest::new(
            "out.ndjson",
            "append",
            records(&people()[..1]),
        ))
        .await
        .unwrap();
    let mut expected = people();
    expected.push(people()[0].clone());
    assert_eq!(fetch_all(&mut session, "out.ndjson").await, expected);

    session
        .execute(&ExecuteRequest::new(
            "out.ndjson",
            "write",
            records(&people()[..2]),
        ))
        .await
        .unwrap();
    assert_eq!(
        fetch_all(&mut session, "out.ndjson").await,
        people()[..2].to_vec()
    );
}

#[tokio::test]
async fn execute_on_a_read_only_mount_is_denied() {
    let dir = tempdir();
    std::fs::write(dir.path().join("people.ndjson"), ndjson(&people())).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let err = session
        .execute(&ExecuteRequest::new(
            "people.ndjson",
            "append",
            records(&people()),
        ))
        .await
        .unwrap_err();
    match &err {
        Error::Connector(ConnectorError::Denied(message)) => {
            // Words for every front door, not a WASI error number.
            assert!(message.contains("permission denied"), "{message}");
            assert!(
                message.contains("`\"mode\": \"rw\"` in the `files` grant"),
                "{message}"
            );
            assert!(!message.contains("os error"), "{message}");
        }
        other => panic!("expected denied, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("people.ndjson")).unwrap(),
        ndjson(&people())
    );
}

#[tokio::test]
async fn an_execute_batch_with_one_bad_record_writes_nothing() {
    let dir = tempdir();
    std::fs::write(dir.path().join("people.csv"), CSV).unwrap();
    let mut session = open(dir.path(), "rw", json!({})).await;
    let mut batch = records(&[json!({"id": 6, "name": "Ken", "age": 83, "city": "Berkeley"})]);
    batch.push(Record::from_json(&json!({"id": 7, "nickname": "dmr"})));
    let err = session
        .execute(&ExecuteRequest::new("people.csv", "append", batch.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains("nickname")),
        "{err:?}"
    );
    batch[1].data = "[1, 2]".into();
    let err = session
        .execute(&ExecuteRequest::new("people.ndjson", "write", batch))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(_))),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("people.csv")).unwrap(),
        CSV
    );
    assert!(!dir.path().join("people.ndjson").exists());
}

#[tokio::test]
async fn an_unknown_operation_is_unsupported() {
    let dir = tempdir();
    let mut session = open(dir.path(), "rw", json!({})).await;
    let err = session
        .execute(&ExecuteRequest::new("x.ndjson", "truncate", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn delete_removes_a_file_and_needs_a_read_write_mount() {
    let dir = tempdir();
    std::fs::write(dir.path().join("gone.ndjson"), "{}\n").unwrap();
    std::fs::write(dir.path().join("kept.ndjson"), "{}\n").unwrap();
    let mut read_only = open(dir.path(), "ro", json!({})).await;
    let err = read_only
        .execute(&ExecuteRequest::new("kept.ndjson", "delete", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Denied(_))),
        "{err:?}"
    );
    assert!(dir.path().join("kept.ndjson").exists());

    let mut session = open(dir.path(), "rw", json!({})).await;
    let deleted = session
        .execute(&ExecuteRequest::new("gone.ndjson", "delete", Vec::new()))
        .await
        .unwrap();
    assert_eq!(deleted.affected, 1);
    assert!(!dir.path().join("gone.ndjson").exists());
    assert!(dir.path().join("kept.ndjson").exists());
    let err = session
        .execute(&ExecuteRequest::new("gone.ndjson", "delete", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::NotFound(_))),
        "{err:?}"
    );
    // A record given to delete is refused rather than ignored.
    let err = session
        .execute(&ExecuteRequest::new(
            "kept.ndjson",
            "delete",
            vec![Record::from_json(&json!({"a": 1}))],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_filtered_ndjson_stream_keeps_whole_records_and_still_checks_every_line() {
    let dir = tempdir();
    let lines = [
        r#"{"id":1,"a":{"b":1},"note":"kept \"as\" written","tags":[1,2]}"#,
        r#"{"id":2,"a":{"b":2},"note":"dropped"}"#,
        r#"{"id":3,"a.b":1,"note":"a dotted key matches too"}"#,
    ];
    std::fs::write(dir.path().join("ok.ndjson"), lines.join("\n")).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let req = FetchRequest::new("ok.ndjson").filter("a.b", FilterOp::Eq, "1");
    let mut stream = session.stream(&req, None).await.unwrap();
    let batch = stream.next(10).await.unwrap().expect("a batch");
    let texts: Vec<&str> = batch.records.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(
        texts,
        [lines[0], lines[2]],
        "records are the lines as written"
    );
    stream.close().await.unwrap();

    // A syntax error in a field the filter does not read is still an error naming the line.
    std::fs::write(
        dir.path().join("bad.ndjson"),
        "{\"a\":{\"b\":1}}\n{\"a\":{\"b\":1},\"x\":oops}\n",
    )
    .unwrap();
    let req = FetchRequest::new("bad.ndjson").filter("a.b", FilterOp::Eq, "1");
    let mut stream = session.stream(&req, None).await.unwrap();
    // The good line before it goes out first.
    let first = stream.next(10).await.unwrap().expect("a batch");
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.checkpoint.as_deref(), Some("byte:14:line:2"));
    let err = stream.next(10).await.unwrap_err();
    match err {
        Error::Connector(ConnectorError::InvalidRequest(message)) => {
            assert!(
                message.contains("/data/bad.ndjson: line 2 (byte 14):"),
                "{message}"
            )
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
}

/// NDJSON over several of the chunks the host checks at a time: lines of
/// varied width, blank lines, CRLF, leading blanks, non-ASCII text, and a
/// last line without a newline. `(text, kept)`: the file and, in order, the
/// lines whose `k` is 0, as written.
fn chunked_ndjson(count: u64) -> (String, Vec<String>) {
    let (mut text, mut kept) = (String::new(), Vec::new());
    for i in 0..count {
        let line = format!(
            "{{\"n\":{i},\"name\":\"ä-{}\",\"k\":{}}}",
            "x".repeat((i % 97) as usize),
            i % 3
        );
        match i % 5 {
            0 => text.push_str(&format!("  {line}\r\n")),
            1 => text.push_str(&format!("{line}\n\n")),
            _ => text.push_str(&format!("{line}\n")),
        }
        if i % 3 == 0 {
            kept.push(line);
        }
    }
    text.pop();
    (text, kept)
}

#[tokio::test]
async fn a_filtered_stream_over_many_chunks_keeps_every_line_and_resumes_at_any_checkpoint() {
    let dir = tempdir();
    let (text, kept) = chunked_ndjson(20_000);
    assert!(text.len() > 1 << 20, "several chunks: {} bytes", text.len());
    std::fs::write(dir.path().join("many.ndjson"), &text).unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    let req = FetchRequest::new("many.ndjson").filter("k", FilterOp::Eq, "0");
    // The records are the lines as written.
    let mut stream = session.stream(&req, None).await.unwrap();
    let mut texts = Vec::new();
    while let Some(batch) = stream.next(1000).await.unwrap() {
        texts.extend(batch.records.into_iter().map(|r| r.data));
    }
    stream.close().await.unwrap();
    assert_eq!(texts, kept);
    let rows: Vec<Value> = kept
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let batches = stream_all(&mut session, &req, None, 1000).await;
    assert_eq!(batches.len(), rows.len().div_ceil(1000));
    assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &rows, 700, "many").await;
    // Without a filter every line is a record.
    let all = stream_all(&mut session, &FetchRequest::new("many.ndjson"), None, 4096).await;
    assert_eq!(all.iter().map(|(r, _)| r.len()).sum::<usize>(), 20_000);
}

#[tokio::test]
async fn a_malformed_line_after_many_chunks_ends_the_stream_after_every_line_before_it() {
    let dir = tempdir();
    let (good, kept) = chunked_ndjson(20_000);
    // The bad line is in a field the filter does not read.
    let text = format!("{good}\n{{\"n\":1,\"k\":0,\"x\":oops}}\n{{\"k\":0}}\n");
    std::fs::write(dir.path().join("late.ndjson"), &text).unwrap();
    let line = good.lines().count() + 1;
    let mut session = open(dir.path(), "ro", json!({})).await;
    let req = FetchRequest::new("late.ndjson").filter("k", FilterOp::Eq, "0");
    let says = format!("/data/late.ndjson: line {line} (byte {}):", good.len() + 1);
    let mut stream = session.stream(&req, None).await.unwrap();
    let (mut delivered, mut last) = (0, None);
    let err = loop {
        match stream.next(1000).await {
            Ok(Some(batch)) => {
                delivered += batch.records.len();
                last = batch.checkpoint;
            }
            Ok(None) => panic!("the stream ended as if whole"),
            Err(err) => break err,
        }
    };
    assert_eq!(delivered, kept.len(), "every good line before the bad one");
    match err {
        Error::Connector(ConnectorError::InvalidRequest(message)) => assert!(
            message.contains(&says) && message.contains("expected value"),
            "{message}"
        ),
        other => panic!("expected invalid-request, got {other:?}"),
    }
    stream.close().await.unwrap();
    // Resumed after the last record, the stream meets the bad line at once.
    let mut resumed = session.stream(&req, last.as_deref()).await.unwrap();
    match resumed.next(1000).await {
        Err(Error::Connector(ConnectorError::InvalidRequest(message))) => {
            assert!(message.contains(&says), "{message}")
        }
        other => panic!("expected the same invalid-request, got {other:?}"),
    }
}

#[tokio::test]
async fn a_streamed_endless_line_is_invalid_not_a_trap() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("line.ndjson.gz"),
        gzip_endless("{\"a\": 1}\n{\"a\": \"", b'a', 300 << 20),
    )
    .unwrap();
    let mut session = open(dir.path(), "ro", json!({})).await;
    for req in [
        FetchRequest::new("line.ndjson.gz"),
        FetchRequest::new("line.ndjson.gz").filter("a", FilterOp::Eq, "1"),
    ] {
        let mut stream = session.stream(&req, None).await.unwrap();
        let first = stream.next(10).await.unwrap().expect("the first line");
        assert_eq!(data(&first.records), [json!({"a": 1})]);
        match stream.next(10).await {
            Err(Error::Connector(ConnectorError::InvalidRequest(m))) => assert!(
                m.contains("/data/line.ndjson.gz: line 2 (byte 9)")
                    && m.contains("a record longer than 33554432 bytes"),
                "{m}"
            ),
            other => panic!("expected invalid-request, got {other:?}"),
        }
        stream.close().await.unwrap();
    }
}
