//! `sluice test-connector`: a connector checked against the contract, in
//! any language — one line per check (`ok`, `FAIL` with why, `skip` with
//! why), and a failing exit status when any check fails.
//!
//! The checks: `describe` is pure and its config schema is a JSON Schema
//! the given config fits; a config that breaks the schema is refused with
//! `invalid-config`; `open` and `health` work; `discover` answers; `fetch`
//! honours `fields` and each capability the descriptor advertises (filters,
//! sort, pagination, its largest page size) and answers `unsupported` for
//! one it does not (or honours it anyway), never ignoring it; `stream`
//! resumes from a checkpoint with exactly the records after it (a queue's
//! checkpoints are acknowledgements: skipped); a filter value that is not
//! JSON and a foreign cursor are typed errors; nothing was tried beyond
//! the grants given; an unknown resource is a typed error, not a crash.
//! Nothing read is acknowledged.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use sluice::{
    ConnectorError, Descriptor, Error, FetchRequest, FilterOp, Limits, Record, Session,
    SortDirection,
};
use sluice_server::schema::ConfigSchema;

use crate::args::TestArgs;
use crate::grants::grants;

/// Records a check reads at most.
const SAMPLE: u32 = 50;

/// The outcome of one check.
enum Outcome {
    Ok,
    Fail(String),
    Skip(String),
}

/// The checks' results, printed as they come.
#[derive(Default)]
struct Report {
    failed: usize,
    passed: usize,
}

impl Report {
    fn record(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Outcome::Ok => {
                self.passed += 1;
                println!("ok    {name}");
            }
            Outcome::Fail(why) => {
                self.failed += 1;
                println!("FAIL  {name}: {why}");
            }
            Outcome::Skip(why) => println!("skip  {name}: {why}"),
        }
    }
}

fn check(result: Result<Outcome>) -> Outcome {
    result.unwrap_or_else(|e| Outcome::Fail(format!("{e:#}")))
}

fn data(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::from_str(&r.data).unwrap_or(Value::Null))
        .collect()
}

