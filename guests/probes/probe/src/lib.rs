//! A hostile and probing connector for the test suite.
//!
//! Each `fetch` resource performs one action and reports what happened, so
//! tests can check that the host allows exactly what was granted and survives
//! guests that misbehave. Parameters come from the request's `options`.
//!
//! | resource | action |
//! |---|---|
//! | `read` | read file `path`, return its text |
//! | `write` | write `text` to file `path` |
//! | `symlink` | create a symlink at `path` pointing to `text` |
//! | `remove-dir` | remove directory `path` and everything in it |
//! | `mkdir` | create directory `path` (and its parents) |
//! | `tcp` | connect to `addr` |
//! | `tcp-exchange` | send `text` to `addr` with `sluice_sdk::net`, read `message` lines (at most `method` bytes each); `host` = `reconnect`: once more on a new connection |
//! | `listen` | bind and listen on `addr` |
//! | `udp` | bind a UDP socket on `addr` |
//! | `dns` | resolve `host` |
//! | `http` | `method` (default GET) `url` with `text` as body, return status, `location`, `retry-after` and body |
//! | `http-follow` | GET `url` and follow one redirect as a naive client would |
//! | `env` | return the environment the guest sees |
//! | `log` | log `message` at warn level (or `count` bytes of `x` when given) |
//! | `sql` | run `statements` (each `[sql, [params...]]`) on grant `grant`; `stream` reads the last one in batches, `execute` runs each with `execute`, `transaction` runs them all inside one `begin()` and commits |
//! | `memscan` | search all of linear memory for `text` reversed (so the needle itself is never in memory forwards) |
//! | `open-many` | open file `path` `count` times, keeping every handle |
//! | `loop` | spin forever |
//! | `memory-bomb` | allocate until something gives |
//! | `recursion` | recurse without bound |
//! | `trap` | panic (a wasm trap) |
//! | `sleep` | block in the host for `ms` milliseconds |
//!
//! `stream` of any resource delivers `count` records with ids `1`, `2`, …
//! (`{"n": i}`) and appends each `ack`/`nack` call to the file `path` as a
//! line `ack 1,2`, so tests see what a front door acknowledged.

use std::io::{Read, Write};

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::{
    config, http, io_error, Batch, Connector, ConnectorError, Descriptor, FetchRequest,
    FetchResponse, RecordBuilder, RecordStream, Result, Session,
};

struct Probe;
struct ProbeSession;

#[derive(Default, Deserialize)]
#[serde(default)]
struct Params {
    path: String,
    text: String,
    addr: String,
    host: String,
    url: String,
    message: String,
    ms: u64,
    count: usize,
    grant: String,
    statements: Vec<(String, Vec<Value>)>,
    stream: bool,
    transaction: bool,
    execute: bool,
    batch: u32,
    method: String,
    forward: bool,
}

impl Connector for Probe {
    type Session = ProbeSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "probe",
            "0.1.0",
            "Probes capabilities and misbehaves on request",
        )
        .build()
    }

    fn open(_config: &str) -> Result<ProbeSession> {
        Ok(ProbeSession)
    }
}

fn one(data: Value) -> FetchResponse {
    FetchResponse {
        records: vec![RecordBuilder::new(data).build()],
        total_count: Some(1),
        next_cursor: None,
    }
}

fn denied_or(err: std::io::Error, what: &str) -> ConnectorError {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => ConnectorError::Denied(format!("{what}: {err}")),
        _ => ConnectorError::Unavailable(format!("{what}: {err}")),
    }
}

/// CPU-bound work with no memory traffic: `rounds` steps of xorshift64*.
/// The benchmarks run the same function natively.
fn spin(rounds: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rounds {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    x
}

/// Recurse without bound on the wasm call stack (the function pointer hides
/// the recursion from the optimiser, so it cannot become a loop).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let next: fn(u64) -> u64 = std::hint::black_box(recurse);
    next(depth + 1).wrapping_add(depth)
}

/// Create a symlink at `path` (under a preopened directory) pointing to `target`,
/// through `wasi:filesystem` directly (std's wasi symlink is unstable).
fn symlink(target: &str, path: &str) -> Result<()> {
    use sluice_sdk::bindings::wasi::filesystem::preopens::get_directories;
    for (dir, guest) in get_directories() {
        let prefix = format!("{}/", guest.trim_end_matches('/'));
        if let Some(relative) = path.strip_prefix(&prefix) {
            return dir
                .symlink_at(target, relative)
                .map_err(|e| ConnectorError::Denied(format!("symlink {path} -> {target}: {e:?}")));
        }
    }
    Err(ConnectorError::NotFound(format!("no mount holds {path}")))
}

