//! The [`Runtime`]: one wasmtime `Engine` (component model, async, epoch
//! interruption with one ticker thread, optional pooling allocator) and one
//! `Linker` holding every host interface.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::artifacts::ArtifactCache;
use crate::capability::log::{HasLog, LogView};
use crate::capability::secrets::{HasSecrets, SecretsView};
use crate::capability::sftp::{HasSftp, SftpView};
use crate::capability::sql::{HasSql, SqlView};
use crate::component::Connector;
use crate::error::Error;
use crate::json_lines::{HasJsonLines, JsonLinesView};
use crate::limits::Limits;
use crate::state::HostState;

/// Bytes at the start of a pooled linear memory kept resident between instances.
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
/// Bytes of a pooled table kept resident between instances.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
/// Bytes of a pooled async stack kept resident between instances.
const KEEP_RESIDENT_STACK: usize = 128 << 10;

/// How often the epoch advances: the granularity of the CPU limit.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of a [`Runtime`]. Every field has a default (see [`RuntimeConfig::default`]).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Interval of the epoch ticker. Default 10 ms.
    pub epoch_tick: Duration,
    /// Use the pooling instance allocator with these bounds. Default: off (on-demand allocation).
    pub pooling: Option<PoolingConfig>,
    /// Limits given to sessions opened without explicit limits.
    pub limits: Limits,
    /// Compile epoch checks into guest code, so the CPU limit (and the wall
    /// clock) can stop a guest that computes without yielding. Default on.
    /// Off only measures what the checks cost: a looping guest then runs
    /// until it returns.
    pub interruptible: bool,
    /// Run a guest's file operations (open, read, stat, ...) on the thread
    /// that runs the guest instead of handing each one to tokio's blocking
    /// pool. Default on: a read from the page cache takes microseconds, the
    /// hand-off costs more than that. Turn it off when mounts are slow
    /// (network filesystems), so a slow read cannot hold an async worker.
    pub inline_file_io: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            epoch_tick: DEFAULT_EPOCH_TICK,
            pooling: None,
            limits: Limits::default(),
            interruptible: true,
            inline_file_io: true,
        }
    }
}

/// Bounds of the pooling allocator: fast instantiation, memory reserved up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingConfig {
    /// Most connector instances alive at once (one linear memory each; every
    /// memory slot reserves 4 GiB of address space, not of RAM). Default 1000.
    pub max_instances: u32,
    /// Largest linear memory per instance, in bytes; session memory limits
    /// above it are lowered to it. Default 256 MiB.
    pub max_memory_bytes: usize,
    /// What one component may hold of the pool, checked when it is loaded
    /// (a component over them is refused before it ever runs).
    pub per_component: ComponentBounds,
}

/// How much of the pooling allocator one component may take per session:
/// without these bounds one component with a hundred memories would hold a
/// hundred of the pool's memory slots in every session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentBounds {
    /// Linear memories, all its core instances together. Default 4.
    pub max_memories: u32,
    /// Tables, all its core instances together. Default 16.
    pub max_tables: u32,
    /// Core module instances. Default 64.
    pub max_core_instances: u32,
}

impl Default for ComponentBounds {
    fn default() -> Self {
        Self {
            max_memories: 4,
            max_tables: 16,
            max_core_instances: 64,
        }
    }
}

impl Default for PoolingConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_memory_bytes: 256 << 20,
            per_component: ComponentBounds::default(),
        }
    }
}

