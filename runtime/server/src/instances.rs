//! `/v1/instances`: configured connectors, their grants checked against
//! the tenant's ceiling and opened when first invoked.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use sluice::capability::files::{Mount, MountConfig};
use sluice::capability::{Ceiling, Outside};
use sluice::{Grants, GrantsConfig, Limits};

use crate::body::{self, json_response, read_json, Reply};
use crate::connectors::quota_lock;
use crate::model::{self, ConnectorMeta, Instance, Tenant};
use crate::{new_id, State};
use crate::{schema, ApiError};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceSpec {
    /// The connector: its id (sha256), or `name@version`.
    pub(crate) connector: String,
    /// A name for people; ids stay the handles.
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) config: Value,
    #[serde(default)]
    pub(crate) secrets: std::collections::BTreeMap<String, String>,
    /// Read by [`parse_grants`], so a malformed grant is `invalid_grant`.
    #[serde(default = "body::empty_object")]
    #[schemars(with = "GrantsConfig")]
    pub(crate) grants: Value,
}

/// The grants of an instance spec, parsed into the library's typed form; a
/// malformed one is a 422 `invalid_grant` naming why.
pub(crate) fn parse_grants(grants: Value) -> Result<GrantsConfig, ApiError> {
    body::typed_field(grants, "invalid_grant", "invalid grant: ")
}

pub(crate) async fn create_instance(
    state: &Arc<State>,
    tenant: &Tenant,
    req: Request<Incoming>,
) -> Reply {
    let spec: InstanceSpec = read_json(req).await?;
    check_instance_name(spec.name.as_deref())?;
    let meta = state.resolve_connector(&tenant.id, &spec.connector).await?;
    let _quota = state.store.lock(&quota_lock(&tenant.id)).await?;
    state
        .check_quota(tenant, "instances", tenant.quotas.max_instances)
        .await?;
    let instance = Instance {
        id: new_id(),
        name: spec.name,
        // Pinned to the bytes `name@version` named today: a later upload
        // under the same name changes no running instance.
        connector: meta.id.clone(),
        config: if spec.config.is_null() {
            json!({})
        } else {
            spec.config
        },
        secrets: spec.secrets,
        grants: parse_grants(spec.grants)?,
    };
    // Validate config and grants now, so a bad instance is refused at creation.
    let schema = state.config_schema(&meta)?;
    check_config(&schema, &meta, &instance.config)?;
    check_grants(state, tenant, &instance)?;
    state
        .check_stored_bytes(tenant, record_size(&instance))
        .await?;
    state
        .save(
            "instances",
            &format!("{}/{}", tenant.id, instance.id),
            &instance,
        )
        .await?;
    Ok(json_response(StatusCode::CREATED, &json!(instance.view())))
}

/// Replace an instance's config and grants; secrets are replaced only when given.
pub(crate) async fn update_instance(
    state: &Arc<State>,
    tenant: &Tenant,
    id: &str,
    req: Request<Incoming>,
) -> Reply {
    let mut current = instance(state, tenant, id).await?;
    let previous_size = record_size(&current);
    let spec: InstanceSpec = read_json(req).await?;
    check_instance_name(spec.name.as_deref())?;
    let meta = state.resolve_connector(&tenant.id, &spec.connector).await?;
    let grants = parse_grants(spec.grants)?;
    if spec.secrets.is_empty()
        && !current.secrets.is_empty()
        && SecretDestinations::of(&current.connector, &current.grants)
            != SecretDestinations::of(&meta.id, &grants)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "secrets_required",
            "this update changes where the instance's secrets are sent (http `auth`, a sql grant with a `password_secret`, an sftp grant, or the connector and sockets that `sockets.secrets` lets read them); supply `secrets` again to make it",
        ));
    }
    current.connector = meta.id.clone();
    current.name = spec.name;
    current.config = if spec.config.is_null() {
        json!({})
    } else {
        spec.config
    };
    current.grants = grants;
    if !spec.secrets.is_empty() {
        current.secrets = spec.secrets;
    }
    let schema = state.config_schema(&meta)?;
    check_config(&schema, &meta, &current.config)?;
    check_grants(state, tenant, &current)?;
    let _quota = state.store.lock(&quota_lock(&tenant.id)).await?;
    let grown = record_size(&current).saturating_sub(previous_size);
    state.check_stored_bytes(tenant, grown).await?;
    state
        .save("instances", &format!("{}/{id}", tenant.id), &current)
        .await?;
    state.forget_instance(&tenant.id, id);
    Ok(json_response(StatusCode::OK, &json!(current.view())))
}

