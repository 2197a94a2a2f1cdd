//! Parquet → JSON records: the `file` connector streaming a Parquet file
//! (local, and as an object from a real S3-API server) against arrow-rs
//! reading the same file and writing the same rows as NDJSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_json::LineDelimitedWriter;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use sluice::{FetchRequest, Grants, Limits, Session};
use sluice_tests::s3::{S3Server, SECRET_ACCESS_KEY};

use crate::report::{Report, Row, Target};
use crate::Scale;

/// The Parquet file of the NDJSON data file of `bytes` (snappy, arrow-rs's
/// default row groups), written once beside it.
fn parquet_file(bytes: u64) -> PathBuf {
    let ndjson = crate::file::data_file(bytes);
    let path = ndjson.with_extension("parquet");
    if path.exists() {
        return path;
    }
    eprintln!("bench: writing {} once", path.display());
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("age", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("city", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("score", arrow_schema::DataType::Float64, false),
        arrow_schema::Field::new("active", arrow_schema::DataType::Boolean, false),
    ]));
    let input = std::io::BufReader::new(std::fs::File::open(&ndjson).unwrap());
    let reader = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(65_536)
        .build(input)
        .unwrap();
    let tmp = path.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&tmp).unwrap(), schema, Some(props)).unwrap();
    for batch in reader {
        writer.write(&batch.unwrap()).unwrap();
    }
    writer.close().unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Native: arrow-rs decodes the file in batches and writes each as NDJSON
/// (into a buffer reused per batch): the rows it produced.
fn native_rows<R: ChunkReader + 'static>(input: R) -> u64 {
    let reader = ParquetRecordBatchReaderBuilder::try_new(input)
        .unwrap()
        .build()
        .unwrap();
    let (mut rows, mut out) = (0u64, Vec::with_capacity(16 << 20));
    for batch in reader {
        let batch = batch.unwrap();
        out.clear();
        let mut writer = LineDelimitedWriter::new(&mut out);
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        std::hint::black_box(&out);
        rows += batch.num_rows() as u64;
    }
    rows
}

/// Stream every record of `resource` in batches of 1000: how many, and how long.
async fn stream_rows(session: &mut Session, resource: &str) -> (u64, Duration) {
    let began = Instant::now();
    let mut stream = session
        .stream(&FetchRequest::new(resource), None)
        .await
        .expect("stream");
    let mut rows = 0u64;
    while let Some(batch) = stream.next(1000).await.expect("batch") {
        for record in &batch.records {
            std::hint::black_box(&record.data);
        }
        rows += batch.records.len() as u64;
    }
    stream.close().await.unwrap();
    (rows, began.elapsed())
}

fn limits() -> Limits {
    Limits {
        wall_clock_per_call: Duration::from_secs(600),
        ..Limits::default()
    }
}

async fn local(path: &Path, report: &mut Report) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", path.parent().unwrap().display()))
        .unwrap();
    let mut session = sluice_tests::file_connector()
        .open_with_limits(r#"{"root": "/data"}"#, &grants, &limits())
        .await
        .expect("file connector opens");
    let (rows, took) = stream_rows(&mut session, &name).await;
    let began = Instant::now();
    let native = tokio::task::spawn_blocking({
        let path = path.to_path_buf();
        move || native_rows(std::fs::File::open(path).unwrap())
    })
    .await
    .unwrap();
    report_rows(
        report,
        format!("parquet: {rows} rows → JSON records (local file)"),
        (rows, took),
        (native, began.elapsed()),
        "snappy, 6 columns; sluice: the file connector's row decoder, one JSON record per row, batches of 1000; native: arrow-rs ParquetRecordBatchReader + arrow-json LineDelimitedWriter",
    );
}

/// Add the row of a sluice and a native read of the same rows.
fn report_rows(
    report: &mut Report,
    metric: String,
    (rows, took): (u64, Duration),
    (native, native_took): (u64, Duration),
    note: &str,
) {
    assert_eq!(rows, native, "both read every row");
    report.add(Row {
        metric,
        unit: "rows/s",
        sluice: rows as f64 / took.as_secs_f64(),
        baseline: native as f64 / native_took.as_secs_f64(),
        target: Target::RatioAtLeast(0.5),
        note: note.into(),
    });
}

async fn on_s3(path: &Path, report: &mut Report) {
    let server = S3Server::start();
    server.create_bucket("bench");
    let body = Bytes::from(std::fs::read(path).unwrap());
    crate::s3::upload(&server, "/bench/people.parquet", body).await;
    let config = server
        .config("s3://bench", serde_json::json!({}))
        .to_string();
    let mut session = sluice_tests::file_connector()
        .open_with_limits(&config, &server.grants(SECRET_ACCESS_KEY), &limits())
        .await
        .expect("file connector opens on S3");
    let (rows, took) = stream_rows(&mut session, "people.parquet").await;
    let began = Instant::now();
    let object = crate::s3::download(&server, "/bench/people.parquet").await;
    let native = tokio::task::spawn_blocking(move || native_rows(object))
        .await
        .unwrap();
    report_rows(
        report,
        format!("s3: {rows} rows of a Parquet object → JSON records"),
        (rows, took),
        (native, began.elapsed()),
        "s3s-fs on loopback checking SigV4; sluice: footer, then each row group's column chunks in ranged GETs of 8 MiB; native: one signed GET of the object, then arrow-rs + arrow-json as in the local row",
    );
}

pub async fn run(scale: Scale, report: &mut Report) {
    let path = tokio::task::spawn_blocking(move || parquet_file(scale.pick(1u64 << 30, 128 << 20)))
        .await
        .unwrap();
    local(&path, report).await;
    on_s3(&path, report).await;
}
