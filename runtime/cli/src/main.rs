//! The `sluice` command line: describe, inspect and run connectors.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sluice::policy::SqlMode;
use sluice::wire;
use sluice::{
    host_provides, ArtifactCache, ExecuteRequest, FetchRequest, FilterOp, Grants, Limits, Record,
    Runtime, SortDirection, CONNECTOR_EXPORT,
};

/// Run WebAssembly data connectors in a sandbox that grants only what you allow.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    cache: CacheArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where `describe`, `inspect` and `run` keep compiled connectors.
#[derive(Args)]
struct CacheArgs {
    /// Directory of compiled connectors, reused by later runs of the same
    /// `.wasm` (default: `$XDG_CACHE_HOME/sluice` or `~/.cache/sluice`).
    #[arg(long, global = true, value_name = "DIR", env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the connector every time; read and write no cache.
    #[arg(long, global = true)]
    no_cache: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Print a connector's descriptor (name, version, config schema, capabilities) as JSON.
    Describe {
        /// The connector component (.wasm).
        wasm: PathBuf,
    },
    /// Check a .wasm against the `connector` world: exports, imports, size, sha256.
    Inspect {
        /// The connector component (.wasm).
        wasm: PathBuf,
    },
    /// Open a session with a config and grants, and run one operation.
    Run(Box<RunArgs>),
    /// Serve the multi-tenant HTTP API (tenants, connector uploads, instances, invocations).
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, default_value = "sluice-data")]
    data_dir: PathBuf,
    /// Admin token (default: the stored one, or a new one printed once).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest connector upload, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    max_upload_mib: usize,
    /// Directory of bundled `.wasm` connectors offered to every tenant.
    #[arg(long, value_name = "DIR")]
    connectors: Option<PathBuf>,
    /// Keep tenants, connectors and instances in PostgreSQL instead of the data
    /// directory, shared by every node given the same URL
    /// (`postgres://user@host/db`; tables go in the connection's search_path,
    /// e.g. `?options=-csearch_path%3Dsluice`). Compiled artifacts and tenant
    /// files stay in each node's data directory.
    #[arg(long, value_name = "URL", env = "SLUICE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// How long compiling one uploaded connector may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    compile_timeout_ms: u64,
    /// Connector instances the pooling allocator keeps slots for (0 turns
    /// pooling off and allocates each instance on demand).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pooling_instances: u32,
    /// Largest linear memory of one pooled instance, in MiB (tenant memory
    /// quotas above it are lowered to it).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pooling_memory_mib: usize,
    /// Guest sessions an instance keeps open between invocations, so the next
    /// invocation skips instantiating and opening (0: a fresh session every
    /// time). A kept session serves only the same, unchanged instance; one
    /// that failed is never kept; idle ones close after 30 s.
    #[arg(long, value_name = "N", default_value_t = sluice_server::DEFAULT_WARM_SESSIONS)]
    warm_sessions: usize,
    /// Time a client has to send a request's headers, in milliseconds; also
    /// how long an idle connection stays open.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_ms: u64,
    /// Client connections served at once; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = sluice_server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// A token that may read /metrics besides the admin token (give it to scrapers).
    #[arg(long, env = "SLUICE_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// The connector component (.wasm).
    wasm: PathBuf,
    /// Connector config: a JSON object, or a file holding one.
    #[arg(long, short, default_value = "{}")]
    config: String,
    /// Grants file (JSON: files, sockets, http); flags below add to it.
    #[arg(long)]
    grants: Option<PathBuf>,
    /// Allow HTTP requests to an origin, `scheme://host[:port]` (`*.suffix` hosts allowed). Repeatable.
    #[arg(long = "allow-http", value_name = "ORIGIN")]
    allow_http: Vec<String>,
    /// Let granted HTTP host names resolve to loopback, private or link-local
    /// addresses (denied by default; addresses written in a grant always pass).
    #[arg(long = "allow-http-private")]
    allow_http_private: bool,
    /// Mount a host directory, `HOST:GUEST[:ro|rw]` (read-only by default). Repeatable.
    #[arg(long, value_name = "HOST:GUEST[:ro|rw]")]
    mount: Vec<String>,
    /// Allow TCP connections to `HOST:PORT` or `CIDR:PORT` (`*` = any port). Repeatable.
    #[arg(long = "allow-tcp", value_name = "HOST:PORT")]
    allow_tcp: Vec<String>,
    /// Grant a PostgreSQL database read-only as `NAME=URL` (prefer --grants: URLs hold passwords). Repeatable.
    #[arg(long = "allow-sql", value_name = "NAME=URL")]
    allow_sql: Vec<String>,
    /// Grant a PostgreSQL database read-write as `NAME=URL`. Repeatable.
    #[arg(long = "allow-sql-write", value_name = "NAME=URL")]
    allow_sql_write: Vec<String>,
    /// Provide a secret for http `auth` entries and sql `password_secret`s of
    /// the grants file (the connector never sees it): `NAME=VALUE`,
    /// `NAME=@FILE` (the file's contents, one trailing newline dropped) or
    /// `NAME=env:VAR` (an environment variable), so values stay out of the
    /// process list. Repeatable.
    #[arg(long = "secret", value_name = "NAME=VALUE|@FILE|env:VAR")]
    secrets: Vec<String>,
    /// Memory limit of the connector, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    memory_mib: usize,
    /// CPU time limit per call, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    cpu_ms: u64,
    /// Wall-clock limit per call (guest code plus host I/O), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    operation: Operation,
}

