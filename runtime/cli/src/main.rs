//! The `sluice` command line: describe, inspect and run connectors.

mod args;
mod conformance;
mod grants;
mod learn;
mod new;
mod progress;
mod run;
mod tape;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use sluice::{host_provides, ArtifactCache, Runtime, CONNECTOR_EXPORT};

use args::{CacheArgs, Cli, Command, ServeArgs};
use run::run;

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
        Command::TestConnector(args) => conformance::test_connector(&args, cache()).await,
        Command::Serve(args) => serve(args).await,
        Command::New(args) => new::new_project(&args),
        Command::Replay(args) => tape::replay(&args, cache()).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = anyhow::Error::new(io).context("cannot listen on 127.0.0.1:1: address in use");
        assert_eq!(
            error_text(&error),
            "cannot listen on 127.0.0.1:1: address in use"
        );
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&error), "outer: inner");
    }
}
