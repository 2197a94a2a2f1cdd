//! What the server stores: tenants, tokens, connectors, instances.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api_error::ApiError;
use crate::policy::HostPattern;

/// Per-tenant limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Connectors a tenant may upload.
    pub max_connectors: u32,
    /// Instances a tenant may create.
    pub max_instances: u32,
    /// Component bytes a tenant may keep uploaded, MiB (all its connectors together).
    pub max_stored_mib: usize,
    /// Invocations running at once (more get 429).
    pub max_concurrent: u32,
    /// Memory per invocation, MiB.
    pub memory_mib: usize,
    /// CPU per call, ms.
    pub cpu_ms: u64,
    /// Wall clock per call, ms.
    pub timeout_ms: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_connectors: 20,
            max_instances: 50,
            max_stored_mib: 256,
            max_concurrent: 8,
            memory_mib: 128,
            cpu_ms: 5_000,
            timeout_ms: 30_000,
        }
    }
}

/// The egress a tenant's instances may be granted, at most.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Ceiling {
    /// HTTP origins (`scheme://host[:port]`, `*.suffix` allowed).
    pub http: Vec<String>,
    /// TCP entries (`host:port`, `cidr:port`), matched exactly.
    pub tcp: Vec<String>,
    /// Database hosts sql grants may name.
    pub sql_hosts: Vec<String>,
    /// Whether instances may mount directories of the tenant's own file root.
    pub files: bool,
}

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Limits.
    pub quotas: Quotas,
    /// Egress ceiling.
    pub ceiling: Ceiling,
}

/// A stored token: only its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Token id (for revocation).
    pub id: String,
    /// Tenant it authenticates.
    pub tenant: String,
    /// SHA-256 of the token.
    pub hash: String,
}

/// An uploaded connector's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorMeta {
    /// SHA-256 of the component: the same bytes give the same id.
    pub id: String,
    /// From `describe`.
    pub name: String,
    /// From `describe`.
    pub version: String,
    /// From `describe`.
    pub description: String,
    /// JSON Schema of the config.
    pub config_schema: Value,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Size in bytes.
    pub size: usize,
    /// Bundled with the server and shared by every tenant (read-only).
    #[serde(default)]
    pub builtin: bool,
}

/// A configured connector instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    /// Id.
    pub id: String,
    /// Connector id (sha256).
    pub connector: String,
    /// Connector config.
    pub config: Value,
    /// Secret values (never returned by the API).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Grants, in the JSON form of `sluice::Grants`, inside the tenant's ceiling.
    #[serde(default)]
    pub grants: Value,
}

impl Instance {
    /// The instance as the API shows it: secrets redacted.
    pub fn view(&self) -> Value {
        let secrets: BTreeMap<&String, &str> = self.secrets.keys().map(|k| (k, "***")).collect();
        json!({
            "id": self.id,
            "connector": self.connector,
            "config": self.config,
            "secrets": secrets,
            "grants": self.grants,
        })
    }
}

fn outside(kind: &str, entry: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::FORBIDDEN,
        "grant_outside_ceiling",
        format!("{kind} grant `{entry}` is outside the tenant's egress ceiling"),
    )
    .details(json!({ "grant": entry, "capability": kind }))
}

/// Check `grants` (the JSON form) against `ceiling`, rewriting file mounts into
/// `files_root`. Returns the grants ready for `Grants::from_json`.
///
/// # Errors
///
/// `grant_outside_ceiling` naming the first grant outside it; `bad_request`
/// for malformed grants.
pub fn fit_grants(grants: &Value, ceiling: &Ceiling, files_root: &Path) -> Result<Value, ApiError> {
    let mut grants = if grants.is_null() {
        json!({})
    } else {
        grants.clone()
    };
    let object = grants
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("`grants` must be a JSON object"))?;
    if let Some(origins) = object
        .get("http")
        .and_then(|h| h.get("origins"))
        .and_then(Value::as_array)
    {
        let allowed: Vec<HostPattern> = ceiling
            .http
            .iter()
            .filter_map(|o| HostPattern::parse(o).ok())
            .collect();
        for origin in origins {
            let text = origin.as_str().unwrap_or_default();
            let pattern =
                HostPattern::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !allowed.contains(&pattern) {
                return Err(outside("http", text));
            }
        }
    }
    if let Some(sockets) = object.get("sockets") {
        for entry in sockets
            .get("tcp")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = entry.as_str().unwrap_or_default();
            if !ceiling.tcp.iter().any(|c| c == text) {
                return Err(outside("tcp", text));
            }
        }
        if sockets
            .get("udp")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty())
        {
            return Err(outside("udp", "sockets.udp"));
        }
        if sockets.get("dns") == Some(&Value::Bool(true)) {
            return Err(outside("dns", "sockets.dns"));
        }
    }
    if let Some(mounts) = object.get_mut("files").and_then(Value::as_array_mut) {
        for mount in mounts {
            let host = mount["host"].as_str().unwrap_or_default().to_string();
            let relative = Path::new(&host);
            let escapes = relative.is_absolute()
                || relative
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)));
            if !ceiling.files || escapes {
                return Err(outside("files", &host));
            }
            let path = files_root.join(relative);
            std::fs::create_dir_all(&path)
                .map_err(|e| ApiError::bad_request(format!("mount `{host}`: {e}")))?;
            // A symlink inside the root (a guest with a rw mount can make one)
            // must not lead the mount outside it.
            let resolved = path.canonicalize().ok();
            let root = files_root.canonicalize().ok();
            match (resolved, root) {
                (Some(resolved), Some(root)) if resolved.starts_with(&root) => {
                    mount["host"] = json!(resolved.display().to_string());
                }
                _ => return Err(outside("files", &host)),
            }
        }
    }
    if let Some(sql) = object.get("sql").and_then(Value::as_array) {
        for grant in sql {
            let url = grant["url"].as_str().unwrap_or_default();
            let config: tokio_postgres::Config = url
                .parse()
                .map_err(|_| ApiError::bad_request("a sql grant URL does not parse"))?;
            for host in config.get_hosts() {
                let name = match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                };
                if !ceiling.sql_hosts.contains(&name) {
                    return Err(outside("sql", &name));
                }
            }
        }
    }
    Ok(grants)
}