#[derive(Args, Clone, Default)]
struct QueryArgs {
    /// Filter `field=op:value`; op is eq ne lt le gt ge in not-in like is-null is-not-null.
    /// The value is JSON when it parses as JSON, else a string. Repeatable (all must hold).
    #[arg(long, value_name = "FIELD=OP:VALUE")]
    filter: Vec<String>,
    /// Sort key `field[:asc|desc]`. Repeatable, most significant first.
    #[arg(long, value_name = "FIELD[:desc]")]
    sort: Vec<String>,
    /// Fields to keep, comma-separated.
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Connector-specific options (JSON object).
    #[arg(long, value_name = "JSON")]
    options: Option<String>,
}

#[derive(Subcommand)]
enum Operation {
    /// Check the upstream is reachable.
    Health,
    /// List readable resources and their schemas.
    Discover,
    /// Read one page of a resource and print it as JSON.
    Fetch {
        /// The resource (a file path, table, endpoint, ...).
        resource: String,
        #[command(flatten)]
        query: QueryArgs,
        /// Page size (enables pagination).
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Records to skip (with --page-size).
        #[arg(long, value_name = "N")]
        offset: Option<u64>,
        /// Cursor from a previous page's `next_cursor` (with --page-size).
        #[arg(long, value_name = "C")]
        cursor: Option<String>,
    },
    /// Stream a resource as NDJSON, one record per line, flushed per batch.
    Stream {
        /// The resource.
        resource: String,
        #[command(flatten)]
        query: QueryArgs,
        /// Resume after this checkpoint.
        #[arg(long, value_name = "C")]
        checkpoint: Option<String>,
        /// Records per batch.
        #[arg(long, value_name = "N", default_value_t = 500)]
        batch_size: u32,
        /// Accepted for older scripts: `{"checkpoint": "..."}` lines are always written.
        #[arg(long, hide = true)]
        emit_checkpoints: bool,
    },
    /// Write records to a resource and print the result as JSON.
    Execute {
        /// The resource.
        resource: String,
        /// The operation (connector-defined, e.g. `append`, `write`).
        operation: String,
        /// Records: a JSON array, a file holding a JSON array or NDJSON, or `-`
        /// for NDJSON on stdin. Each is a bare data object or a stream line
        /// (`{"record": …}`; `{"checkpoint": …}` ends a batch; `{"error": …}`
        /// stops the write), so `sluice run … stream` can be piped in.
        #[arg(long, value_name = "JSON|FILE|-", default_value = "[]")]
        records: String,
        /// Records per `execute` call (a checkpoint line ends a batch sooner);
        /// each batch is its own call, so its own transaction where the
        /// connector has them.
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Connector-specific options (JSON object).
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
    },
}

/// The compiler's and parser's own targets: very chatty at debug and trace,
/// and about wasmtime's internals, not the runtime's work.
const ENGINE_TARGETS: &[&str] = &[
    "cranelift",
    "regalloc2",
    "wasmtime_internal_cranelift",
    "wasmtime_environ",
    "wasmtime_internal_cache",
    "wasmparser",
    "wit_component",
    "pulley_interpreter",
];

