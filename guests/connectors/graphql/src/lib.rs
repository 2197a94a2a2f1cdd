//! The `graphql` connector: GraphQL APIs described by config.
//!
//! Each resource is a query document with static variables, the JSON pointer
//! of its records (and optionally of the node inside each edge), and a
//! pagination strategy: Relay cursors (`pageInfo { hasNextPage endCursor }`,
//! passed back as the `after` variable), offset variables, or page-number
//! variables (`page`/`perPage`, 0- or 1-based). Filters map to variables. A
//! GraphQL `errors` array becomes a typed error carrying the messages.
//! `execute` runs a configured mutation once per record, binding the record
//! to one input variable or each field to its own variable, and returns each
//! result with its id.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_sdk::{
    config, http, query, Batch, Capabilities, Connector, ConnectorError, Descriptor,
    ExecuteRequest, ExecuteResponse, FetchRequest, FetchResponse, Record, RecordBuilder,
    RecordStream, ResourceInfo, Result, Session,
};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// The GraphQL endpoint URL.
    endpoint: String,
    /// Headers sent with every request.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Readable resources by name.
    #[serde(default)]
    resources: BTreeMap<String, Resource>,
    /// Mutations by operation name, for `execute`.
    #[serde(default)]
    mutations: BTreeMap<String, Mutation>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Resource {
    /// The query document.
    query: String,
    /// Variables sent with every page.
    #[serde(default)]
    variables: Map<String, Value>,
    /// JSON pointer of the record (or edge) array, e.g. `/data/items/edges`.
    records_path: String,
    /// JSON pointer of the record inside each element, e.g. `/node` for Relay edges.
    #[serde(default)]
    node_path: String,
    /// Field holding each record's id.
    id_field: Option<String>,
    #[serde(default)]
    pagination: Pagination,
    /// Record field → variable, for `eq` filters.
    #[serde(default)]
    filters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Pagination {
    /// One response holds everything.
    #[default]
    None,
    /// Relay: `first`/`after` variables and a `pageInfo` object.
    Relay {
        /// JSON pointer of `pageInfo`, e.g. `/data/items/pageInfo`.
        page_info_path: String,
        #[serde(default = "first_var")]
        first_var: String,
        #[serde(default = "after_var")]
        after_var: String,
        #[serde(default = "page_size")]
        page_size: u32,
    },
    /// Offset and limit variables.
    Offset {
        #[serde(default = "offset_var")]
        offset_var: String,
        #[serde(default = "limit_var")]
        limit_var: String,
        #[serde(default = "page_size")]
        page_size: u32,
    },
    /// Page-number and page-size variables (`allUsers(page: $page, perPage: $perPage)`).
    Page {
        #[serde(default = "page_var")]
        page_var: String,
        #[serde(default = "size_var")]
        size_var: String,
        /// The number of the first page: 0 or 1 (the default).
        #[serde(default = "first_page")]
        first_page: u64,
        #[serde(default = "page_size")]
        page_size: u32,
    },
}

fn first_var() -> String {
    "first".into()
}
fn after_var() -> String {
    "after".into()
}
fn offset_var() -> String {
    "offset".into()
}
fn limit_var() -> String {
    "limit".into()
}
fn page_var() -> String {
    "page".into()
}
fn size_var() -> String {
    "perPage".into()
}
fn first_page() -> u64 {
    1
}
fn page_size() -> u32 {
    50
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Mutation {
    /// The mutation document.
    query: String,
    /// How each record becomes variables.
    #[serde(default)]
    bind: Bind,
    /// Variable that receives each record's data when `bind` is `input`.
    #[serde(default = "input_var")]
    input_var: String,
    /// Variables sent with every call (a record's fields win over them).
    #[serde(default)]
    variables: Map<String, Value>,
    /// JSON pointer of the result, e.g. `/data/createItem`.
    #[serde(default)]
    result_path: String,
    /// Field of the result holding the written record's id.
    #[serde(default = "id_field")]
    id_field: String,
}

/// How a record is passed to a mutation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
enum Bind {
    /// The whole record as one variable (`createItem(input: $input)`).
    #[default]
    Input,
    /// Each top-level field as the variable of the same name
    /// (`createUser(name: $name, team: $team)`).
    Fields,
}

fn input_var() -> String {
    "input".into()
}
fn id_field() -> String {
    "id".into()
}

/// Where the next page starts: a Relay cursor, an offset or a page number.
/// Opaque to callers.
#[derive(Debug, Clone, PartialEq)]
enum Position {
    Start,
    After(String),
    Offset(u64),
    Page(u64),
}

impl Position {
    fn encode(&self) -> String {
        match self {
            Position::Start => "start".into(),
            Position::After(cursor) => format!("after:{cursor}"),
            Position::Offset(n) => format!("offset:{n}"),
            Position::Page(n) => format!("page:{n}"),
        }
    }

    fn decode(text: &str) -> Result<Self> {
        if text == "start" {
            return Ok(Position::Start);
        }
        if let Some(cursor) = text.strip_prefix("after:") {
            return Ok(Position::After(cursor.to_string()));
        }
        let number = |prefix: &str| text.strip_prefix(prefix).and_then(|n| n.parse().ok());
        number("offset:")
            .map(Position::Offset)
            .or_else(|| number("page:").map(Position::Page))
            .ok_or_else(|| {
                ConnectorError::InvalidRequest(format!(
                    "cursor/checkpoint `{text}` was not issued by the graphql connector"
                ))
            })
    }
}

struct GraphQl;

struct GraphQlSession {
    config: Config,
}

impl Connector for GraphQl {
    type Session = GraphQlSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "graphql",
            env!("CARGO_PKG_VERSION"),
            "GraphQL APIs: configured queries, Relay, offset or page-number pagination, mutations",
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

    fn open(config_json: &str) -> Result<GraphQlSession> {
        let config: Config = config::parse(config_json)?;
        if !config.endpoint.starts_with("http://") && !config.endpoint.starts_with("https://") {
            return Err(ConnectorError::InvalidConfig(
                "field `endpoint`: must start with http:// or https://".into(),
            ));
        }
        Ok(GraphQlSession { config })
    }
}

impl Mutation {
    /// The variables of one call: the static ones, then the record as the
    /// input variable or as one variable per field.
    fn variables_for(&self, data: Value, id: Option<&str>, i: usize) -> Result<Map<String, Value>> {
        let mut variables = self.variables.clone();
        match self.bind {
            Bind::Input => {
                variables.insert(self.input_var.clone(), data);
            }
            Bind::Fields => {
                let Value::Object(fields) = data else {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "record {i}: `bind: fields` needs a JSON object, got {data}"
                    )));
                };
                variables.extend(fields);
                // A record addressed by id (an update) passes it as `$id`
                // unless its data already carries one.
                if let Some(id) = id {
                    variables
                        .entry(self.id_field.clone())
                        .or_insert_with(|| json!(id));
                }
            }
        }
        Ok(variables)
    }
}

