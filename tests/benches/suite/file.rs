//! Streaming a large NDJSON file through the `file` connector with a filter,
//! against a native Rust reader doing the same parse and filter.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice::{FetchRequest, FilterOp, Grants, Limits, Session};

use crate::report::{Report, Row, Target};
use crate::sys::{peak_rss, reset_peak};
use crate::Scale;

/// Records of the generated file are this shape; `age >= 90` keeps one in ten.
fn line(i: u64) -> String {
    format!(
        "{{\"id\":{i},\"name\":\"person-{i}\",\"age\":{},\"city\":\"city-{}\",\"score\":{}.{:02},\"active\":{}}}\n",
        i % 100,
        i % 50,
        i % 1000,
        i % 100,
        i.is_multiple_of(3)
    )
}

/// The data file of `bytes` (generated once, kept in target/bench/data).
pub fn data_file(bytes: u64) -> PathBuf {
    let dir = sluice_tests::root().join("target/bench/data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let path = dir.join(format!("people-{}m.ndjson", bytes >> 20));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() >= bytes) {
        return path;
    }
    eprintln!(
        "bench: writing {} ({} MiB) once",
        path.display(),
        bytes >> 20
    );
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    let (mut written, mut i) = (0u64, 0u64);
    while written < bytes {
        let text = line(i);
        out.write_all(text.as_bytes()).unwrap();
        written += text.len() as u64;
        i += 1;
    }
    out.flush().unwrap();
    drop(out);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The one field the filter reads; serde skips (and still checks) the rest.
#[derive(serde::Deserialize)]
struct Filtered {
    age: Option<serde_json::Value>,
}

/// Native, written the way a careful Rust program would: read lines, parse
/// only the filtered field (validating the whole line), keep `age >= 90`
/// and pass the line on as the record — the same work the connector does.
fn native_count(path: &Path) -> u64 {
    let reader = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path).unwrap());
    let mut kept = 0;
    for line in reader.lines() {
        let line = line.unwrap();
        let row: Filtered = serde_json::from_str(&line).unwrap();
        if row
            .age
            .and_then(|age| age.as_f64())
            .is_some_and(|age| age >= 90.0)
        {
            std::hint::black_box(line.trim().to_string());
            kept += 1;
        }
    }
    kept
}

/// Stream `resource` keeping `age >= 90`, in batches of 1000: the records
/// kept, the time taken and the process's peak RSS meanwhile.
pub async fn stream_filtered(session: &mut Session, resource: &str) -> (u64, Duration, u64) {
    let request = FetchRequest::new(resource).filter("age", FilterOp::Ge, "90");
    reset_peak();
    let began = Instant::now();
    let mut stream = session.stream(&request, None).await.expect("stream");
    let mut kept = 0u64;
    while let Some(batch) = stream.next(1000).await.expect("batch") {
        for record in &batch.records {
            std::hint::black_box(&record.data);
        }
        kept += batch.records.len() as u64;
    }
    let took = began.elapsed();
    let peak = peak_rss();
    stream.close().await.unwrap();
    (kept, took, peak)
}

/// How many times each side streams the file; the best run counts.
const ROUNDS: usize = 2;

pub async fn run(scale: Scale, report: &mut Report) {
    let bytes = scale.pick(1u64 << 30, 128 << 20);
    let path = data_file(bytes);
    let size = std::fs::metadata(&path).unwrap().len();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let dir = path.parent().unwrap();

    let connector = sluice_tests::file_connector();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.display()))
        .unwrap();
    let limits = Limits {
        wall_clock_per_call: Duration::from_secs(600),
        ..Limits::default()
    };
    let mut session = connector
        .open_with_limits(r#"{"root": "/data", "format": "ndjson"}"#, &grants, &limits)
        .await
        .expect("file connector opens");
    // Each side's best of ROUNDS runs, taken in turns: a shared machine's
    // passing slowdowns land on one run, not on one side.
    let (mut took, mut native_took, mut peak, mut kept) = (Duration::MAX, Duration::MAX, 0, 0);
    for _ in 0..ROUNDS {
        let (sluice_kept, sluice_took, sluice_peak) = stream_filtered(&mut session, &name).await;
        let began = Instant::now();
        let native_kept = tokio::task::spawn_blocking({
            let path = path.clone();
            move || native_count(&path)
        })
        .await
        .unwrap();
        native_took = native_took.min(began.elapsed());
        assert_eq!(sluice_kept, native_kept, "both kept the same records");
        (took, peak, kept) = (took.min(sluice_took), peak.max(sluice_peak), sluice_kept);
    }

    let mb = size as f64 / 1e6;
    let metric = format!("file: stream {} MB NDJSON with a filter", size / 1_000_000);
    let jq = tokio::task::spawn_blocking({
        let path = path.clone();
        move || crate::peers::jq_filter(&path, kept)
    })
    .await
    .unwrap_or_else(|e| Err(format!("jq's runner panicked: {e}")));
    report.add(Row {
        metric: metric.clone(),
        unit: "MB/s",
        sluice: mb / took.as_secs_f64(),
        baseline: mb / native_took.as_secs_f64(),
        target: Target::RatioAtLeast(0.7),
        note: format!("{kept} of the records kept (age >= 90), batches of 1000, each side's best of {ROUNDS} runs in turns; native: BufReader lines, serde parsing only the filtered field, the same filter, the line kept as the record; peer: jq -c 'select(.age >= 90)'"),
    });
    report.peer(&metric, "jq", jq.map(|took| mb / took.as_secs_f64()));
    report.add(Row {
        metric: "file: host peak RSS while streaming".into(),
        unit: "MB",
        sluice: peak as f64 / 1e6,
        baseline: f64::NAN,
        target: Target::AtMost(256.0),
        note: format!(
            "whole-process VmHWM during the sluice stream of a {} MB file",
            size / 1_000_000
        ),
    });
}
