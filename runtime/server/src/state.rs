//! What the server keeps between requests, and the checks every route shares
//! (quotas, permits, instance grants, loading and saving records).

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Semaphore;

use sluice::{Connector, Grants};

use crate::body::unix_now;
use crate::instances::{compile_config_schema, open_grants, DeclaredGrants};
use crate::model::{ConnectorMeta, Instance, Tenant, TokenRecord};
use crate::{files, schema, ApiError, Error};
use crate::{sha256_hex, State};

impl State {
    pub(crate) async fn load<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.store.get(kind, key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("corrupt {kind} `{key}`: {e}"),
                )
            }),
        }
    }

    pub(crate) async fn save<T: serde::Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        Ok(self.store.put(kind, key, &bytes).await?)
    }

    pub(crate) fn is_admin(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| sha256_hex(t.as_bytes()) == self.admin_hash)
    }

    pub(crate) fn is_metrics_reader(&self, token: Option<&str>) -> bool {
        match (token, &self.metrics_hash) {
            (Some(token), Some(hash)) => sha256_hex(token.as_bytes()) == *hash,
            _ => false,
        }
    }

    pub(crate) async fn tenant_of(&self, token: Option<&str>) -> Result<Tenant, ApiError> {
        let token = token.ok_or_else(ApiError::unauthorized)?;
        let record: TokenRecord = self
            .load("tokens", &sha256_hex(token.as_bytes()))
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if record.expired(unix_now()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "the bearer token has expired; ask an admin for a new one",
            ));
        }
        self.load("tenants", &record.tenant)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }

    /// The connector a reference names for `tenant`: an id (sha256), or
    /// `name@version` among its uploads and the bundled connectors.
    pub(crate) async fn resolve_connector(
        &self,
        tenant: &str,
        reference: &str,
    ) -> Result<ConnectorMeta, ApiError> {
        let Some((name, version)) = reference.split_once('@') else {
            return self
                .connector_meta(tenant, reference)
                .await?
                .ok_or_else(|| ApiError::not_found("connector", reference));
        };
        let mut candidates: Vec<ConnectorMeta> = self
            .builtins
            .values()
            .map(|(meta, _)| meta.clone())
            .filter(|meta| meta.name == name)
            .collect();
        for key in self.store.list("connectors", &format!("{tenant}/")).await? {
            if let Some(meta) = self.load::<ConnectorMeta>("connectors", &key).await? {
                if meta.name == name && candidates.iter().all(|c| c.id != meta.id) {
                    candidates.push(meta);
                }
            }
        }
        let mut matching: Vec<ConnectorMeta> = candidates
            .iter()
            .filter(|meta| meta.version == version)
            .cloned()
            .collect();
        match matching.len() {
            1 => Ok(matching.remove(0)),
            0 => {
                let mut versions: Vec<&str> =
                    candidates.iter().map(|c| c.version.as_str()).collect();
                versions.sort_unstable();
                versions.dedup();
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    if versions.is_empty() {
                        format!("no connector named `{name}`")
                    } else {
                        format!(
                            "no connector `{name}` at version `{version}` (versions: {})",
                            versions.join(", ")
                        )
                    },
                ))
            }
            _ => {
                let ids: Vec<&str> = matching.iter().map(|m| m.id.as_str()).collect();
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ambiguous_connector",
                    format!(
                        "`{reference}` names {} different uploads; use an id: {}",
                        ids.len(),
                        ids.join(", ")
                    ),
                )
                .details(json!({ "ids": ids })))
            }
        }
    }

    /// The compiled config schema of a connector, compiled on first use.
    pub(crate) fn config_schema(
        &self,
        meta: &ConnectorMeta,
    ) -> Result<Arc<schema::ConfigSchema>, ApiError> {
        if let Some(compiled) = self
            .schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&meta.id)
        {
            return Ok(Arc::clone(compiled));
        }
        let compiled = Arc::new(compile_config_schema(meta)?);
        self.schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(meta.id.clone(), Arc::clone(&compiled));
        Ok(compiled)
    }

    /// Metadata of connector `id` as `tenant` sees it: its own upload or a builtin.
    pub(crate) async fn connector_meta(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ConnectorMeta>, ApiError> {
        if let Some(meta) = self
            .load::<ConnectorMeta>("connectors", &format!("{tenant}/{id}"))
            .await?
        {
            return Ok(Some(meta));
        }
        Ok(self.builtins.get(id).map(|(meta, _)| meta.clone()))
    }

    /// The compiled connector `id` of `tenant`: a builtin, or the tenant's own
    /// upload (compiled, or taken from the artifact cache, on first use after a restart).
    pub(crate) async fn connector(&self, tenant: &str, id: &str) -> Result<Connector, ApiError> {
        let key = format!("{tenant}/{id}");
        let owned = self.store.get("connectors", &key).await?.is_some();
        if !owned {
            return match self.builtins.get(id) {
                Some((_, connector)) => Ok(connector.clone()),
                None => Err(ApiError::not_found("connector", id)),
            };
        }
        let cached = self
            .connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        if let Some(connector) = cached {
            return Ok(connector);
        }
        let bytes = self
            .store
            .get("components", &key)
            .await?
            .ok_or_else(|| ApiError::not_found("connector", id))?;
        let connector = self.compile(Bytes::from(bytes)).await?;
        self.connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_string(), connector.clone());
        Ok(connector)
    }

    /// Validate and compile `bytes` off the async threads, under the compile
    /// budget. A compilation past its budget is abandoned (its thread finishes
    /// in the background and still holds its compiler slot until it does).
    pub(crate) async fn compile(&self, bytes: Bytes) -> Result<Connector, ApiError> {
        let permit = Arc::clone(&self.compilers)
            .acquire_owned()
            .await
            .map_err(|_| sluice::Error::Host("compiler slots closed".into()))?;
        let runtime = self.runtime.clone();
        let artifacts = Arc::clone(&self.artifacts);
        let work = tokio::task::spawn_blocking(move || {
            let result = runtime.load_cached(&bytes, None, &artifacts);
            drop(permit);
            result
        });
        match tokio::time::timeout(self.compile_timeout, work).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(e)) => Err(sluice::Error::Host(format!("compiler task failed: {e}")).into()),
            Err(_) => Err(Error::CompileTimeout(self.compile_timeout).into()),
        }
    }

    /// Refuse with 429 when `tenant` already holds `max` objects of `kind`.
    pub(crate) async fn check_quota(
        &self,
        tenant: &Tenant,
        kind: &str,
        max: u32,
    ) -> Result<(), ApiError> {
        let held = self
            .store
            .list(kind, &format!("{}/", tenant.id))
            .await?
            .len();
        if held >= max as usize {
            return Err(quota_exceeded(format!(
                "the tenant's {kind} quota ({max}) is used up"
            )));
        }
        Ok(())
    }

    /// Refuse with 429 when storing `adding` more bytes would take `tenant`
    /// past its stored-bytes quota. Counted: component bytes, and the stored
    /// records of its connectors and instances.
    pub(crate) async fn check_stored_bytes(
        &self,
        tenant: &Tenant,
        adding: usize,
    ) -> Result<(), ApiError> {
        let prefix = format!("{}/", tenant.id);
        let mut stored = 0usize;
        for key in self.store.list("connectors", &prefix).await? {
            if let Some(bytes) = self.store.get("connectors", &key).await? {
                let size = serde_json::from_slice::<ConnectorMeta>(&bytes).map_or(0, |m| m.size);
                stored = stored.saturating_add(size).saturating_add(bytes.len());
            }
        }
        for key in self.store.list("instances", &prefix).await? {
            if let Some(bytes) = self.store.get("instances", &key).await? {
                stored = stored.saturating_add(bytes.len());
            }
        }
        if tenant.ceiling.files {
            let files = files::used_bytes(&self.tenant_files(&tenant.id)?)?;
            stored = stored.saturating_add(usize::try_from(files).unwrap_or(usize::MAX));
        }
        let max = tenant.quotas.max_stored_mib.saturating_mul(1 << 20);
        if stored.saturating_add(adding) > max {
            return Err(quota_exceeded(format!(
                "storing {adding} more bytes would exceed the tenant's stored-bytes quota ({} MiB; {stored} bytes used)",
                tenant.quotas.max_stored_mib
            )));
        }
        Ok(())
    }

    /// The instance's live grants, opened once and kept (with their pools
    /// and budgets) for as long as what they were opened from stays the same.
    pub(crate) fn instance_grants(
        &self,
        tenant: &Tenant,
        instance: &Instance,
    ) -> Result<Grants, ApiError> {
        let key = format!("{}/{}", tenant.id, instance.id);
        // Held while opening, so concurrent first calls share one set of
        // pools and budgets (opening may resolve names: a rare, first-call cost).
        let mut cache = self.grants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((opened_from, grants)) = cache.get(&key) {
            if opened_from.is_current(tenant, instance) {
                return Ok(grants.clone());
            }
        }
        let grants = open_grants(self, tenant, instance)?;
        cache.insert(key, (DeclaredGrants::of(tenant, instance), grants.clone()));
        Ok(grants)
    }

    /// The tenant's file root, opened (and created) beneath the server's files root.
    pub(crate) fn tenant_files(&self, tenant: &str) -> Result<cap_std::fs::Dir, ApiError> {
        let failed = |source| sluice::Error::Io {
            path: format!("files/{tenant}"),
            source,
        };
        self.files_root.create_dir_all(tenant).map_err(failed)?;
        Ok(self.files_root.open_dir(tenant).map_err(failed)?)
    }

    /// The tenant's file root when it exists (nothing is created).
    pub(crate) fn existing_tenant_files(
        &self,
        tenant: &str,
    ) -> Result<Option<cap_std::fs::Dir>, ApiError> {
        match self.files_root.open_dir(tenant) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(sluice::Error::Io {
                path: format!("files/{tenant}"),
                source,
            }
            .into()),
        }
    }

    /// Drop what is kept for an instance: its grants (pools, budgets), warm
    /// sessions and consumer leases.
    pub(crate) fn forget_instance(&self, tenant: &str, instance: &str) {
        let key = format!("{tenant}/{instance}");
        self.consumers.forget_instance(&key);
        self.grants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.warm.forget(&key);
    }

    /// One of the tenant's invocation permits (a running or kept session, or
    /// an upload's `describe`, each holds one). When its kept sessions hold
    /// them all, the one idle longest is closed to free a permit; else 429.
    pub(crate) async fn permit(
        &self,
        tenant: &Tenant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let permits = self.semaphore(tenant);
        loop {
            if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                return Ok(permit);
            }
            let Some((session, permit)) = self.warm.evict(&tenant.id) else {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_invocations",
                    "the tenant's concurrent invocations are all busy; retry shortly",
                ));
            };
            let _ = session.close().await;
            drop(permit);
        }
    }

    /// The tenant's invocation permits, resized when its quota changed.
    pub(crate) fn semaphore(&self, tenant: &Tenant) -> Arc<Semaphore> {
        let max = tenant.quotas.max_concurrent.max(1);
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.get(&tenant.id) {
            Some((sized_for, permits)) if *sized_for == max => Arc::clone(permits),
            _ => {
                let permits = Arc::new(Semaphore::new(max as usize));
                running.insert(tenant.id.clone(), (max, Arc::clone(&permits)));
                permits
            }
        }
    }
}

/// A digest of everything a kept session of an instance was opened with: the
/// instance record and the tenant's ceiling and quotas. When it changes (on
/// this node or another sharing the store), the kept sessions are dropped.
/// (Live grants are kept apart, with the declared value they were opened
/// from: see `DeclaredGrants`.)
pub(crate) fn instance_version(tenant: &Tenant, instance: &Instance) -> String {
    sha256_hex(
        json!([instance, tenant.ceiling, tenant.quotas])
            .to_string()
            .as_bytes(),
    )
}

/// 429 for a used-up tenant quota.
pub(crate) fn quota_exceeded(message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
}
