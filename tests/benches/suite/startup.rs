//! Cold start, call overhead and density of the `file` connector on a
//! runtime with the pooling allocator (each session instantiates from the
//! connector's `InstancePre`).

use std::time::{Duration, Instant};

use sluice::{Connector, Grants, Limits, PoolingConfig, Runtime, RuntimeConfig};

use crate::report::{Report, Row, Target};
use crate::sys::{percentile_us, rss, sample};
use crate::Scale;

const CONFIG: &str = r#"{"root": "/data"}"#;

fn pooled_runtime(max_instances: u32) -> Runtime {
    Runtime::with_config(RuntimeConfig {
        pooling: Some(PoolingConfig {
            max_instances,
            max_memory_bytes: 64 << 20,
            ..PoolingConfig::default()
        }),
        ..RuntimeConfig::default()
    })
    .expect("pooling runtime")
}

fn file_connector(runtime: &Runtime) -> (Connector, Grants) {
    let connector = runtime
        .load_file(sluice_tests::guest("sluice_file"))
        .expect("file connector loads");
    let data = sluice_tests::root().join("examples/data");
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", data.display()))
        .expect("mount");
    (connector, grants)
}

/// What a native connector does to open and answer a health check: parse
/// the config and look at its root directory.
fn native_open_and_health(config: &str, root: &std::path::Path) -> bool {
    let parsed: serde_json::Value = serde_json::from_str(config).expect("config");
    std::hint::black_box(&parsed);
    std::fs::metadata(root).is_ok_and(|m| m.is_dir())
}

/// `iterations` cold starts (open + first health) of `connector`: total and instantiate-only times.
async fn cold_starts(
    connector: &Connector,
    config: &str,
    grants: &Grants,
    iterations: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    for _ in 0..50 {
        let mut warm = connector
            .open_with_limits(config, grants, &limits)
            .await
            .unwrap();
        warm.health().await.unwrap();
    }
    let mut cold = Vec::with_capacity(iterations);
    let mut instantiate = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let began = Instant::now();
        let mut session = connector
            .open_with_limits(config, grants, &limits)
            .await
            .expect("open");
        session.health().await.expect("health");
        cold.push(began.elapsed());
        instantiate.push(session.instantiation_time());
        drop(session);
    }
    (cold, instantiate)
}

pub async fn run(scale: Scale, report: &mut Report) {
    let runtime = pooled_runtime(64);
    let iterations = scale.pick(5_000, 1_000);
    let probe = runtime
        .load_file(sluice_tests::guest("sluice_probe"))
        .expect("probe loads");
    let (mut cold, mut instantiate) = cold_starts(&probe, "{}", &Grants::none(), iterations).await;
    let (mut file_cold, _) = {
        let (connector, grants) = file_connector(&runtime);
        cold_starts(&connector, CONFIG, &grants, iterations).await
    };
    let root = sluice_tests::root().join("examples/data");
    let mut native = sample(iterations, async || {
        assert!(native_open_and_health(CONFIG, &root));
    })
    .await;
    let note = format!(
        "{iterations} sessions of the probe (a connector whose open and health do no I/O): new store + instantiate \
         (pooling, InstancePre) + open + health; native: parse the config and stat a directory"
    );
    report.add(Row {
        metric: "cold start p50".into(),
        unit: "µs",
        sluice: percentile_us(&mut cold, 50.0),
        baseline: percentile_us(&mut native, 50.0),
        target: Target::AtMost(100.0),
        note: note.clone(),
    });
    report.add(Row {
        metric: "cold start p99".into(),
        unit: "µs",
        sluice: percentile_us(&mut cold, 99.0),
        baseline: percentile_us(&mut native, 99.0),
        target: Target::AtMost(500.0),
        note,
    });
    report.add(Row {
        metric: "cold start p50, file connector".into(),
        unit: "µs",
        sluice: percentile_us(&mut file_cold, 50.0),
        baseline: percentile_us(&mut native, 50.0),
        target: Target::Informational,
        note: "as above with the file connector, whose health check stats its root through WASI \
               (a hop to tokio's blocking pool)"
            .into(),
    });
    report.add(Row {
        metric: "instantiate p50".into(),
        unit: "µs",
        sluice: percentile_us(&mut instantiate, 50.0),
        baseline: f64::NAN,
        target: Target::AtMost(30.0),
        note: "store creation + instantiate_async from the InstancePre (pooling allocator)".into(),
    });

    // What `sluice serve` pays per invocation (a fresh session) against a warm one.
    let (connector, grants) = file_connector(&runtime);
    let fetch = sluice::FetchRequest::new("people.ndjson").page(10, None, None);
    let mut fresh = sample(iterations, async || {
        let mut session = connector.open(CONFIG, &grants).await.expect("open");
        std::hint::black_box(session.fetch(&fetch).await.expect("fetch"));
        session.close().await.expect("close");
    })
    .await;
    let mut warm_session = connector.open(CONFIG, &grants).await.expect("open");
    let mut warm = sample(iterations, async || {
        std::hint::black_box(warm_session.fetch(&fetch).await.expect("fetch"));
    })
    .await;
    report.add(Row {
        metric: "invocation: fresh session (open + fetch + close) p50".into(),
        unit: "µs",
        sluice: percentile_us(&mut fresh, 50.0),
        baseline: percentile_us(&mut warm, 50.0),
        target: Target::Informational,
        note: "the file connector fetching 10 records of people.ndjson in a new session each time, as `sluice serve` does; \
               baseline: the same fetch on a session kept open (a warm session)"
            .into(),
    });

    // Call overhead: health checks on one open session.
    let calls = scale.pick(200_000, 20_000);
    let mut session = probe.open("{}", &Grants::none()).await.unwrap();
    for _ in 0..1_000 {
        session.health().await.unwrap();
    }
    let mut samples = sample(calls, async || {
        session.health().await.expect("health");
    })
    .await;
    let mut native = sample(calls, async || {
        std::hint::black_box(native_health(std::hint::black_box(&root)).await);
    })
    .await;
    report.add(Row {
        metric: "call overhead (health-check) p50".into(),
        unit: "µs",
        sluice: percentile_us(&mut samples, 50.0),
        baseline: percentile_us(&mut native, 50.0),
        target: Target::AtMost(2.0),
        note: format!(
            "{calls} health-check round trips on one open probe session (the guest answers Ok at once); native: an async fn call"
        ),
    });
}

