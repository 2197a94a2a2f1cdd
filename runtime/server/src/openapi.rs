//! The OpenAPI 3 document served at `/openapi.json`, generated from the
//! server's own request and response types (their JSON Schemas come from
//! `schemars`, which reads the same serde attributes the server parses and
//! writes with). The tests call every route it lists and validate the
//! document, so it stays true.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use super::files::FileView;
use super::model::{ConnectorMeta, InstanceView, IssuedToken, Tenant, TokenSpec, TokenView};
use crate::consumers::{ConsumerSpec, LeaseView, NextSpec, SettleSpec};
use crate::instances::InstanceSpec;
use crate::invoke::InvokeSpec;
use crate::tenants::TenantSpec;

/// A JSON Schema of one body, added to the document's components.
type BodySchema = fn(&mut SchemaGenerator) -> Schema;

/// One route of the API.
pub struct Route {
    /// Lowercase HTTP method.
    pub method: &'static str,
    /// Path template (`{name}` for a parameter).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// `none`, `admin` or `tenant`.
    pub auth: &'static str,
    /// The operation's stable id.
    pub operation_id: &'static str,
    /// The JSON request body, when it takes one.
    pub request: Option<BodySchema>,
    /// The status of success.
    pub status: u16,
    /// The success body's media type and schema.
    pub response: (&'static str, BodySchema),
}

const JSON: &str = "application/json";

/// `{"status": "..."}` of the health probes.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Status {
    status: String,
}

/// The body of every error answer.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ErrorBody {
    error: ErrorObject,
}

/// What went wrong: a stable code, a sentence, structured details.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ErrorObject {
    code: String,
    message: String,
    details: Value,
}

/// A list answer.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct List<T> {
    items: Vec<T>,
}

/// `{"deleted": id}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Deleted {
    deleted: String,
}

/// `{"revoked": id}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Revoked {
    revoked: String,
}

/// `{"healthy": true}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Health {
    healthy: bool,
}

/// What `discover` found.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Resources {
    resources: Vec<ResourceView>,
}

/// One resource and the JSON Schema of its records, when known.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ResourceView {
    name: String,
    schema: Option<Value>,
}

/// A record, as every front door writes it (`sluice::wire`).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct RecordObject {
    #[serde(default)]
    id: Option<String>,
    data: Map<String, Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// One page of `fetch`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct FetchPage {
    records: Vec<RecordObject>,
    total_count: Option<u64>,
    next_cursor: Option<String>,
}

/// What `execute` wrote.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ExecuteResult {
    affected: u64,
    records: Vec<RecordObject>,
}

/// One NDJSON line of a stream: a record, a checkpoint after each batch,
/// or the error that ended a started stream.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StreamLine {
    Record { record: RecordObject },
    Checkpoint { checkpoint: String },
    Error { error: ErrorObject },
}

/// One batch handed out by a consumer lease.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ConsumedBatch {
    records: Vec<RecordObject>,
    /// Position after this batch, when the connector has one.
    checkpoint: Option<String>,
    /// The stream ended; the lease has ended with it.
    end: bool,
}

/// `{"acked": n}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Acked {
    acked: u64,
}

/// `{"nacked": n}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Nacked {
    nacked: u64,
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A schema placed inline in an operation: OpenAPI 3.0 has no boolean
/// schemas (`true` is written `{}`); the components get the same rewrite
/// from the generator's own transforms.
fn inline(schema: Schema) -> Value {
    match schema.to_value() {
        Value::Bool(true) => json!({}),
        Value::Bool(false) => json!({ "not": {} }),
        other => other,
    }
}

