//! The `sluice` command line: describe, inspect and run connectors.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sluice::policy::SqlMode;
use sluice::{
    host_provides, ExecuteRequest, FetchRequest, FilterOp, Grants, Limits, Record, Runtime,
    SortDirection, CONNECTOR_EXPORT,
};

/// Run WebAssembly data connectors in a sandbox that grants only what you allow.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    #[arg(long, value_name = "N", default_value_t = sluice::server::DEFAULT_WARM_SESSIONS)]
    warm_sessions: usize,
    /// Time a client has to send a request's headers, in milliseconds; also
    /// how long an idle connection stays open.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_ms: u64,
    /// Client connections served at once; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = sluice::server::DEFAULT_MAX_CONNECTIONS)]
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
    /// Provide a secret for http `auth` entries of the grants file, as `NAME=VALUE`
    /// (the connector never sees it). Repeatable.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
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
        /// Also print `{"_checkpoint": "..."}` after every batch.
        #[arg(long)]
        emit_checkpoints: bool,
    },
    /// Write records to a resource and print the result as JSON.
    Execute {
        /// The resource.
        resource: String,
        /// The operation (connector-defined, e.g. `append`, `write`).
        operation: String,
        /// Records: a JSON array, a file holding a JSON array or NDJSON, or `-` for stdin.
        #[arg(long, value_name = "JSON|FILE|-", default_value = "[]")]
        records: String,
        /// Connector-specific options (JSON object).
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if serving { "info" } else { "warn" })
    });
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Describe { wasm } => describe(wasm).await,
        Command::Inspect { wasm } => inspect(wasm).await,
        Command::Run(args) => run(*args).await,
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
    let server = sluice::server::Server::bind(sluice::server::ServerConfig {
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

fn load(wasm: &PathBuf) -> Result<(Runtime, sluice::Connector)> {
    let runtime = Runtime::new()?;
    let connector = runtime
        .load_file(wasm)
        .with_context(|| format!("loading {}", wasm.display()))?;
    Ok((runtime, connector))
}

async fn describe(wasm: PathBuf) -> Result<()> {
    let (_runtime, connector) = load(&wasm)?;
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

async fn inspect(wasm: PathBuf) -> Result<()> {
    let (_runtime, connector) = load(&wasm)?;
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
        Some(path) => Grants::from_file(path)?,
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
        let (name, value) = entry
            .split_once('=')
            .ok_or_else(|| anyhow!("--secret: write NAME=VALUE"))?;
        grants = grants.secret(name, value);
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

fn parse_filter(text: &str) -> Result<(String, FilterOp, String)> {
    let usage = || {
        anyhow!("filter `{text}`: write FIELD=OP:VALUE, e.g. `age=gt:30` or `name=like:\"A%\"` or `email=is-null`")
    };
    let (field, rest) = text.split_once('=').ok_or_else(usage)?;
    let (op, value) = rest.split_once(':').unwrap_or((rest, ""));
    if field.is_empty() {
        return Err(usage());
    }
    let op = FilterOp::parse(op)?;
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
            Some((field, dir)) => (field, SortDirection::parse(dir)?),
            None => (key.as_str(), SortDirection::Asc),
        };
        req = req.sort(field, direction);
    }
    if let Some(options) = &query.options {
        req.options = Some(json_arg(options, "--options")?);
    }
    Ok(req)
}

fn records_arg(text: &str) -> Result<Vec<Record>> {
    let body = if text == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading records from stdin")?
    } else if text.trim_start().starts_with('[') {
        text.to_string()
    } else {
        std::fs::read_to_string(text).with_context(|| format!("reading records from `{text}`"))?
    };
    let values: Vec<Value> = if body.trim_start().starts_with('[') {
        serde_json::from_str(&body).context("records are not a JSON array")?
    } else {
        body.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| format!("records line {}", i + 1))
            })
            .collect::<Result<_>>()?
    };
    values
        .iter()
        .map(|v| {
            if v.is_object() {
                Ok(Record::from_json(v))
            } else {
                bail!("every record must be a JSON object, got `{v}`")
            }
        })
        .collect()
}

fn records_json(records: &[Record]) -> Result<Vec<Value>> {
    records.iter().map(|r| Ok(r.to_json()?)).collect()
}

async fn run(args: RunArgs) -> Result<()> {
    let config = json_arg(&args.config, "--config")?;
    let grants = grants(&args)?;
    let limits = Limits {
        memory_bytes: args.memory_mib.saturating_mul(1 << 20),
        cpu_per_call: Duration::from_millis(args.cpu_ms),
        wall_clock_per_call: Duration::from_millis(args.timeout_ms),
        ..Limits::default()
    };
    let (_runtime, connector) = load(&args.wasm)?;
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
            emit_checkpoints,
        } => {
            let req = fetch_request(&resource, &query)?;
            let mut stream = session.stream(&req, checkpoint.as_deref()).await?;
            let stdout = std::io::stdout();
            while let Some(batch) = stream.next(batch_size.max(1)).await? {
                let mut out = stdout.lock();
                for record in &batch.records {
                    serde_json::to_writer(&mut out, &record.to_json()?)?;
                    out.write_all(b"\n")?;
                }
                if let (true, Some(cp)) = (emit_checkpoints, &batch.checkpoint) {
                    serde_json::to_writer(&mut out, &json!({ "_checkpoint": cp }))?;
                    out.write_all(b"\n")?;
                }
                out.flush()?;
            }
            stream.close().await?;
        }
        Operation::Execute {
            resource,
            operation,
            records,
            options,
        } => {
            let mut req = ExecuteRequest::new(resource, operation, records_arg(&records)?);
            if let Some(options) = options {
                req.options = Some(json_arg(&options, "--options")?);
            }
            let result = session.execute(&req).await?;
            print_json(&json!({
                "affected": result.affected,
                "records": records_json(&result.records)?,
            }))?;
        }
    }
    session.close().await?;
    Ok(())
}
