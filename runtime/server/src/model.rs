//! What the server stores: tenants, tokens, connectors, instances.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api_error::ApiError;
use sluice::capability::files::is_plain_relative;
use sluice::policy::{HostPattern, MountMode, SqlMode};

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

/// The egress a tenant's instances may be granted, at most.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Ceiling {
    /// HTTP origins (`scheme://host[:port]`, `*.suffix` allowed).
    pub http: Vec<String>,
    /// Whether http grants may let granted names resolve to loopback, private
    /// or link-local addresses (`allow_private_addresses`). Off by default.
    pub http_private_addresses: bool,
    /// TCP entries (`host:port`, `cidr:port`), matched exactly.
    pub tcp: Vec<String>,
    /// Database hosts sql grants may name: `host` (any port) or `host:port`
    /// (`[v6]:port`), with any database and role there (coarse: prefer `sql`).
    pub sql_hosts: Vec<String>,
    /// Databases sql grants may name, each with its roles and the highest mode.
    pub sql: Vec<SqlTarget>,
    /// Whether sql grants may connect as a privileged role (a superuser, or a
    /// member of `pg_execute_server_program` / `pg_write_server_files` /
    /// `pg_read_server_files`, or with `BYPASSRLS` / `REPLICATION`). Off by
    /// default: such a role can reach the database server's files and shell.
    pub sql_privileged_roles: bool,
    /// Whether instances may mount directories of the tenant's own file root.
    pub files: bool,
}

impl Ceiling {
    /// Refuse an entry that cannot match anything (a typo would otherwise
    /// grant nothing, silently): 422 naming the entry and the form to write.
    ///
    /// # Errors
    ///
    /// [`ApiError`] 422 `invalid_ceiling`.
    pub fn check(&self) -> Result<(), ApiError> {
        let bad = |field: &str, entry: &str, why: String| {
            Err(ApiError::new(
                http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_ceiling",
                format!("ceiling `{field}` entry `{entry}` can match nothing: {why}"),
            ))
        };
        for origin in &self.http {
            if let Err(e) = HostPattern::parse(origin) {
                return bad("http", origin, e.to_string());
            }
        }
        for entry in &self.tcp {
            let why = match sluice::capability::sockets::split_entry(entry) {
                Ok((_, Some(0))) => "port 0".to_string(),
                Ok(_) => continue,
                Err(why) => why,
            };
            return bad(
                "tcp",
                entry,
                format!("{why}; write `host:port`, `cidr:port` or `host:*`"),
            );
        }
        for entry in &self.sql_hosts {
            let checked =
                if entry.contains(':') && !entry.starts_with('[') && entry.matches(':').count() > 1
                {
                    Err("an IPv6 address goes in brackets, `[::1]:5432`".to_string())
                } else if entry.contains(':') {
                    match sluice::capability::sockets::split_entry(entry) {
                        Ok((_, None | Some(0))) => Err("a database port is a number from 1".into()),
                        Ok((host, _)) if host.contains(['/', '@', ' ']) => {
                            Err("not a host name or address".into())
                        }
                        Ok(_) => Ok(()),
                        Err(why) => Err(why),
                    }
                } else if entry.is_empty() || entry.contains(['/', '@', ' ']) {
                    Err("not a host name or address".to_string())
                } else {
                    Ok(())
                };
            if let Err(why) = checked {
                return bad(
                    "sql_hosts",
                    entry,
                    format!("{why}; write `host` or `host:port`"),
                );
            }
        }
        for target in &self.sql {
            let shown = format!("{}:{}", target.host, target.port);
            if target.host.is_empty() || target.port == 0 {
                return bad(
                    "sql",
                    &shown,
                    "a target needs a host and a port from 1".into(),
                );
            }
            if target.databases.is_empty() || target.roles.is_empty() {
                return bad(
                    "sql",
                    &shown,
                    "`databases` and `roles` each need at least one name (`*` for any)".into(),
                );
            }
        }
        Ok(())
    }
}

/// One database a tenant's sql grants may use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlTarget {
    /// Host name or address, as the grant URL writes it.
    pub host: String,
    /// Port (default 5432).
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Databases allowed (`*` for any).
    pub databases: Vec<String>,
    /// Roles (user names) allowed (`*` for any).
    pub roles: Vec<String>,
    /// The highest mode a grant may ask for (default `read-only`).
    #[serde(default)]
    #[schemars(with = "SqlModeName")]
    pub mode: SqlMode,
}

/// `read-only` or `read-write`, as a sql target's `mode` is written.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)] // describes the JSON form of `SqlMode` only
enum SqlModeName {
    ReadOnly,
    ReadWrite,
}

fn default_pg_port() -> u16 {
    5432
}