impl Session for ProbeSession {
    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let p: Params = config::parse_options(req.options.as_deref())?;
        if req.resource == "sql-forward" {
            return ForwardProbe::open(&p).map(|s| Box::new(s) as Box<dyn RecordStream>);
        }
        let next = match checkpoint {
            Some(text) => text.parse::<usize>().map_or(1, |n| n + 1),
            None => 1,
        };
        Ok(Box::new(AckLog {
            next,
            count: p.count,
            log: p.path,
        }))
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let p: Params = config::parse_options(req.options.as_deref())?;
        match req.resource.as_str() {
            "read" => {
                let mut text = String::new();
                std::fs::File::open(&p.path)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .map_err(|e| io_error(&p.path, e))?;
                Ok(one(json!({ "text": text })))
            }
            "write" => {
                std::fs::File::create(&p.path)
                    .and_then(|mut f| f.write_all(p.text.as_bytes()))
                    .map_err(|e| io_error(&p.path, e))?;
                Ok(one(json!({ "written": p.text.len() })))
            }
            "symlink" => {
                symlink(&p.text, &p.path)?;
                Ok(one(json!({ "linked": p.path })))
            }
            "remove-dir" => {
                std::fs::remove_dir_all(&p.path).map_err(|e| io_error(&p.path, e))?;
                Ok(one(json!({ "removed": p.path })))
            }
            "mkdir" => {
                std::fs::create_dir_all(&p.path).map_err(|e| io_error(&p.path, e))?;
                Ok(one(json!({ "created": p.path })))
            }
            "tcp" => {
                let stream = std::net::TcpStream::connect(&p.addr)
                    .map_err(|e| denied_or(e, &format!("connect to {}", p.addr)))?;
                Ok(one(
                    json!({ "peer": stream.peer_addr().map(|a| a.to_string()).ok() }),
                ))
            }
            "tcp-exchange" => {
                // Send `text`, then read `message` lines back (bounded by
                // `method` bytes when a number); `host` = "reconnect" sends
                // and reads once more on a fresh connection.
                let deadlines = sluice_sdk::net::Deadlines {
                    read: std::time::Duration::from_millis(300),
                    ..Default::default()
                };
                let max: usize = p.method.parse().unwrap_or(4096);
                let lines: usize = p.message.parse().unwrap_or(1);
                let mut conn = sluice_sdk::net::Connection::open(&p.addr, deadlines)?;
                let exchange = |conn: &mut sluice_sdk::net::Connection| -> Result<Vec<String>> {
                    conn.send(p.text.as_bytes())?;
                    (0..lines)
                        .map(|_| Ok(String::from_utf8_lossy(&conn.read_line(max)?).into_owned()))
                        .collect()
                };
                let mut replies = exchange(&mut conn)?;
                if p.host == "reconnect" {
                    conn.reconnect()?;
                    replies.extend(exchange(&mut conn)?);
                }
                Ok(one(json!({ "replies": replies })))
            }
            "listen" => {
                let listener = std::net::TcpListener::bind(&p.addr)
                    .map_err(|e| denied_or(e, &format!("listen on {}", p.addr)))?;
                Ok(one(
                    json!({ "local": listener.local_addr().map(|a| a.to_string()).ok() }),
                ))
            }
            "udp" => {
                let socket = std::net::UdpSocket::bind(&p.addr)
                    .map_err(|e| denied_or(e, &format!("udp bind {}", p.addr)))?;
                Ok(one(
                    json!({ "local": socket.local_addr().map(|a| a.to_string()).ok() }),
                ))
            }
            "dns" => {
                use std::net::ToSocketAddrs;
                let addrs: Vec<String> = (p.host.as_str(), 80)
                    .to_socket_addrs()
                    .map_err(|e| denied_or(e, &format!("resolve {}", p.host)))?
                    .map(|a| a.ip().to_string())
                    .collect();
                Ok(one(json!({ "addrs": addrs })))
            }
            "http" => {
                let method = if p.method.is_empty() {
                    "GET"
                } else {
                    p.method.as_str()
                };
                let body = (!p.text.is_empty()).then_some(p.text.as_bytes());
                let res = http::request(method, &p.url, &[], body)?;
                Ok(one(json!({
                    "status": res.status,
                    "location": res.header("location"),
                    "retry-after": res.header("retry-after"),
                    "etag": res.header("etag"),
                    "body": String::from_utf8_lossy(&res.body),
                })))
            }
            "http-follow" => {
                let first = http::get(&p.url)?;
                let Some(location) = first.header("location").map(str::to_string) else {
                    return Err(ConnectorError::InvalidRequest("no redirect".into()));
                };
                let second = http::get(&location)?;
                Ok(one(json!({ "status": second.status })))
            }
            "sql" => {
                use sluice_sdk::sql::{self as db, Connection};
                let conn = Connection::open(&p.grant).map_err(db::error)?;
                let mut results = Vec::new();
                if p.transaction {
                    // Every statement inside one guest transaction, committed at the end.
                    let tx = conn.begin().map_err(db::error)?;
                    for (statement, params) in &p.statements {
                        let params: Vec<String> = params.iter().map(Value::to_string).collect();
                        let affected = tx.execute(statement, &params).map_err(db::error)?;
                        results.push(json!({ "affected": affected }));
                    }
                    db::Transaction::commit(tx).map_err(db::error)?;
                    return Ok(one(json!({ "results": results })));
                }
                for (i, (statement, params)) in p.statements.iter().enumerate() {
                    let params: Vec<String> = params.iter().map(Value::to_string).collect();
                    let last = i + 1 == p.statements.len();
                    if p.execute {
                        let affected = conn.execute(statement, &params).map_err(db::error)?;
                        results.push(json!({ "affected": affected }));
                    } else if p.forward && last {
                        // Outside record-stream.next: the host must refuse.
                        let rows = conn
                            .query_stream(statement, &params, p.batch.max(1))
                            .map_err(db::error)?;
                        rows.forward_records(&ForwardProbe::shape(), 10)
                            .map_err(db::error)?;
                    } else if p.stream && last {
                        let rows = conn
                            .query_stream(statement, &params, p.batch.max(1))
                            .map_err(db::error)?;
                        let mut batches = Vec::new();
                        while let Some(batch) = rows.next().map_err(db::error)? {
                            let batch: Vec<Value> = batch
                                .iter()
                                .map(|r| db::row_values(r).map(Value::Array))
                                .collect::<Result<_>>()?;
                            batches.push(Value::Array(batch));
                        }
                        results.push(json!({ "batches": batches }));
                    } else {
                        let set = conn.query(statement, &params).map_err(db::error)?;
                        let rows: Vec<Value> = set
                            .rows
                            .iter()
                            .map(|r| db::row_values(r).map(Value::Array))
                            .collect::<Result<_>>()?;
                        let types: Vec<String> =
                            set.columns.iter().map(|c| c.type_name.clone()).collect();
                        results.push(json!({ "rows": rows, "types": types }));
                    }
                }
                Ok(one(json!({ "results": results })))
            }
            "memscan" => {
                // `text` arrives reversed; compare it back to front so the
                // forward needle is never built in memory.
                let reversed = p.text.as_bytes();
                let size = core::arch::wasm32::memory_size(0) * 65536;
                let found = (1..size.saturating_sub(reversed.len())).any(|at| {
                    reversed.iter().rev().enumerate().all(|(k, byte)| {
                        // SAFETY: every address below memory_size is readable linear memory.
                        let here = unsafe { core::ptr::read_volatile((at + k) as *const u8) };
                        here == *byte
                    })
                });
                Ok(one(json!({ "found": found, "scanned": size })))
            }
            "open-many" => {
                let files = (0..p.count)
                    .map(|_| std::fs::File::open(&p.path).map_err(|e| io_error(&p.path, e)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(one(json!({ "open": files.len() })))
            }
            "env" => {
                let vars: serde_json::Map<String, Value> = std::env::vars()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                Ok(one(Value::Object(vars)))
            }
            "log" => {
                let message = if p.count > 0 {
                    "x".repeat(p.count)
                } else {
                    p.message
                };
                sluice_sdk::log::warn(&message);
                Ok(one(json!({ "logged": true })))
            }
            "secret" => {
                // Read a secret, then leak it every way a connector can: a
                // log event, and an error message. The host must redact both.
                let value = sluice_sdk::secrets::get(&p.message)?;
                sluice_sdk::log::warn(&format!("the secret is {value}"));
                Err(ConnectorError::Unavailable(format!(
                    "login with {value} refused"
                )))
            }
            "json-lines" => {
                // `text` `count` times as one chunk, looking for `batch`
                // fields (f0, f1, ...): what the host checks and answers.
                let chunk = p.text.repeat(p.count);
                let fields: Vec<String> = (0..p.batch).map(|i| format!("f{i}")).collect();
                let scanned = sluice_sdk::json_lines::scan(chunk.as_bytes(), &fields, true)?;
                let found = sluice_sdk::json_lines::lines(&scanned, fields.len()).count();
                Ok(one(json!({
                    "consumed": scanned.consumed,
                    "lines": scanned.lines,
                    "found": found,
                    "malformed": scanned.malformed.map(|bad| json!({
                        "line": bad.line, "start": bad.start, "message": bad.message,
                    })),
                })))
            }
            "spin" => Ok(one(json!({ "hash": spin(p.count as u64) }))),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => Ok(one(json!({ "depth": recurse(0) }))),
            "trap" => {
                // What a crashing guest printed first comes with the crash.
                if !p.text.is_empty() {
                    println!("{}", p.text);
                }
                panic!("probe asked to trap")
            }
            "print" => {
                // `text` `count` times to stdout, then once to stderr.
                for _ in 0..p.count {
                    println!("{}", p.text);
                }
                eprintln!("{}", p.text);
                Ok(one(json!({ "printed": p.count + 1 })))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(p.ms));
                Ok(one(json!({ "slept_ms": p.ms })))
            }
            "entropy" => {
                // What a run cannot predict: both clocks and every random source.
                use sluice_sdk::bindings::wasi::clocks::{monotonic_clock, wall_clock};
                use sluice_sdk::bindings::wasi::random::{insecure, insecure_seed, random};
                let wall = wall_clock::now();
                let started = monotonic_clock::now();
                Ok(one(json!({
                    "wall": [wall.seconds, wall.nanoseconds],
                    "monotonic": [started, monotonic_clock::now()],
                    "random": random::get_random_bytes(16),
                    "random_u64": random::get_random_u64(),
                    "insecure": insecure::get_insecure_random_bytes(8),
                    "seed": insecure_seed::insecure_seed(),
                })))
            }
            other => Err(ConnectorError::NotFound(format!(
                "no probe action `{other}`"
            ))),
        }
    }
}

