//! Shared helpers for the integration tests: guest artifacts, one shared
//! runtime, temporary directories, the CLI binary and a test HTTP upstream.

pub mod client;
pub mod components;
pub mod ftp;
pub mod grpc;
pub mod kafka;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod postgres;
pub mod rabbitmq;
pub mod redis;
pub mod s3;
pub mod sftp;
pub mod upstream;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sluice::{Connector, FetchRequest, Runtime};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a built guest component, e.g. `guest("sluice_file")`.
///
/// # Panics
///
/// When the guest has not been built, saying how to build it.
pub fn guest(name: &str) -> PathBuf {
    let path = root().join(format!("guests/target/wasm32-wasip2/release/{name}.wasm"));
    assert!(
        path.exists(),
        "guest component {} is missing: run `make guests` (or `make test`, which builds them)",
        path.display()
    );
    path
}

/// The runtime shared by the tests of one binary (one engine, one epoch ticker).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime"))
}

/// A guest compiled once per test binary.
pub fn connector(name: &str) -> Connector {
    static CACHE: OnceLock<Mutex<HashMap<String, Connector>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(name.to_string())
        .or_insert_with(|| runtime().load_file(guest(name)).expect("guest loads"))
        .clone()
}

/// The file connector.
pub fn file_connector() -> Connector {
    connector("sluice_file")
}

/// The probe guest.
pub fn probe() -> Connector {
    connector("sluice_probe")
}

/// A probe request: `action` with `params` as options.
pub fn probe_request(action: &str, params: serde_json::Value) -> FetchRequest {
    FetchRequest::new(action).options(&params)
}

/// The `sluice` binary built by `make build` / `make test`.
///
/// # Panics
///
/// When it has not been built, saying how to build it.
pub fn sluice_bin() -> PathBuf {
    let path = std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/sluice"));
    assert!(
        path.exists(),
        "the sluice binary {} is missing: run `make build` (or `make test`, which builds it)",
        path.display()
    );
    path
}

/// `sluice ARGS` run from the workspace root with the default log level, to its end.
///
/// # Panics
///
/// When the binary cannot be started.
pub fn sluice(args: &[&str]) -> std::process::Output {
    std::process::Command::new(sluice_bin())
        .args(args)
        .current_dir(root())
        .env_remove("SLUICE_LOG")
        .output()
        .expect("sluice runs")
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// A directory holding what `make bundled` offers every tenant: one
/// component per `guests/connectors/*`, never the hostile test probes.
pub fn bundled_connectors() -> tempfile::TempDir {
    let dir = tempdir();
    let connectors =
        std::fs::read_dir(root().join("guests/connectors")).expect("guests/connectors");
    for entry in connectors.map(|e| e.expect("a directory entry")) {
        let name = format!("sluice_{}", entry.file_name().to_string_lossy());
        std::fs::copy(guest(&name), dir.path().join(format!("{name}.wasm")))
            .expect("copy a connector");
    }
    dir
}

/// The JSON data of every record of a page or batch.
pub fn data(records: &[sluice::Record]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| serde_json::from_str(&r.data).expect("record data is JSON"))
        .collect()
}

/// The postgres connector.
pub fn postgres_connector() -> Connector {
    connector("sluice_postgres")
}

/// The mysql connector.
pub fn mysql_connector() -> Connector {
    connector("sluice_mysql")
}

/// The mqtt connector.
pub fn mqtt_connector() -> Connector {
    connector("sluice_mqtt")
}

/// The kafka connector.
pub fn kafka_connector() -> Connector {
    connector("sluice_kafka")
}

/// The nats connector.
pub fn nats_connector() -> Connector {
    connector("sluice_nats")
}

/// The rabbitmq connector.
pub fn rabbitmq_connector() -> Connector {
    connector("sluice_rabbitmq")
}

/// The redis connector.
pub fn redis_connector() -> Connector {
    connector("sluice_redis")
}

/// The Python of `make pytools`, which holds third-party checkers
/// (openapi-spec-validator, prometheus_client).
///
/// # Panics
///
/// When it is not installed, saying how to install it.
pub fn pytools_python() -> PathBuf {
    let python = root().join("target/pytools/bin/python");
    assert!(
        root().join("target/pytools/.installed").exists(),
        "the third-party checkers are missing: run `make pytools` (or `make test`, which installs them)"
    );
    python
}

/// A server process this test started on a free loopback port; killed when dropped.
pub struct Daemon {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Daemon {
    /// Start `program` with `args` (`{port}` in an argument is replaced by a
    /// free port) and wait until the port accepts connections.
    ///
    /// # Panics
    ///
    /// When the program cannot start or does not listen within 10 s, saying which.
    pub fn start(program: &str, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let child = std::process::Command::new(program)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} cannot start ({e}): is it installed?"));
        let address = format!("127.0.0.1:{port}");
        let daemon = Self { child, address };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(&daemon.address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{program} {args:?} did not listen on {} within 10 s",
                daemon.address
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        daemon
    }
}

impl Daemon {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-connection fake server on a free loopback port: it sends
/// `greeting`, reads what the client sends first, answers `reply`, and keeps
/// the connection open a moment so the client reads the reply rather than a
/// reset. Returns its address and, when joined, the bytes it heard.
pub fn fake_server(
    greeting: &'static [u8],
    reply: &'static [u8],
) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("bound").to_string();
    let handle = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("the client connects");
        let _ = socket.write_all(greeting);
        let mut heard = vec![0; 4096];
        let n = socket.read(&mut heard).unwrap_or(0);
        heard.truncate(n);
        let _ = socket.write_all(reply);
        std::thread::sleep(std::time::Duration::from_millis(300));
        heard
    });
    (address, handle)
}