/// Run the checks on `args`' connector.
pub(crate) async fn test_connector(
    args: &TestArgs,
    cache: Option<sluice::ArtifactCache>,
) -> Result<()> {
    let config_text = crate::run::json_arg(&args.config, "--config")?;
    let config: Value = serde_json::from_str(&config_text)?;
    let options: Option<Value> = match &args.options {
        Some(text) => match serde_json::from_str(&crate::run::json_arg(text, "--options")?)? {
            Value::Object(object) => Some(Value::Object(object)),
            _ => bail!("--options: a JSON object, e.g. '{{\"count\": 5}}'"),
        },
        None => None,
    };
    let grants = grants(&args.grant)?;
    let (_runtime, connector) = crate::load(&args.wasm, cache)?;
    let limits = Limits::default();
    let mut report = Report::default();

    let first = connector.describe().await?;
    let again = connector.describe().await?;
    report.record(
        "describe is pure",
        if descriptor_text(&first) == descriptor_text(&again) {
            Outcome::Ok
        } else {
            Outcome::Fail("two calls described the connector differently".into())
        },
    );
    let schema: Value = if first.config_schema.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&first.config_schema).unwrap_or(Value::String("not JSON".into()))
    };
    let compiled = ConfigSchema::compile(&schema);
    report.record(
        "the config schema is a JSON Schema",
        match &compiled {
            Ok(_) => Outcome::Ok,
            Err(why) => Outcome::Fail(why.clone()),
        },
    );
    if let Ok(compiled) = &compiled {
        let problems = compiled.check(&config);
        report.record(
            "the given config fits the schema",
            if problems.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Fail(problems.join("; "))
            },
        );
        let outcome = match breaking(&schema, &config) {
            None => Outcome::Skip("the schema admits any change this check would make".into()),
            Some(bad) if compiled.check(&bad).is_empty() => {
                Outcome::Skip("the schema admits any change this check would make".into())
            }
            Some(bad) => match connector
                .open_with_limits(&bad.to_string(), &grants, &limits)
                .await
            {
                Err(Error::Connector(ConnectorError::InvalidConfig(_))) => Outcome::Ok,
                Err(other) => Outcome::Fail(format!("`open` of {bad} failed otherwise: {other}")),
                Ok(session) => {
                    let _ = session.close().await;
                    Outcome::Fail(format!("`open` accepted {bad}, which breaks the schema"))
                }
            },
        };
        report.record("a config breaking the schema is invalid-config", outcome);
    }

    let mut session = match connector
        .open_with_limits(&config_text, &grants, &limits)
        .await
    {
        Ok(session) => {
            report.record("open", Outcome::Ok);
            session
        }
        Err(e) => {
            report.record("open", Outcome::Fail(e.to_string()));
            return finish(report);
        }
    };
    let health = session.health().await;
    report.record(
        "health",
        match health {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Fail(e.to_string()),
        },
    );
    let resource = match session.discover().await {
        Ok(found) => {
            report.record("discover", Outcome::Ok);
            args.resource
                .clone()
                .or_else(|| found.first().map(|r| r.name.clone()))
        }
        Err(e) => {
            report.record("discover", Outcome::Fail(e.to_string()));
            args.resource.clone()
        }
    };
    let capabilities = first.capabilities;
    if let Some(resource) = resource {
        let checks = Checks {
            session: &mut session,
            resource: &resource,
            options: options.as_ref(),
            capabilities: &capabilities,
        };
        checks.run(&mut report).await;
    } else {
        report.record(
            "fetch",
            Outcome::Skip("no resource discovered; name one with --resource".into()),
        );
    }
    // What the checks above tried beyond the grants (the unknown resource
    // below may be refused on purpose: a path outside every mount, say).
    let denials = session.denials();
    report.record(
        "no capability used outside the grants given",
        match denials.first() {
            None => Outcome::Ok,
            Some(denial) => Outcome::Fail(format!(
                "{} attempt(s) the grants do not allow, first: {} (would need {})",
                denials.len(),
                denial.attempted,
                denial.grant
            )),
        },
    );
    let unknown = session
        .fetch(&FetchRequest::new("sluice-conformance/no-such-resource"))
        .await;
    report.record(
        "an unknown resource is a typed error",
        match unknown {
            Err(Error::Connector(
                ConnectorError::NotFound(_)
                | ConnectorError::InvalidRequest(_)
                | ConnectorError::Unsupported(_)
                | ConnectorError::Denied(_),
            ))
            | Err(Error::Denied(_)) => Outcome::Ok,
            Err(other) => Outcome::Fail(format!(
                "expected not-found or invalid-request, got: {other}"
            )),
            Ok(page) if page.records.is_empty() => Outcome::Ok,
            Ok(_) => Outcome::Fail("records came back for a resource that does not exist".into()),
        },
    );
    let _ = session.close().await;
    finish(report)
}

fn finish(report: Report) -> Result<()> {
    println!("{} passed, {} failed", report.passed, report.failed);
    if report.failed > 0 {
        bail!("{} check(s) failed", report.failed);
    }
    Ok(())
}

fn descriptor_text(d: &Descriptor) -> String {
    json!({
        "name": d.name, "version": d.version, "description": d.description,
        "config_schema": d.config_schema, "capabilities": d.capabilities,
    })
    .to_string()
}

/// `config` changed to break `schema`: a required field of the wrong type,
/// or else an unknown field where the schema admits none.
fn breaking(schema: &Value, config: &Value) -> Option<Value> {
    let mut bad = config.as_object().cloned().unwrap_or_default();
    let required = schema["required"].as_array().and_then(|r| r.first());
    if let Some(field) = required.and_then(Value::as_str) {
        let wrong = match schema["properties"][field]["type"].as_str() {
            Some("string") => json!(12345),
            Some(_) => json!("not the right type"),
            None => return None,
        };
        bad.insert(field.to_string(), wrong);
        return Some(Value::Object(bad));
    }
    if schema["additionalProperties"] == json!(false) {
        bad.insert("sluice_conformance_unknown_field".into(), json!(true));
        return Some(Value::Object(bad));
    }
    None
}

