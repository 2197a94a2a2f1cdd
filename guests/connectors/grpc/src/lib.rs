//! The `grpc` connector: any gRPC service, its methods found by server
//! reflection (or in a `FileDescriptorSet` given in config), called with
//! JSON in and JSON out by the proto3 JSON mapping.
//!
//! Each method is a resource, `package.Service/Method`. `fetch` makes a
//! unary call (the request message from `options`, `eq` filters setting
//! its fields) or reads a server-streaming call to its end; `stream` reads
//! a server-streaming call one message per record; a method given a
//! `paging` entry pages by its token field, the token being the cursor and
//! the checkpoint. `execute` (operation `call` on the method's resource)
//! calls with each record as a request message (client-streaming and
//! bidirectional methods get every record in one call). A gRPC status becomes the typed error it means.

mod call;
mod reflection;
mod schema;

use std::collections::BTreeMap;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_sdk::{
    config, query, Batch, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, FilterOp, Record, RecordStream, ResourceInfo,
    Result, Session,
};

use call::{Answer, CallOptions};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// The server: `https://host:port`, or `http://host:port` for a server
    /// without TLS (grant it with `--allow-http-h2c`, which speaks HTTP/2 to it).
    endpoint: String,
    /// Base64 of a `FileDescriptorSet` describing the services (`protoc
    /// --include_imports --descriptor_set_out=FILE`); without it the
    /// server's reflection service describes them.
    #[serde(default)]
    descriptor_set: Option<String>,
    /// Services (`package.Service`) or methods (`package.Service/Method`)
    /// to expose; empty exposes every method but reflection's own.
    #[serde(default)]
    methods: Vec<String>,
    /// Metadata sent with every call, by lower-case header name.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Deadline of each call, ms (sent as `grpc-timeout`; default 30000).
    #[serde(default = "deadline_ms")]
    deadline_ms: u64,
    /// Largest message accepted from the server, bytes (default 4 MiB).
    #[serde(default = "max_message_bytes")]
    max_message_bytes: u32,
    /// Methods that page by a token, by method name.
    #[serde(default)]
    paging: BTreeMap<String, Paging>,
}

fn deadline_ms() -> u64 {
    30_000
}
fn max_message_bytes() -> u32 {
    4 << 20
}

/// How a method pages.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Paging {
    /// The request field that carries the token (`pageToken`, `after`).
    request_field: String,
    /// The response field holding the next token: for a unary method, the
    /// next page's (`nextPageToken`; empty on the last page); for a
    /// server-streaming method, each message's own position (`id`), from
    /// which a later call resumes.
    response_field: String,
    /// For a unary method: the response field whose elements are the
    /// page's records (`items`); without it, the response is one record.
    #[serde(default)]
    records_field: Option<String>,
    /// The request field that carries the page size (`pageSize`).
    #[serde(default)]
    page_size_field: Option<String>,
}

struct Grpc;

struct GrpcSession {
    config: Config,
    options: CallOptions,
    methods: BTreeMap<String, MethodDescriptor>,
}

impl Connector for Grpc {
    type Session = GrpcSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "grpc",
            env!("CARGO_PKG_VERSION"),
            "gRPC services by server reflection or a descriptor set: unary, server- and client-streaming calls, JSON by the proto3 mapping",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: true,
            filtering: true,
            sorting: false,
            aggregation: false,
            transactions: false,
            max_page_size: None,
        })
        .build()
    }

    fn open(config_json: &str) -> Result<GrpcSession> {
        let config: Config = config::parse(config_json)?;
        if !config.endpoint.starts_with("http://") && !config.endpoint.starts_with("https://") {
            return Err(ConnectorError::InvalidConfig(
                "field `endpoint`: must start with https:// (or http:// for h2c)".into(),
            ));
        }
        if config.deadline_ms == 0 || config.max_message_bytes == 0 {
            return Err(ConnectorError::InvalidConfig(
                "fields `deadline_ms` and `max_message_bytes` must be at least 1".into(),
            ));
        }
        let options = CallOptions {
            metadata: config
                .metadata
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            deadline_ms: config.deadline_ms,
            max_message_bytes: config.max_message_bytes,
        };
        let pool = match &config.descriptor_set {
            Some(set) => reflection::from_descriptor_set(set)?,
            None => reflection::from_server(&config.endpoint, &options)?,
        };
        let methods = exposed(&pool, &config.methods)?;
        for (name, paging) in &config.paging {
            let method = methods.get(name).ok_or_else(|| {
                ConnectorError::InvalidConfig(format!(
                    "field `paging`: `{name}` is not an exposed method"
                ))
            })?;
            check_paging(name, method, paging)?;
        }
        Ok(GrpcSession {
            config,
            options,
            methods,
        })
    }
}

