//! `make bench`: sluice against native baselines measured in the same run.
//!
//! Each metric runs the same work twice — through sluice (a real connector
//! in the wasm sandbox) and natively in this process — and reports both, the
//! ratio and the target. `--quick` (or `QUICK=1`) runs smaller sizes.
//! Results: a table on stdout and `target/bench/results.json`.

#[cfg(feature = "bench-brokers")]
mod brokers;
mod file;
mod interrupt;
mod mysql;
#[cfg(feature = "bench-parquet")]
mod parquet;
mod peers;
mod postgres;
mod report;
mod rest;
mod s3;
mod scaling;
mod server;
mod startup;
mod sys;

use report::Report;

/// One part of the suite: runs its metrics and adds their rows.
type Suite = for<'r> fn(
    Scale,
    &'r mut Report,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'r>>;

/// Counts the bytes written to it (a sink both sides of a stream metric write NDJSON to).
#[derive(Default)]
pub struct CountingSink(pub u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What streaming a table through a connector to NDJSON took.
pub struct StreamRun {
    /// Records written.
    pub count: u64,
    /// From opening the stream to its last batch.
    pub took: std::time::Duration,
    /// The process's peak RSS meanwhile (bytes).
    pub peak: u64,
    /// NDJSON bytes written.
    pub bytes: u64,
}

/// Stream all of `table` through `session`, 1000 records a batch, writing
/// each record's data as one NDJSON line.
pub async fn stream_to_ndjson(session: &mut sluice::Session, table: &str) -> StreamRun {
    use std::io::Write as _;
    let mut sink = CountingSink::default();
    sys::reset_peak();
    let began = std::time::Instant::now();
    let mut stream = session
        .stream(&sluice::FetchRequest::new(table), None)
        .await
        .expect("stream");
    let mut count = 0u64;
    while let Some(batch) = stream.next(1000).await.expect("batch") {
        for record in &batch.records {
            sink.write_all(record.data.as_bytes()).unwrap();
            sink.write_all(b"\n").unwrap();
        }
        count += batch.records.len() as u64;
    }
    let took = began.elapsed();
    let peak = sys::peak_rss();
    stream.close().await.unwrap();
    StreamRun {
        count,
        took,
        peak,
        bytes: sink.0,
    }
}

/// How big each metric runs.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// The smaller version (`QUICK=1`).
    pub quick: bool,
}

impl Scale {
    /// `full` normally, `quick` under `QUICK=1`.
    pub fn pick<T>(self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// The Parquet rows, when built with arrow-rs (the native baseline).
async fn parquet(scale: Scale, report: &mut Report) {
    #[cfg(feature = "bench-parquet")]
    parquet::run(scale, report).await;
    #[cfg(not(feature = "bench-parquet"))]
    {
        let _ = scale;
        report.failed(
            "parquet",
            "built without `--features bench-parquet` (make bench turns it on)".into(),
        );
    }
}

/// The broker rows, when built with their native clients.
async fn brokers(scale: Scale, report: &mut Report) {
    #[cfg(feature = "bench-brokers")]
    brokers::run(scale, report).await;
    #[cfg(not(feature = "bench-brokers"))]
    {
        let _ = scale;
        report.failed(
            "brokers",
            "built without `--features bench-brokers` (make bench turns it on)".into(),
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let scale = Scale { quick };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut report = Report::new(scale);
    let started = std::time::Instant::now();
    let suites: [(&str, Suite); 12] = [
        ("startup", |s, r| Box::pin(startup::run(s, r))),
        ("interrupt", |s, r| Box::pin(interrupt::run(s, r))),
        ("file", |s, r| Box::pin(file::run(s, r))),
        ("s3", |s, r| Box::pin(s3::run(s, r))),
        ("postgres", |s, r| Box::pin(postgres::run(s, r))),
        ("mysql", |s, r| Box::pin(mysql::run(s, r))),
        ("rest", |s, r| Box::pin(rest::run(s, r))),
        ("server", |s, r| Box::pin(server::run(s, r))),
        ("brokers", |s, r| Box::pin(brokers(s, r))),
        // After every row of peak RSS: arrow's baseline leaves hundreds of
        // megabytes in the allocator, which the process's peak would count.
        ("parquet", |s, r| Box::pin(parquet(s, r))),
        ("scaling", |s, r| Box::pin(scaling::run(s, r))),
        // Last: it leaves a thousand sessions' memory behind in the allocator.
        ("density", |s, r| Box::pin(startup::density(s, r))),
    ];
    for (name, suite) in suites {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("bench: {name} ...");
        let began = std::time::Instant::now();
        // A suite that fails (a baseline's client, a busy machine) says so in
        // the table; the other suites still run and the table still prints.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(suite(scale, &mut report))
        }));
        if let Err(panic) = ran {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "it panicked".to_string());
            report.failed(name, why);
        }
        eprintln!("bench: {name} took {:.1} s", began.elapsed().as_secs_f64());
    }
    report.finish(started.elapsed());
}
