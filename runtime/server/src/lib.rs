//! `sluice serve`: tenants upload connectors, configure instances and invoke
//! them over HTTP; each tenant sees only its own objects.
//!
//! Isolation: every object key starts with its tenant id, so a lookup with
//! another tenant's id finds nothing and answers 404 exactly like a missing
//! object. Tokens are stored as SHA-256 hashes and shown once. Instance
//! grants must fit the tenant's egress ceiling; file mounts live under the
//! tenant's own file root; secrets are write-only.

#![deny(missing_docs)]

mod api_error;
mod body;
mod connectors;
mod consumers;
mod error;
pub mod files;
mod instances;
mod invoke;
pub mod metrics;
pub mod model;
pub mod openapi;
mod routes;
pub mod schema;
mod state;
pub mod store;
mod stream;
mod tenants;
mod warm;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::instances::DeclaredGrants;
use crate::routes::handle;
pub use api_error::ApiError;
pub use error::Error;
use model::ConnectorMeta;
use store::{LocalStore, ObjectStore, PostgresStore};

use sluice::{ArtifactCache, Connector, Grants, Limits, PoolingConfig, Runtime, RuntimeConfig};

/// Largest accepted upload by default.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 32 << 20;

/// Sessions an instance keeps open between invocations by default.
pub const DEFAULT_WARM_SESSIONS: usize = 4;

/// How long a client may take to send a request's headers (and how long an
/// idle keep-alive connection stays open) by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request body.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Client connections served at once by default; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long a compilation of one uploaded component may take by default.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a server is started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory (the embedded store).
    pub data_dir: PathBuf,
    /// Admin token; generated and printed once when neither this nor a stored one exists.
    pub admin_token: Option<String>,
    /// Largest connector upload, bytes.
    pub max_upload_bytes: usize,
    /// A directory of bundled `.wasm` connectors every tenant may use.
    pub builtin_dir: Option<PathBuf>,
    /// A PostgreSQL URL: keep tenants, connectors and instances there (shared by
    /// every node pointing at it) instead of in the data directory.
    pub store_url: Option<String>,
    /// How long compiling one uploaded component may take.
    pub compile_timeout: Duration,
    /// Bounds of the pooling allocator; `None` allocates on demand.
    pub pooling: Option<PoolingConfig>,
    /// Guest sessions an instance keeps open between invocations (0: a fresh
    /// session for every invocation). A kept session serves only the same
    /// instance, unchanged; idle ones close after 30 s.
    pub warm_sessions: usize,
    /// Time a client has to send a request's headers; also how long an idle
    /// connection is kept.
    pub header_read_timeout: Duration,
    /// Client connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// A token that may read `/metrics` (besides the admin token), for scrapers.
    pub metrics_token: Option<String>,
}

impl ServerConfig {
    /// The defaults of `sluice serve` with no flags, on `listen` and `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            data_dir: data_dir.into(),
            admin_token: None,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            builtin_dir: None,
            store_url: None,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            pooling: Some(PoolingConfig::default()),
            warm_sessions: DEFAULT_WARM_SESSIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            metrics_token: None,
        }
    }
}