/// The log filter: `SLUICE_LOG` (a `tracing` filter, `info` when serving and
/// `warn` otherwise), with the engine's internals kept at `warn` unless the
/// filter names one of their targets.
fn log_filter(spec: Option<String>, serving: bool) -> tracing_subscriber::EnvFilter {
    let spec = spec
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| (if serving { "info" } else { "warn" }).to_string());
    let mut directives = spec.clone();
    for target in ENGINE_TARGETS {
        if !spec.contains(target) {
            directives.push_str(&format!(",{target}=warn"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("SLUICE_LOG `{spec}` is not a tracing filter ({e}); using `warn`");
        tracing_subscriber::EnvFilter::new("warn")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    let filter = log_filter(std::env::var("SLUICE_LOG").ok(), serving);
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    if serving {
        // The server logs one JSON object per line.
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head -1`): it has what it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// End a failed stream: an error line on stdout, so the reader of a pipe
/// (`execute --records -`) learns that the stream did not end normally, and
/// the error itself for stderr and the exit status.
fn stream_failed(stdout: &std::io::Stdout, error: sluice::Error) -> anyhow::Error {
    // The command line's own words (its flags), with the API's stable code.
    let message = error.to_string();
    let api = sluice_server::ApiError::from(error);
    let mut line = String::new();
    wire::error_line(api.code, &message, &api.details, &mut line);
    let mut out = stdout.lock();
    // A reader already gone does not hide the error.
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    anyhow!(message)
}

/// A stream's progress (records, bytes, rate) on one stderr line, redrawn at
/// most four times a second; only when stderr is a terminal, so logs and
/// pipes never see it.
struct Progress {
    enabled: bool,
    started: std::time::Instant,
    drawn: Option<std::time::Instant>,
    records: u64,
    bytes: u64,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            started: std::time::Instant::now(),
            drawn: None,
            records: 0,
            bytes: 0,
        }
    }

    fn add(&mut self, records: usize, bytes: usize) {
        self.records += records as u64;
        self.bytes += bytes as u64;
        let due = self
            .drawn
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(250));
        if self.enabled && due {
            self.drawn = Some(std::time::Instant::now());
            eprint!("\r{}\x1b[K", self.line(self.started.elapsed()));
        }
    }

    fn finish(&self) {
        if self.enabled && self.drawn.is_some() {
            eprintln!("\r{}\x1b[K", self.line(self.started.elapsed()));
        }
    }

    /// `12,345 records, 3.2 MiB, 4,100 records/s`.
    fn line(&self, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64().max(0.001);
        format!(
            "{} records, {}, {} records/s",
            grouped(self.records),
            human_bytes(self.bytes),
            grouped((self.records as f64 / seconds) as u64)
        )
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B, KiB, MiB or GiB with one decimal.
fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Whether an error comes from writing to a closed stdout.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|json| json.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, each cause once: a cause whose text
/// the message already holds is not repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn dispatch(cli: Cli) -> Result<()> {
    let cache = || artifact_cache(&cli.cache);
    match cli.command {
        Command::Describe { wasm } => describe(wasm, cache()).await,
        Command::Inspect { wasm } => inspect(wasm, cache()).await,
        Command::Run(args) => run(*args, cache()).await,
        Command::Serve(args) => serve(args).await,
    }
}

/// Ctrl-C or SIGTERM. A signal that cannot be watched never fires.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let server = sluice_server::Server::bind(sluice_server::ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        admin_token: args.admin_token,
        max_upload_bytes: args.max_upload_mib.saturating_mul(1 << 20),
        builtin_dir: args.connectors.clone(),
        store_url: args.store,
        compile_timeout: Duration::from_millis(args.compile_timeout_ms),
        pooling: (args.pooling_instances > 0).then(|| sluice::PoolingConfig {
            max_instances: args.pooling_instances,
            max_memory_bytes: args.pooling_memory_mib.saturating_mul(1 << 20),
            ..sluice::PoolingConfig::default()
        }),
        warm_sessions: args.warm_sessions,
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        max_connections: args.max_connections,
        metrics_token: args.metrics_token,
    })
    .await?;
    let addr = server.local_addr()?;
    eprintln!(
        "sluice: serving http://{addr} from {}",
        args.data_dir.display()
    );
    if let Some(token) = &server.generated_admin_token {
        eprintln!("sluice: generated admin token (shown once, stored hashed): {token}");
    }
    let shutdown = async {
        shutdown_signal().await;
        tracing::info!("shutting down; draining in-flight invocations (up to 30 s)");
    };
    server.run_until(shutdown, Duration::from_secs(30)).await;
    Ok(())
}

fn print_json(value: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The compiled-artifact cache of `describe`, `inspect` and `run`, unless
/// turned off; one that cannot be opened is skipped with a warning (the
/// connector is then compiled, as without a cache).
fn artifact_cache(args: &CacheArgs) -> Option<ArtifactCache> {
    if args.no_cache {
        return None;
    }
    let dir = args.cache_dir.clone().or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("sluice"))
    })?;
    match ArtifactCache::open(&dir) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "compiled-connector cache unusable; compiling without it");
            None
        }
    }
}

fn load(wasm: &PathBuf, cache: Option<ArtifactCache>) -> Result<(Runtime, sluice::Connector)> {
    let runtime = Runtime::new()?;
    let connector = match &cache {
        Some(cache) => {
            let bytes =
                std::fs::read(wasm).with_context(|| format!("cannot read `{}`", wasm.display()))?;
            let name = wasm
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned());
            runtime.load_cached(&bytes, name, cache)
        }
        None => runtime.load_file(wasm),
    }
    .with_context(|| format!("loading {}", wasm.display()))?;
    Ok((runtime, connector))
}

async fn describe(wasm: PathBuf, cache: Option<ArtifactCache>) -> Result<()> {
    let (_runtime, connector) = load(&wasm, cache)?;
    let descriptor = connector.describe().await?;
    print_json(&descriptor_json(&descriptor))
}

fn descriptor_json(d: &sluice::Descriptor) -> Value {
    json!({
        "name": d.name,
        "version": d.version,
        "description": d.description,
        "config_schema": serde_json::from_str::<Value>(&d.config_schema).unwrap_or(Value::String(d.config_schema.clone())),
        "capabilities": d.capabilities,
    })
}

async fn inspect(wasm: PathBuf, cache: Option<ArtifactCache>) -> Result<()> {
    let (_runtime, connector) = load(&wasm, cache)?;
    let descriptor = connector.describe().await?;
    let imports: Vec<Value> = connector
        .imports()
        .iter()
        .map(|name| json!({ "name": name, "provided": host_provides(name) }))
        .collect();
    print_json(&json!({
        "file": wasm.display().to_string(),
        "size": connector.size(),
        "sha256": connector.sha256(),
        "world": {
            "export": CONNECTOR_EXPORT,
            "compatible": true,
        },
        "exports": connector.exports(),
        "imports": imports,
        "descriptor": descriptor_json(&descriptor),
    }))
}

/// A JSON argument given inline or as a file.
fn json_arg(text: &str, what: &str) -> Result<String> {
    let trimmed = text.trim_start();
    let body = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        text.to_string()
    } else {
        std::fs::read_to_string(text).with_context(|| {
            format!("{what} `{text}` is neither inline JSON nor a readable file")
        })?
    };
    serde_json::from_str::<Value>(&body).with_context(|| format!("{what} is not valid JSON"))?;
    Ok(body)
}

fn grants(args: &RunArgs) -> Result<Grants> {
    let mut grants = match &args.grants {
        Some(path) => grants_file(path, &args.allow_http)?,
        None => Grants::none(),
    };
    if args.allow_http_private {
        grants.http.allow_private_addresses = true;
    }
    for origin in &args.allow_http {
        grants = grants.allow_http(origin)?;
    }
    for mount in &args.mount {
        grants = grants.mount(mount)?;
    }
    for entry in &args.allow_tcp {
        grants = grants.allow_tcp(entry)?;
    }
    for entry in &args.secrets {
        let (name, value) = secret_arg(entry)?;
        grants = grants.secret(&name, &value);
    }
    let sql = args.allow_sql.iter().map(|e| (e, SqlMode::ReadOnly));
    let sql_write = args.allow_sql_write.iter().map(|e| (e, SqlMode::ReadWrite));
    for (entry, mode) in sql.chain(sql_write) {
        let (name, url) = entry.split_once('=').ok_or_else(|| {
            anyhow!("sql grant: write NAME=URL, e.g. `main=postgres://user@127.0.0.1/db`")
        })?;
        grants = grants.allow_sql(name, url, mode)?;
    }
    Ok(grants)
}

/// One `--secret`: `NAME=VALUE`, `NAME=@FILE` or `NAME=env:VAR`. Errors
/// name the secret, the file or the variable, never a value.
fn secret_arg(entry: &str) -> Result<(String, String)> {
    let (name, value) = entry
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| anyhow!("--secret: write NAME=VALUE, NAME=@FILE or NAME=env:VAR"))?;
    let value = if let Some(path) = value.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--secret {name}: cannot read `{path}`"))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.strip_suffix('\r').unwrap_or(text).to_string()
    } else if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var).map_err(|_| {
            anyhow!("--secret {name}: the environment variable `{var}` is not set (or not UTF-8)")
        })?
    } else {
        value.to_string()
    };
    Ok((name.to_string(), value))
}