/// The file connector's health check does no I/O; a native async call does the same nothing.
#[inline(never)]
async fn native_health(root: &std::path::Path) -> bool {
    !root.as_os_str().is_empty()
}

pub async fn density(scale: Scale, report: &mut Report) {
    let sessions = scale.pick(1_000, 250);
    let runtime = pooled_runtime(sessions as u32 + 16);
    let (connector, grants) = file_connector(&runtime);
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    // One session first, so the one-time costs (code, memory image) are not counted per session.
    let mut first = connector
        .open_with_limits(CONFIG, &grants, &limits)
        .await
        .unwrap();
    first.health().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = rss();
    let mut open = Vec::with_capacity(sessions);
    let mut failures = 0;
    for _ in 0..sessions {
        match connector.open_with_limits(CONFIG, &grants, &limits).await {
            Ok(mut session) => {
                if session.health().await.is_err() {
                    failures += 1;
                }
                open.push(session);
            }
            Err(e) => {
                failures += 1;
                eprintln!("bench: density: open failed: {e}");
            }
        }
    }
    let after = rss();
    let per_session = after.saturating_sub(before) as f64 / sessions as f64 / (1 << 20) as f64;

    // Native: the same number of "sessions" holding a parsed config and an open directory.
    let root = sluice_tests::root().join("examples/data");
    let native_before = rss();
    let native: Vec<_> = (0..sessions)
        .map(|_| {
            (
                serde_json::from_str::<serde_json::Value>(CONFIG).unwrap(),
                std::fs::File::open(&root).unwrap(),
                vec![0u8; 8192],
            )
        })
        .collect();
    let native_per = native_rss_per(native_before, sessions);
    report.add(Row {
        metric: format!("density: RSS per open session ({sessions} sessions)"),
        unit: "MiB",
        // A session that failed to open fails the metric.
        sluice: if failures == 0 { per_session } else { f64::INFINITY },
        baseline: native_per,
        target: Target::AtMost(2.0),
        note: format!(
            "{} sessions open at once, {failures} failed; RSS {} -> {} MiB; native: parsed config + open dir + 8 KiB buffer each",
            open.len(),
            before >> 20,
            after >> 20
        ),
    });
    drop(native);
    drop(open);
}

fn native_rss_per(before: u64, sessions: usize) -> f64 {
    rss().saturating_sub(before) as f64 / sessions as f64 / (1 << 20) as f64
}