pub(crate) type ResponseBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Shared server state.
pub(crate) struct State {
    pub(crate) runtime: Runtime,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) admin_hash: String,
    /// Hash of the token that may read `/metrics`, besides the admin's.
    pub(crate) metrics_hash: Option<String>,
    pub(crate) header_read_timeout: Duration,
    /// Connections being served; the accept loop waits for a free one.
    pub(crate) connections: Arc<Semaphore>,
    /// Where tenants' file roots live (`<data>/files`), held open: every mount
    /// is opened beneath it.
    pub(crate) files_root: cap_std::fs::Dir,
    pub(crate) files_root_path: PathBuf,
    pub(crate) max_upload_bytes: usize,
    /// Compiled connectors this host produced, kept across restarts.
    pub(crate) artifacts: Arc<ArtifactCache>,
    /// Compilations running at once (one per core): a flood of uploads queues here.
    pub(crate) compilers: Arc<Semaphore>,
    pub(crate) compile_timeout: Duration,
    pub(crate) connectors: Mutex<HashMap<String, Connector>>,
    /// Compiled config schemas by connector id, each compiled once.
    pub(crate) schemas: Mutex<HashMap<String, Arc<schema::ConfigSchema>>>,
    /// Concurrent invocations per tenant: the quota they were sized for, and the permits.
    pub(crate) running: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    /// Live grants per instance, kept between invocations so sql pools,
    /// rate-limit budgets, breakers and tokens outlive a call; each is kept
    /// with the declared value it was opened from, and opened again when that
    /// changed (here or on another node sharing the store).
    pub(crate) grants: Mutex<HashMap<String, (DeclaredGrants, Grants)>>,
    /// Guest sessions kept open between invocations of the same instance.
    pub(crate) warm: warm::WarmSessions,
    /// Consumer leases: a session and stream each, consumed over HTTP.
    pub(crate) consumers: consumers::Consumers,
    pub(crate) metrics: metrics::Metrics,
    /// Bundled connectors by id, shared by every tenant.
    pub(crate) builtins: HashMap<String, (ConnectorMeta, Connector)>,
    /// Requests being answered now.
    pub(crate) in_flight: std::sync::atomic::AtomicUsize,
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    /// The admin token, when this start generated it (print it once).
    pub generated_admin_token: Option<String>,
}

/// Load and describe every `.wasm` in `dir`.
pub(crate) async fn load_builtins(
    runtime: &Runtime,
    artifacts: &ArtifactCache,
    dir: &std::path::Path,
) -> Result<HashMap<String, (ConnectorMeta, Connector)>, sluice::Error> {
    let io = |source| sluice::Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut builtins = HashMap::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|source| sluice::Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let connector = runtime.load_cached(&bytes, name, artifacts)?;
        let meta = describe_meta(&connector, true, &runtime.config().limits).await?;
        builtins.insert(meta.id.clone(), (meta, connector));
    }
    Ok(builtins)
}