/// The grants file, with the `--allow-http` origins added to its http
/// `origins` before it is checked (flags add to the file), so an `auth` entry
/// in the file may name an origin granted on the command line.
fn grants_file(path: &std::path::Path, allow_http: &[String]) -> Result<Grants> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--grants: cannot read `{}`", path.display()))?;
    let mut spec: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("--grants `{}`: not JSON ({e})", path.display()))?;
    if !allow_http.is_empty() {
        let origins = spec
            .as_object_mut()
            .ok_or_else(|| anyhow!("--grants `{}`: expected a JSON object", path.display()))?
            .entry("http")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or_else(|| anyhow!("--grants `{}`: `http` must be an object", path.display()))?
            .entry("origins")
            .or_insert_with(|| serde_json::json!([]));
        let origins = origins.as_array_mut().ok_or_else(|| {
            anyhow!(
                "--grants `{}`: `http.origins` must be a list",
                path.display()
            )
        })?;
        origins.extend(allow_http.iter().map(|o| Value::String(o.clone())));
    }
    Grants::from_json(&spec.to_string()).with_context(|| format!("--grants `{}`", path.display()))
}

fn parse_filter(text: &str) -> Result<(String, FilterOp, String)> {
    let usage = || {
        anyhow!("filter `{text}`: write FIELD=OP:VALUE, e.g. `age=gt:30` or `name=like:\"A%\"` or `email=is-null`")
    };
    let (field, rest) = text.split_once('=').ok_or_else(usage)?;
    let (op, value) = rest.split_once(':').unwrap_or((rest, ""));
    if field.is_empty() {
        return Err(usage());
    }
    let op = FilterOp::parse(op).map_err(|e| anyhow!("filter `{text}`: {e}"))?;
    let value = if matches!(op, FilterOp::IsNull | FilterOp::IsNotNull) {
        "null".to_string()
    } else if serde_json::from_str::<Value>(value).is_ok() {
        value.to_string()
    } else {
        Value::String(value.to_string()).to_string()
    };
    Ok((field.to_string(), op, value))
}

