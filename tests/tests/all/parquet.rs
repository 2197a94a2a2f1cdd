//! The file connector on Parquet, against pyarrow (the reference
//! implementation, from `make pytools`): files pyarrow wrote are read with
//! every type, codec, projection, filter and checkpoint; files sluice wrote
//! are read back by pyarrow; corrupt and truncated files are refused with
//! the file and byte named.

use std::path::Path;

use serde_json::{json, Value};
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Record, Session,
};
use sluice_tests::{
    assert_every_checkpoint_resumes_exactly, data, fetch_all, file_connector, pyarrow_script,
    stream_all, tempdir,
};

/// Writes the table of every type to `path` with `compression`, two rows
/// per row group.
const WRITE_EVERY_TYPE: &str = r#"
import datetime, decimal, json, sys
import pyarrow as pa, pyarrow.parquet as pq
args = json.load(sys.stdin)
table = pa.table({
    "i8": pa.array([1, None, -3], pa.int8()),
    "i64": pa.array([2**40, 0, -1], pa.int64()),
    "u32": pa.array([4000000000, 1, None], pa.uint32()),
    "f32": pa.array([1.5, float("nan"), None], pa.float32()),
    "f64": pa.array([0.25, float("inf"), -2.0], pa.float64()),
    "flag": pa.array([True, False, None]),
    "name": pa.array(["Ada", "", None]),
    "blob": pa.array([b"\x00\x01", None, b"hi"], pa.binary()),
    "day": pa.array([datetime.date(2024, 2, 29), None, datetime.date(1969, 12, 31)]),
    "at_ms": pa.array([1700000000123, None, 0], pa.timestamp("ms", tz="UTC")),
    "at_us_local": pa.array([1700000000123456, None, -1], pa.timestamp("us")),
    "at_ns": pa.array([1700000000123456789, None, 1], pa.timestamp("ns", tz="UTC")),
    "price": pa.array([decimal.Decimal("1234.50"), decimal.Decimal("-0.05"), None], pa.decimal128(9, 2)),
    "tags": pa.array([[1, 2], [], None], pa.list_(pa.int64())),
    "point": pa.array([{"x": 1, "label": "a"}, None, {"x": -2, "label": None}],
                      pa.struct([("x", pa.int32()), ("label", pa.string())])),
    "attrs": pa.array([[("k", 1)], None, [("a", 2), ("b", 3)]], pa.map_(pa.string(), pa.int64())),
})
pq.write_table(table, args["path"], compression=args["compression"], row_group_size=2)
print(json.dumps({"row_groups": pq.ParquetFile(args["path"]).num_row_groups}))
"#;

/// The rows of [`WRITE_EVERY_TYPE`] as the connector reads them.
fn every_type() -> Vec<Value> {
    vec![
        json!({"i8": 1, "i64": 1_099_511_627_776_i64, "u32": 4_000_000_000_u32, "f32": 1.5, "f64": 0.25,
               "flag": true, "name": "Ada", "blob": "AAE=", "day": "2024-02-29",
               "at_ms": "2023-11-14T22:13:20.123Z", "at_us_local": "2023-11-14T22:13:20.123456",
               "at_ns": "2023-11-14T22:13:20.123456789Z", "price": "1234.50", "tags": [1, 2],
               "point": {"x": 1, "label": "a"}, "attrs": {"k": 1}}),
        json!({"i8": null, "i64": 0, "u32": 1, "f32": "NaN", "f64": "Infinity",
               "flag": false, "name": "", "blob": null, "day": null,
               "at_ms": null, "at_us_local": null, "at_ns": null, "price": "-0.05", "tags": [],
               "point": null, "attrs": null}),
        json!({"i8": -3, "i64": -1, "u32": null, "f32": null, "f64": -2.0,
               "flag": null, "name": null, "blob": "aGk=", "day": "1969-12-31",
               "at_ms": "1970-01-01T00:00:00.000Z", "at_us_local": "1969-12-31T23:59:59.999999",
               "at_ns": "1970-01-01T00:00:00.000000001Z", "price": null, "tags": null,
               "point": {"x": -2, "label": null}, "attrs": {"a": 2, "b": 3}}),
    ]
}

/// Writes `rows` (a list of objects) to `path` with `row_group_size`.
const WRITE_ROWS: &str = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
args = json.load(sys.stdin)
pq.write_table(pa.Table.from_pylist(args["rows"]), args["path"], row_group_size=args["group"])
print(json.dumps({"ok": True}))
"#;

