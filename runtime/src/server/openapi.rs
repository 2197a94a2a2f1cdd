//! The OpenAPI 3 document served at `/openapi.json`. The tests call every
//! route it lists, so it stays true.

use serde_json::{json, Value};

/// `(method, path template, summary, auth)` of every route.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/healthz", "Liveness", "none"),
    ("get", "/readyz", "Readiness (the store answers)", "none"),
    (
        "get",
        "/metrics",
        "Prometheus metrics (admin or metrics token)",
        "admin",
    ),
    ("get", "/openapi.json", "This document", "none"),
    ("post", "/v1/tenants", "Create a tenant", "admin"),
    ("get", "/v1/tenants", "List tenants", "admin"),
    ("get", "/v1/tenants/{tenant}", "Get a tenant", "admin"),
    (
        "put",
        "/v1/tenants/{tenant}",
        "Replace a tenant's name, quotas and ceiling",
        "admin",
    ),
    ("delete", "/v1/tenants/{tenant}", "Delete a tenant", "admin"),
    (
        "post",
        "/v1/tenants/{tenant}/tokens",
        "Issue a tenant token (shown once)",
        "admin",
    ),
    (
        "get",
        "/v1/tenants/{tenant}/tokens",
        "List a tenant's tokens (names and expiry, never the tokens)",
        "admin",
    ),
    (
        "delete",
        "/v1/tenants/{tenant}/tokens/{token}",
        "Revoke a tenant token",
        "admin",
    ),
    (
        "post",
        "/v1/connectors",
        "Upload a connector component (raw body)",
        "tenant",
    ),
    (
        "get",
        "/v1/connectors",
        "List connectors (own and bundled)",
        "tenant",
    ),
    (
        "get",
        "/v1/connectors/{connector}",
        "Get a connector",
        "tenant",
    ),
    (
        "delete",
        "/v1/connectors/{connector}",
        "Delete a connector no instance uses",
        "tenant",
    ),
    ("post", "/v1/instances", "Create an instance", "tenant"),
    (
        "get",
        "/v1/instances",
        "List instances (secrets redacted)",
        "tenant",
    ),
    (
        "get",
        "/v1/instances/{instance}",
        "Get an instance (secrets redacted)",
        "tenant",
    ),
    (
        "put",
        "/v1/instances/{instance}",
        "Replace an instance",
        "tenant",
    ),
    (
        "delete",
        "/v1/instances/{instance}",
        "Delete an instance",
        "tenant",
    ),
    (
        "post",
        "/v1/instances/{instance}/health",
        "Check the upstream",
        "tenant",
    ),
    (
        "post",
        "/v1/instances/{instance}/discover",
        "List resources",
        "tenant",
    ),
    (
        "post",
        "/v1/instances/{instance}/fetch",
        "Read one page",
        "tenant",
    ),
    (
        "post",
        "/v1/instances/{instance}/execute",
        "Write records",
        "tenant",
    ),
    (
        "post",
        "/v1/instances/{instance}/stream",
        "Stream NDJSON records and checkpoints",
        "tenant",
    ),
];

/// The methods the route table has for a request path (as segments), with
/// HEAD wherever GET is; empty when no route has that path.
pub fn allowed_methods(parts: &[&str]) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = Vec::new();
    for (method, template, _, _) in ROUTES {
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
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let mut paths = serde_json::Map::new();
    for (method, path, summary, auth) in ROUTES {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut operation = json!({
            "summary": summary,
            "parameters": parameters,
            "responses": {
                "200": { "description": "success" },
                "default": { "description": "error", "content": { "application/json": { "schema": error } } }
            }
        });
        if *auth != "none" {
            operation["security"] = json!([{ (*auth).to_string(): [] }]);
        }
        let entry = paths
            .entry((*path).to_string())
            .or_insert_with(|| json!({}));
        entry[*method] = operation;
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
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message", "details"],
                        "properties": { "code": { "type": "string" }, "message": { "type": "string" }, "details": { "type": "object" } } } }
                }
            }
        }
    })
}