/// The shared engine. Cheap to clone; every clone is the same runtime.
///
/// Create one per process and load every connector through it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    next_session: AtomicU64,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with the default configuration.
    ///
    /// # Errors
    ///
    /// [`Error::Host`] when the engine cannot be created.
    pub fn new() -> Result<Self, Error> {
        Self::with_config(RuntimeConfig::default())
    }

    /// A runtime with `config`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for unusable settings; [`Error::Host`] when
    /// the engine cannot be created (e.g. the pooling allocator cannot reserve memory).
    pub fn with_config(config: RuntimeConfig) -> Result<Self, Error> {
        config.limits.validate()?;
        if config.epoch_tick.is_zero() {
            return Err(Error::InvalidConfig("epoch_tick must be positive".into()));
        }
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        // For profiling guests: `perf` reads their function names from
        // /tmp/perf-PID.map, which wasmtime writes when asked.
        if std::env::var_os("SLUICE_PERF_MAP").is_some_and(|v| v != "0") {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        wasm.epoch_interruption(config.interruptible);
        if let Some(pooling) = &config.pooling {
            if pooling.max_instances == 0 || pooling.max_memory_bytes == 0 {
                return Err(Error::InvalidConfig(
                    "pooling bounds must be positive".into(),
                ));
            }
            let mut pool = PoolingAllocationConfig::new();
            let n = pooling.max_instances;
            // Each store holds a fiber stack while it lives, so stacks are sized like instances.
            pool.total_component_instances(n)
                .total_stacks(n)
                .total_core_instances(n.saturating_mul(8))
                .total_memories(n)
                .total_tables(n.saturating_mul(4))
                .max_memory_size(pooling.max_memory_bytes)
                .max_memories_per_component(pooling.per_component.max_memories)
                .max_tables_per_component(pooling.per_component.max_tables)
                .max_core_instances_per_component(pooling.per_component.max_core_instances)
                // Reset small, hot regions of a freed slot with memset rather than
                // madvise: no page faults on the next instantiation and no TLB
                // shootdowns between cores.
                .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
                .table_keep_resident(KEEP_RESIDENT_TABLE)
                .async_stack_keep_resident(KEEP_RESIDENT_STACK);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| Error::Host(format!("engine: {e:#}")))?;
        let linker = host_linker(&engine).map_err(|e| Error::Host(format!("linker: {e:#}")))?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                next_session: AtomicU64::new(1),
                _ticker: ticker,
            }),
        })
    }

    /// Validate and compile a connector from its bytes.
    ///
    /// # Errors
    ///
    /// [`Error::NotWasm`], [`Error::CoreModule`], [`Error::InvalidComponent`],
    /// [`Error::WrongWorld`] or [`Error::UnsupportedImport`].
    pub fn load(&self, bytes: &[u8]) -> Result<Connector, Error> {
        Connector::load(self.clone(), bytes, None, None)
    }

    /// As [`Runtime::load`], taking the compiled code from `cache` when this
    /// host compiled the same bytes before under the same engine, and storing
    /// it there otherwise.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load`]; [`Error::PrecompiledArtifact`] for precompiled bytes.
    pub fn load_cached(
        &self,
        bytes: &[u8],
        name: Option<String>,
        cache: &ArtifactCache,
    ) -> Result<Connector, Error> {
        Connector::load(self.clone(), bytes, name, Some(cache))
    }

    /// Read, validate and compile a connector from a `.wasm` file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read, else as [`Runtime::load`].
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Connector, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned());
        Connector::load(self.clone(), &bytes, name, None)
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.inner.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

/// Every host interface of the `connector` world.
fn host_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::tape::files::shadow(&mut linker)?;
    crate::bindings::sluice::connector::log::add_to_linker::<_, HasLog>(&mut linker, |s| {
        LogView {
            tags: &s.log,
            secrets: &s.secrets,
        }
    })?;
    crate::bindings::sluice::connector::secrets::add_to_linker::<_, HasSecrets>(
        &mut linker,
        |s| SecretsView {
            secrets: &s.secrets,
            denials: &s.denials,
        },
    )?;
    crate::bindings::sluice::connector::json_lines::add_to_linker::<_, HasJsonLines>(
        &mut linker,
        |_| JsonLinesView,
    )?;
    crate::bindings::sluice::connector::sql::add_to_linker::<_, HasSql>(&mut linker, |s| {
        SqlView {
            table: &mut s.table,
            policy: &s.sql,
            denials: &s.denials,
            expiries: &s.expiries,
            forwarded: &mut s.forwarded,
            tape: s.tape.as_ref(),
        }
    })?;
    crate::bindings::sluice::connector::sftp::add_to_linker::<_, HasSftp>(&mut linker, |s| {
        SftpView {
            table: &mut s.table,
            policy: &s.sftp,
            denials: &s.denials,
            expiries: &s.expiries,
        }
    })?;
    Ok(linker)
}

/// One thread per engine that advances the epoch every tick, until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::Host(format!("epoch ticker thread: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