/// Reads `path` back: each column's Arrow type and the rows (dates and
/// timestamps in ISO 8601, binary as hex).
const READ_BACK: &str = r#"
import datetime, json, sys
import pyarrow.parquet as pq
args = json.load(sys.stdin)
table = pq.read_table(args["path"])
def plain(v):
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    return v
print(json.dumps({
    "types": {f.name: str(f.type) for f in table.schema},
    "rows": [{k: plain(v) for k, v in row.items()} for row in table.to_pylist()],
}))
"#;

async fn open(dir: &Path, mode: &str) -> Session {
    let grants = Grants::none()
        .mount(&format!("{}:/data:{mode}", dir.display()))
        .unwrap();
    file_connector()
        .open(&json!({"root": "/data"}).to_string(), &grants)
        .await
        .expect("file connector opens")
}

fn write_rows(path: &Path, rows: &[Value], group: usize) {
    pyarrow_script(
        WRITE_ROWS,
        &json!({"path": path, "rows": rows, "group": group}),
    );
}

#[tokio::test]
async fn every_type_and_codec_pyarrow_writes_reads_as_json() {
    let dir = tempdir();
    let mut session = open(dir.path(), "ro").await;
    for codec in ["snappy", "gzip", "brotli", "lz4", "zstd", "none"] {
        let file = format!("types-{codec}.parquet");
        let written = pyarrow_script(
            WRITE_EVERY_TYPE,
            &json!({"path": dir.path().join(&file), "compression": codec}),
        );
        assert_eq!(written["row_groups"], 2, "{codec}");
        assert_eq!(
            fetch_all(&mut session, &file).await,
            every_type(),
            "{codec}"
        );
    }
    // Detected by its magic bytes under any name.
    std::fs::copy(
        dir.path().join("types-snappy.parquet"),
        dir.path().join("types.bin"),
    )
    .unwrap();
    assert_eq!(fetch_all(&mut session, "types.bin").await, every_type());

    // discover gives each column's type from the footer alone.
    let found = session.discover().await.unwrap();
    let types = found
        .iter()
        .find(|r| r.name == "/data/types-none.parquet")
        .expect("discovered");
    let schema: Value = serde_json::from_str(types.schema.as_deref().unwrap()).unwrap();
    let properties = &schema["properties"];
    assert_eq!(properties["i64"], json!({"type": "integer"}));
    assert_eq!(properties["flag"], json!({"type": "boolean"}));
    assert_eq!(
        properties["at_ns"],
        json!({"type": "string", "format": "date-time"})
    );
    assert_eq!(
        properties["price"],
        json!({"type": "string", "format": "decimal"})
    );
    assert_eq!(
        properties["tags"],
        json!({"type": "array", "items": {"type": "integer"}})
    );
    assert_eq!(
        properties["attrs"],
        json!({"type": "object", "additionalProperties": {"type": "integer"}})
    );
    assert_eq!(
        properties["point"]["properties"]["label"],
        json!({"type": "string"})
    );
}

#[tokio::test]
async fn projection_filters_and_checkpoints_work_across_row_groups() {
    let dir = tempdir();
    let rows: Vec<Value> = (0..1000)
        .map(|i| json!({"id": i, "name": format!("n{i}"), "payload": "x".repeat(i % 50)}))
        .collect();
    write_rows(&dir.path().join("rows.parquet"), &rows, 100);
    let mut session = open(dir.path(), "ro").await;

    // Whole records, resumed from every checkpoint (row groups of 100, batches of 37).
    let req = FetchRequest::new("rows.parquet");
    let batches = stream_all(&mut session, &req, None, 37).await;
    let all: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
    assert_eq!(all, rows);
    assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &rows, 64, "whole").await;

    // Only some fields, filtered on a field not returned.
    let req = FetchRequest::new("rows.parquet")
        .filter("id", FilterOp::Ge, "950")
        .fields(["name"]);
    let wanted: Vec<Value> = (950..1000)
        .map(|i| json!({"name": format!("n{i}")}))
        .collect();
    let batches = stream_all(&mut session, &req, None, 7).await;
    let got: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
    assert_eq!(got, wanted);
    assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &wanted, 5, "projected")
        .await;
    let page = session.fetch(&req).await.unwrap();
    assert_eq!(data(&page.records), wanted);

    // Sorted fetch with a page size.
    let req = FetchRequest::new("rows.parquet")
        .filter("id", FilterOp::Lt, "10")
        .sort("id", sluice::SortDirection::Desc)
        .fields(["id"])
        .page(3, None, None);
    let page = session.fetch(&req).await.unwrap();
    assert_eq!(
        data(&page.records),
        vec![json!({"id": 9}), json!({"id": 8}), json!({"id": 7})]
    );

    // A checkpoint past the last row group is refused.
    let err = session
        .stream(
            &FetchRequest::new("rows.parquet"),
            Some("parquet:group:11:row:0"),
        )
        .await
        .err()
        .expect("past the end");
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(_))),
        "{err:?}"
    );
}