/// The typed error for a GraphQL `errors` array.
fn graphql_errors(errors: &[Value]) -> ConnectorError {
    let messages: Vec<String> = errors
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("unknown error").to_string())
        .collect();
    let text = format!("GraphQL errors: {}", messages.join("; "));
    let code = errors
        .iter()
        .find_map(|e| e["extensions"]["code"].as_str())
        .unwrap_or("");
    match code {
        "UNAUTHENTICATED" | "FORBIDDEN" => ConnectorError::Denied(text),
        "NOT_FOUND" => ConnectorError::NotFound(text),
        "RATE_LIMITED" => ConnectorError::RateLimited(None),
        "INTERNAL_SERVER_ERROR" => ConnectorError::Unavailable(text),
        _ => ConnectorError::InvalidRequest(text),
    }
}

impl GraphQlSession {
    fn resource(&self, name: &str) -> Result<&Resource> {
        self.config.resources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.resources.keys().map(String::as_str).collect();
            ConnectorError::NotFound(format!(
                "no resource `{name}` (configured: {})",
                known.join(", ")
            ))
        })
    }

    /// POST one operation and return `data`'s parent (the whole response body).
    fn run(&self, document: &str, variables: &Map<String, Value>) -> Result<Value> {
        let mut headers: Vec<(&str, &str)> = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.push(("content-type", "application/json"));
        headers.push(("accept", "application/json"));
        let body = json!({ "query": document, "variables": variables }).to_string();
        let res = http::request(
            "POST",
            &self.config.endpoint,
            &headers,
            Some(body.as_bytes()),
        )?;
        // GraphQL servers report errors in the body, often with status 200 or 400.
        let parsed: Option<Value> = serde_json::from_slice(&res.body).ok();
        if let Some(errors) = parsed
            .as_ref()
            .and_then(|b| b["errors"].as_array())
            .filter(|e| !e.is_empty())
        {
            return Err(graphql_errors(errors));
        }
        res.error_for_status()?;
        parsed.ok_or_else(|| {
            ConnectorError::Unavailable(format!(
                "{} sent a response that is not JSON",
                self.config.endpoint
            ))
        })
    }

    fn variables(resource: &Resource, req: &FetchRequest) -> Result<Map<String, Value>> {
        let mut variables = resource.variables.clone();
        variables.extend(query::mapped_equalities(&req.filters, &resource.filters)?);
        if !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "sorting: the graphql connector does not sort".into(),
            ));
        }
        Ok(variables)
    }

    fn page(
        &self,
        resource: &Resource,
        req: &FetchRequest,
        position: &Position,
        size: u32,
    ) -> Result<(Vec<Record>, Option<Position>)> {
        let mut variables = Self::variables(resource, req)?;
        match (&resource.pagination, position) {
            (
                Pagination::Relay {
                    first_var,
                    after_var,
                    ..
                },
                _,
            ) => {
                variables.insert(first_var.clone(), json!(size));
                if let Position::After(cursor) = position {
                    variables.insert(after_var.clone(), json!(cursor));
                }
            }
            (
                Pagination::Offset {
                    offset_var,
                    limit_var,
                    ..
                },
                _,
            ) => {
                let offset = if let Position::Offset(n) = position {
                    *n
                } else {
                    0
                };
                variables.insert(offset_var.clone(), json!(offset));
                variables.insert(limit_var.clone(), json!(size));
            }
            (
                Pagination::Page {
                    page_var,
                    size_var,
                    first_page,
                    ..
                },
                _,
            ) => {
                let page = if let Position::Page(n) = position {
                    *n
                } else {
                    *first_page
                };
                variables.insert(page_var.clone(), json!(page));
                variables.insert(size_var.clone(), json!(size));
            }
            (Pagination::None, _) => {}
        }
        let body = self.run(&resource.query, &variables)?;
        let items = body
            .pointer(&resource.records_path)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                // The server answered without errors: the pointer is what is wrong.
                let keys = body["data"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                ConnectorError::InvalidConfig(format!(
                    "field `records_path` of resource `{}`: no record array at `{}` in the response (keys under /data: {keys})",
                    req.resource, resource.records_path
                ))
            })?;
        let records = items
            .iter()
            .map(|item| {
                let node = item.pointer(&resource.node_path).unwrap_or(&Value::Null);
                query::api_record(node, &req.fields, resource.id_field.as_deref())
            })
            .collect();
        let next = match &resource.pagination {
            Pagination::None => None,
            Pagination::Relay { page_info_path, .. } => {
                let info = body.pointer(page_info_path).ok_or_else(|| {
                    ConnectorError::Unavailable(format!(
                        "no pageInfo at `{page_info_path}` in the response"
                    ))
                })?;
                match (info["hasNextPage"].as_bool(), info["endCursor"].as_str()) {
                    (Some(true), Some(cursor)) => Some(Position::After(cursor.to_string())),
                    _ => None,
                }
            }
            Pagination::Offset { .. } => {
                let at = if let Position::Offset(n) = position {
                    *n
                } else {
                    0
                };
                (items.len() as u64 >= u64::from(size) && !items.is_empty())
                    .then(|| Position::Offset(at + items.len() as u64))
            }
            // A full page may have a next one; a short or empty page is the last.
            Pagination::Page { first_page, .. } => {
                let at = if let Position::Page(n) = position {
                    *n
                } else {
                    *first_page
                };
                (items.len() as u64 >= u64::from(size) && !items.is_empty())
                    .then_some(Position::Page(at + 1))
            }
        };
        Ok((records, next))
    }

    fn default_size(resource: &Resource) -> u32 {
        match &resource.pagination {
            Pagination::Relay { page_size, .. }
            | Pagination::Offset { page_size, .. }
            | Pagination::Page { page_size, .. } => *page_size,
            Pagination::None => page_size(),
        }
    }
}

