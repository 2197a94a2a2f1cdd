//! `POST /v1/instances/{id}/{operation}`: a call into an instance's session.

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use sluice::{ExecuteRequest, FetchRequest};

use crate::body::{json_response, parse_body, read_body, text_json_response, Reply};
use crate::instances::{instance, limits_of};
use crate::model::{Instance, Tenant};
use crate::routes::{note_request, REQUEST_LOG};
use crate::state::instance_version;
use crate::stream::{stream, StreamContext, StreamRequest};
use crate::ApiError;
use crate::State;

/// A filter as the API takes it: `{"field": "age", "op": "gt", "value": 30}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterSpec {
    pub(crate) field: String,
    pub(crate) op: String,
    /// Required except for `is-null` and `is-not-null`.
    pub(crate) value: Option<Value>,
}

/// A sort key: `{"field": "age", "direction": "desc"}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SortSpec {
    pub(crate) field: String,
    #[serde(default = "ascending")]
    pub(crate) direction: String,
}

pub(crate) fn ascending() -> String {
    "asc".into()
}

/// A page: `{"page_size": 100, "offset": 0, "cursor": "..."}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageSpec {
    pub(crate) page_size: u32,
    pub(crate) offset: Option<u64>,
    pub(crate) cursor: Option<String>,
}

/// How a stream's delivered records are acknowledged to their connector.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AckMode {
    /// Never (the default): a queue connector redelivers what was streamed.
    #[default]
    None,
    /// Each batch once it is handed to the response: at most once for the
    /// batch in flight when a client goes away.
    Auto,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct InvokeSpec {
    pub(crate) resource: String,
    pub(crate) operation: String,
    pub(crate) filters: Vec<FilterSpec>,
    pub(crate) sort: Vec<SortSpec>,
    pub(crate) fields: Vec<String>,
    pub(crate) pagination: Option<PageSpec>,
    pub(crate) options: Option<Value>,
    pub(crate) records: Vec<Value>,
    pub(crate) checkpoint: Option<String>,
    pub(crate) batch_size: Option<u32>,
    /// `stream` only: `none` (default) or `auto`.
    pub(crate) ack: Option<AckMode>,
}

impl InvokeSpec {
    /// Refuse fields `operation` does not use (`records` on a fetch, say):
    /// a field that would be ignored is a mistake to report, not to guess at.
    fn fits(&self, operation: &str) -> Result<(), ApiError> {
        let given = [
            ("resource", !self.resource.is_empty()),
            ("operation", !self.operation.is_empty()),
            ("filters", !self.filters.is_empty()),
            ("sort", !self.sort.is_empty()),
            ("fields", !self.fields.is_empty()),
            ("pagination", self.pagination.is_some()),
            ("options", self.options.is_some()),
            ("records", !self.records.is_empty()),
            ("checkpoint", self.checkpoint.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("ack", self.ack.is_some()),
        ];
        let used: &[&str] = match operation {
            "fetch" => &[
                "resource",
                "filters",
                "sort",
                "fields",
                "pagination",
                "options",
            ],
            "stream" => &[
                "resource",
                "filters",
                "sort",
                "fields",
                "options",
                "checkpoint",
                "batch_size",
                "ack",
            ],
            "execute" => &["resource", "operation", "records", "options"],
            _ => &[],
        };
        let unused: Vec<String> = given
            .iter()
            .filter(|(name, present)| *present && !used.contains(name))
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "{} {} not used by `{operation}`{}",
                unused.join(", "),
                if unused.len() == 1 { "is" } else { "are" },
                if used.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (it takes {})",
                        used.iter()
                            .map(|u| format!("`{u}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ))
    }
}

/// The operations an instance can be invoked with.
pub(crate) const OPERATIONS: &[&str] = &["health", "discover", "fetch", "execute", "stream"];

pub(crate) async fn invoke(
    state: &Arc<State>,
    tenant: &Tenant,
    id: &str,
    operation: &str,
    req: Request<Incoming>,
) -> Reply {
    // Only known operations reach the metrics: a label never comes from the URL.
    if !OPERATIONS.contains(&operation) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!(
                "no operation `{operation}`; one of {}",
                OPERATIONS.join(", ")
            ),
        ));
    }
    let started = std::time::Instant::now();
    let instance = instance(state, tenant, id).await?;
    note_request(|log| log.instance = Some(instance.id.clone()));
    let connector = instance.connector.clone();
    let result = invoke_inner(state, tenant, instance, operation, req).await;
    // A stream that started records its own outcome when it ends.
    if operation != "stream" || result.is_err() {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code,
        };
        state.metrics.invocation(
            &tenant.id,
            &connector,
            operation,
            outcome,
            started.elapsed(),
        );
    }
    result
}

