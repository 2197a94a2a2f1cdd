//! Streaming 1M rows (a narrow and a wide table) through the `postgres`
//! connector to NDJSON, against tokio-postgres -> serde_json -> NDJSON in
//! the same process.

use std::io::Write;
use std::time::Instant;

use sluice::capability::sql::SqlMode;
use sluice::{Grants, Limits};
use tokio_postgres::types::Type;

use crate::report::{Report, Row, Target};
use crate::{stream_to_ndjson, CountingSink, Scale, StreamRun};

pub const SCHEMA: &str = "sluice_bench";

/// Column expressions of each table, over `g` from generate_series.
fn columns(wide: bool) -> Vec<String> {
    let mut columns = vec!["g::int8 AS id".to_string()];
    if !wide {
        columns.push("'name-' || g AS name".into());
        columns.push("(g * 0.5)::float8 AS score".into());
        return columns;
    }
    for i in 0..5 {
        columns.push(format!("(g % {})::int4 AS n{i}", 10 + i * 1000));
        columns.push(format!("'text-{i}-' || (g % 9973) AS t{i}"));
        columns.push(format!("(g * {}.25)::float8 AS f{i}", i + 1));
    }
    for i in 0..4 {
        columns.push(format!("(g % {} = 0) AS b{i}", i + 2));
    }
    columns
}

/// Make `table` hold exactly `rows` rows (kept between runs).
pub async fn ensure_table(client: &tokio_postgres::Client, table: &str, wide: bool, rows: i64) {
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        .await
        .unwrap();
    let existing = client
        .query_opt(&format!("SELECT count(*) FROM {SCHEMA}.{table}"), &[])
        .await
        .ok()
        .flatten()
        .map(|row| row.get::<_, i64>(0));
    if existing == Some(rows) {
        return;
    }
    eprintln!("bench: creating {SCHEMA}.{table} with {rows} rows once");
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {SCHEMA}.{table};
             CREATE TABLE {SCHEMA}.{table} AS SELECT {} FROM generate_series(1, {rows}) g;
             ALTER TABLE {SCHEMA}.{table} ADD PRIMARY KEY (id);
             ANALYZE {SCHEMA}.{table}",
            columns(wide).join(", ")
        ))
        .await
        .unwrap();
}

/// Native: every row to a JSON object by column type, one line each.
async fn native(client: &tokio_postgres::Client, table: &str, sink: &mut CountingSink) -> u64 {
    use futures_util::TryStreamExt;
    let rows = client
        .query_raw(
            &format!("SELECT * FROM {SCHEMA}.{table} ORDER BY id"),
            std::iter::empty::<i64>(),
        )
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await.unwrap() {
        let mut object = serde_json::Map::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let value = match *column.type_() {
                Type::INT8 => serde_json::json!(row.get::<_, Option<i64>>(i)),
                Type::INT4 => serde_json::json!(row.get::<_, Option<i32>>(i)),
                Type::FLOAT8 => serde_json::json!(row.get::<_, Option<f64>>(i)),
                Type::BOOL => serde_json::json!(row.get::<_, Option<bool>>(i)),
                _ => serde_json::json!(row.get::<_, Option<String>>(i)),
            };
            object.insert(column.name().to_string(), value);
        }
        serde_json::to_writer(&mut *sink, &object).unwrap();
        sink.write_all(b"\n").unwrap();
        count += 1;
    }
    count
}

pub async fn run(scale: Scale, report: &mut Report) {
    let rows: i64 = scale.pick(1_000_000, 100_000);
    let client = sluice_tests::postgres::admin().await;
    let url = sluice_tests::postgres::url();
    let connector = sluice_tests::postgres_connector();
    let grants = Grants::none()
        .allow_sql("main", &url, SqlMode::ReadOnly)
        .unwrap();
    let limits = Limits {
        wall_clock_per_call: std::time::Duration::from_secs(600),
        ..Limits::default()
    };
    for wide in [false, true] {
        let kind = if wide { "wide" } else { "narrow" };
        let table = format!("{kind}_{rows}");
        ensure_table(&client, &table, wide, rows).await;
        let config = serde_json::json!({ "grant": "main", "schema": SCHEMA }).to_string();
        let mut session = connector
            .open_with_limits(&config, &grants, &limits)
            .await
            .expect("postgres connector opens");
        let StreamRun {
            count,
            took,
            peak,
            bytes: sluice_bytes,
        } = stream_to_ndjson(&mut session, &table).await;

        let mut sink = CountingSink::default();
        let began = Instant::now();
        let native_count = native(&client, &table, &mut sink).await;
        let native_took = began.elapsed();
        assert_eq!(count, native_count, "both read every row");
        let metric = format!("postgres: stream {rows} rows, {kind} table, to NDJSON");
        let qualified = format!("{SCHEMA}.{table}");
        // The Python peers take minutes per million rows: the narrow table only.
        if !wide {
            let peers = [
                (
                    "Meltano SDK tap-postgres",
                    crate::peers::singer_tap as crate::peers::Peer,
                ),
                ("dlt sql_table", crate::peers::dlt_source),
            ];
            for (peer, run) in peers {
                let measured = run(&url, SCHEMA, &table, count);
                report.peer(
                    &metric,
                    peer,
                    measured.map(|took| count as f64 / took.as_secs_f64()),
                );
            }
        }
        let psql = crate::peers::psql_copy(&url, &qualified, count);
        report.peer(
            &metric,
            "psql COPY",
            psql.map(|took| count as f64 / took.as_secs_f64()),
        );
        report.add(Row {
            metric,
            unit: "rows/s",
            sluice: count as f64 / took.as_secs_f64(),
            baseline: native_count as f64 / native_took.as_secs_f64(),
            target: Target::RatioAtLeast(0.8),
            note: format!(
                "{} columns; sluice wrote {} MB of NDJSON, native {} MB; native: tokio-postgres query_raw -> serde_json::Map -> NDJSON",
                columns(wide).len(),
                sluice_bytes / 1_000_000,
                sink.0 / 1_000_000
            ),
        });
        report.add(Row {
            metric: format!("postgres: host peak RSS, {kind} table"),
            unit: "MB",
            sluice: peak as f64 / 1e6,
            baseline: f64::NAN,
            target: Target::AtMost(256.0),
            note: "whole-process VmHWM during the sluice stream".into(),
        });
    }
}