impl Session for GraphQlSession {
    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        Ok(self
            .config
            .resources
            .keys()
            .map(|name| ResourceInfo {
                name: name.clone(),
                schema: None,
            })
            .collect())
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let resource = self.resource(&req.resource)?;
        let size = req
            .pagination
            .as_ref()
            .map_or(Self::default_size(resource), |p| p.page_size);
        let position = match req.pagination.as_ref() {
            Some(p) if p.cursor.is_some() => {
                Position::decode(p.cursor.as_deref().unwrap_or_default())?
            }
            Some(p) if p.offset.is_some() => match resource.pagination {
                Pagination::Offset { .. } => Position::Offset(p.offset.unwrap_or(0)),
                // An offset on a page boundary is that page; any other cannot be asked for.
                Pagination::Page { first_page, .. } => {
                    let offset = p.offset.unwrap_or(0);
                    if offset % u64::from(size.max(1)) != 0 {
                        return Err(ConnectorError::Unsupported(format!(
                            "offset {offset} on a page-numbered GraphQL resource: offsets must be multiples of the page size ({size}); use the cursor"
                        )));
                    }
                    Position::Page(first_page + offset / u64::from(size.max(1)))
                }
                _ => {
                    return Err(ConnectorError::Unsupported(
                        "offsets on a non-offset GraphQL resource; use the cursor".into(),
                    ))
                }
            },
            _ => Position::Start,
        };
        let (records, next) = self.page(resource, &req, &position, size)?;
        Ok(FetchResponse {
            records,
            total_count: None,
            next_cursor: next.map(|p| p.encode()),
        })
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let resource = self.resource(&req.resource)?.clone();
        Self::variables(&resource, &req)?;
        let position = match checkpoint.as_deref() {
            Some("end") => None,
            Some(text) => Some(Position::decode(text)?),
            None => Some(Position::Start),
        };
        Ok(Box::new(GraphQlStream {
            session: GraphQlSession {
                config: self.config.clone(),
            },
            size: Self::default_size(&resource),
            resource,
            req,
            position,
        }))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        let mutation = self.config.mutations.get(&req.operation).ok_or_else(|| {
            let known: Vec<&str> = self.config.mutations.keys().map(String::as_str).collect();
            ConnectorError::Unsupported(format!(
                "mutation `{}` (configured: {})",
                req.operation,
                known.join(", ")
            ))
        })?;
        let mut records = Vec::new();
        for (i, record) in req.records.iter().enumerate() {
            let data: Value = serde_json::from_str(&record.data).map_err(|e| {
                ConnectorError::InvalidRequest(format!("record {i}: not JSON ({e})"))
            })?;
            let variables = mutation.variables_for(data, record.id.as_deref(), i)?;
            let body = self.run(&mutation.query, &variables)?;
            let result = body
                .pointer(&mutation.result_path)
                .cloned()
                .unwrap_or(Value::Null);
            let mut builder = RecordBuilder::new(result.clone());
            if let Some(id) = result.get(&mutation.id_field).filter(|v| !v.is_null()) {
                builder = builder.id(query::value_text(id));
            } else if let Some(id) = &record.id {
                builder = builder.id(id.clone());
            }
            records.push(builder.build());
        }
        Ok(ExecuteResponse {
            affected: req.records.len() as u64,
            records,
        })
    }
}

/// One batch per page; the next page's position is the checkpoint (`end` after the last).
struct GraphQlStream {
    session: GraphQlSession,
    resource: Resource,
    req: FetchRequest,
    size: u32,
    position: Option<Position>,
}

impl RecordStream for GraphQlStream {
    fn next(&mut self, _max: u32) -> Result<Option<Batch>> {
        let Some(position) = self.position.take() else {
            return Ok(None);
        };
        let (records, next) = self
            .session
            .page(&self.resource, &self.req, &position, self.size)?;
        let checkpoint = next
            .as_ref()
            .map_or_else(|| "end".to_string(), Position::encode);
        self.position = next;
        if records.is_empty() && self.position.is_none() {
            return Ok(None);
        }
        Ok(Some(Batch {
            records,
            checkpoint: Some(checkpoint),
        }))
    }
}

sluice_sdk::export_connector!(GraphQl);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