/// A connector's metadata, from `describe`.
pub(crate) async fn describe_meta(
    connector: &Connector,
    builtin: bool,
    limits: &Limits,
) -> Result<ConnectorMeta, sluice::Error> {
    let descriptor = connector.describe_with_limits(limits).await?;
    Ok(ConnectorMeta {
        id: connector.sha256().to_string(),
        name: descriptor.name,
        version: descriptor.version,
        description: descriptor.description,
        config_schema: serde_json::from_str(&descriptor.config_schema).unwrap_or(Value::Null),
        imports: connector.imports().to_vec(),
        size: connector.size(),
        builtin,
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A random token: 244 bits from the operating system's CSPRNG.
pub(crate) fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

impl Server {
    /// Open the data directory and bind the listener.
    ///
    /// # Errors
    ///
    /// [`sluice::Error::Io`] for the data directory, `InvalidConfig` for an
    /// address it cannot listen on, [`Error::Storage`] for the store.
    pub async fn bind(config: ServerConfig) -> Result<Self, Error> {
        let store: Arc<dyn ObjectStore> = match &config.store_url {
            Some(url) => Arc::new(PostgresStore::connect(url).await?),
            None => Arc::new(LocalStore::open(config.data_dir.join("store"))?),
        };
        tracing::info!(store = store.describe(), "store opened");
        let (admin_hash, generated) =
            admin_token(store.as_ref(), config.admin_token.as_deref()).await?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "; another process is listening there: stop it or choose another `listen` address (CLI: --listen)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "; ports below 1024 need privileges: choose a port from 1024 up"
                }
                _ => "",
            };
            sluice::Error::InvalidConfig(format!("cannot listen on {}: {e}{hint}", config.listen))
        })?;
        let runtime = Runtime::with_config(RuntimeConfig {
            pooling: config.pooling.clone(),
            ..RuntimeConfig::default()
        })?;
        let artifacts = Arc::new(ArtifactCache::open(config.data_dir.join("artifacts"))?);
        let builtins = match &config.builtin_dir {
            Some(dir) => load_builtins(&runtime, &artifacts, dir).await?,
            None => HashMap::new(),
        };
        let files_root_path = config.data_dir.join("files");
        std::fs::create_dir_all(&files_root_path).map_err(|source| sluice::Error::Io {
            path: files_root_path.display().to_string(),
            source,
        })?;
        let files_root =
            cap_std::fs::Dir::open_ambient_dir(&files_root_path, cap_std::ambient_authority())
                .map_err(|source| sluice::Error::Io {
                    path: files_root_path.display().to_string(),
                    source,
                })?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // Kept sessions hold pooled slots: leave at least half of them to new sessions.
        let max_warm = config
            .pooling
            .as_ref()
            .map_or(256, |p| p.max_instances as usize / 2);
        let state = Arc::new(State {
            runtime,
            store,
            admin_hash,
            metrics_hash: config
                .metrics_token
                .as_deref()
                .map(|t| sha256_hex(t.as_bytes())),
            header_read_timeout: config.header_read_timeout,
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            files_root,
            files_root_path,
            max_upload_bytes: config.max_upload_bytes,
            artifacts,
            compilers: Arc::new(Semaphore::new(cores)),
            compile_timeout: config.compile_timeout,
            connectors: Mutex::default(),
            schemas: Mutex::default(),
            running: Mutex::default(),
            grants: Mutex::default(),
            warm: warm::WarmSessions::new(config.warm_sessions, max_warm),
            consumers: consumers::Consumers::default(),
            metrics: metrics::Metrics::default(),
            builtins,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        });
        // Close kept sessions that sat idle too long; ends with the server.
        let reaper = Arc::downgrade(&state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(warm::IDLE_TIMEOUT / 6).await;
                let Some(state) = reaper.upgrade() else {
                    return;
                };
                for (session, permit) in state.warm.expired(warm::IDLE_TIMEOUT) {
                    let _ = session.close().await;
                    drop(permit);
                }
            }
        });
        Ok(Self {
            listener,
            state,
            generated_admin_token: generated,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until the future is dropped.
    pub async fn run(self) {
        self.run_until(std::future::pending(), Duration::ZERO).await;
    }

    /// Serve until `shutdown` completes, then stop accepting and let in-flight
    /// requests (streams included) finish for up to `drain`.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>, drain: Duration) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(5);
        loop {
            // At the connection cap, stop accepting until a connection closes.
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = Arc::clone(&self.state.connections).acquire_owned() => slot,
            };
            let Ok(slot) = slot else { break };
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(5);
                    stream
                }
                Err(e) => {
                    // Out of file descriptors (or a similar transient failure):
                    // wait instead of spinning, so answering requests can go on.
                    tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let state = Arc::clone(&self.state);
            tokio::spawn(async move {
                let header_read_timeout = state.header_read_timeout;
                let service = hyper::service::service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(handle(state, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .serve_connection(io, service)
                    .await;
                drop(slot);
            });
        }
        drop(self.listener);
        let deadline = tokio::time::Instant::now() + drain;
        while self
            .state
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            || self.state.metrics.active_sessions() > 0
        {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("shutdown: drain deadline reached with work in flight");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The admin token's hash: from `configured`, else the stored one, else a new
/// token (returned to be printed once). Nodes starting together on one store
/// agree: only the first stored hash counts.
pub(crate) async fn admin_token(
    store: &dyn ObjectStore,
    configured: Option<&str>,
) -> Result<(String, Option<String>), Error> {
    if let Some(token) = configured {
        return Ok((sha256_hex(token.as_bytes()), None));
    }
    if let Some(hash) = store.get("admin", "token").await? {
        return Ok((String::from_utf8_lossy(&hash).into_owned(), None));
    }
    let token = new_token();
    let hash = sha256_hex(token.as_bytes());
    if store.create("admin", "token", hash.as_bytes()).await? {
        return Ok((hash, Some(token)));
    }
    let stored = store.get("admin", "token").await?.unwrap_or_default();
    Ok((String::from_utf8_lossy(&stored).into_owned(), None))
}
