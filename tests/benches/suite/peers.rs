//! What a user of this field would pick instead of sluice, run on the same
//! data in the same run: `jq` for the NDJSON filter; `psql`'s `COPY (SELECT
//! row_to_json(t) …) TO STDOUT`, a Singer tap built with the Meltano SDK
//! (`meltanolabs-tap-postgres`) and `dlt`'s SQL source for the PostgreSQL
//! export. `make bench-peers` installs them (jq from Debian, the Python ones
//! in `target/bench/peers`); a peer that is missing or fails is reported as
//! such and the table goes on without it.
//!
//! Each peer writes to a pipe this process reads and counts, and must produce
//! as many records as sluice did: a peer that stops early is a failure, not
//! a fast figure.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The time a peer took, or why it was not measured.
pub type Measured = Result<Duration, String>;

/// A peer reading `schema.table` of the database at a URL, expecting a row count.
pub type Peer = fn(&str, &str, &str, u64) -> Measured;

fn peers_python() -> PathBuf {
    sluice_tests::root().join("target/bench/peers/bin/python")
}

/// Run `command`, count the lines of its stdout that `keep` accepts, and
/// time it; `expected` lines or a failure.
fn run_counting(
    name: &str,
    mut command: Command,
    expected: u64,
    keep: impl Fn(&[u8]) -> bool,
) -> Measured {
    let began = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name} did not start: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    // Drain stderr beside stdout so a chatty peer never blocks on it.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let (mut line, mut count) = (Vec::with_capacity(1024), 0u64);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => count += u64::from(keep(&line)),
            Err(e) => return Err(format!("{name}: reading its output: {e}")),
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("{name}: waiting for it: {e}"))?;
    let took = began.elapsed();
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        let last = errors.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
        return Err(format!("{name} failed ({status}): {last}"));
    }
    if count != expected {
        return Err(format!(
            "{name} produced {count} records where sluice produced {expected}"
        ));
    }
    Ok(took)
}

/// `jq -c 'select(.age >= 90)'` over the NDJSON file.
pub fn jq_filter(path: &Path, expected: u64) -> Measured {
    if Command::new("jq").arg("--version").output().is_err() {
        return Err(
            "jq is not installed (make bench-peers installs it: apt-get install jq)".into(),
        );
    }
    let mut command = Command::new("jq");
    command.args(["-c", "select(.age >= 90)"]).arg(path);
    run_counting("jq", command, expected, |_| true)
}

/// `psql … COPY (SELECT row_to_json(t) FROM table t ORDER BY id) TO STDOUT`.
pub fn psql_copy(url: &str, table: &str, expected: u64) -> Measured {
    if Command::new("psql").arg("--version").output().is_err() {
        return Err("psql is not installed (Debian: postgresql-client)".into());
    }
    let mut command = Command::new("psql");
    command.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        url,
        "-c",
        &format!("COPY (SELECT row_to_json(t) FROM {table} t ORDER BY id) TO STDOUT"),
    ]);
    run_counting("psql", command, expected, |_| true)
}

/// The Meltano SDK's `tap-postgres` reading `schema.table` in full, counting
/// its Singer `RECORD` messages.
pub fn singer_tap(url: &str, schema: &str, table: &str, expected: u64) -> Measured {
    let python = peers_python();
    if !python.exists() {
        return Err("the Python peers are not installed (make bench-peers)".into());
    }
    let mut command = Command::new(python);
    command
        .arg("-c")
        .arg(SINGER_DRIVER)
        .args([url, schema, table]);
    run_counting("tap-postgres", command, expected, |line| {
        line.starts_with(br#"{"type":"RECORD""#) || line.starts_with(br#"{"type": "RECORD""#)
    })
}

/// `dlt`'s `sql_table` source over `schema.table`, each row printed as a JSON line.
pub fn dlt_source(url: &str, schema: &str, table: &str, expected: u64) -> Measured {
    let python = peers_python();
    if !python.exists() {
        return Err("the Python peers are not installed (make bench-peers)".into());
    }
    let mut command = Command::new(python);
    command.arg("-c").arg(DLT_DRIVER).args([url, schema, table]);
    run_counting("dlt", command, expected, |_| true)
}

/// Discovers the catalog, selects only the table (full-table replication),
/// then runs the tap with stdout passed through.
const SINGER_DRIVER: &str = r#"
import json, os, subprocess, sys, tempfile
url, schema, table = sys.argv[1:4]
tap = os.path.join(os.path.dirname(sys.executable), "tap-postgres")
work = tempfile.mkdtemp()
config = os.path.join(work, "config.json")
from urllib.parse import urlparse
u = urlparse(url)
json.dump({"host": u.hostname, "port": u.port or 5432, "database": u.path.lstrip("/"),
           "user": u.username, "password": u.password or "", "filter_schemas": [schema]},
          open(config, "w"))
catalog = json.loads(subprocess.run([tap, "--config", config, "--discover"],
                                    check=True, capture_output=True).stdout)
wanted = f"{schema}-{table}"
for stream in catalog["streams"]:
    chosen = stream["tap_stream_id"] == wanted
    for entry in stream["metadata"]:
        if entry["breadcrumb"] == []:
            entry["metadata"]["selected"] = chosen
            entry["metadata"]["replication-method"] = "FULL_TABLE"
        else:
            entry["metadata"]["selected"] = chosen
path = os.path.join(work, "catalog.json")
json.dump(catalog, open(path, "w"))
sys.stdout.flush()
os.execv(tap, [tap, "--config", config, "--catalog", path])
"#;

/// Iterates `dlt.sources.sql_database.sql_table` and prints each row.
const DLT_DRIVER: &str = r#"
import json, sys
from dlt.sources.sql_database import sql_table
url, schema, table = sys.argv[1:4]
url = url.replace("postgres://", "postgresql+psycopg2://", 1)
out = sys.stdout
for item in sql_table(credentials=url, schema=schema, table=table, backend="sqlalchemy", chunk_size=10000):
    for row in item if isinstance(item, list) else [item]:
        out.write(json.dumps(row, default=str))
        out.write("\n")
"#;
