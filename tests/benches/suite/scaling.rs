//! How throughput and host memory grow with the work: the file stream from
//! 128 MB to 1 GB, the PostgreSQL stream from 100k to 1M rows, and 1 to 64
//! sessions streaming at once. Throughput that falls as the work grows, or
//! a peak RSS that climbs with it (measured above the RSS before each point,
//! so what earlier suites left behind does not count), is a cost that is not
//! linear: it shows here before a user finds it.

use std::time::Instant;

use sluice::capability::sql::SqlMode;
use sluice::{FetchRequest, FilterOp, Grants, Limits, Session};

use crate::report::{Report, ScalePoint};
use crate::sys::{peak_rss, reset_peak, rss};
use crate::{stream_to_ndjson, Scale};

fn limits() -> Limits {
    Limits {
        wall_clock_per_call: std::time::Duration::from_secs(600),
        ..Limits::default()
    }
}

/// Stream the NDJSON file `name` with the file suite's filter; records kept.
async fn filtered(session: &mut Session, name: &str) -> u64 {
    let request = FetchRequest::new(name).filter("age", FilterOp::Ge, "90");
    let mut stream = session.stream(&request, None).await.expect("stream");
    let mut kept = 0u64;
    while let Some(batch) = stream.next(1000).await.expect("batch") {
        kept += batch.records.len() as u64;
    }
    stream.close().await.expect("close");
    kept
}

async fn file_sizes(scale: Scale, report: &mut Report) {
    let sizes: Vec<u64> = scale.pick(vec![128, 256, 512, 1024], vec![32, 64, 128]);
    for mb in sizes {
        let path = crate::file::data_file(mb << 20);
        let bytes = std::fs::metadata(&path).expect("data file").len();
        let dir = path.parent().expect("data dir");
        let grants = Grants::none()
            .mount(&format!("{}:/data:ro", dir.display()))
            .expect("mount");
        let mut session = sluice_tests::file_connector()
            .open_with_limits(
                r#"{"root": "/data", "format": "ndjson"}"#,
                &grants,
                &limits(),
            )
            .await
            .expect("file connector opens");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let before = rss();
        reset_peak();
        let began = Instant::now();
        filtered(&mut session, &name).await;
        let took = began.elapsed();
        report.scale(ScalePoint {
            curve: "file: NDJSON stream with a filter",
            size: format!("{} MB", bytes / 1_000_000),
            throughput: bytes as f64 / 1e6 / took.as_secs_f64(),
            unit: "MB/s",
            rss_growth_mb: peak_rss().saturating_sub(before) as f64 / 1e6,
        });
    }
}

async fn table_sizes(scale: Scale, report: &mut Report) {
    let sizes: Vec<i64> = scale.pick(vec![100_000, 300_000, 1_000_000], vec![20_000, 100_000]);
    let client = sluice_tests::postgres::admin().await;
    let grants = Grants::none()
        .allow_sql("main", &sluice_tests::postgres::url(), SqlMode::ReadOnly)
        .expect("sql grant");
    let config =
        serde_json::json!({ "grant": "main", "schema": crate::postgres::SCHEMA }).to_string();
    for rows in sizes {
        let table = format!("narrow_{rows}");
        crate::postgres::ensure_table(&client, &table, false, rows).await;
        let mut session = sluice_tests::postgres_connector()
            .open_with_limits(&config, &grants, &limits())
            .await
            .expect("postgres connector opens");
        let before = rss();
        let run = stream_to_ndjson(&mut session, &table).await;
        report.scale(ScalePoint {
            curve: "postgres: narrow table to NDJSON",
            size: format!("{rows} rows"),
            throughput: run.count as f64 / run.took.as_secs_f64(),
            unit: "rows/s",
            rss_growth_mb: run.peak.saturating_sub(before) as f64 / 1e6,
        });
    }
}

async fn concurrent_sessions(scale: Scale, report: &mut Report) {
    let counts: Vec<usize> = scale.pick(vec![1, 4, 16, 64], vec![1, 4, 16]);
    let path = crate::file::data_file(16 << 20);
    let bytes = std::fs::metadata(&path).expect("data file").len();
    let dir = path.parent().expect("data dir");
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.display()))
        .expect("mount");
    let connector = sluice_tests::file_connector();
    for count in counts {
        let before = rss();
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            sessions.push(
                connector
                    .open_with_limits(
                        r#"{"root": "/data", "format": "ndjson"}"#,
                        &grants,
                        &limits(),
                    )
                    .await
                    .expect("file connector opens"),
            );
        }
        reset_peak();
        let began = Instant::now();
        let runs = sessions.into_iter().map(|mut session| {
            let name = name.clone();
            tokio::spawn(async move { filtered(&mut session, &name).await })
        });
        for run in runs.collect::<Vec<_>>() {
            run.await.expect("a session's stream");
        }
        let took = began.elapsed();
        report.scale(ScalePoint {
            curve: "sessions streaming a 16 MB file at once",
            size: format!("{count} sessions"),
            throughput: (bytes * count as u64) as f64 / 1e6 / took.as_secs_f64(),
            unit: "MB/s",
            rss_growth_mb: peak_rss().saturating_sub(before) as f64 / 1e6,
        });
    }
}

pub async fn run(scale: Scale, report: &mut Report) {
    file_sizes(scale, report).await;
    table_sizes(scale, report).await;
    concurrent_sessions(scale, report).await;
}