pub(crate) async fn invoke_inner(
    state: &Arc<State>,
    tenant: &Tenant,
    instance: Instance,
    operation: &str,
    req: Request<Incoming>,
) -> Reply {
    let spec: InvokeSpec = {
        let body = read_body(req, 8 << 20).await?;
        if body.is_empty() {
            InvokeSpec::default()
        } else {
            parse_body(&body)?
        }
    };
    spec.fits(operation)?;
    // The request is checked before a session is taken or opened.
    let fetch = fetch_request(&spec)?;
    let version = instance_version(tenant, &instance);
    let key = format!("{}/{}", tenant.id, instance.id);
    // A stream keeps its session for as long as it runs: always a fresh one.
    let kept = (operation != "stream")
        .then(|| state.warm.take(&key, &version))
        .flatten();
    let (mut session, permit) = match kept {
        Some(held) => held,
        None => {
            let permit = state.permit(tenant).await?;
            let connector = state.connector(&tenant.id, &instance.connector).await?;
            let grants = state.instance_grants(tenant, &instance)?;
            let session = connector
                .open_with_limits(&instance.config.to_string(), &grants, &limits_of(tenant))
                .await?;
            state.metrics.instantiated(session.instantiation_time());
            (session, permit)
        }
    };
    // Counted from here: a session that exists, holding one of the tenant's permits.
    let active = state.metrics.session();
    let denials_before = session.denials().len();
    let value = match operation {
        "stream" => {
            drop(active);
            let context = StreamContext {
                state: Arc::clone(state),
                tenant: tenant.id.clone(),
                connector: instance.connector.clone(),
                instance: instance.id.clone(),
                request_id: REQUEST_LOG
                    .try_with(|log| log.borrow().request_id.clone())
                    .unwrap_or_default(),
            };
            let request = StreamRequest {
                fetch,
                checkpoint: spec.checkpoint,
                batch_size: spec.batch_size.unwrap_or(500),
                ack: spec.ack.unwrap_or_default(),
            };
            return stream(session, request, permit, context).await;
        }
        _ => answer(&mut session, operation, &fetch, &spec).await,
    };
    // Denials are counted whatever the call's outcome (a denied call fails).
    let denials = session.denials();
    state.metrics.denials(
        &tenant.id,
        denials.get(denials_before..).unwrap_or_default(),
    );
    let value = value?;
    if let Some((session, permit)) = state.warm.give(&key, version, session, permit) {
        let _ = session.close().await;
        drop(permit);
    }
    drop(active);
    Ok(match value {
        Answer::Value(value) => json_response(StatusCode::OK, &value),
        Answer::Text(text) => text_json_response(StatusCode::OK, text),
    })
}

/// The fetch request an invocation body describes (resource, filters, sort,
/// fields, page, options), each part checked.
pub(crate) fn fetch_request(spec: &InvokeSpec) -> Result<FetchRequest, ApiError> {
    let mut fetch = FetchRequest::new(spec.resource.clone()).fields(spec.fields.iter().cloned());
    for (i, filter) in spec.filters.iter().enumerate() {
        let op = sluice::FilterOp::parse(&filter.op).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("filters[{i}]: {e}"),
            )
        })?;
        let value = match (&filter.value, op) {
            (Some(value), _) => value.clone(),
            (None, sluice::FilterOp::IsNull | sluice::FilterOp::IsNotNull) => Value::Null,
            (None, _) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!(
                    "filters[{i}]: `value` is missing (only `is-null` and `is-not-null` take none)"
                ),
                ))
            }
        };
        fetch = fetch.filter(&filter.field, op, &value.to_string());
    }
    for (i, key) in spec.sort.iter().enumerate() {
        let direction = sluice::SortDirection::parse(&key.direction).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("sort[{i}]: {e}"),
            )
        })?;
        fetch = fetch.sort(&key.field, direction);
    }
    if let Some(page) = &spec.pagination {
        fetch = fetch.page(page.page_size, page.offset, page.cursor.clone());
    }
    fetch.options = spec.options.as_ref().map(Value::to_string);
    Ok(fetch)
}

/// Run a non-stream `operation` on `session`.
pub(crate) async fn answer(
    session: &mut sluice::Session,
    operation: &str,
    fetch: &FetchRequest,
    spec: &InvokeSpec,
) -> Result<Answer, ApiError> {
    Ok(match operation {
        "health" => {
            session.health().await?;
            Answer::Value(json!({ "healthy": true }))
        }
        "discover" => {
            let resources = session.discover().await?;
            Answer::Value(json!({ "resources": resources.iter().map(|r| json!({
                "name": r.name,
                "schema": r.schema.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
            })).collect::<Vec<_>>() }))
        }
        "fetch" => {
            let page = session.fetch(fetch).await?;
            let mut body = String::from("{\"records\":");
            records_json(&page.records, &mut body)?;
            body.push_str(&format!(
                ",\"total_count\":{},\"next_cursor\":{}}}",
                json!(page.total_count),
                json!(page.next_cursor)
            ));
            Answer::Text(body)
        }
        "execute" => {
            let records = execute_records(&spec.records)?;
            let mut request =
                ExecuteRequest::new(spec.resource.clone(), spec.operation.clone(), records);
            request.options = spec.options.as_ref().map(Value::to_string);
            let result = session.execute(&request).await?;
            let mut body = format!("{{\"affected\":{},\"records\":", result.affected);
            records_json(&result.records, &mut body)?;
            body.push('}');
            Answer::Text(body)
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no operation `{operation}`"),
            ))
        }
    })
}

/// An invocation's answer: a value, or JSON text already written.
pub(crate) enum Answer {
    Value(Value),
    Text(String),
}

/// The records of an execute body: record lines or bare data objects (see
/// [`sluice::wire`]); a checkpoint or error line is not a record to write.
pub(crate) fn execute_records(values: &[Value]) -> Result<Vec<sluice::Record>, ApiError> {
    use sluice::wire::Message;
    values
        .iter()
        .enumerate()
        .map(|(i, value)| match sluice::wire::read(value.clone()) {
            Ok(Message::Record(record)) => Ok(record),
            Ok(Message::Checkpoint(_) | Message::Error(_)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("records[{i}]: a stream's checkpoint or error line is not a record; send the records only"),
            )),
            Err(why) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("records[{i}]: {why}"),
            )),
        })
        .collect()
}

/// `records` as a JSON array appended to `out`, each record's text copied, not rebuilt.
pub(crate) fn records_json(
    records: &[sluice::Record],
    out: &mut String,
) -> Result<(), sluice::Error> {
    out.push('[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        record.write_json(out)?;
    }
    out.push(']');
    Ok(())
}
