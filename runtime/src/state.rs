//! The per-store host state: WASI context, HTTP hooks, limits, log tags and
//! denials. Each capability borrows only its own part of it through a view
//! (`WasiCtxView`, `WasiHttpCtxView`, `LogView`, `SqlView`, `SftpView`, `SecretsView`), linked in
//! `engine.rs`; nothing here implements a capability's interface.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::denial::{Denials, Expiries};
use crate::capability::http::HttpHooks;
use crate::capability::log::LogTags;
use crate::capability::output::GuestOutput;
use crate::capability::secrets::SocketSecrets;
use crate::capability::sftp::SftpPolicy;
use crate::capability::sql::{ForwardedRecords, SqlPolicy};
use crate::limits::StoreLimiter;
use crate::tape::files::OpenedPaths;
use crate::tape::Tape;

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
    pub sftp: SftpPolicy,
    /// Records the guest forwarded from a row stream during `record-stream.next`.
    pub forwarded: ForwardedRecords,
    pub secrets: SocketSecrets,
    /// The tail of what the guest wrote to stdout and stderr during the current call.
    pub output: GuestOutput,
    /// Where host answers are recorded or replayed from, if anywhere.
    pub tape: Option<Tape>,
    /// The paths of the files and directories the guest opened, while a tape runs.
    pub opened: OpenedPaths,
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