/// The fetch and stream checks on one resource.
struct Checks<'a> {
    session: &'a mut Session,
    resource: &'a str,
    /// `--options`, carried by every request.
    options: Option<&'a Value>,
    capabilities: &'a sluice::Capabilities,
}

impl Checks<'_> {
    async fn fetch(&mut self, req: FetchRequest) -> Result<Vec<Value>, Error> {
        Ok(data(&self.session.fetch(&req).await?.records))
    }

    /// A request for the resource, with `--options`.
    fn request(&self) -> FetchRequest {
        let req = FetchRequest::new(self.resource);
        match self.options {
            Some(options) => req.options(options),
            None => req,
        }
    }

    fn base(&self) -> FetchRequest {
        let req = self.request();
        if self.capabilities.pagination {
            req.page(SAMPLE, None, None)
        } else {
            req
        }
    }

    async fn run(mut self, report: &mut Report) {
        let sample = match self.fetch(self.base()).await {
            Ok(sample) => {
                report.record(&format!("fetch `{}`", self.resource), Outcome::Ok);
                sample
            }
            Err(e) => {
                report.record(
                    &format!("fetch `{}`", self.resource),
                    Outcome::Fail(e.to_string()),
                );
                return;
            }
        };
        let first: Map<String, Value> = sample
            .first()
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let outcome = check(self.fields(&first).await);
        report.record("fetch honours fields", outcome);
        let outcome = check(self.filters(&first).await);
        report.record("fetch honours filters", outcome);
        let outcome = check(self.sort(&first).await);
        report.record("fetch honours sort", outcome);
        let outcome = check(self.pages(&sample).await);
        report.record("pages cover the records once, in order", outcome);
        let outcome = check(self.max_page_size().await);
        report.record("the largest page size is kept", outcome);
        let outcome = check(self.stream_resumes().await);
        report.record("a stream resumes from a checkpoint exactly", outcome);
        let outcome = self.malformed(&first).await;
        report.record("a malformed filter or cursor is a typed error", outcome);
    }

    /// A filter whose value is not JSON, and a cursor the connector never
    /// issued: `invalid-request` (or `unsupported`), never a crash, never
    /// records as if nothing were wrong.
    async fn malformed(&mut self, first: &Map<String, Value>) -> Outcome {
        let field = first
            .keys()
            .next()
            .map_or("sluice_conformance", String::as_str);
        let mut asked = vec![(
            "a filter value that is not JSON",
            self.base().filter(field, FilterOp::Eq, "{not json"),
        )];
        if self.capabilities.pagination {
            let cursor = Some("sluice-conformance: not a cursor".to_string());
            asked.push(("a foreign cursor", self.request().page(2, None, cursor)));
        }
        for (what, req) in asked {
            match self.session.fetch(&req).await {
                Err(Error::Connector(
                    ConnectorError::InvalidRequest(_) | ConnectorError::Unsupported(_),
                )) => {}
                Err(other) => {
                    return Outcome::Fail(format!("{what}: expected invalid-request, got: {other}"))
                }
                Ok(_) => return Outcome::Fail(format!("{what}: answered as if it were fine")),
            }
        }
        Outcome::Ok
    }

    async fn fields(&mut self, first: &Map<String, Value>) -> Result<Outcome> {
        let Some(field) = first.keys().next().cloned() else {
            return Ok(Outcome::Skip("no record to take a field from".into()));
        };
        let got = self.fetch(self.base().fields([field.as_str()])).await?;
        for record in &got {
            if record
                .as_object()
                .is_some_and(|r| r.keys().any(|k| *k != field))
            {
                return Ok(Outcome::Fail(format!(
                    "asked for `{field}` only, got {record}"
                )));
            }
        }
        Ok(Outcome::Ok)
    }

    async fn filters(&mut self, first: &Map<String, Value>) -> Result<Outcome> {
        let Some((field, value)) = first
            .iter()
            .find(|(_, v)| v.is_string() || v.is_number() || v.is_boolean())
        else {
            return Ok(Outcome::Skip("no scalar field to filter on".into()));
        };
        if !self.capabilities.filtering {
            // Not advertised: `unsupported`, or honoured anyway — never ignored.
            let excluding = self.base().filter(field, FilterOp::Ne, &value.to_string());
            return Ok(match self.fetch(excluding).await {
                Err(Error::Connector(ConnectorError::Unsupported(_))) => Outcome::Ok,
                Err(e) => Outcome::Fail(e.to_string()),
                Ok(got) if got.iter().any(|r| &r[field] == value) => Outcome::Fail(format!(
                    "filtering is not advertised, and `{field}` != {value} was ignored instead of answered `unsupported`"
                )),
                Ok(_) => Outcome::Ok,
            });
        }
        let got = match self
            .fetch(self.base().filter(field, FilterOp::Eq, &value.to_string()))
            .await
        {
            // Filtering is advertised, not promised for every field.
            Err(Error::Connector(ConnectorError::Unsupported(why))) => {
                return Ok(Outcome::Skip(format!(
                    "`{field}` = {value} answered unsupported: {why}"
                )))
            }
            other => other?,
        };
        if got.is_empty() {
            return Ok(Outcome::Fail(format!(
                "`{field}` = {value} matched nothing, but the first record has it"
            )));
        }
        match got.iter().find(|r| &r[field] != value) {
            Some(other) => Ok(Outcome::Fail(format!(
                "`{field}` = {value} let through {other}"
            ))),
            None => Ok(Outcome::Ok),
        }
    }

    async fn sort(&mut self, first: &Map<String, Value>) -> Result<Outcome> {
        let Some(field) = first
            .iter()
            .find(|(_, v)| v.is_number() || v.is_string())
            .map(|(k, _)| k.clone())
        else {
            return Ok(Outcome::Skip("no number or string field to sort by".into()));
        };
        let got = match self
            .fetch(self.base().sort(&field, SortDirection::Desc))
            .await
        {
            Err(Error::Connector(ConnectorError::Unsupported(_))) if !self.capabilities.sorting => {
                return Ok(Outcome::Ok)
            }
            other => other?,
        };
        let values: Vec<&Value> = got.iter().map(|r| &r[&field]).collect();
        let ordered = values.windows(2).all(|pair| match (pair[0], pair[1]) {
            (Value::Number(a), Value::Number(b)) => {
                a.as_f64().unwrap_or(0.0) >= b.as_f64().unwrap_or(0.0)
            }
            (Value::String(a), Value::String(b)) => a >= b,
            _ => true,
        });
        Ok(if ordered {
            Outcome::Ok
        } else {
            Outcome::Fail(format!(
                "sorted by `{field}` descending{}, got {values:?}",
                if self.capabilities.sorting {
                    ""
                } else {
                    " (not advertised, and not answered `unsupported`)"
                }
            ))
        })
    }

    async fn pages(&mut self, sample: &[Value]) -> Result<Outcome> {
        if !self.capabilities.pagination {
            // Not advertised: `unsupported`, or honoured anyway — never ignored.
            let asked = self.request().page(2, None, None);
            return Ok(match self.session.fetch(&asked).await {
                Err(Error::Connector(ConnectorError::Unsupported(_))) => Outcome::Ok,
                Err(e) => Outcome::Fail(e.to_string()),
                Ok(page) if page.records.len() > 2 => Outcome::Fail(format!(
                    "pagination is not advertised, and a page of 2 came back with {} records instead of `unsupported`",
                    page.records.len()
                )),
                Ok(_) => Outcome::Ok,
            });
        }
        let mut paged = Vec::new();
        let mut cursor = None;
        while paged.len() < sample.len() {
            let page = self
                .session
                .fetch(&self.request().page(2, None, cursor.clone()))
                .await?;
            if page.records.is_empty() {
                break;
            }
            if page.records.len() > 2 {
                return Ok(Outcome::Fail(format!(
                    "a page of 2 held {}",
                    page.records.len()
                )));
            }
            paged.extend(data(&page.records));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let complete = paged.len() >= sample.len();
        paged.truncate(sample.len());
        Ok(if complete && paged.as_slice() == sample {
            Outcome::Ok
        } else {
            Outcome::Fail(format!(
                "pages of 2 gave {} record(s) that differ from one page of {}",
                paged.len(),
                sample.len()
            ))
        })
    }

    async fn max_page_size(&mut self) -> Result<Outcome> {
        let Some(max) = self.capabilities.max_page_size else {
            return Ok(Outcome::Skip("no largest page size advertised".into()));
        };
        let asked = self.request().page(max.saturating_add(1), None, None);
        Ok(match self.session.fetch(&asked).await {
            Ok(page) if page.records.len() as u64 <= u64::from(max) => Outcome::Ok,
            Ok(page) => Outcome::Fail(format!(
                "a page of {} held {} records, past the advertised {max}",
                max + 1,
                page.records.len()
            )),
            Err(Error::Connector(ConnectorError::InvalidRequest(_))) => Outcome::Ok,
            Err(e) => Outcome::Fail(e.to_string()),
        })
    }

    async fn stream_resumes(&mut self) -> Result<Outcome> {
        let req = self.request();
        let mut stream = match self.session.stream(&req, None).await {
            Ok(stream) => stream,
            Err(Error::Connector(ConnectorError::Unsupported(_)))
                if !self.capabilities.streaming =>
            {
                return Ok(Outcome::Skip("not advertised, and unsupported".into()))
            }
            Err(e) => return Ok(Outcome::Fail(e.to_string())),
        };
        let mut batches = Vec::new();
        let mut read = 0u32;
        let mut queue = false;
        while read < SAMPLE {
            // An empty batch: a queue with nothing more for now.
            let Some(batch) = stream.next(2).await?.filter(|b| !b.records.is_empty()) else {
                break;
            };
            read += batch.records.len() as u32;
            // A queue says whether a record comes again: its checkpoints are
            // acknowledgements, not positions.
            queue |= batch.records.iter().any(|r| {
                r.metadata
                    .as_deref()
                    .and_then(|m| serde_json::from_str::<Value>(m).ok())
                    .is_some_and(|m| m.get("redelivered").is_some())
            });
            batches.push((data(&batch.records), batch.checkpoint));
        }
        stream.close().await?;
        if queue {
            return Ok(Outcome::Skip(
                "a queue (its records say whether they are redelivered): resuming is acknowledging, which this check does not do".into(),
            ));
        }
        let Some(at) = batches.iter().position(|(_, cp)| cp.is_some()) else {
            return Ok(Outcome::Skip("no checkpoint in the first records".into()));
        };
        let checkpoint = batches[at].1.clone().expect("found above");
        let after: Vec<Value> = batches[at + 1..]
            .iter()
            .flat_map(|(r, _)| r.clone())
            .collect();
        let mut resumed = self.session.stream(&req, Some(&checkpoint)).await?;
        let mut again = Vec::new();
        while again.len() < after.len() {
            let Some(batch) = resumed.next(2).await?.filter(|b| !b.records.is_empty()) else {
                break;
            };
            again.extend(data(&batch.records));
        }
        resumed.close().await?;
        again.truncate(after.len());
        Ok(if again == after {
            Outcome::Ok
        } else {
            Outcome::Fail(format!(
                "resumed from {checkpoint}: {} record(s) differ from those after it",
                after.len()
            ))
        })
    }
}