/// Every route, in the order the document lists them.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        summary: "Liveness",
        auth: "none",
        operation_id: "health",
        request: None,
        status: 200,
        response: (JSON, schema::<Status>),
    },
    Route {
        method: "get",
        path: "/readyz",
        summary: "Readiness (the store answers)",
        auth: "none",
        operation_id: "ready",
        request: None,
        status: 200,
        response: (JSON, schema::<Status>),
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (admin or metrics token)",
        auth: "admin",
        operation_id: "metrics",
        request: None,
        status: 200,
        response: ("text/plain", schema::<String>),
    },
    Route {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        auth: "none",
        operation_id: "openapi",
        request: None,
        status: 200,
        response: (JSON, schema::<Value>),
    },
    Route {
        method: "post",
        path: "/v1/tenants",
        summary: "Create a tenant",
        auth: "admin",
        operation_id: "createTenant",
        request: Some(schema::<TenantSpec>),
        status: 201,
        response: (JSON, schema::<Tenant>),
    },
    Route {
        method: "get",
        path: "/v1/tenants",
        summary: "List tenants",
        auth: "admin",
        operation_id: "listTenants",
        request: None,
        status: 200,
        response: (JSON, schema::<List<Tenant>>),
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}",
        summary: "Get a tenant",
        auth: "admin",
        operation_id: "getTenant",
        request: None,
        status: 200,
        response: (JSON, schema::<Tenant>),
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}",
        summary: "Replace a tenant's name, quotas and ceiling",
        auth: "admin",
        operation_id: "replaceTenant",
        request: Some(schema::<TenantSpec>),
        status: 200,
        response: (JSON, schema::<Tenant>),
    },
    Route {
        method: "delete",
        path: "/v1/tenants/{tenant}",
        summary: "Delete a tenant",
        auth: "admin",
        operation_id: "deleteTenant",
        request: None,
        status: 200,
        response: (JSON, schema::<Deleted>),
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/tokens",
        summary: "Issue a tenant token (shown once)",
        auth: "admin",
        operation_id: "issueToken",
        request: Some(schema::<TokenSpec>),
        status: 201,
        response: (JSON, schema::<IssuedToken>),
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/tokens",
        summary: "List a tenant's tokens (names and expiry, never the tokens)",
        auth: "admin",
        operation_id: "listTokens",
        request: None,
        status: 200,
        response: (JSON, schema::<List<TokenView>>),
    },
    Route {
        method: "delete",
        path: "/v1/tenants/{tenant}/tokens/{token}",
        summary: "Revoke a tenant token",
        auth: "admin",
        operation_id: "revokeToken",
        request: None,
        status: 200,
        response: (JSON, schema::<Revoked>),
    },
    Route {
        method: "post",
        path: "/v1/connectors",
        summary:
            "Upload a connector component (raw body; 200 when the same bytes are already there)",
        auth: "tenant",
        operation_id: "uploadConnector",
        request: None,
        status: 201,
        response: (JSON, schema::<ConnectorMeta>),
    },
    Route {
        method: "get",
        path: "/v1/connectors",
        summary: "List connectors (own and bundled)",
        auth: "tenant",
        operation_id: "listConnectors",
        request: None,
        status: 200,
        response: (JSON, schema::<List<ConnectorMeta>>),
    },
    Route {
        method: "get",
        path: "/v1/connectors/{connector}",
        summary: "Get a connector",
        auth: "tenant",
        operation_id: "getConnector",
        request: None,
        status: 200,
        response: (JSON, schema::<ConnectorMeta>),
    },
    Route {
        method: "delete",
        path: "/v1/connectors/{connector}",
        summary: "Delete a connector no instance uses",
        auth: "tenant",
        operation_id: "deleteConnector",
        request: None,
        status: 200,
        response: (JSON, schema::<Deleted>),
    },
    Route {
        method: "post",
        path: "/v1/instances",
        summary: "Create an instance",
        auth: "tenant",
        operation_id: "createInstance",
        request: Some(schema::<InstanceSpec>),
        status: 201,
        response: (JSON, schema::<InstanceView>),
    },
    Route {
        method: "get",
        path: "/v1/instances",
        summary: "List instances (secrets redacted)",
        auth: "tenant",
        operation_id: "listInstances",
        request: None,
        status: 200,
        response: (JSON, schema::<List<InstanceView>>),
    },
    Route {
        method: "get",
        path: "/v1/instances/{instance}",
        summary: "Get an instance (secrets redacted)",
        auth: "tenant",
        operation_id: "getInstance",
        request: None,
        status: 200,
        response: (JSON, schema::<InstanceView>),
    },
    Route {
        method: "put",
        path: "/v1/instances/{instance}",
        summary: "Replace an instance",
        auth: "tenant",
        operation_id: "replaceInstance",
        request: Some(schema::<InstanceSpec>),
        status: 200,
        response: (JSON, schema::<InstanceView>),
    },
    Route {
        method: "delete",
        path: "/v1/instances/{instance}",
        summary: "Delete an instance",
        auth: "tenant",
        operation_id: "deleteInstance",
        request: None,
        status: 200,
        response: (JSON, schema::<Deleted>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/health",
        summary: "Check the upstream",
        auth: "tenant",
        operation_id: "checkHealth",
        request: Some(schema::<InvokeSpec>),
        status: 200,
        response: (JSON, schema::<Health>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/discover",
        summary: "List resources",
        auth: "tenant",
        operation_id: "discover",
        request: Some(schema::<InvokeSpec>),
        status: 200,
        response: (JSON, schema::<Resources>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/fetch",
        summary: "Read one page",
        auth: "tenant",
        operation_id: "fetch",
        request: Some(schema::<InvokeSpec>),
        status: 200,
        response: (JSON, schema::<FetchPage>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/execute",
        summary: "Write records",
        auth: "tenant",
        operation_id: "execute",
        request: Some(schema::<InvokeSpec>),
        status: 200,
        response: (JSON, schema::<ExecuteResult>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/consumers",
        summary: "Open a consumer lease: a session and a stream of one resource, consumed with explicit ack/nack; it ends when deleted, after its idle timeout, on an error or at the end of the stream, and what was delivered but not acked is then redelivered",
        auth: "tenant",
        operation_id: "openConsumer",
        request: Some(schema::<ConsumerSpec>),
        status: 201,
        response: (JSON, schema::<LeaseView>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/consumers/{consumer}/next",
        summary: "The next batch of a consumer lease (waits as long as the connector waits for messages; an empty batch when none came)",
        auth: "tenant",
        operation_id: "nextOfConsumer",
        request: Some(schema::<NextSpec>),
        status: 200,
        response: (JSON, schema::<ConsumedBatch>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/consumers/{consumer}/ack",
        summary: "Acknowledge delivered records by id",
        auth: "tenant",
        operation_id: "ackConsumer",
        request: Some(schema::<SettleSpec>),
        status: 200,
        response: (JSON, schema::<Acked>),
    },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/consumers/{consumer}/nack",
        summary: "Reject delivered records by id, asking for redelivery",
        auth: "tenant",
        operation_id: "nackConsumer",
        request: Some(schema::<SettleSpec>),
        status: 200,
        response: (JSON, schema::<Nacked>),
    },
    Route {
        method: "delete",
        path: "/v1/instances/{instance}/consumers/{consumer}",
        summary: "End a consumer lease now; what it delivered but did not ack is redelivered",
        auth: "tenant",
        operation_id: "closeConsumer",
        request: None,
        status: 200,
        response: (JSON, schema::<Deleted>),
    },
    Route { method: "get", path: "/v1/files", summary: "List the tenant's files (needs ceiling.files)", auth: "tenant", operation_id: "listFiles", request: None, status: 200, response: (JSON, schema::<List<FileView>>) },
    Route { method: "put", path: "/v1/files/{path}", summary: "Write a file of the tenant's file root (raw body; 201 new, 200 replaced; the path may have several segments)", auth: "tenant", operation_id: "putFile", request: None, status: 201, response: (JSON, schema::<FileView>) },
    Route { method: "get", path: "/v1/files/{path}", summary: "Read a file of the tenant's file root", auth: "tenant", operation_id: "getFile", request: None, status: 200, response: ("application/octet-stream", schema::<String>) },
    Route { method: "delete", path: "/v1/files/{path}", summary: "Delete a file of the tenant's file root", auth: "tenant", operation_id: "deleteFile", request: None, status: 200, response: (JSON, schema::<Deleted>) },
    Route {
        method: "post",
        path: "/v1/instances/{instance}/stream",
        summary: "Stream NDJSON records and checkpoints",
        auth: "tenant",
        operation_id: "stream",
        request: Some(schema::<InvokeSpec>),
        status: 200,
        response: ("application/x-ndjson", schema::<StreamLine>),
    },
];

/// The methods the route table has for a request path (as segments), with
/// HEAD wherever GET is; empty when no route has that path.
pub fn allowed_methods(parts: &[&str]) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = Vec::new();
    for Route {
        method,
        path: template,
        ..
    } in ROUTES
    {
        let segments: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
        let matches = segments.len() == parts.len()
            && segments
                .iter()
                .zip(parts)
                .all(|(t, p)| t.starts_with('{') || t == p);
        if !matches {
            continue;
        }
        let name = match *method {
            "get" => "GET",
            "post" => "POST",
            "put" => "PUT",
            "delete" => "DELETE",
            _ => continue,
        };
        if !methods.contains(&name) {
            methods.push(name);
        }
    }
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    const ORDER: [&str; 5] = ["GET", "HEAD", "POST", "PUT", "DELETE"];
    methods.sort_by_key(|m| ORDER.iter().position(|o| o == m));
    methods
}

/// The document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = inline(schema::<ErrorBody>(&mut generator));
    let mut paths = Map::new();
    for route in ROUTES {
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let (media, response) = route.response;
        let response = inline(response(&mut generator));
        let mut operation = json!({
            "operationId": route.operation_id,
            "summary": route.summary,
            "parameters": parameters,
            "responses": {
                route.status.to_string(): {
                    "description": "success",
                    "content": { media: { "schema": response } }
                },
                "default": { "description": "error", "content": { JSON: { "schema": error } } }
            }
        });
        if let Some(request) = route.request {
            operation["requestBody"] = json!({
                // Invocations and token issuing take an empty body too.
                "required": !matches!(
                    route.operation_id,
                    "issueToken" | "checkHealth" | "discover" | "fetch" | "execute" | "stream"
                ),
                "content": { JSON: { "schema": inline(request(&mut generator)) } }
            });
        } else if let Some(media) = match route.operation_id {
            "uploadConnector" => Some("application/wasm"),
            "putFile" => Some("application/octet-stream"),
            _ => None,
        } {
            operation["requestBody"] = json!({
                "required": true,
                "content": { media: { "schema": { "type": "string", "format": "binary" } } }
            });
        }
        if route.auth != "none" {
            operation["security"] = json!([{ route.auth: [] }]);
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "sluice", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "admin": { "type": "http", "scheme": "bearer" },
                "tenant": { "type": "http", "scheme": "bearer" }
            },
            "schemas": generator.take_definitions(true)
        }
    })
}