/// Records `1..=count`, each ack and nack logged to `log`.
/// A stream that has the host forward the rows of `statements[0]` (two
/// columns: an id, then a value) and greedily asks for twice the caller's
/// `max`: the second ask must be refused, and its answer becomes the
/// guest's own record after the forwarded ones.
struct ForwardProbe {
    rows: sluice_sdk::sql::RowStream,
    _conn: sluice_sdk::sql::Connection,
}

impl ForwardProbe {
    fn open(p: &Params) -> Result<Self> {
        use sluice_sdk::sql::{self as db, Connection};
        let (statement, params) = p
            .statements
            .first()
            .ok_or_else(|| ConnectorError::InvalidRequest("one statement".into()))?;
        let params: Vec<String> = params.iter().map(Value::to_string).collect();
        let conn = Connection::open(&p.grant).map_err(db::error)?;
        let rows = conn
            .query_stream(statement, &params, p.batch.max(1))
            .map_err(db::error)?;
        Ok(Self { rows, _conn: conn })
    }

    fn shape() -> sluice_sdk::sql::RecordShape {
        sluice_sdk::sql::RecordShape {
            visible: 2,
            id_columns: vec![0],
            position_columns: vec![0],
            json_text_columns: vec![],
        }
    }
}

impl RecordStream for ForwardProbe {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        use sluice_sdk::sql as db;
        let Some(first) = self
            .rows
            .forward_records(&Self::shape(), max)
            .map_err(db::error)?
        else {
            return Ok(None);
        };
        let second = match self.rows.forward_records(&Self::shape(), max) {
            Ok(Some(more)) => json!({ "second": "accepted", "count": more.count }),
            Ok(None) => json!({ "second": "end" }),
            Err(err) => json!({ "second": db::error(err).to_string() }),
        };
        Ok(Some(Batch {
            records: vec![RecordBuilder::new(second).build()],
            checkpoint: Some(first.last_position),
        }))
    }
}

struct AckLog {
    next: usize,
    count: usize,
    log: String,
}

impl AckLog {
    fn append(&self, verb: &str, ids: &[String]) -> Result<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut f| writeln!(f, "{verb} {}", ids.join(",")))
            .map_err(|e| io_error(&self.log, e))
    }
}

impl RecordStream for AckLog {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        if self.next > self.count {
            return Ok(None);
        }
        let last = (self.next + max.max(1) as usize - 1).min(self.count);
        let records = (self.next..=last)
            .map(|n| {
                RecordBuilder::new(json!({ "n": n }))
                    .id(n.to_string())
                    .build()
            })
            .collect();
        self.next = last + 1;
        Ok(Some(Batch {
            records,
            checkpoint: Some(last.to_string()),
        }))
    }

    fn ack(&mut self, ids: Vec<String>) -> Result<()> {
        self.append("ack", &ids)
    }

    fn nack(&mut self, ids: Vec<String>) -> Result<()> {
        self.append("nack", &ids)
    }
}

sluice_sdk::export_connector!(Probe);
