//! Streaming 1M rows through the `mysql` connector to NDJSON, against
//! mysql_async (the host's own driver) -> serde_json -> NDJSON in the same
//! process.

use std::io::Write;
use std::time::Instant;

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable as _;
use mysql_async::Value;
use sluice::capability::sql::SqlMode;
use sluice::{Grants, Limits};

use crate::report::{Report, Row, Target};
use crate::{stream_to_ndjson, CountingSink, Scale, StreamRun};

const DATABASE: &str = "sluice_bench";

/// Make `table` hold exactly `rows` rows (kept between runs).
async fn ensure_table(conn: &mut mysql_async::Conn, table: &str, rows: u64) {
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"))
        .await
        .unwrap();
    let existing: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {DATABASE}.{table}"))
        .await
        .ok()
        .flatten();
    if existing == Some(rows) {
        return;
    }
    eprintln!("bench: creating {DATABASE}.{table} with {rows} rows once");
    conn.query_drop(format!(
        "DROP TABLE IF EXISTS {DATABASE}.{table};
         CREATE TABLE {DATABASE}.{table} (id bigint PRIMARY KEY, name varchar(40), score double);
         INSERT INTO {DATABASE}.{table} SELECT seq, CONCAT('name-', seq), seq * 0.5 FROM seq_1_to_{rows};"
    ))
    .await
    .unwrap();
}

/// Native: every row to a JSON object by column type, one line each.
async fn native(conn: &mut mysql_async::Conn, table: &str, sink: &mut CountingSink) -> u64 {
    let mut result = conn
        .exec_iter(format!("SELECT * FROM {DATABASE}.{table} ORDER BY id"), ())
        .await
        .unwrap();
    let columns = result.columns().expect("a result set");
    let mut count = 0;
    while let Some(row) = result.next().await.unwrap() {
        let mut object = serde_json::Map::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let value = match (row.as_ref(i), column.column_type()) {
                (Some(Value::Int(n)), _) => serde_json::json!(n),
                (Some(Value::Double(f)), _) => serde_json::json!(f),
                (Some(Value::Bytes(b)), ColumnType::MYSQL_TYPE_VAR_STRING) => {
                    serde_json::json!(String::from_utf8_lossy(b))
                }
                _ => serde_json::Value::Null,
            };
            object.insert(column.name_str().into_owned(), value);
        }
        serde_json::to_writer(&mut *sink, &object).unwrap();
        sink.write_all(b"\n").unwrap();
        count += 1;
    }
    count
}

pub async fn run(scale: Scale, report: &mut Report) {
    let rows: u64 = scale.pick(1_000_000, 100_000);
    let mut conn = sluice_tests::mysql::admin().await;
    let table = format!("narrow_{rows}");
    ensure_table(&mut conn, &table, rows).await;
    let base = sluice_tests::mysql::url();
    let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
    let grants = Grants::none()
        .allow_sql("main", &format!("{server}/{DATABASE}"), SqlMode::ReadOnly)
        .unwrap();
    let limits = Limits {
        wall_clock_per_call: std::time::Duration::from_secs(600),
        ..Limits::default()
    };
    let config = serde_json::json!({ "grant": "main", "page_size": 1000 }).to_string();
    let mut session = sluice_tests::mysql_connector()
        .open_with_limits(&config, &grants, &limits)
        .await
        .expect("mysql connector opens");
    let StreamRun {
        count,
        took,
        peak,
        bytes: sluice_bytes,
    } = stream_to_ndjson(&mut session, &table).await;

    let mut sink = CountingSink::default();
    let began = Instant::now();
    let native_count = native(&mut conn, &table, &mut sink).await;
    let native_took = began.elapsed();
    assert_eq!(count, native_count, "both read every row");
    report.add(Row {
        metric: format!("mysql: stream {rows} rows, narrow table, to NDJSON"),
        unit: "rows/s",
        sluice: count as f64 / took.as_secs_f64(),
        baseline: native_count as f64 / native_took.as_secs_f64(),
        target: Target::RatioAtLeast(0.8),
        note: format!(
            "3 columns; sluice wrote {} MB of NDJSON, native {} MB; native: mysql_async exec_iter -> serde_json::Map -> NDJSON",
            sluice_bytes / 1_000_000,
            sink.0 / 1_000_000
        ),
    });
    report.add(Row {
        metric: "mysql: host peak RSS, narrow table".into(),
        unit: "MB",
        sluice: peak as f64 / 1e6,
        baseline: f64::NAN,
        target: Target::AtMost(256.0),
        note: "whole-process VmHWM during the sluice stream".into(),
    });
}