fn fetch_request(resource: &str, query: &QueryArgs) -> Result<FetchRequest> {
    let mut req = FetchRequest::new(resource).fields(query.fields.iter().cloned());
    for filter in &query.filter {
        let (field, op, value) = parse_filter(filter)?;
        req = req.filter(&field, op, &value);
    }
    for key in &query.sort {
        let (field, direction) = match key.rsplit_once(':') {
            Some((field, dir)) => (
                field,
                SortDirection::parse(dir).map_err(|e| anyhow!("--sort `{key}`: {e}"))?,
            ),
            None => (key.as_str(), SortDirection::Asc),
        };
        req = req.sort(field, direction);
    }
    if let Some(options) = &query.options {
        req.options = Some(json_arg(options, "--options")?);
    }
    Ok(req)
}

/// The messages of `--records` (see [`wire`]), read lazily: inline JSON
/// (an array or one object), a file or `-` (stdin) holding a JSON array
/// (read whole) or NDJSON (read line by line, so a pipe is written batch by
/// batch as it arrives).
fn record_messages(arg: &str) -> Result<Box<dyn Iterator<Item = Result<wire::Message>>>> {
    let trimmed = arg.trim_start();
    let values: Box<dyn Iterator<Item = Result<Value>>> =
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            array_values(serde_json::from_str(arg).context("--records is not valid JSON")?)
        } else {
            let reader: Box<dyn std::io::BufRead> = if arg == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let file = std::fs::File::open(arg)
                    .with_context(|| format!("reading records from `{arg}`"))?;
                Box::new(std::io::BufReader::new(file))
            };
            ndjson_or_array(reader, arg)?
        };
    Ok(Box::new(values.map(|value| {
        wire::read(value?).map_err(|why| anyhow!("--records: {why}"))
    })))
}