/// The methods `wanted` names (every one but reflection's when empty), by
/// `package.Service/Method`.
fn exposed(pool: &DescriptorPool, wanted: &[String]) -> Result<BTreeMap<String, MethodDescriptor>> {
    let mut methods = BTreeMap::new();
    for service in pool.services() {
        if service.full_name().starts_with("grpc.reflection.") && wanted.is_empty() {
            continue;
        }
        for method in service.methods() {
            let name = format!("{}/{}", service.full_name(), method.name());
            let chosen = wanted.is_empty()
                || wanted
                    .iter()
                    .any(|w| w == &name || w == service.full_name());
            if chosen {
                methods.insert(name, method);
            }
        }
    }
    for w in wanted {
        let found = methods
            .keys()
            .any(|name| name == w || name.split('/').next() == Some(w.as_str()));
        if !found {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `methods`: `{w}` is neither a service nor a method the descriptors describe"
            )));
        }
    }
    Ok(methods)
}

fn check_paging(name: &str, method: &MethodDescriptor, paging: &Paging) -> Result<()> {
    let field = |message: &MessageDescriptor, field: &str, what: &str| {
        let found = message
            .get_field_by_json_name(field)
            .or_else(|| message.get_field_by_name(field));
        found.map(|_| ()).ok_or_else(|| {
            ConnectorError::InvalidConfig(format!(
                "field `paging.{name}.{what}`: `{}` has no field `{field}`",
                message.full_name()
            ))
        })
    };
    if method.is_client_streaming() {
        return Err(ConnectorError::InvalidConfig(format!(
            "field `paging.{name}`: a client-streaming method does not page"
        )));
    }
    field(&method.input(), &paging.request_field, "request_field")?;
    field(&method.output(), &paging.response_field, "response_field")?;
    if let Some(records) = &paging.records_field {
        field(&method.output(), records, "records_field")?;
    }
    if let Some(size) = &paging.page_size_field {
        field(&method.input(), size, "page_size_field")?;
    }
    Ok(())
}

/// A JSON object as a message of type `desc`.
fn encode(desc: &MessageDescriptor, json: Value, what: &str) -> Result<Vec<u8>> {
    let message = DynamicMessage::deserialize(desc.clone(), json).map_err(|e| {
        ConnectorError::InvalidRequest(format!("{what} is not a `{}`: {e}", desc.full_name()))
    })?;
    Ok(message.encode_to_vec())
}

/// A message of type `desc` as its proto3 JSON.
fn decode(desc: &MessageDescriptor, bytes: &[u8], method: &str) -> Result<Value> {
    let message = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| {
        ConnectorError::Unavailable(format!(
            "{method}: the server sent a message that is not a `{}` ({e})",
            desc.full_name()
        ))
    })?;
    serde_json::to_value(&message).map_err(|e| {
        ConnectorError::Unavailable(format!(
            "{method}: a `{}` the JSON mapping cannot write ({e})",
            desc.full_name()
        ))
    })
}

