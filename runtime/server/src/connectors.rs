//! `/v1/connectors` and `/v1/files` writes: uploads, checked and compiled once.

use std::sync::{Arc, PoisonError};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::body::{json_response, read_body, Reply};
use crate::instances::{compile_config_schema, limits_of};
use crate::model::{ConnectorMeta, Instance, Tenant};
use crate::{describe_meta, sha256_hex, State};
use crate::{files, ApiError};

pub(crate) async fn upload(state: &Arc<State>, tenant: &Tenant, req: Request<Incoming>) -> Reply {
    let bytes = read_body(req, state.max_upload_bytes).await?;
    let id = sha256_hex(&bytes);
    // A bundled connector is every tenant's already: the upload is that one,
    // stored nowhere and counted against nothing.
    if let Some((meta, _)) = state.builtins.get(&id) {
        return Ok(json_response(StatusCode::OK, &json!(meta)));
    }
    let key = format!("{}/{id}", tenant.id);
    // Describing an upload runs guest code: it takes one of the tenant's
    // invocation permits and runs under the tenant's limits.
    let permit = state.permit(tenant).await?;
    // Quotas are checked and the connector stored under the tenant's lock, so
    // concurrent uploads cannot all pass the same check.
    let _quota = state.store.lock(&quota_lock(&tenant.id)).await?;
    if let Some(existing) = state.load::<ConnectorMeta>("connectors", &key).await? {
        return Ok(json_response(StatusCode::OK, &json!(existing)));
    }
    state
        .check_quota(tenant, "connectors", tenant.quotas.max_connectors)
        .await?;
    let connector = state.compile(bytes.clone()).await?;
    let meta = describe_meta(&connector, false, &limits_of(tenant)).await?;
    drop(permit);
    // A schema that cannot check configs is refused with the upload, not at
    // the first instance; compiled once, it is kept for every check.
    let compiled = Arc::new(compile_config_schema(&meta)?);
    let meta_bytes = serde_json::to_vec(&meta)
        .map(|m| m.len())
        .unwrap_or_default();
    state
        .check_stored_bytes(tenant, bytes.len() + meta_bytes)
        .await?;
    // Bytes first, metadata last: a connector is listed only once it is whole.
    state.store.put("components", &key, &bytes).await?;
    state.save("connectors", &key, &meta).await?;
    state
        .connectors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.clone(), connector);
    state
        .schemas
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, compiled);
    Ok(json_response(StatusCode::CREATED, &json!(meta)))
}

/// `PUT /v1/files/{path}`: write a file of the tenant's file root, counted
/// against its stored-bytes quota.
pub(crate) async fn put_file(
    state: &Arc<State>,
    tenant: &Tenant,
    segments: &[&str],
    req: Request<Incoming>,
) -> Reply {
    files::check_enabled(tenant)?;
    let path = files::relative_path(segments)?;
    let body = read_body(req, state.max_upload_bytes).await?;
    let _quota = state.store.lock(&quota_lock(&tenant.id)).await?;
    let root = state.tenant_files(&tenant.id)?;
    let replaced = usize::try_from(files::size_of(&root, &path)).unwrap_or(usize::MAX);
    state
        .check_stored_bytes(tenant, body.len().saturating_sub(replaced))
        .await?;
    let existed = files::write(&root, &path, &body)?;
    let (status, answer) = files::written(&path, body.len(), existed);
    Ok(json_response(status, &answer))
}

/// The name of the lock a tenant's quota checks and creations run under.
pub(crate) fn quota_lock(tenant: &str) -> String {
    format!("quota/{tenant}")
}

pub(crate) async fn delete_connector(state: &State, tenant: &Tenant, id: &str) -> Reply {
    let key = format!("{}/{id}", tenant.id);
    let owned = state.store.get("connectors", &key).await?.is_some();
    if !owned && state.builtins.contains_key(id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "bundled_connector",
            format!("connector `{id}` is bundled with the server and offered to every tenant; it cannot be deleted"),
        ));
    }
    if !owned {
        return Err(ApiError::not_found("connector", id));
    }
    for instance_key in state
        .store
        .list("instances", &format!("{}/", tenant.id))
        .await?
    {
        if let Some(instance) = state.load::<Instance>("instances", &instance_key).await? {
            if instance.connector == id {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "in_use",
                    format!("connector `{id}` is used by instance `{}`", instance.id),
                ));
            }
        }
    }
    // Metadata first: a half-deleted connector is unlisted, never listed without bytes.
    state.store.delete("connectors", &key).await?;
    state.store.delete("components", &key).await?;
    state
        .connectors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(id);
    Ok(json_response(StatusCode::OK, &json!({ "deleted": id })))
}