/// The elements of an array, or the one value that is not.
fn array_values(value: Value) -> Box<dyn Iterator<Item = Result<Value>>> {
    match value {
        Value::Array(items) => Box::new(items.into_iter().map(Ok)),
        other => Box::new(std::iter::once(Ok(other))),
    }
}

/// A reader's JSON array (when its first non-blank character is `[`) or its
/// NDJSON lines.
fn ndjson_or_array(
    mut reader: Box<dyn std::io::BufRead>,
    source: &str,
) -> Result<Box<dyn Iterator<Item = Result<Value>>>> {
    let what = if source == "-" {
        "stdin".to_string()
    } else {
        format!("`{source}`")
    };
    let first = loop {
        let mut line = String::new();
        if reader
            .read_line(&mut line)
            .with_context(|| format!("reading records from {what}"))?
            == 0
        {
            return Ok(Box::new(std::iter::empty()));
        }
        if !line.trim().is_empty() {
            break line;
        }
    };
    if first.trim_start().starts_with('[') {
        let mut text = first;
        reader
            .read_to_string(&mut text)
            .with_context(|| format!("reading records from {what}"))?;
        let value = serde_json::from_str(&text)
            .with_context(|| format!("the records in {what} are not a JSON array"))?;
        return Ok(array_values(value));
    }
    let mut number = 0;
    let rest = reader.lines();
    let lines = std::iter::once(Ok(first)).chain(rest);
    Ok(Box::new(lines.filter_map(move |line| {
        number += 1;
        match line {
            Err(e) => Some(Err(anyhow!("reading records from {what}: {e}"))),
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(
                serde_json::from_str(&line)
                    .with_context(|| format!("records line {number} of {what} is not JSON")),
            ),
        }
    })))
}

/// What the batches of one `execute` wrote so far.
#[derive(Default)]
struct Written {
    affected: u64,
    /// Input records handed to the connector.
    sent: u64,
    records: Vec<Value>,
    batches: u64,
    checkpoint: Option<String>,
}

impl Written {
    /// Write `batch` (when it holds records) as one `execute` call.
    async fn execute(
        &mut self,
        session: &mut sluice::Session,
        resource: &str,
        operation: &str,
        options: &Option<String>,
        batch: &mut Vec<Record>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let count = batch.len() as u64;
        let mut req = ExecuteRequest::new(resource, operation, std::mem::take(batch));
        req.options.clone_from(options);
        let result = session.execute(&req).await.with_context(|| {
            format!(
                "batch {} ({count} records) failed; {} record(s) were written before it",
                self.batches + 1,
                self.sent
            )
        })?;
        self.affected += result.affected;
        self.sent += count;
        self.batches += 1;
        self.records.extend(records_json(&result.records)?);
        Ok(())
    }
}

fn records_json(records: &[Record]) -> Result<Vec<Value>> {
    records.iter().map(|r| Ok(r.to_json()?)).collect()
}