/// The text of a token field's value (a string, or a number written as one).
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl GrpcSession {
    fn method(&self, name: &str) -> Result<&MethodDescriptor> {
        self.methods.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.methods.keys().map(String::as_str).collect();
            ConnectorError::NotFound(format!(
                "no method `{name}` (exposed: {})",
                known.join(", ")
            ))
        })
    }

    /// The request of a fetch or stream: `options` as the message, each
    /// `eq` filter setting one of its fields.
    fn request(&self, method: &MethodDescriptor, req: &FetchRequest) -> Result<Map<String, Value>> {
        if !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "sorting: a gRPC method answers in its own order".into(),
            ));
        }
        let mut request = match req.options.as_deref() {
            None => Map::new(),
            Some(text) => match serde_json::from_str(text) {
                Ok(Value::Object(object)) => object,
                Ok(Value::Null) => Map::new(),
                _ => {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "options: the request message, as a JSON object (a `{}`)",
                        method.input().full_name()
                    )))
                }
            },
        };
        let input = method.input();
        for filter in &req.filters {
            if filter.op != FilterOp::Eq {
                return Err(ConnectorError::Unsupported(format!(
                    "filter on `{}`: a filter sets a request field, so only `eq` is possible",
                    filter.field
                )));
            }
            if input.get_field_by_json_name(&filter.field).is_none()
                && input.get_field_by_name(&filter.field).is_none()
            {
                return Err(ConnectorError::Unsupported(format!(
                    "filter on `{}`: the request message `{}` has no such field",
                    filter.field,
                    input.full_name()
                )));
            }
            let value = serde_json::from_str(&filter.value).map_err(|e| {
                ConnectorError::InvalidRequest(format!(
                    "filter on `{}`: value is not JSON ({e})",
                    filter.field
                ))
            })?;
            request.insert(filter.field.clone(), value);
        }
        Ok(request)
    }

    fn start(&self, name: &str, messages: &[Vec<u8>]) -> Result<Answer> {
        call::start(&self.config.endpoint, name, messages, &self.options)
    }

    /// Every page of a paged unary method, without pagination asked for.
    fn every_page(
        &self,
        name: &str,
        method: &MethodDescriptor,
        mut request: Map<String, Value>,
        fields: &[String],
    ) -> Result<FetchResponse> {
        let paging = &self.config.paging[name];
        let mut records = Vec::new();
        let mut tokens = std::collections::HashSet::new();
        loop {
            let (page, next) = self.unary_page(name, method, request.clone(), fields)?;
            records.extend(page);
            let Some(token) = next else {
                return Ok(FetchResponse {
                    records,
                    total_count: None,
                    next_cursor: None,
                });
            };
            if !tokens.insert(token.clone()) {
                return Err(ConnectorError::Unavailable(format!(
                    "{name}: the server sent the page token `{token}` twice; paging would never end"
                )));
            }
            request.insert(paging.request_field.clone(), Value::String(token));
        }
    }

    /// One unary call: the response message as JSON.
    fn unary(&self, name: &str, method: &MethodDescriptor, request: Value) -> Result<Value> {
        let bytes = encode(&method.input(), request, "the request")?;
        let answer = self.start(name, &[bytes])?;
        let mut messages = answer.collect()?;
        if messages.len() != 1 {
            return Err(ConnectorError::Unavailable(format!(
                "{name}: a unary call answered {} messages",
                messages.len()
            )));
        }
        decode(&method.output(), &messages.remove(0), name)
    }

    /// A unary page: its records and the next token.
    fn unary_page(
        &self,
        name: &str,
        method: &MethodDescriptor,
        request: Map<String, Value>,
        fields: &[String],
    ) -> Result<(Vec<Record>, Option<String>)> {
        let response = self.unary(name, method, Value::Object(request))?;
        let paging = self.config.paging.get(name);
        let next = paging.and_then(|p| token_text(response.get(&p.response_field)));
        let records = match paging.and_then(|p| p.records_field.as_ref()) {
            Some(field) => match response.get(field) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| query::api_record(item, fields, None))
                    .collect(),
                // An empty repeated field is left out of the JSON.
                None => Vec::new(),
                Some(_) => {
                    return Err(ConnectorError::InvalidConfig(format!(
                        "field `paging.{name}.records_field`: `{field}` is not a repeated field"
                    )))
                }
            },
            None => vec![query::api_record(&response, fields, None)],
        };
        Ok((records, next))
    }
}

