//! What the server stores: tenants, tokens, connectors, instances.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api_error::ApiError;
use sluice::capability::{Ceiling, Outside};
use sluice::GrantsConfig;

/// Per-tenant limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
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

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tenant {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Limits.
    pub quotas: Quotas,
    /// Egress ceiling: its entries are parsed into typed rules whenever a
    /// tenant is read, so a stored tenant can only hold a valid one.
    pub ceiling: Ceiling,
}

/// A stored token: only its hash, and what lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Token id (for revocation).
    pub id: String,
    /// Tenant it authenticates.
    pub tenant: String,
    /// SHA-256 of the token.
    pub hash: String,
    /// What the token is for, as its creator named it.
    #[serde(default)]
    pub name: Option<String>,
    /// When it was created, in seconds since the Unix epoch (0 for tokens
    /// created before this was recorded).
    #[serde(default)]
    pub created_at: u64,
    /// When it stops working, in seconds since the Unix epoch; never when absent.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// A token as the API lists it: never the token or its hash.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TokenView {
    /// Token id (for revocation).
    pub id: String,
    /// What the token is for.
    pub name: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Seconds since the Unix epoch; never expires when null.
    pub expires_at: Option<u64>,
}

/// A token just issued: shown once.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct IssuedToken {
    /// What is listed of it.
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token; it is not stored, only its hash.
    pub token: String,
}

impl TokenRecord {
    /// The token as listed: never its hash.
    pub fn view(&self) -> TokenView {
        TokenView {
            id: self.id.clone(),
            name: self.name.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }

    /// Whether the token has expired at `now` (seconds since the Unix epoch).
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// `POST /v1/tenants/{id}/tokens`: an optional name and lifetime.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// What the token is for.
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds until it stops working; it never does when absent.
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// An uploaded connector's metadata.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// A name for people, when given.
    #[serde(default)]
    pub name: Option<String>,
    /// Connector id (sha256).
    pub connector: String,
    /// Connector config.
    pub config: Value,
    /// Secret values (never returned by the API).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Grants, inside the tenant's ceiling (mounts beneath its file root).
    #[serde(default, deserialize_with = "null_as_default")]
    pub grants: GrantsConfig,
}

/// `null` (as records stored before grants were typed may hold) as the default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstanceView {
    /// Id.
    pub id: String,
    /// A name for people, when given.
    pub name: Option<String>,
    /// Connector id (sha256).
    pub connector: String,
    /// Connector config.
    pub config: Value,
    /// Secret names, each shown as `***`.
    pub secrets: BTreeMap<String, String>,
    /// Grants (a sql URL's password redacted).
    #[schemars(with = "GrantsConfig")]
    pub grants: Value,
}

impl Instance {
    /// The instance as the API shows it: secrets redacted, and so is a
    /// password in a sql grant URL (records stored before such URLs were
    /// refused may hold one).
    pub fn view(&self) -> InstanceView {
        let secrets: BTreeMap<String, String> = self
            .secrets
            .keys()
            .map(|k| (k.clone(), "***".to_string()))
            .collect();
        let mut grants = json!(self.grants);
        if let Some(sql) = grants.get_mut("sql").and_then(Value::as_array_mut) {
            for (shown, grant) in sql.iter_mut().zip(&self.grants.sql) {
                shown["url"] = json!(grant.url.redacted());
            }
        }
        InstanceView {
            id: self.id.clone(),
            name: self.name.clone(),
            connector: self.connector.clone(),
            config: self.config.clone(),
            secrets,
            grants,
        }
    }
}

/// 403 for a grant outside the tenant's ceiling, naming it.
pub(crate) fn outside(outside: &Outside) -> ApiError {
    ApiError::new(
        http::StatusCode::FORBIDDEN,
        "grant_outside_ceiling",
        outside.to_string(),
    )
    .details(json!({ "grant": outside.entry, "capability": outside.capability.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(grants: Value) -> Instance {
        serde_json::from_value(json!({
            "id": "i", "connector": "c", "config": {}, "grants": grants
        }))
        .unwrap()
    }

    #[test]
    fn a_password_in_a_sql_url_is_never_shown() {
        let sql = |url: &str| json!({ "sql": [{ "name": "db", "url": url }] });
        let shown = instance(sql("postgres://app:s3cret@db:5432/app")).view();
        assert_eq!(
            shown.grants["sql"][0]["url"],
            "postgres://app:***@db:5432/app"
        );
        let shown = instance(sql("host=db user=app password=s3cret dbname=app")).view();
        assert!(
            !shown.grants.to_string().contains("s3cret"),
            "{}",
            shown.grants
        );
        let shown = instance(sql("postgres://app@db/app")).view();
        assert_eq!(shown.grants["sql"][0]["url"], "postgres://app@db/app");
    }

    #[test]
    fn a_record_stored_with_null_grants_reads_as_no_grants() {
        assert_eq!(instance(Value::Null).grants, GrantsConfig::default());
    }
}