/// A connector's config schema, compiled; one that cannot be is a 422 naming why.
pub(crate) fn compile_config_schema(
    meta: &ConnectorMeta,
) -> Result<schema::ConfigSchema, ApiError> {
    schema::ConfigSchema::compile(&meta.config_schema).map_err(|why| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config_schema",
            format!(
                "the config schema of connector `{}` cannot be used: {why}",
                meta.name
            ),
        )
    })
}

/// An instance name is for people: short, printable, one line.
pub(crate) fn check_instance_name(name: Option<&str>) -> Result<(), ApiError> {
    match name {
        Some(name) if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) => {
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "`name` must be 1 to 200 bytes of printable text",
            ))
        }
        _ => Ok(()),
    }
}

/// Bytes a record takes in the store.
pub(crate) fn record_size<T: serde::Serialize>(record: &T) -> usize {
    serde_json::to_vec(record).map_or(0, |bytes| bytes.len())
}

/// Everything that decides where the host sends an instance's secrets: its
/// http `auth` entries (origin, kind, header or query name, token URL), the
/// sql grants that take their password from a secret (URL included), the
/// sftp grants (each logs in with a secret: a password would go to whatever
/// server the URL and pinned keys name), and —
/// when the connector may read secrets (`sockets.secrets`) — the connector
/// that reads them and the socket grants it could send them through.
#[derive(PartialEq)]
pub(crate) struct SecretDestinations<'a> {
    pub(crate) auth: &'a [sluice::capability::http::auth::AuthConfig],
    pub(crate) sql: Vec<&'a sluice::capability::sql::SqlGrantConfig>,
    pub(crate) sftp: &'a [sluice::capability::sftp::SftpGrantConfig],
    pub(crate) readers: Option<(&'a str, &'a sluice::capability::sockets::SocketsConfig)>,
}

impl<'a> SecretDestinations<'a> {
    fn of(connector: &'a str, grants: &'a GrantsConfig) -> Self {
        Self {
            auth: &grants.http.auth,
            sql: grants
                .sql
                .iter()
                .filter(|grant| grant.password_secret.is_some())
                .collect(),
            sftp: &grants.sftp,
            readers: (!grants.sockets.secrets.is_empty()).then_some((connector, &grants.sockets)),
        }
    }
}

pub(crate) async fn instance(
    state: &State,
    tenant: &Tenant,
    id: &str,
) -> Result<Instance, ApiError> {
    state
        .load("instances", &format!("{}/{id}", tenant.id))
        .await?
        .ok_or_else(|| ApiError::not_found("instance", id))
}

/// Refuse a config that does not match the connector's config schema (422 naming the field).
pub(crate) fn check_config(
    schema: &schema::ConfigSchema,
    meta: &ConnectorMeta,
    config: &Value,
) -> Result<(), ApiError> {
    let problems = schema.check(config);
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_config",
        format!(
            "the config does not match the config schema of connector `{}`: {}",
            meta.name,
            problems.join("; ")
        ),
    )
    .details(json!({ "problems": problems })))
}

/// What an instance's live grants are opened from: its declared grants, the
/// secrets they name and the ceiling they were checked against. Live grants
/// are reused while this stays equal, and opened again when any part changed.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredGrants {
    pub(crate) grants: GrantsConfig,
    pub(crate) secrets: std::collections::BTreeMap<String, String>,
    pub(crate) ceiling: Ceiling,
}

impl DeclaredGrants {
    /// What `instance`'s grants are opened from now.
    pub(crate) fn of(tenant: &Tenant, instance: &Instance) -> Self {
        Self {
            grants: instance.grants.clone(),
            secrets: instance.secrets.clone(),
            ceiling: tenant.ceiling.clone(),
        }
    }