impl Session for GrpcSession {
    fn health_check(&self) -> Result<()> {
        // The standard health service when the server has one; a server
        // without it (UNIMPLEMENTED) still answered in gRPC, so it is up.
        const CHECK: &str = "grpc.health.v1.Health/Check";
        let answer = match self.start(CHECK, &[Vec::new()]) {
            Err(ConnectorError::Unsupported(_)) => return Ok(()),
            other => other?,
        };
        let messages = match answer.collect() {
            Err(ConnectorError::Unsupported(_)) => return Ok(()),
            other => other?,
        };
        let status = messages
            .first()
            .and_then(|m| HealthCheckResponse::decode(m.as_slice()).ok())
            .map_or(0, |r| r.status);
        match status {
            SERVING => Ok(()),
            other => Err(ConnectorError::Unavailable(format!(
                "{}: the server's health service says {}",
                self.config.endpoint,
                match other {
                    2 => "NOT_SERVING",
                    3 => "SERVICE_UNKNOWN",
                    _ => "UNKNOWN",
                }
            ))),
        }
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        Ok(self
            .methods
            .iter()
            .map(|(name, method)| ResourceInfo {
                name: name.clone(),
                schema: Some(schema::method_schema(name, method).to_string()),
            })
            .collect())
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let name = req.resource.clone();
        let method = self.method(&name)?;
        if method.is_client_streaming() {
            return Err(ConnectorError::Unsupported(format!(
                "{name} is client-streaming: call it with execute, one record per request message"
            )));
        }
        let mut request = self.request(method, &req)?;
        let paging = self.config.paging.get(&name);
        let page_size = req.pagination.as_ref().map(|p| p.page_size.max(1) as usize);
        if let Some(page) = &req.pagination {
            if page.offset.is_some_and(|o| o > 0) {
                return Err(ConnectorError::Unsupported(format!(
                    "offsets on {name}: a gRPC method pages by token, if at all; use the cursor"
                )));
            }
            if let Some(cursor) = &page.cursor {
                let paging = paging.ok_or_else(|| {
                    ConnectorError::InvalidRequest(format!(
                        "cursor `{cursor}`: {name} has no `paging` entry, so no page of it has a next one"
                    ))
                })?;
                request.insert(paging.request_field.clone(), Value::String(cursor.clone()));
            }
            if let Some(field) = paging.and_then(|p| p.page_size_field.as_ref()) {
                request.insert(field.clone(), Value::from(page.page_size));
            }
        }
        if !method.is_server_streaming() {
            let Some(page_size) = page_size else {
                if paging.is_some_and(|p| p.records_field.is_some()) {
                    return self.every_page(&name, method, request, &req.fields);
                }
                let (records, _) = self.unary_page(&name, method, request, &req.fields)?;
                return Ok(FetchResponse {
                    records,
                    total_count: None,
                    next_cursor: None,
                });
            };
            let (records, next) = self.unary_page(&name, method, request, &req.fields)?;
            if records.len() > page_size {
                return Err(ConnectorError::Unsupported(format!(
                    "a page of {page_size} from {name}: the server answered {} records; give its paging entry a `page_size_field`",
                    records.len()
                )));
            }
            return Ok(FetchResponse {
                records,
                total_count: None,
                next_cursor: next,
            });
        }
        let bytes = encode(&method.input(), Value::Object(request), "the request")?;
        let mut answer = self.start(&name, &[bytes])?;
        let mut records = Vec::new();
        let mut last = None;
        while page_size.is_none_or(|l| records.len() < l) {
            let Some(message) = answer.next_message()? else {
                return Ok(FetchResponse {
                    records,
                    total_count: None,
                    next_cursor: None,
                });
            };
            let value = decode(&method.output(), &message, &name)?;
            last = paging.and_then(|p| token_text(value.get(&p.response_field)));
            records.push(query::api_record(&value, &req.fields, None));
        }
        // A full page: one more message says whether there is a next page;
        // the rest of the stream is left unread.
        if answer.next_message()?.is_none() {
            return Ok(FetchResponse {
                records,
                total_count: None,
                next_cursor: None,
            });
        }
        let next_cursor = match (paging, last) {
            (Some(_), Some(cursor)) => cursor,
            (Some(paging), None) => {
                return Err(ConnectorError::Unavailable(format!(
                    "{name}: the last message of the page has no `{}` to resume from",
                    paging.response_field
                )))
            }
            (None, _) => {
                return Err(ConnectorError::Unsupported(format!(
                    "a page of {} from {name}: it streams more, and without a `paging` entry naming each message's position no next page can start where this one ends",
                    records.len()
                )))
            }
        };
        Ok(FetchResponse {
            records,
            total_count: None,
            next_cursor: Some(next_cursor),
        })
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let name = req.resource.clone();
        let method = self.method(&name)?.clone();
        if method.is_client_streaming() {
            return Err(ConnectorError::Unsupported(format!(
                "{name} is client-streaming: call it with execute"
            )));
        }
        let mut request = self.request(&method, &req)?;
        let paging = self.config.paging.get(&name).cloned();
        if let Some(checkpoint) = &checkpoint {
            let paging = paging.as_ref().ok_or_else(|| {
                ConnectorError::InvalidRequest(format!(
                    "{name} has no `paging` entry, so a stream of it has no checkpoint to resume from"
                ))
            })?;
            if checkpoint == END {
                return Ok(Box::new(Ended));
            }
            request.insert(
                paging.request_field.clone(),
                Value::String(checkpoint.clone()),
            );
        }
        Ok(Box::new(GrpcStream {
            session: GrpcSession {
                config: self.config.clone(),
                options: self.options.clone(),
                methods: BTreeMap::new(),
            },
            name,
            method,
            paging,
            request,
            fields: req.fields,
            answer: None,
            done: false,
        }))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        let name = req.resource.clone();
        if !matches!(req.operation.as_str(), "" | "call") {
            return Err(ConnectorError::Unsupported(format!(
                "operation `{}`: the grpc connector's one operation is `call` (the method is the resource)",
                req.operation
            )));
        }
        let method = self.method(&name)?;
        let input = method.input();
        let requests = req
            .records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let data: Value = serde_json::from_str(&record.data).map_err(|e| {
                    ConnectorError::InvalidRequest(format!("record {i}: not JSON ({e})"))
                })?;
                encode(&input, data, &format!("record {i}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut records = Vec::new();
        let mut read = |answer: Answer| -> Result<()> {
            for message in answer.collect()? {
                let value = decode(&method.output(), &message, &name)?;
                records.push(query::api_record(&value, &[], None));
            }
            Ok(())
        };
        if method.is_client_streaming() {
            // Every record is a message of one call.
            read(self.start(&name, &requests)?)?;
        } else {
            for (i, request) in requests.into_iter().enumerate() {
                // The calls before this one were made: the error says how many.
                self.start(&name, &[request])
                    .and_then(&mut read)
                    .map_err(|err| after_calls(err, i))?;
            }
        }
        Ok(ExecuteResponse {
            affected: req.records.len() as u64,
            records,
        })
    }
}

/// `err` of record `i` of an execute whose records before it were each
/// sent and answered: the message says so (a retry must not repeat them).
fn after_calls(err: ConnectorError, i: usize) -> ConnectorError {
    if i == 0 {
        return err;
    }
    let note =
        |m: String| format!("record {i}: {m} (the {i} record(s) before it were sent and answered)");
    match err {
        ConnectorError::InvalidConfig(m) => ConnectorError::InvalidConfig(note(m)),
        ConnectorError::InvalidRequest(m) => ConnectorError::InvalidRequest(note(m)),
        ConnectorError::Unsupported(m) => ConnectorError::Unsupported(note(m)),
        ConnectorError::Denied(m) => ConnectorError::Denied(note(m)),
        ConnectorError::NotFound(m) => ConnectorError::NotFound(note(m)),
        ConnectorError::Unavailable(m) => ConnectorError::Unavailable(note(m)),
        ConnectorError::Internal(m) => ConnectorError::Internal(note(m)),
        other @ (ConnectorError::RateLimited(_) | ConnectorError::Timeout) => other,
    }
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// The checkpoint of a paged stream that has read its last page.
const END: &str = "end";

/// A stream resumed at its end.
struct Ended;

impl RecordStream for Ended {
    fn next(&mut self, _max: u32) -> Result<Option<Batch>> {
        Ok(None)
    }
}

/// A server-streaming call read `max` messages per batch, or a unary
/// method's pages, one per batch.
struct GrpcStream {
    session: GrpcSession,
    name: String,
    method: MethodDescriptor,
    paging: Option<Paging>,
    request: Map<String, Value>,
    fields: Vec<String>,
    answer: Option<Answer>,
    done: bool,
}

impl GrpcStream {
    fn next_page(&mut self) -> Result<Option<Batch>> {
        let (records, next) = self.session.unary_page(
            &self.name,
            &self.method,
            self.request.clone(),
            &self.fields,
        )?;
        let Some(paging) = &self.paging else {
            // One response, one batch, no position to resume from.
            self.done = true;
            return Ok(Some(Batch {
                records,
                checkpoint: None,
            }));
        };
        let current = token_text(self.request.get(&paging.request_field));
        match next {
            Some(token) if Some(&token) == current.as_ref() => Err(ConnectorError::Unavailable(
                format!(
                    "{}: the server sent back the page token `{token}` it was given; paging would never end",
                    self.name
                ),
            )),
            Some(token) => {
                self.request
                    .insert(paging.request_field.clone(), Value::String(token.clone()));
                Ok(Some(Batch {
                    records,
                    checkpoint: Some(token),
                }))
            }
            None => {
                self.done = true;
                Ok(Some(Batch {
                    records,
                    checkpoint: Some(END.into()),
                }))
            }
        }
    }
}

impl RecordStream for GrpcStream {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        if self.done {
            return Ok(None);
        }
        if !self.method.is_server_streaming() {
            return self.next_page();
        }
        if self.answer.is_none() {
            let bytes = encode(
                &self.method.input(),
                Value::Object(self.request.clone()),
                "the request",
            )?;
            self.answer = Some(self.session.start(&self.name, &[bytes])?);
        }
        let answer = self.answer.as_mut().expect("started above");
        let mut records = Vec::new();
        let mut checkpoint = None;
        while records.len() < max.max(1) as usize {
            // A batch holds what has arrived: it does not wait for more.
            if !records.is_empty() && !answer.is_ready() {
                break;
            }
            let Some(message) = answer.next_message()? else {
                self.done = true;
                break;
            };
            let value = decode(&self.method.output(), &message, &self.name)?;
            if let Some(paging) = &self.paging {
                let position = token_text(value.get(&paging.response_field)).ok_or_else(|| {
                    ConnectorError::Unavailable(format!(
                        "{}: a message without `{}`, the position a stream resumes from",
                        self.name, paging.response_field
                    ))
                })?;
                checkpoint = Some(position);
            }
            records.push(query::api_record(&value, &self.fields, None));
        }
        if records.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch {
            records,
            checkpoint,
        }))
    }
}

sluice_sdk::export_connector!(Grpc);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