/// Run a `sluice run … stream` whose stdout is piped, read `at_least`
/// records, stop reading so the pipe fills and the writer blocks mid-batch,
/// SIGKILL it, and return every record line it wrote (`{"record": …}`'s value).
///
/// # Panics
///
/// When the process cannot start or ends before writing `at_least` records.
pub fn kill_mid_stream(
    command: &mut std::process::Command,
    at_least: usize,
) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sluice runs");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let parse = |line: std::io::Result<String>| -> Option<serde_json::Value> {
        serde_json::from_str(&line.ok()?).ok()
    };
    let mut printed = Vec::new();
    while printed.len() < at_least {
        let line = parse(lines.next().expect("the stream goes on")).expect("an NDJSON line");
        printed.extend(line.get("record").cloned());
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().expect("SIGKILL");
    child.wait().expect("it ends");
    // What it wrote before dying is still in the pipe (up to a torn last line).
    for line in lines.map_while(parse) {
        printed.extend(line.get("record").cloned());
    }
    printed
}

/// Run a Python `script` that drives a broker with its own client library
/// (installed by `make pytools`), its arguments `args` as JSON on stdin, and
/// parse what it prints as JSON. A script prints `{"unreachable": …}` when
/// it cannot reach the broker.
///
/// # Panics
///
/// When the library `module` is missing, the broker is unreachable
/// (`unreachable` says how to start it) or the script fails.
pub fn broker_script(
    script: &str,
    args: &serde_json::Value,
    module: &str,
    unreachable: &str,
) -> serde_json::Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(pytools_python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(args.to_string().as_bytes())
        .expect("arguments written");
    drop(stdin);
    let out = child.wait_with_output().expect("python ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(&format!("No module named '{module}'")),
        "the Python module `{module}` is missing: run `rm -rf target/pytools && make pytools`"
    );
    assert!(
        !stdout.contains("\"unreachable\""),
        "{unreachable} ({stdout})"
    );
    assert!(
        out.status.success(),
        "the {module} script failed: {stderr}\n{script}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Run a Python `script` that uses pyarrow, the reference Parquet
/// implementation (installed by `make pytools`), its arguments `args` as
/// JSON on stdin; what it prints, parsed as JSON.
///
/// # Panics
///
/// When pyarrow is missing or the script fails.
pub fn pyarrow_script(script: &str, args: &serde_json::Value) -> serde_json::Value {
    broker_script(script, args, "pyarrow", "pyarrow reaches no server")
}

/// Records as NDJSON text, one line each.
pub fn ndjson(rows: &[serde_json::Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

/// Every record of one `fetch` of `resource`, as JSON.
///
/// # Panics
///
/// When the fetch fails, naming the resource.
pub async fn fetch_all(session: &mut sluice::Session, resource: &str) -> Vec<serde_json::Value> {
    data(
        &session
            .fetch(&FetchRequest::new(resource))
            .await
            .unwrap_or_else(|e| panic!("{resource}: {e:?}"))
            .records,
    )
}

/// Stream everything from `checkpoint` in batches of `batch`: each batch's
/// records and checkpoint.
///
/// # Panics
///
/// When the stream fails or a batch has no checkpoint.
pub async fn stream_all(
    session: &mut sluice::Session,
    req: &FetchRequest,
    checkpoint: Option<&str>,
    batch: u32,
) -> Vec<(Vec<serde_json::Value>, String)> {
    let mut stream = session.stream(req, checkpoint).await.unwrap();
    let mut batches = Vec::new();
    while let Some(b) = stream.next(batch).await.unwrap() {
        batches.push((
            data(&b.records),
            b.checkpoint.expect("every batch has a checkpoint"),
        ));
    }
    stream.close().await.unwrap();
    batches
}

/// Whether `program` is installed (it runs with `flag`).
pub fn installed(program: &str, flag: &str) -> bool {
    std::process::Command::new(program)
        .arg(flag)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Check that a stream resumed from each checkpoint of `batches` (a whole
/// stream of `req`, as [`stream_all`] returns it) yields exactly the `rows`
/// after that batch, read in batches of `batch`.
///
/// # Panics
///
/// At the first resumed stream that differs, naming `label` and the batch.
pub async fn assert_every_checkpoint_resumes_exactly(
    session: &mut sluice::Session,
    req: &FetchRequest,
    batches: &[(Vec<serde_json::Value>, String)],
    rows: &[serde_json::Value],
    batch: u32,
    label: &str,
) {
    let mut delivered = 0;
    for (records, checkpoint) in batches {
        delivered += records.len();
        let rest: Vec<serde_json::Value> = stream_all(session, req, Some(checkpoint), batch)
            .await
            .into_iter()
            .flat_map(|(r, _)| r)
            .collect();
        assert_eq!(
            rest,
            rows[delivered..],
            "{label}: resumed after {delivered}"
        );
    }
}

/// Read `stream` on after its source was cut, `read` records in: how many
/// came in all, and the error it ended with (`None`: it ended as if whole).
pub async fn read_on_after_a_cut(
    stream: &mut sluice::RecordStream<'_>,
    mut read: usize,
) -> (usize, Option<sluice::Error>) {
    loop {
        match stream.next(1000).await {
            Ok(Some(batch)) => read += batch.records.len(),
            Ok(None) => return (read, None),
            Err(e) => return (read, Some(e)),
        }
    }
}