impl SqlTarget {
    fn admits(&self, host: &str, port: u16, database: &str, role: &str, mode: SqlMode) -> bool {
        let listed = |list: &[String], name: &str| list.iter().any(|n| n == "*" || n == name);
        self.host == host
            && self.port == port
            && listed(&self.databases, database)
            && listed(&self.roles, role)
            && mode <= self.mode
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
    /// Egress ceiling.
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
    /// Grants, in the JSON form of `sluice::Grants`, inside the tenant's ceiling.
    #[serde(default)]
    pub grants: Value,
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
    /// Grants, in the JSON form of `sluice::Grants` (a sql URL's password redacted).
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
        let mut grants = self.grants.clone();
        if let Some(sql) = grants.get_mut("sql").and_then(Value::as_array_mut) {
            for grant in sql {
                if let Some(url) = grant.get_mut("url") {
                    if let Some(redacted) = url.as_str().and_then(redacted_url) {
                        *url = json!(redacted);
                    }
                }
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

/// `url` shown without its password (`postgres://user:***@host:port/db`),
/// when it has one.
fn redacted_url(url: &str) -> Option<String> {
    let config: tokio_postgres::Config = url.parse().ok()?;
    config.get_password()?;
    let target = sluice::capability::sql::target_of(&config);
    let (user, place) = target.split_once('@')?;
    Some(format!("postgres://{user}:***@{place}"))
}

pub(crate) fn outside(kind: &str, entry: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::FORBIDDEN,
        "grant_outside_ceiling",
        format!("{kind} grant `{entry}` is outside the tenant's egress ceiling"),
    )
    .details(json!({ "grant": entry, "capability": kind }))
}

/// A file mount as a tenant asks for it: `host` is relative to the tenant's file root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantMount {
    /// Directory beneath the tenant's file root (plain names, no `..`).
    pub host: String,
    /// Absolute path the guest sees.
    pub guest: String,
    /// Access mode.
    #[serde(default)]
    pub mode: MountMode,
}

/// Grants checked against a ceiling: the JSON for `Grants::from_json`
/// without the mounts, and the mounts, still to be opened beneath the
/// tenant's file root.
#[derive(Debug)]
pub struct FittedGrants {
    /// Everything but `files`.
    pub json: Value,
    /// The file mounts.
    pub mounts: Vec<TenantMount>,
}

/// Check `grants` (the JSON form) against `ceiling`. Nothing is created or
/// opened here: mounts are only checked to be plain relative paths, and are
/// opened beneath the tenant's root handle by the caller.
///
/// # Errors
///
/// `grant_outside_ceiling` naming the first grant outside it; `bad_request`
/// for malformed grants.
pub fn fit_grants(grants: &Value, ceiling: &Ceiling) -> Result<FittedGrants, ApiError> {
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
    let private = object
        .get("http")
        .and_then(|h| h.get("allow_private_addresses"))
        .is_some_and(|v| v != &Value::Bool(false));
    if private && !ceiling.http_private_addresses {
        return Err(outside("http", "allow_private_addresses"));
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
    let mounts = match object.remove("files") {
        None | Some(Value::Null) => Vec::new(),
        Some(files) => serde_json::from_value::<Vec<TenantMount>>(files)
            .map_err(|e| ApiError::bad_request(format!("grants `files`: {e}")))?,
    };
    for mount in &mounts {
        if !ceiling.files || !is_plain_relative(Path::new(&mount.host)) {
            return Err(outside("files", &mount.host));
        }
    }
    if let Some(sql) = object.get("sql").and_then(Value::as_array) {
        for grant in sql {
            check_sql_grant(grant, ceiling)?;
        }
    }
    Ok(FittedGrants {
        json: grants,
        mounts,
    })
}

/// A sql grant fits when its one host is in `sql_hosts`, or when host, port,
/// database, role and mode all fit one of the ceiling's `sql` targets.
fn check_sql_grant(grant: &Value, ceiling: &Ceiling) -> Result<(), ApiError> {
    let url = grant["url"].as_str().unwrap_or_default();
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|_| ApiError::bad_request("a sql grant URL does not parse"))?;
    if config.get_password().is_some() {
        return Err(ApiError::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            "secret_in_grant",
            "a sql grant URL must not carry a password (grants are shown back); put it in the instance's `secrets` and name it with `password_secret`",
        ));
    }
    let mode: SqlMode = serde_json::from_value(
        grant.get("mode").cloned().unwrap_or(json!("read-only")),
    )
    .map_err(|_| ApiError::bad_request("a sql grant `mode` is `read-only` or `read-write`"))?;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    let role = config.get_user().unwrap_or_default();
    for host in config.get_hosts() {
        let name = match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        let with_port = if name.contains(':') {
            format!("[{name}]:{port}")
        } else {
            format!("{name}:{port}")
        };
        let fits = ceiling
            .sql_hosts
            .iter()
            .any(|h| h == &name || h == &with_port)
            || ceiling
                .sql
                .iter()
                .any(|t| t.admits(&name, port, database, role, mode));
        if !fits {
            let shown = format!(
                "{role}@{name}:{port}/{database} ({})",
                if mode == SqlMode::ReadOnly {
                    "read-only"
                } else {
                    "read-write"
                }
            );
            return Err(outside("sql", &shown));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_password_in_a_sql_url_is_never_shown() {
        let shown = redacted_url("postgres://app:s3cret@db:5432/app").unwrap();
        assert_eq!(shown, "postgres://app:***@db:5432/app");
        let shown = redacted_url("host=db user=app password=s3cret dbname=app").unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(redacted_url("postgres://app@db/app"), None);
    }
}
