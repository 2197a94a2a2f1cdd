//! The per-store host state: WASI context, HTTP hooks, limits, log tags and denials.

use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::http::HttpHooks;
use crate::capability::log::LogTags;
use crate::capability::sql::SqlPolicy;
use crate::error::{Denial, GrantTimeout};
use crate::limits::StoreLimiter;

/// Denials recorded by capability checks, shared with the checks' closures.
#[derive(Debug, Clone, Default)]
pub(crate) struct Denials(Arc<Mutex<Vec<Denial>>>);

impl Denials {
    /// Record a denial and log it.
    pub fn record(&self, denial: Denial) {
        tracing::warn!(capability = %denial.capability, attempted = %denial.attempted, grant = %denial.grant, "capability denied");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(denial);
    }

    /// How many denials have been recorded.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The first denial recorded at or after index `from`.
    pub fn first_since(&self, from: usize) -> Option<Denial> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(from)
            .cloned()
    }

    /// All denials so far.
    pub fn all(&self) -> Vec<Denial> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The grant timeouts that expired during the current call, shared with the
/// capabilities' closures; the session turns a connector `timeout` that
/// follows one into [`crate::Error::GrantTimeout`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Expiries(Arc<Mutex<Option<GrantTimeout>>>);

impl Expiries {
    /// Record an expired grant timeout and log it; the first of a call is kept.
    pub fn record(&self, expired: GrantTimeout) {
        tracing::warn!(capability = %expired.capability, setting = expired.setting, limit_ms = expired.limit.as_millis() as u64, "{}", expired.waited_for);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(expired);
    }

    /// The first grant timeout since the last `take`, clearing it.
    pub fn take(&self) -> Option<GrantTimeout> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The `T` of `Store<T>` for every connector store.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: HttpHooks,
    pub table: ResourceTable,
    pub limiter: StoreLimiter,
    pub log: LogTags,
    pub denials: Denials,
    pub expiries: Expiries,
    pub sql: SqlPolicy,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