async fn run(args: RunArgs, cache: Option<ArtifactCache>) -> Result<()> {
    let config = json_arg(&args.config, "--config")?;
    let grants = grants(&args)?;
    let limits = Limits {
        memory_bytes: args.memory_mib.saturating_mul(1 << 20),
        cpu_per_call: Duration::from_millis(args.cpu_ms),
        wall_clock_per_call: Duration::from_millis(args.timeout_ms),
        ..Limits::default()
    };
    let (_runtime, connector) = load(&args.wasm, cache)?;
    let mut session = connector
        .open_with_limits(&config, &grants, &limits)
        .await?;
    match args.operation {
        Operation::Health => {
            session.health().await?;
            print_json(&json!({ "healthy": true }))?;
        }
        Operation::Discover => {
            let resources = session.discover().await?;
            let list: Vec<Value> = resources
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "schema": r.schema.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
                    })
                })
                .collect();
            print_json(&Value::Array(list))?;
        }
        Operation::Fetch {
            resource,
            query,
            page_size,
            offset,
            cursor,
        } => {
            let mut req = fetch_request(&resource, &query)?;
            match page_size {
                Some(size) => req = req.page(size, offset, cursor),
                None if offset.is_some() || cursor.is_some() => {
                    bail!("--offset and --cursor need --page-size")
                }
                None => {}
            }
            let page = session.fetch(&req).await?;
            print_json(&json!({
                "records": records_json(&page.records)?,
                "total_count": page.total_count,
                "next_cursor": page.next_cursor,
            }))?;
        }
        Operation::Stream {
            resource,
            query,
            checkpoint,
            batch_size,
            emit_checkpoints: _,
        } => {
            let req = fetch_request(&resource, &query)?;
            let stdout = std::io::stdout();
            let mut stream = match session.stream(&req, checkpoint.as_deref()).await {
                Ok(stream) => stream,
                Err(e) => return Err(stream_failed(&stdout, e)),
            };
            let mut progress = Progress::new(std::io::stderr().is_terminal());
            let mut chunk = String::new();
            loop {
                chunk.clear();
                let batch = match stream.next(batch_size.max(1)).await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(e) => return Err(stream_failed(&stdout, e)),
                };
                for record in &batch.records {
                    sluice::wire::record_line(record, &mut chunk)?;
                }
                if let Some(cp) = &batch.checkpoint {
                    sluice::wire::checkpoint_line(cp, &mut chunk);
                }
                let mut out = stdout.lock();
                out.write_all(chunk.as_bytes())?;
                out.flush()?;
                progress.add(batch.records.len(), chunk.len());
            }
            progress.finish();
            stream.close().await?;
        }
        Operation::Execute {
            resource,
            operation,
            records,
            options,
            batch_size,
        } => {
            let options = options.map(|o| json_arg(&o, "--options")).transpose()?;
            let mut written = Written::default();
            let mut batch = Vec::new();
            for message in record_messages(&records)? {
                let message = message
                    .with_context(|| format!("stopped after writing {} record(s)", written.sent))?;
                match message {
                    wire::Message::Record(record) => {
                        batch.push(record);
                        if batch.len() >= batch_size as usize {
                            written
                                .execute(&mut session, &resource, &operation, &options, &mut batch)
                                .await?;
                        }
                    }
                    wire::Message::Checkpoint(checkpoint) => {
                        written
                            .execute(&mut session, &resource, &operation, &options, &mut batch)
                            .await?;
                        written.checkpoint = Some(checkpoint);
                    }
                    wire::Message::Error(error) => {
                        // The stream being copied failed: what came after its last
                        // checkpoint is not written, so resuming from it loses nothing.
                        bail!(
                            "the input stream ended with an error ({}); {} record(s) written{}; {} after it not written",
                            error["message"].as_str().unwrap_or("no message"),
                            written.sent,
                            written
                                .checkpoint
                                .as_ref()
                                .map(|c| format!(" up to checkpoint {}", json!(c)))
                                .unwrap_or_default(),
                            batch.len()
                        );
                    }
                }
            }
            written
                .execute(&mut session, &resource, &operation, &options, &mut batch)
                .await?;
            print_json(&json!({
                "affected": written.affected,
                "records": written.records,
                "batches": written.batches,
            }))?;
        }
    }
    session.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_a_person_would_write_it() {
        let mut progress = Progress::new(false);
        progress.add(1_000, 1_536);
        progress.add(233_567, 3 << 20);
        assert_eq!(
            progress.line(Duration::from_secs(2)),
            "234,567 records, 3.0 MiB, 117,283 records/s"
        );
        assert_eq!(grouped(999), "999");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1_536), "1.5 KiB");
    }

    #[test]
    fn an_error_chain_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = anyhow::Error::new(io).context("cannot listen on 127.0.0.1:1: address in use");
        assert_eq!(
            error_text(&error),
            "cannot listen on 127.0.0.1:1: address in use"
        );
        let error = anyhow!("inner").context("outer");
        assert_eq!(error_text(&error), "outer: inner");
    }

    #[test]
    fn secrets_come_from_values_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("sluice-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(secret_arg("a=plain").unwrap(), ("a".into(), "plain".into()));
        assert_eq!(
            secret_arg(&format!("a=@{}", file.display())).unwrap(),
            ("a".into(), "from-file".into())
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(secret_arg("a=env:PATH").unwrap(), ("a".into(), path));
        let missing = secret_arg("a=env:SLUICE_NO_SUCH_VARIABLE").unwrap_err();
        assert!(missing
            .to_string()
            .contains("`SLUICE_NO_SUCH_VARIABLE` is not set"));
        let unreadable = secret_arg("a=@/no/such/file").unwrap_err();
        assert!(format!("{unreadable:#}").contains("cannot read `/no/such/file`"));
        assert!(secret_arg("=x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
