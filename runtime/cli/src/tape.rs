//! `sluice run --record FILE` and `sluice replay FILE connector.wasm`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sluice::tape::{Player, Recorder, Tape};
use sluice::{ArtifactCache, Connector, Grants, Limits};

use crate::args::{Operation, ReplayArgs, RunArgs};
use crate::load;
use crate::run::operate;

/// What a recording's invocation holds: the operation and the limits.
fn invocation(args: &RunArgs) -> Result<Value> {
    Ok(json!({
        "operation": serde_json::to_value(&args.operation)?,
        "memory_mib": args.memory_mib,
        "cpu_ms": args.cpu_ms,
        "timeout_ms": args.timeout_ms,
    }))
}

/// Run `args.operation` as `sluice run` does, writing every host answer to `path`.
pub(crate) async fn record(
    path: &Path,
    args: &RunArgs,
    connector: &Connector,
    config: &str,
    grants: &Grants,
    limits: &Limits,
) -> Result<()> {
    if matches!(&args.operation, Operation::Execute { records, .. } if records == "-") {
        bail!("--record cannot replay records read from stdin; give --records inline or as a file");
    }
    let recorder = Arc::new(
        Recorder::create(path, connector, config, grants, invocation(args)?)
            .with_context(|| format!("cannot record to `{}`", path.display()))?,
    );
    let mut unrecorded = Vec::new();
    if !grants.sockets.is_empty() {
        unrecorded.push("TCP sockets");
    }
    if !grants.sftp.is_empty() {
        unrecorded.push("SFTP");
    }
    if !unrecorded.is_empty() {
        eprintln!(
            "sluice: --record does not capture {} traffic; a replay of this run is refused those connections",
            unrecorded.join(" and ")
        );
    }
    let tape = Tape::Record(Arc::clone(&recorder));
    let result = async {
        let mut session = connector.open_taped(config, grants, limits, tape).await?;
        operate(&mut session, clone_operation(&args.operation)?).await?;
        session.close().await?;
        anyhow::Ok(())
    }
    .await;
    let failure = result.as_ref().err().map(crate::error_text);
    recorder
        .finish(failure.as_deref())
        .context("the recording is incomplete")?;
    eprintln!("sluice: recorded to {}", path.display());
    result
}

fn clone_operation(operation: &Operation) -> Result<Operation> {
    Ok(serde_json::from_value(serde_json::to_value(operation)?)?)
}

/// `sluice replay`.
pub(crate) async fn replay(args: &ReplayArgs, cache: Option<ArtifactCache>) -> Result<()> {
    let player = Arc::new(
        Player::open(&args.recording)
            .with_context(|| format!("cannot replay `{}`", args.recording.display()))?,
    );
    let header = player.header().clone();
    let operation: Operation = serde_json::from_value(header.invocation["operation"].clone())
        .map_err(|e| anyhow!("the recording's operation is not one this sluice runs: {e}"))?;
    let number = |key: &str, default: u64| header.invocation[key].as_u64().unwrap_or(default);
    let limits = Limits {
        memory_bytes: (number("memory_mib", 256) as usize).saturating_mul(1 << 20),
        cpu_per_call: Duration::from_millis(number("cpu_ms", 10_000)),
        wall_clock_per_call: Duration::from_millis(number("timeout_ms", 60_000)),
        ..Limits::default()
    };
    let (_runtime, connector) = load(&args.wasm, cache)?;
    if connector.sha256() != header.connector_sha256 {
        eprintln!(
            "sluice: replaying another build of the connector (sha256 {}; the recording was made with {})",
            connector.sha256(),
            header.connector_sha256
        );
    }
    if !header.unrecorded.is_empty() {
        eprintln!(
            "sluice: the recorded run also used {}, which the recording does not hold; the replay is refused it",
            header.unrecorded.join(" and ")
        );
    }
    let grants = player.grants()?;
    let config = header.config.to_string();
    let tape = Tape::Replay(Arc::clone(&player));
    let result = async {
        let mut session = connector
            .open_taped(&config, &grants, &limits, tape)
            .await?;
        operate(&mut session, operation).await?;
        session.close().await?;
        anyhow::Ok(())
    }
    .await;
    let failure = result.as_ref().err().map(crate::error_text);
    let report = player.finish(failure.as_deref());
    if let Some(failure) = &failure {
        eprintln!("sluice: the replayed run failed: {failure}");
    }
    match &report.divergence {
        None => {
            eprintln!(
                "sluice: replay matched the recording: {} of {} recorded calls, ending the same way",
                report.matched, report.recorded
            );
            Ok(())
        }
        Some(divergence) => bail!(
            "replay diverged after {} matching call(s) of {}: {divergence}",
            report.matched,
            report.recorded
        ),
    }
}
