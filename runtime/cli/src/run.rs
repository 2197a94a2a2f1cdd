//! `sluice run`: one operation of a connector, records out as NDJSON.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sluice::wire;
use sluice::{
    ArtifactCache, ExecuteRequest, FetchRequest, FilterOp, Limits, Record, Session, SortDirection,
};

use crate::args::{Operation, QueryArgs, RunArgs};
use crate::grants::grants;
use crate::progress::Progress;
use crate::{load, print_json};

/// A JSON argument given inline or as a file.
pub(crate) fn json_arg(text: &str, what: &str) -> Result<String> {
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

pub(crate) async fn run(args: RunArgs, cache: Option<ArtifactCache>) -> Result<()> {
    let config = json_arg(&args.config, "--config")?;
    let limits = Limits {
        memory_bytes: args.memory_mib.saturating_mul(1 << 20),
        cpu_per_call: Duration::from_millis(args.cpu_ms),
        wall_clock_per_call: Duration::from_millis(args.timeout_ms),
        ..Limits::default()
    };
    if args.learn {
        let (_runtime, connector) = load(&args.wasm, cache)?;
        return crate::learn::learn(&args, &connector, &config, &limits).await;
    }
    let grants = grants(&args.grant)?;
    let (_runtime, connector) = load(&args.wasm, cache)?;
    if let Some(path) = &args.record {
        return crate::tape::record(path, &args, &connector, &config, &grants, &limits).await;
    }
    let mut session = connector
        .open_with_limits(&config, &grants, &limits)
        .await?;
    operate(&mut session, args.operation).await?;
    session.close().await?;
    Ok(())
}

/// A `fetch` of one page (all records without `--page-size`).
fn page_request(
    resource: &str,
    query: &QueryArgs,
    page_size: Option<u32>,
    offset: Option<u64>,
    cursor: Option<String>,
) -> Result<FetchRequest> {
    let req = fetch_request(resource, query)?;
    match page_size {
        Some(size) => Ok(req.page(size, offset, cursor)),
        None if offset.is_some() || cursor.is_some() => {
            bail!("--offset and --cursor need --page-size")
        }
        None => Ok(req),
    }
}

/// Run the connector's reads as `operation` would, printing nothing and
/// acknowledging nothing (a queue delivers its records again): what
/// `--learn` runs. Errors keep their type, so a denial can be read off them.
pub(crate) async fn operate_quietly(session: &mut Session, operation: &Operation) -> Result<()> {
    match operation {
        Operation::Health => session.health().await?,
        Operation::Discover => {
            session.discover().await?;
        }
        Operation::Fetch {
            resource,
            query,
            page_size,
            offset,
            cursor,
        } => {
            let req = page_request(resource, query, *page_size, *offset, cursor.clone())?;
            session.fetch(&req).await?;
        }
        Operation::Stream {
            resource,
            query,
            checkpoint,
            batch_size,
            max,
            ..
        } => {
            let req = fetch_request(resource, query)?;
            let mut stream = session.stream(&req, checkpoint.as_deref()).await?;
            let mut remaining = max.unwrap_or(u64::MAX);
            while remaining > 0 {
                let asked = u64::from((*batch_size).max(1)).min(remaining) as u32;
                // An empty batch: a queue with nothing more for now; a
                // learning run ends there rather than wait for more.
                let Some(batch) = stream.next(asked).await?.filter(|b| !b.records.is_empty())
                else {
                    break;
                };
                remaining = remaining.saturating_sub(batch.records.len() as u64);
            }
            stream.close().await?;
        }
        Operation::Execute { .. } => {
            bail!("--learn runs reads only (health, discover, fetch, stream): it runs the connector again and again")
        }
    }
    Ok(())
}

/// Run `operation` on `session`, printing its result.
pub(crate) async fn operate(session: &mut Session, operation: Operation) -> Result<()> {
    match operation {
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
            let req = page_request(&resource, &query, page_size, offset, cursor)?;
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
            no_ack,
            max,
            emit_checkpoints: _,
        } => {
            let req = fetch_request(&resource, &query)?;
            let stdout = std::io::stdout();
            let mut stream = match session.stream(&req, checkpoint.as_deref()).await {
                Ok(stream) => stream,
                Err(e) => return Err(stream_failed(&stdout, e)),
            };
            let mut progress = Progress::new(std::io::stderr().is_terminal());
            let mut acking = !no_ack;
            let mut remaining = max.unwrap_or(u64::MAX);
            let mut chunk = String::new();
            while remaining > 0 {
                chunk.clear();
                // Never ask for more than `--max` leaves, so no batch is cut.
                let asked = u64::from(batch_size.max(1)).min(remaining) as u32;
                let batch = match stream.next(asked).await {
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
                drop(out);
                progress.add(batch.records.len(), chunk.len());
                remaining = remaining.saturating_sub(batch.records.len() as u64);
                if acking {
                    acking = acknowledge(&mut stream, &batch.records).await?;
                }
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
                                .execute(session, &resource, &operation, &options, &mut batch)
                                .await?;
                        }
                    }
                    wire::Message::Checkpoint(checkpoint) => {
                        written
                            .execute(session, &resource, &operation, &options, &mut batch)
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
                .execute(session, &resource, &operation, &options, &mut batch)
                .await?;
            print_json(&json!({
                "affected": written.affected,
                "records": written.records,
                "batches": written.batches,
            }))?;
        }
    }
    Ok(())
}

/// End a failed stream: an error line on stdout, so the reader of a pipe
/// (`execute --records -`) learns that the stream did not end normally, and
/// the error itself for stderr and the exit status.
/// Acknowledge the records of a batch that was written and flushed. Returns
/// whether to go on acknowledging (see [`sluice::RecordStream::ack_records`]).
async fn acknowledge(stream: &mut sluice::RecordStream<'_>, records: &[Record]) -> Result<bool> {
    stream.ack_records(records).await.with_context(|| {
        format!(
            "{} record(s) were written but could not be acknowledged; they may be delivered again",
            records.iter().filter(|r| r.id.is_some()).count()
        )
    })
}

pub(crate) fn stream_failed(stdout: &std::io::Stdout, error: sluice::Error) -> anyhow::Error {
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