async fn assert_invalid(session: &mut Session, file: &str, says: &str) {
    match session.fetch(&FetchRequest::new(file)).await {
        Err(Error::Connector(ConnectorError::InvalidRequest(message))) => assert!(
            message.contains(&format!("/data/{file}: byte ")) && message.contains(says),
            "{file}: {message}"
        ),
        other => panic!("{file}: expected invalid-request, got {other:?}"),
    }
}

#[tokio::test]
async fn truncated_and_corrupt_files_are_invalid_naming_the_file_and_byte() {
    let dir = tempdir();
    let rows: Vec<Value> = (0..2000)
        .map(|i| json!({"id": i, "name": format!("name {i}")}))
        .collect();
    let good = dir.path().join("good.parquet");
    write_rows(&good, &rows, 500);
    let bytes = std::fs::read(&good).unwrap();
    let len = bytes.len();
    std::fs::write(dir.path().join("cut.parquet"), &bytes[..len - 50]).unwrap();
    std::fs::write(dir.path().join("tiny.parquet"), b"PAR1").unwrap();
    // The footer's length field claims more than the file holds.
    let mut long_footer = bytes.clone();
    long_footer[len - 8..len - 4].copy_from_slice(&(len as u32 * 2).to_le_bytes());
    std::fs::write(dir.path().join("long-footer.parquet"), &long_footer).unwrap();
    // The footer itself garbled.
    let mut garbled = bytes.clone();
    let footer_len = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize;
    for b in &mut garbled[len - 8 - footer_len..len - 8] {
        *b = 0xff;
    }
    std::fs::write(dir.path().join("garbled.parquet"), &garbled).unwrap();
    // The pages of the data garbled, footer intact.
    let mut pages = bytes.clone();
    for b in &mut pages[4..len / 2] {
        *b ^= 0x5a;
    }
    std::fs::write(dir.path().join("pages.parquet"), &pages).unwrap();
    // The first page header (at byte 4: field 1, its type; field 2, its
    // uncompressed size as a zigzag varint) claims 2 GiB: believed, the
    // decoder would allocate that much.
    assert_eq!((bytes[4], bytes[6]), (0x15, 0x15), "a compact page header");
    let varint_len = bytes[7..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let mut huge = bytes[..7].to_vec();
    huge.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    huge.extend_from_slice(&bytes[7 + varint_len..]);
    std::fs::write(dir.path().join("huge-page.parquet"), &huge).unwrap();

    let mut session = open(dir.path(), "ro").await;
    assert_invalid(&mut session, "cut.parquet", "PAR1").await;
    assert_invalid(&mut session, "tiny.parquet", "not a Parquet file").await;
    assert_invalid(
        &mut session,
        "long-footer.parquet",
        "more than the file holds",
    )
    .await;
    assert_invalid(&mut session, "garbled.parquet", "footer").await;
    assert_invalid(&mut session, "pages.parquet", "row group 0").await;
    assert_invalid(
        &mut session,
        "huge-page.parquet",
        "byte 4: row group 0, column `id`: a page states 2147483647 bytes uncompressed",
    )
    .await;
    // The session survived all of them.
    assert_eq!(fetch_all(&mut session, "good.parquet").await.len(), 2000);
}

fn records(rows: &[Value]) -> Vec<Record> {
    rows.iter().map(Record::from_json).collect()
}

#[tokio::test]
async fn written_parquet_reads_back_in_pyarrow_with_inferred_or_given_types() {
    let dir = tempdir();
    let mut session = open(dir.path(), "rw").await;
    let rows = vec![
        json!({"id": 1, "score": 2.5, "ok": true, "name": "Ada", "tags": ["a", "b"]}),
        json!({"id": 2, "score": 3, "name": null}),
    ];
    let result = session
        .execute(&ExecuteRequest::new("out.parquet", "write", records(&rows)))
        .await
        .unwrap();
    assert_eq!(result.affected, 2);
    let back = pyarrow_script(READ_BACK, &json!({"path": dir.path().join("out.parquet")}));
    assert_eq!(
        back["types"],
        json!({"id": "int64", "score": "double", "ok": "bool", "name": "string", "tags": "extension<arrow.json>"})
    );
    assert_eq!(
        back["rows"],
        json!([
            {"id": 1, "score": 2.5, "ok": true, "name": "Ada", "tags": "[\"a\",\"b\"]"},
            {"id": 2, "score": 3.0, "ok": null, "name": null, "tags": null},
        ])
    );

    // A given schema: timestamps, dates and binary too.
    let mut req = ExecuteRequest::new(
        "typed.parquet",
        "write",
        records(&[
            json!({"at": "2024-01-02T03:04:05.123456+01:00", "day": "2024-02-29", "raw": "AAE="}),
            json!({"at": null, "day": "1970-01-01"}),
        ]),
    );
    req.options = Some(
        json!({"schema": {"at": "timestamp", "day": "date", "raw": "binary", "n": "int64"}})
            .to_string(),
    );
    session.execute(&req).await.unwrap();
    let back = pyarrow_script(
        READ_BACK,
        &json!({"path": dir.path().join("typed.parquet")}),
    );
    assert_eq!(
        back["types"],
        json!({"at": "timestamp[us, tz=UTC]", "day": "date32[day]", "raw": "binary", "n": "int64"})
    );
    assert_eq!(
        back["rows"],
        json!([
            {"at": "2024-01-02T02:04:05.123456+00:00", "day": "2024-02-29", "raw": "0001", "n": null},
            {"at": null, "day": "1970-01-01", "raw": null, "n": null},
        ])
    );
    // And the connector reads its own file as it was written.
    assert_eq!(
        fetch_all(&mut session, "typed.parquet").await,
        vec![
            json!({"at": "2024-01-02T02:04:05.123456Z", "day": "2024-02-29", "raw": "AAE=", "n": null}),
            json!({"at": null, "day": "1970-01-01", "raw": null, "n": null}),
        ]
    );
}

#[tokio::test]
async fn a_bad_parquet_write_leaves_nothing_and_append_is_unsupported() {
    let dir = tempdir();
    let mut session = open(dir.path(), "rw").await;
    let mut req = ExecuteRequest::new(
        "bad.parquet",
        "write",
        records(&[json!({"n": 1}), json!({"n": "two"})]),
    );
    req.options = Some(json!({"schema": {"n": "int64"}}).to_string());
    match session.execute(&req).await {
        Err(Error::Connector(ConnectorError::InvalidRequest(message))) => {
            assert!(message.contains("record 1: field `n`"), "{message}")
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing written: {left:?}");

    let err = session
        .execute(&ExecuteRequest::new(
            "bad.parquet",
            "append",
            records(&[json!({"n": 1})]),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err:?}"
    );
}

/// `len` hex digits that compress badly, different for each `seed`.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

#[tokio::test]
async fn parquet_objects_on_s3_read_by_column_ranges_and_write_back() {
    let server = sluice_tests::s3::S3Server::start();
    server.create_bucket("lake");
    let rows: Vec<Value> = (0..3000u64)
        .map(|i| json!({"id": i, "name": format!("n{i}"), "wide": noise(i, 200)}))
        .collect();
    write_rows(&server.object_path("lake", "rows.parquet"), &rows, 1000);
    // A row group's columns (about 200 KB) are more than one response may
    // carry here: they come in GETs of at most `read_chunk_bytes`.
    let config = server.config("s3://lake/", json!({"read_chunk_bytes": 65536}));
    let grants = server.grants_capped(100_000);
    let mut session = file_connector()
        .open(&config.to_string(), &grants)
        .await
        .expect("opens on S3");

    assert_eq!(fetch_all(&mut session, "rows.parquet").await, rows);
    let req = FetchRequest::new("rows.parquet")
        .filter("id", FilterOp::Ge, "2990")
        .fields(["name"]);
    let wanted: Vec<Value> = (2990..3000)
        .map(|i| json!({"name": format!("n{i}")}))
        .collect();
    let batches = stream_all(&mut session, &req, None, 4).await;
    let got: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
    assert_eq!(got, wanted);
    assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &wanted, 3, "s3").await;

    let written = session
        .execute(&ExecuteRequest::new(
            "out/copy.parquet",
            "write",
            records(&rows[..5]),
        ))
        .await
        .unwrap();
    assert_eq!(written.affected, 5);
    let back = pyarrow_script(
        READ_BACK,
        &json!({"path": server.object_path("lake", "out/copy.parquet")}),
    );
    assert_eq!(back["rows"], json!(rows[..5]));
}