    /// Whether live grants opened from this are still `instance`'s (compared
    /// in place: nothing is copied on the invocation path).
    pub(crate) fn is_current(&self, tenant: &Tenant, instance: &Instance) -> bool {
        self.grants == instance.grants
            && self.secrets == instance.secrets
            && self.ceiling == tenant.ceiling
    }
}

/// Check an instance's grants without opening anything that leaves a trace:
/// mount directories are created only when an accepted instance is first
/// invoked, but a mount whose existing part leads outside the tenant's file
/// root (a symlink planted there) is refused now.
pub(crate) fn check_grants(
    state: &State,
    tenant: &Tenant,
    instance: &Instance,
) -> Result<(), ApiError> {
    grants_without_mounts(tenant, instance)?;
    if instance.grants.files.is_empty() {
        return Ok(());
    }
    let Some(root) = state.existing_tenant_files(&tenant.id)? else {
        return Ok(());
    };
    for mount in &instance.grants.files {
        Mount::check_beneath(&root, &mount.host).map_err(|_| mount_outside(mount))?;
    }
    Ok(())
}

/// 403 for a mount that leads outside the tenant's file root.
fn mount_outside(mount: &MountConfig) -> ApiError {
    model::outside(&Outside {
        capability: sluice::Capability::Files,
        entry: mount.host.display().to_string(),
    })
}

/// An instance's grants but its mounts: they fit the tenant's ceiling, carry
/// no password, satisfy the strict sql URL policy, and every sql and sftp
/// secret they name is given.
pub(crate) fn grants_without_mounts(
    tenant: &Tenant,
    instance: &Instance,
) -> Result<Grants, ApiError> {
    fit_ceiling(tenant, &instance.grants)?;
    let declared = GrantsConfig {
        files: Vec::new(),
        ..instance.grants.clone()
    };
    let mut grants = Grants::from_config(&declared)?;
    grants.sql.check_urls(&sql_url_policy(tenant))?;
    for (name, value) in &instance.secrets {
        grants = grants.secret(name, value);
    }
    grants.sql.check_secrets()?;
    grants.sftp.check_secrets()?;
    grants.check_socket_secrets()?;
    Ok(grants)
}

/// The grants fit the tenant's ceiling, and no sql URL carries a password
/// (grants are shown back; a password belongs in the secrets).
pub(crate) fn fit_ceiling(tenant: &Tenant, grants: &GrantsConfig) -> Result<(), ApiError> {
    if grants.sql.iter().any(|grant| grant.url.has_password()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "secret_in_grant",
            "a sql grant URL must not carry a password (grants are shown back); put it in the instance's `secrets` and name it with `password_secret`",
        ));
    }
    grants
        .within(&tenant.ceiling)
        .map_err(|outside| model::outside(&outside))
}

/// What sql grant URLs may name on a multi-tenant server.
pub(crate) fn sql_url_policy(tenant: &Tenant) -> sluice::capability::sql::SqlUrlPolicy {
    sluice::capability::sql::SqlUrlPolicy {
        allow_privileged_roles: tenant.ceiling.sql_privileged_roles,
        ..sluice::capability::sql::SqlUrlPolicy::STRICT
    }
}

/// Open an instance's grants: checked first; only then are its mounts
/// created and opened, beneath the tenant's root handle.
pub(crate) fn open_grants(
    state: &State,
    tenant: &Tenant,
    instance: &Instance,
) -> Result<Grants, ApiError> {
    let mut grants = grants_without_mounts(tenant, instance)?;
    if instance.grants.files.is_empty() {
        return Ok(grants);
    }
    let root = state.tenant_files(&tenant.id)?;
    for mount in &instance.grants.files {
        let opened =
            Mount::beneath(&root, &mount.host, &mount.guest, mount.mode, true).map_err(|_| {
                model::outside(&Outside {
                    capability: sluice::Capability::Files,
                    entry: mount.host.display().to_string(),
                })
            })?;
        grants.files.add(opened)?;
    }
    Ok(grants)
}

pub(crate) fn limits_of(tenant: &Tenant) -> Limits {
    Limits {
        memory_bytes: tenant.quotas.memory_mib.saturating_mul(1 << 20),
        cpu_per_call: Duration::from_millis(tenant.quotas.cpu_ms),
        wall_clock_per_call: Duration::from_millis(tenant.quotas.timeout_ms),
        ..Limits::default()
    }
}
