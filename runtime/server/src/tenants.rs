//! `/v1/tenants`: the admin's tenants, their quotas and egress ceilings.

use std::sync::{Arc, PoisonError};

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use sluice::capability::Ceiling;

use crate::body::{self, json_response, read_json, read_optional_json, unix_now, Reply};
use crate::model::{self, Quotas, Tenant, TokenRecord, TokenSpec};
use crate::ApiError;
use crate::{new_id, new_token, sha256_hex, State};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantSpec {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) quotas: Quotas,
    /// Read by [`parse_ceiling`], so a bad entry is `invalid_ceiling`.
    #[serde(default = "body::empty_object")]
    #[schemars(with = "Ceiling")]
    pub(crate) ceiling: Value,
}

/// The ceiling of a tenant spec, each entry parsed into a typed rule; one
/// that can match nothing is a 422 `invalid_ceiling` naming it.
pub(crate) fn parse_ceiling(ceiling: Value) -> Result<Ceiling, ApiError> {
    body::typed_field(ceiling, "invalid_ceiling", "")
}

pub(crate) async fn admin(
    state: &Arc<State>,
    method: Method,
    rest: &[String],
    req: Request<Incoming>,
) -> Reply {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (method, rest.as_slice()) {
        (Method::POST, []) => {
            let spec: TenantSpec = read_json(req).await?;
            let tenant = Tenant {
                id: new_id(),
                name: spec.name,
                quotas: spec.quotas,
                ceiling: parse_ceiling(spec.ceiling)?,
            };
            state.save("tenants", &tenant.id, &tenant).await?;
            Ok(json_response(StatusCode::CREATED, &json!(tenant)))
        }
        (Method::GET, []) => {
            let mut tenants: Vec<Tenant> = Vec::new();
            for id in state.store.list("tenants", "").await? {
                if let Some(tenant) = state.load("tenants", &id).await? {
                    tenants.push(tenant);
                }
            }
            Ok(json_response(StatusCode::OK, &json!({ "items": tenants })))
        }
        (Method::GET, [id]) => {
            let tenant: Tenant = state
                .load("tenants", id)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant", id))?;
            Ok(json_response(StatusCode::OK, &json!(tenant)))
        }
        (Method::PUT, [id]) => {
            let mut tenant: Tenant = state
                .load("tenants", id)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant", id))?;
            let spec: TenantSpec = read_json(req).await?;
            tenant.ceiling = parse_ceiling(spec.ceiling)?;
            tenant.name = spec.name;
            tenant.quotas = spec.quotas;
            state.save("tenants", id, &tenant).await?;
            state
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(*id);
            Ok(json_response(StatusCode::OK, &json!(tenant)))
        }
        (Method::DELETE, [id]) => {
            if !state.store.delete("tenants", id).await? {
                return Err(ApiError::not_found("tenant", id));
            }
            delete_tenant_objects(state, id).await?;
            Ok(json_response(StatusCode::OK, &json!({ "deleted": id })))
        }
        (Method::POST, [id, "tokens"]) => {
            state
                .load::<Tenant>("tenants", id)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant", id))?;
            let spec: TokenSpec = read_optional_json(req).await?.unwrap_or_default();
            if spec.expires_in_s == Some(0) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_token_spec",
                    "`expires_in_s` must be at least 1 (leave it out for a token that does not expire)",
                ));
            }
            if spec.name.as_ref().is_some_and(|n| n.len() > 200) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_token_spec",
                    "`name` is longer than 200 bytes",
                ));
            }
            let token = new_token();
            let now = unix_now();
            let record = TokenRecord {
                id: new_id(),
                tenant: id.to_string(),
                hash: sha256_hex(token.as_bytes()),
                name: spec.name,
                created_at: now,
                expires_at: spec.expires_in_s.map(|s| now.saturating_add(s)),
            };
            state.save("tokens", &record.hash, &record).await?;
            state
                .save("token-ids", &format!("{id}/{}", record.id), &record)
                .await?;
            let issued = model::IssuedToken {
                view: record.view(),
                token,
            };
            Ok(json_response(StatusCode::CREATED, &json!(issued)))
        }
        (Method::GET, [id, "tokens"]) => {
            state
                .load::<Tenant>("tenants", id)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant", id))?;
            let mut tokens = Vec::new();
            for key in state.store.list("token-ids", &format!("{id}/")).await? {
                if let Some(record) = state.load::<TokenRecord>("token-ids", &key).await? {
                    tokens.push(record);
                }
            }
            tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            let items: Vec<model::TokenView> = tokens.iter().map(TokenRecord::view).collect();
            Ok(json_response(StatusCode::OK, &json!({ "items": items })))
        }
        (Method::DELETE, [id, "tokens", token_id]) => {
            let record: TokenRecord = state
                .load("token-ids", &format!("{id}/{token_id}"))
                .await?
                .ok_or_else(|| ApiError::not_found("token", token_id))?;
            state.store.delete("tokens", &record.hash).await?;
            state
                .store
                .delete("token-ids", &format!("{id}/{token_id}"))
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "revoked": token_id }),
            ))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            "no such admin route",
        )),
    }
}

/// Everything a deleted tenant owned: tokens, instances (and their host
/// state), connectors and their bytes, and its file root. The tenant record
/// goes first, so its tokens stop working before the rest is removed.
pub(crate) async fn delete_tenant_objects(state: &State, tenant: &str) -> Result<(), ApiError> {
    let prefix = format!("{tenant}/");
    for key in state.store.list("token-ids", &prefix).await? {
        if let Some(record) = state.load::<TokenRecord>("token-ids", &key).await? {
            state.store.delete("tokens", &record.hash).await?;
        }
        state.store.delete("token-ids", &key).await?;
    }
    for key in state.store.list("instances", &prefix).await? {
        state.store.delete("instances", &key).await?;
        if let Some((_, instance)) = key.split_once('/') {
            state.forget_instance(tenant, instance);
        }
    }
    for key in state.store.list("connectors", &prefix).await? {
        state.store.delete("connectors", &key).await?;
        state.store.delete("components", &key).await?;
    }
    state
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(tenant);
    let files = state.files_root_path.join(tenant);
    match tokio::fs::remove_dir_all(&files).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(sluice::Error::Io {
            path: files.display().to_string(),
            source,
        }
        .into()),
    }
}
