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
mod error;
pub mod files;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod schema;
pub mod store;
mod warm;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

pub use api_error::ApiError;
pub use error::Error;
use model::{fit_grants, Ceiling, ConnectorMeta, Instance, Quotas, Tenant, TokenRecord, TokenSpec};
use store::{LocalStore, ObjectStore, PostgresStore};

use sluice::{
    ArtifactCache, Connector, ExecuteRequest, FetchRequest, Grants, Limits, PoolingConfig, Runtime,
    RuntimeConfig,
};

/// Largest accepted upload by default.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 32 << 20;

/// Sessions an instance keeps open between invocations by default.
pub const DEFAULT_WARM_SESSIONS: usize = 4;

/// How long a client may take to send a request's headers (and how long an
/// idle keep-alive connection stays open) by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

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

type ResponseBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Shared server state.
struct State {
    runtime: Runtime,
    store: Arc<dyn ObjectStore>,
    admin_hash: String,
    /// Hash of the token that may read `/metrics`, besides the admin's.
    metrics_hash: Option<String>,
    header_read_timeout: Duration,
    /// Connections being served; the accept loop waits for a free one.
    connections: Arc<Semaphore>,
    /// Where tenants' file roots live (`<data>/files`), held open: every mount
    /// is opened beneath it.
    files_root: cap_std::fs::Dir,
    files_root_path: PathBuf,
    max_upload_bytes: usize,
    /// Compiled connectors this host produced, kept across restarts.
    artifacts: Arc<ArtifactCache>,
    /// Compilations running at once (one per core): a flood of uploads queues here.
    compilers: Arc<Semaphore>,
    compile_timeout: Duration,
    connectors: Mutex<HashMap<String, Connector>>,
    /// Compiled config schemas by connector id, each compiled once.
    schemas: Mutex<HashMap<String, Arc<schema::ConfigSchema>>>,
    /// Concurrent invocations per tenant: the quota they were sized for, and the permits.
    running: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    /// Grants per instance, kept between invocations so sql pools, rate-limit
    /// budgets, breakers and tokens outlive a call; each is tagged with a digest
    /// of the instance record and tenant ceiling it was built from, and rebuilt
    /// when either changed (here or on another node sharing the store).
    grants: Mutex<HashMap<String, (String, Grants)>>,
    /// Guest sessions kept open between invocations of the same instance.
    warm: warm::WarmSessions,
    metrics: metrics::Metrics,
    /// Bundled connectors by id, shared by every tenant.
    builtins: HashMap<String, (ConnectorMeta, Connector)>,
    /// Requests being answered now.
    in_flight: std::sync::atomic::AtomicUsize,
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    /// The admin token, when this start generated it (print it once).
    pub generated_admin_token: Option<String>,
}

/// Load and describe every `.wasm` in `dir`.
async fn load_builtins(
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
async fn describe_meta(
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

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A random token: 244 bits from the operating system's CSPRNG.
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn new_id() -> String {
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
async fn admin_token(
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

fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn text_json_response(status: StatusCode, text: String) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(text)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error_response(err: &ApiError) -> Response<ResponseBody> {
    let mut response = Response::builder()
        .status(err.status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if err.status == StatusCode::TOO_MANY_REQUESTS {
        response = response.header(http::header::RETRY_AFTER, "1");
    }
    if err.status == StatusCode::UNAUTHORIZED {
        response = response.header(http::header::WWW_AUTHENTICATE, "Bearer realm=\"sluice\"");
    }
    if let Some(allow) = err.details["allow"].as_array() {
        let methods: Vec<&str> = allow.iter().filter_map(Value::as_str).collect();
        response = response.header(http::header::ALLOW, methods.join(", "));
    }
    response
        .body(Full::new(err.body()).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

type Reply = Result<Response<ResponseBody>, ApiError>;

/// What a request's log line says beyond its method, path and status: who
/// made it and which instance it touched, learnt while routing it.
#[derive(Debug, Default, Clone)]
struct RequestLog {
    request_id: String,
    tenant: Option<String>,
    instance: Option<String>,
}

tokio::task_local! {
    static REQUEST_LOG: std::cell::RefCell<RequestLog>;
}

/// Note a fact about the current request for its log line (a no-op outside one).
fn note_request(update: impl FnOnce(&mut RequestLog)) {
    let _ = REQUEST_LOG.try_with(|log| update(&mut log.borrow_mut()));
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ResponseBody> {
    use std::sync::atomic::Ordering;
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(new_id, str::to_string);
    let started = std::time::Instant::now();
    let log = std::cell::RefCell::new(RequestLog {
        request_id: request_id.clone(),
        ..RequestLog::default()
    });
    let (result, log) = REQUEST_LOG
        .scope(log, async {
            let result = route(&state, req).await;
            (result, REQUEST_LOG.with(|log| log.borrow().clone()))
        })
        .await;
    let (mut response, code) = match result {
        Ok(response) => (response, None),
        Err(err) => (error_response(&err), Some(err.code)),
    };
    let status = response.status().as_u16();
    // Paths carry ids, never secrets; bodies and headers are not logged. A
    // stream logs its own end, with its whole duration.
    tracing::info!(
        request_id,
        %method,
        path,
        status,
        tenant = log.tenant.as_deref(),
        instance = log.instance.as_deref(),
        error = code,
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    response
}

/// The token of an `Authorization: Bearer …` header; the scheme is matched
/// case-insensitively (RFC 9110 §11.1).
fn bearer(req: &Request<Incoming>) -> Option<String> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )
    })?;
    collected.map(|b| b.to_bytes()).map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
        )
    })
}

async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req, 1 << 20).await?;
    parse_body(&body)
}

/// A body that may be empty (no fields to give).
async fn read_optional_json<T: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<Option<T>, ApiError> {
    let body = read_body(req, 1 << 20).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    parse_body(&body).map(Some)
}

/// A JSON body: 400 when it is not JSON, 422 when it is JSON of the wrong
/// shape (an unknown field, a missing one, a wrong type), naming the field.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body does not fit this request: {e}"),
        ),
        _ => ApiError::bad_request(format!("invalid JSON body: {e}")),
    })
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl State {
    async fn load<T: DeserializeOwned>(
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

    async fn save<T: serde::Serialize>(
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

    fn is_admin(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| sha256_hex(t.as_bytes()) == self.admin_hash)
    }

    fn is_metrics_reader(&self, token: Option<&str>) -> bool {
        match (token, &self.metrics_hash) {
            (Some(token), Some(hash)) => sha256_hex(token.as_bytes()) == *hash,
            _ => false,
        }
    }

    async fn tenant_of(&self, token: Option<&str>) -> Result<Tenant, ApiError> {
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
    async fn resolve_connector(
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
    fn config_schema(&self, meta: &ConnectorMeta) -> Result<Arc<schema::ConfigSchema>, ApiError> {
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
    async fn connector_meta(
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
    async fn connector(&self, tenant: &str, id: &str) -> Result<Connector, ApiError> {
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
    async fn compile(&self, bytes: Bytes) -> Result<Connector, ApiError> {
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
    async fn check_quota(&self, tenant: &Tenant, kind: &str, max: u32) -> Result<(), ApiError> {
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
    async fn check_stored_bytes(&self, tenant: &Tenant, adding: usize) -> Result<(), ApiError> {
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

    /// The instance's grants, built once and kept (with their pools and budgets)
    /// for as long as the instance record and the tenant stay the same.
    fn instance_grants(
        &self,
        tenant: &Tenant,
        instance: &Instance,
        version: &str,
    ) -> Result<Grants, ApiError> {
        let key = format!("{}/{}", tenant.id, instance.id);
        let mut cache = self.grants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_from, grants)) = cache.get(&key) {
            if built_from == version {
                return Ok(grants.clone());
            }
        }
        let grants = grants_of(self, tenant, instance)?;
        cache.insert(key, (version.to_string(), grants.clone()));
        Ok(grants)
    }

    /// The tenant's file root, opened (and created) beneath the server's files root.
    fn tenant_files(&self, tenant: &str) -> Result<cap_std::fs::Dir, ApiError> {
        let failed = |source| sluice::Error::Io {
            path: format!("files/{tenant}"),
            source,
        };
        self.files_root.create_dir_all(tenant).map_err(failed)?;
        Ok(self.files_root.open_dir(tenant).map_err(failed)?)
    }

    /// Drop what is kept for an instance: its grants (pools, budgets) and warm sessions.
    fn forget_instance(&self, tenant: &str, instance: &str) {
        let key = format!("{tenant}/{instance}");
        self.grants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.warm.forget(&key);
    }

    /// One of the tenant's invocation permits (a running or kept session, or
    /// an upload's `describe`, each holds one). When its kept sessions hold
    /// them all, the one idle longest is closed to free a permit; else 429.
    async fn permit(&self, tenant: &Tenant) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
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
    fn semaphore(&self, tenant: &Tenant) -> Arc<Semaphore> {
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

/// A digest of everything a session or the grants of an instance are built
/// from: the instance record and the tenant's ceiling and quotas. When it
/// changes (on this node or another sharing the store), both are rebuilt.
fn instance_version(tenant: &Tenant, instance: &Instance) -> String {
    sha256_hex(
        json!([instance, tenant.ceiling, tenant.quotas])
            .to_string()
            .as_bytes(),
    )
}

/// 429 for a used-up tenant quota.
fn quota_exceeded(message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
}

/// Path segments after the leading slash.
fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let parts = segments(&path);
    let method = req.method().clone();
    let allowed = openapi::allowed_methods(&parts);
    if !allowed.is_empty() && !allowed.contains(&method.as_str()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{path} answers {}, not {method}", allowed.join(", ")),
        )
        .details(json!({ "allow": allowed })));
    }
    // HEAD is GET without the body (hyper leaves the body out).
    let read = method == Method::GET || method == Method::HEAD;
    match (read, parts.as_slice()) {
        (true, ["healthz"]) => {
            return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" })))
        }
        (true, ["metrics"]) => {
            // Tenant and instance ids, digests and origins: for operators only.
            let token = bearer(&req);
            if !state.is_admin(token.as_deref()) && !state.is_metrics_reader(token.as_deref()) {
                return Err(ApiError::unauthorized());
            }
            let upstream: Vec<_> = state
                .grants
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .flat_map(|(key, (_, grants))| {
                    let (tenant, instance) = key.split_once('/').unwrap_or((key, ""));
                    grants
                        .http
                        .counters()
                        .into_iter()
                        .map(|(origin, c)| (tenant.to_string(), instance.to_string(), origin, c))
                        .collect::<Vec<_>>()
                })
                .collect();
            let text = state
                .metrics
                .render(state.artifacts.stats(), state.warm.len(), &upstream);
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(
                    http::header::CONTENT_TYPE,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                )
                .body(Full::new(Bytes::from(text)).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())));
        }
        (true, ["openapi.json"]) => {
            return Ok(json_response(StatusCode::OK, &openapi::document()));
        }
        (true, ["readyz"]) => {
            state.store.check().await?;
            return Ok(json_response(StatusCode::OK, &json!({ "status": "ready" })));
        }
        _ => {}
    }
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method
    };
    let token = bearer(&req);
    if let ["v1", "tenants", rest @ ..] = parts.as_slice() {
        if !state.is_admin(token.as_deref()) {
            return Err(ApiError::unauthorized());
        }
        let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        return admin(state, method, &rest, req).await;
    }
    let tenant = state.tenant_of(token.as_deref()).await?;
    note_request(|log| log.tenant = Some(tenant.id.clone()));
    let parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    match (
        method,
        parts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (Method::POST, ["v1", "connectors"]) => upload(state, &tenant, req).await,
        (Method::GET, ["v1", "connectors"]) => {
            let mut builtins: Vec<&ConnectorMeta> =
                state.builtins.values().map(|(m, _)| m).collect();
            builtins.sort_by(|a, b| a.name.cmp(&b.name));
            let reply = list(state, "connectors", &tenant, |v: ConnectorMeta| json!(v)).await?;
            if builtins.is_empty() {
                return Ok(reply);
            }
            let own = read_json_response(reply).await?;
            let mut items: Vec<Value> = builtins.into_iter().map(|m| json!(m)).collect();
            // An upload of a bundled connector's bytes (stored before uploads of
            // them were answered with the bundled one) is listed once.
            let own_items = own["items"].as_array().cloned().unwrap_or_default();
            items.extend(own_items.into_iter().filter(|item| {
                item["id"]
                    .as_str()
                    .is_none_or(|id| !state.builtins.contains_key(id))
            }));
            Ok(json_response(StatusCode::OK, &json!({ "items": items })))
        }
        (Method::GET, ["v1", "connectors", id]) => {
            let meta = state
                .connector_meta(&tenant.id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("connector", id))?;
            Ok(json_response(StatusCode::OK, &json!(meta)))
        }
        (Method::DELETE, ["v1", "connectors", id]) => delete_connector(state, &tenant, id).await,
        (Method::POST, ["v1", "instances"]) => create_instance(state, &tenant, req).await,
        (Method::GET, ["v1", "instances"]) => {
            list(state, "instances", &tenant, |v: Instance| json!(v.view())).await
        }
        (Method::GET, ["v1", "instances", id]) => Ok(json_response(
            StatusCode::OK,
            &json!(instance(state, &tenant, id).await?.view()),
        )),
        (Method::PUT, ["v1", "instances", id]) => update_instance(state, &tenant, id, req).await,
        (Method::DELETE, ["v1", "instances", id]) => {
            if !state
                .store
                .delete("instances", &format!("{}/{id}", tenant.id))
                .await?
            {
                return Err(ApiError::not_found("instance", id));
            }
            state.forget_instance(&tenant.id, id);
            Ok(json_response(StatusCode::OK, &json!({ "deleted": id })))
        }
        (Method::POST, ["v1", "instances", id, operation]) => {
            invoke(state, &tenant, id, operation, req).await
        }
        (Method::GET, ["v1", "files"]) => {
            files::check_enabled(&tenant)?;
            let items = files::list(&state.tenant_files(&tenant.id)?)?;
            Ok(json_response(StatusCode::OK, &json!({ "items": items })))
        }
        (Method::PUT, ["v1", "files", path @ ..]) => put_file(state, &tenant, path, req).await,
        (Method::GET, ["v1", "files", path @ ..]) => {
            files::check_enabled(&tenant)?;
            let path = files::relative_path(path)?;
            let bytes = files::read(
                &state.tenant_files(&tenant.id)?,
                &path,
                state.max_upload_bytes,
            )?;
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
                .body(Full::new(Bytes::from(bytes)).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())))
        }
        (Method::DELETE, ["v1", "files", path @ ..]) => {
            files::check_enabled(&tenant)?;
            let path = files::relative_path(path)?;
            files::remove(&state.tenant_files(&tenant.id)?, &path)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "deleted": path.to_string_lossy() }),
            ))
        }
        (method, _) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route for {method} {path}"),
        )),
    }
}

/// The JSON body of a response built by this server.
async fn read_json_response(response: Response<ResponseBody>) -> Result<Value, ApiError> {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

async fn list<T: DeserializeOwned>(
    state: &State,
    kind: &str,
    tenant: &Tenant,
    view: impl Fn(T) -> Value,
) -> Reply {
    let mut items = Vec::new();
    for key in state.store.list(kind, &format!("{}/", tenant.id)).await? {
        if let Some(item) = state.load::<T>(kind, &key).await? {
            items.push(view(item));
        }
    }
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TenantSpec {
    name: String,
    #[serde(default)]
    quotas: Quotas,
    #[serde(default)]
    ceiling: Ceiling,
}

async fn admin(
    state: &Arc<State>,
    method: Method,
    rest: &[String],
    req: Request<Incoming>,
) -> Reply {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (method, rest.as_slice()) {
        (Method::POST, []) => {
            let spec: TenantSpec = read_json(req).await?;
            spec.ceiling.check()?;
            let tenant = Tenant {
                id: new_id(),
                name: spec.name,
                quotas: spec.quotas,
                ceiling: spec.ceiling,
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
            spec.ceiling.check()?;
            tenant.name = spec.name;
            tenant.quotas = spec.quotas;
            tenant.ceiling = spec.ceiling;
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
async fn delete_tenant_objects(state: &State, tenant: &str) -> Result<(), ApiError> {
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

async fn upload(state: &Arc<State>, tenant: &Tenant, req: Request<Incoming>) -> Reply {
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
async fn put_file(
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
fn quota_lock(tenant: &str) -> String {
    format!("quota/{tenant}")
}

async fn delete_connector(state: &State, tenant: &Tenant, id: &str) -> Reply {
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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct InstanceSpec {
    /// The connector: its id (sha256), or `name@version`.
    connector: String,
    /// A name for people; ids stay the handles.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    grants: Value,
}

async fn create_instance(state: &Arc<State>, tenant: &Tenant, req: Request<Incoming>) -> Reply {
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
        grants: spec.grants,
    };
    // Validate config and grants now, so a bad instance is refused at creation.
    let schema = state.config_schema(&meta)?;
    check_config(&schema, &meta, &instance.config)?;
    grants_of(state, tenant, &instance)?;
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
async fn update_instance(
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
    current.connector = meta.id.clone();
    current.name = spec.name;
    current.config = if spec.config.is_null() {
        json!({})
    } else {
        spec.config
    };
    if spec.secrets.is_empty()
        && !current.secrets.is_empty()
        && secret_destinations(&current.grants) != secret_destinations(&spec.grants)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "secrets_required",
            "this update changes where the instance's secrets are sent (http `auth`, or a sql grant with a `password_secret`); supply `secrets` again to make it",
        ));
    }
    current.grants = spec.grants;
    if !spec.secrets.is_empty() {
        current.secrets = spec.secrets;
    }
    let schema = state.config_schema(&meta)?;
    check_config(&schema, &meta, &current.config)?;
    grants_of(state, tenant, &current)?;
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
fn compile_config_schema(meta: &ConnectorMeta) -> Result<schema::ConfigSchema, ApiError> {
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
fn check_instance_name(name: Option<&str>) -> Result<(), ApiError> {
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
fn record_size<T: serde::Serialize>(record: &T) -> usize {
    serde_json::to_vec(record).map_or(0, |bytes| bytes.len())
}

/// Everything that decides where the host sends an instance's secrets: its
/// http `auth` entries (origin, kind, header or query name, token URL) and
/// the sql grants that take their password from a secret (URL included).
fn secret_destinations(grants: &Value) -> Value {
    let auth = grants
        .get("http")
        .and_then(|http| http.get("auth"))
        .cloned()
        .unwrap_or(Value::Null);
    let sql: Vec<&Value> = grants
        .get("sql")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|grant| grant.get("password_secret").is_some())
        .collect();
    json!([auth, sql])
}

async fn instance(state: &State, tenant: &Tenant, id: &str) -> Result<Instance, ApiError> {
    state
        .load("instances", &format!("{}/{id}", tenant.id))
        .await?
        .ok_or_else(|| ApiError::not_found("instance", id))
}

/// Refuse a config that does not match the connector's config schema (422 naming the field).
fn check_config(
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

/// The grants of `instance`: checked against the tenant's ceiling first; only
/// then are its mounts created and opened, beneath the tenant's root handle.
fn grants_of(state: &State, tenant: &Tenant, instance: &Instance) -> Result<Grants, ApiError> {
    let fitted = fit_grants(&instance.grants, &tenant.ceiling)?;
    let mut grants = Grants::from_json(&fitted.json.to_string())?;
    grants.sql.check_urls(&sluice::policy::SqlUrlPolicy {
        allow_privileged_roles: tenant.ceiling.sql_privileged_roles,
        ..sluice::policy::SqlUrlPolicy::STRICT
    })?;
    if !fitted.mounts.is_empty() {
        let root = state.tenant_files(&tenant.id)?;
        for mount in fitted.mounts {
            let opened = sluice::policy::Mount::beneath(
                &root,
                std::path::Path::new(&mount.host),
                &mount.guest,
                mount.mode,
                true,
            )
            .map_err(|_| model::outside("files", &mount.host))?;
            grants.files.add(opened)?;
        }
    }
    for (name, value) in &instance.secrets {
        grants = grants.secret(name, value);
    }
    grants.sql.check_secrets()?;
    Ok(grants)
}

fn limits_of(tenant: &Tenant) -> Limits {
    Limits {
        memory_bytes: tenant.quotas.memory_mib.saturating_mul(1 << 20),
        cpu_per_call: Duration::from_millis(tenant.quotas.cpu_ms),
        wall_clock_per_call: Duration::from_millis(tenant.quotas.timeout_ms),
        ..Limits::default()
    }
}

/// A filter as the API takes it: `{"field": "age", "op": "gt", "value": 30}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FilterSpec {
    field: String,
    op: String,
    /// Required except for `is-null` and `is-not-null`.
    value: Option<Value>,
}

/// A sort key: `{"field": "age", "direction": "desc"}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SortSpec {
    field: String,
    #[serde(default = "ascending")]
    direction: String,
}

fn ascending() -> String {
    "asc".into()
}

/// A page: `{"page_size": 100, "offset": 0, "cursor": "..."}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PageSpec {
    page_size: u32,
    offset: Option<u64>,
    cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct InvokeSpec {
    resource: String,
    operation: String,
    filters: Vec<FilterSpec>,
    sort: Vec<SortSpec>,
    fields: Vec<String>,
    pagination: Option<PageSpec>,
    options: Option<Value>,
    records: Vec<Value>,
    checkpoint: Option<String>,
    batch_size: Option<u32>,
}

impl InvokeSpec {
    /// Refuse fields `operation` does not use (`records` on a fetch, say):
    /// a field that would be ignored is a mistake to report, not to guess at.
    fn fits(&self, operation: &str) -> Result<(), ApiError> {
        let given = [
            ("resource", !self.resource.is_empty()),
            ("operation", !self.operation.is_empty()),
            ("filters", !self.filters.is_empty()),
            ("sort", !self.sort.is_empty()),
            ("fields", !self.fields.is_empty()),
            ("pagination", self.pagination.is_some()),
            ("options", self.options.is_some()),
            ("records", !self.records.is_empty()),
            ("checkpoint", self.checkpoint.is_some()),
            ("batch_size", self.batch_size.is_some()),
        ];
        let used: &[&str] = match operation {
            "fetch" => &[
                "resource",
                "filters",
                "sort",
                "fields",
                "pagination",
                "options",
            ],
            "stream" => &[
                "resource",
                "filters",
                "sort",
                "fields",
                "options",
                "checkpoint",
                "batch_size",
            ],
            "execute" => &["resource", "operation", "records", "options"],
            _ => &[],
        };
        let unused: Vec<String> = given
            .iter()
            .filter(|(name, present)| *present && !used.contains(name))
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "{} {} not used by `{operation}`{}",
                unused.join(", "),
                if unused.len() == 1 { "is" } else { "are" },
                if used.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (it takes {})",
                        used.iter()
                            .map(|u| format!("`{u}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ))
    }
}

/// The operations an instance can be invoked with.
const OPERATIONS: &[&str] = &["health", "discover", "fetch", "execute", "stream"];

async fn invoke(
    state: &Arc<State>,
    tenant: &Tenant,
    id: &str,
    operation: &str,
    req: Request<Incoming>,
) -> Reply {
    // Only known operations reach the metrics: a label never comes from the URL.
    if !OPERATIONS.contains(&operation) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!(
                "no operation `{operation}`; one of {}",
                OPERATIONS.join(", ")
            ),
        ));
    }
    let started = std::time::Instant::now();
    let instance = instance(state, tenant, id).await?;
    note_request(|log| log.instance = Some(instance.id.clone()));
    let connector = instance.connector.clone();
    let result = invoke_inner(state, tenant, instance, operation, req).await;
    // A stream that started records its own outcome when it ends.
    if operation != "stream" || result.is_err() {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code,
        };
        state.metrics.invocation(
            &tenant.id,
            &connector,
            operation,
            outcome,
            started.elapsed(),
        );
    }
    result
}

async fn invoke_inner(
    state: &Arc<State>,
    tenant: &Tenant,
    instance: Instance,
    operation: &str,
    req: Request<Incoming>,
) -> Reply {
    let spec: InvokeSpec = {
        let body = read_body(req, 8 << 20).await?;
        if body.is_empty() {
            InvokeSpec::default()
        } else {
            parse_body(&body)?
        }
    };
    spec.fits(operation)?;
    // The request is checked before a session is taken or opened.
    let mut fetch = FetchRequest::new(spec.resource.clone()).fields(spec.fields.iter().cloned());
    for (i, filter) in spec.filters.iter().enumerate() {
        let op = sluice::FilterOp::parse(&filter.op).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("filters[{i}]: {e}"),
            )
        })?;
        let value = match (&filter.value, op) {
            (Some(value), _) => value.clone(),
            (None, sluice::FilterOp::IsNull | sluice::FilterOp::IsNotNull) => Value::Null,
            (None, _) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!(
                    "filters[{i}]: `value` is missing (only `is-null` and `is-not-null` take none)"
                ),
                ))
            }
        };
        fetch = fetch.filter(&filter.field, op, &value.to_string());
    }
    for (i, key) in spec.sort.iter().enumerate() {
        let direction = sluice::SortDirection::parse(&key.direction).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("sort[{i}]: {e}"),
            )
        })?;
        fetch = fetch.sort(&key.field, direction);
    }
    if let Some(page) = &spec.pagination {
        fetch = fetch.page(page.page_size, page.offset, page.cursor.clone());
    }
    fetch.options = spec.options.as_ref().map(Value::to_string);
    let version = instance_version(tenant, &instance);
    let key = format!("{}/{}", tenant.id, instance.id);
    // A stream keeps its session for as long as it runs: always a fresh one.
    let kept = (operation != "stream")
        .then(|| state.warm.take(&key, &version))
        .flatten();
    let (mut session, permit) = match kept {
        Some(held) => held,
        None => {
            let permit = state.permit(tenant).await?;
            let connector = state.connector(&tenant.id, &instance.connector).await?;
            let grants = state.instance_grants(tenant, &instance, &version)?;
            let session = connector
                .open_with_limits(&instance.config.to_string(), &grants, &limits_of(tenant))
                .await?;
            state.metrics.instantiated(session.instantiation_time());
            (session, permit)
        }
    };
    // Counted from here: a session that exists, holding one of the tenant's permits.
    let active = state.metrics.session();
    let denials_before = session.denials().len();
    let value = match operation {
        "stream" => {
            drop(active);
            let context = StreamContext {
                state: Arc::clone(state),
                tenant: tenant.id.clone(),
                connector: instance.connector.clone(),
                instance: instance.id.clone(),
                request_id: REQUEST_LOG
                    .try_with(|log| log.borrow().request_id.clone())
                    .unwrap_or_default(),
            };
            return stream(
                session,
                fetch,
                spec.checkpoint,
                spec.batch_size.unwrap_or(500),
                permit,
                context,
            )
            .await;
        }
        _ => answer(&mut session, operation, &fetch, &spec).await,
    };
    // Denials are counted whatever the call's outcome (a denied call fails).
    let denials = session.denials();
    state.metrics.denials(
        &tenant.id,
        denials.get(denials_before..).unwrap_or_default(),
    );
    let value = value?;
    if let Some((session, permit)) = state.warm.give(&key, version, session, permit) {
        let _ = session.close().await;
        drop(permit);
    }
    drop(active);
    Ok(match value {
        Answer::Value(value) => json_response(StatusCode::OK, &value),
        Answer::Text(text) => text_json_response(StatusCode::OK, text),
    })
}

/// Run a non-stream `operation` on `session`.
async fn answer(
    session: &mut sluice::Session,
    operation: &str,
    fetch: &FetchRequest,
    spec: &InvokeSpec,
) -> Result<Answer, ApiError> {
    Ok(match operation {
        "health" => {
            session.health().await?;
            Answer::Value(json!({ "healthy": true }))
        }
        "discover" => {
            let resources = session.discover().await?;
            Answer::Value(json!({ "resources": resources.iter().map(|r| json!({
                "name": r.name,
                "schema": r.schema.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
            })).collect::<Vec<_>>() }))
        }
        "fetch" => {
            let page = session.fetch(fetch).await?;
            let mut body = String::from("{\"records\":");
            records_json(&page.records, &mut body)?;
            body.push_str(&format!(
                ",\"total_count\":{},\"next_cursor\":{}}}",
                json!(page.total_count),
                json!(page.next_cursor)
            ));
            Answer::Text(body)
        }
        "execute" => {
            let records = execute_records(&spec.records)?;
            let mut request =
                ExecuteRequest::new(spec.resource.clone(), spec.operation.clone(), records);
            request.options = spec.options.as_ref().map(Value::to_string);
            let result = session.execute(&request).await?;
            let mut body = format!("{{\"affected\":{},\"records\":", result.affected);
            records_json(&result.records, &mut body)?;
            body.push('}');
            Answer::Text(body)
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no operation `{operation}`"),
            ))
        }
    })
}

/// An invocation's answer: a value, or JSON text already written.
enum Answer {
    Value(Value),
    Text(String),
}

/// The records of an execute body: record lines or bare data objects (see
/// [`sluice::wire`]); a checkpoint or error line is not a record to write.
fn execute_records(values: &[Value]) -> Result<Vec<sluice::Record>, ApiError> {
    use sluice::wire::Message;
    values
        .iter()
        .enumerate()
        .map(|(i, value)| match sluice::wire::read(value.clone()) {
            Ok(Message::Record(record)) => Ok(record),
            Ok(Message::Checkpoint(_) | Message::Error(_)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("records[{i}]: a stream's checkpoint or error line is not a record; send the records only"),
            )),
            Err(why) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("records[{i}]: {why}"),
            )),
        })
        .collect()
}

/// `records` as a JSON array appended to `out`, each record's text copied, not rebuilt.
fn records_json(records: &[sluice::Record], out: &mut String) -> Result<(), sluice::Error> {
    out.push('[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        record.write_json(out)?;
    }
    out.push(']');
    Ok(())
}

/// A chunked NDJSON body fed by the streaming task; dropping it (client gone) stops the task.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Who a stream belongs to, for its metrics and its log line.
struct StreamContext {
    state: Arc<State>,
    tenant: String,
    connector: String,
    instance: String,
    request_id: String,
}

/// Start a stream. Until its first batch (or its end) the answer is not
/// committed: a stream that fails before streaming anything answers with the
/// error's own status; one that fails later ends with an error line.
async fn stream(
    session: sluice::Session,
    fetch: FetchRequest,
    checkpoint: Option<String>,
    batch_size: u32,
    permit: tokio::sync::OwnedSemaphorePermit,
    context: StreamContext,
) -> Reply {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _active = context.state.metrics.session();
        let mut start = Some(started_tx);
        let outcome = pump(session, fetch, checkpoint, batch_size, tx, &mut start).await;
        // A stream refused before it started is counted by `invoke`, as an error answer.
        if start.is_none() {
            tracing::info!(
                request_id = context.request_id,
                tenant = context.tenant,
                instance = context.instance,
                outcome,
                ms = started.elapsed().as_millis() as u64,
                "stream ended"
            );
            context.state.metrics.invocation(
                &context.tenant,
                &context.connector,
                "stream",
                outcome,
                started.elapsed(),
            );
        }
        drop(permit);
    });
    match started_rx.await {
        Ok(Ok(())) => Ok(Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/x-ndjson")
            .body(ChannelBody(rx).boxed())
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(sluice::Error::Host("the stream task ended early".into()).into()),
    }
}

/// Stream outcome `err`: the answer's status while nothing was streamed
/// (`start` still held), else an error line ending the stream. Returns the
/// error code as the outcome.
async fn report(
    tx: &mpsc::Sender<Bytes>,
    start: &mut Option<StartSignal>,
    err: sluice::Error,
) -> &'static str {
    let err = ApiError::from(err);
    let code = err.code;
    match start.take() {
        Some(signal) => {
            let _ = signal.send(Err(err));
        }
        None => {
            let mut line = String::new();
            sluice::wire::error_line(err.code, &err.message, &err.details, &mut line);
            let _ = tx.send(Bytes::from(line)).await;
        }
    }
    code
}

/// Tells the handler how a stream began: streaming (answer 200), or refused.
type StartSignal = tokio::sync::oneshot::Sender<Result<(), ApiError>>;

/// Move a stream's batches into the response; returns the outcome.
async fn pump(
    mut session: sluice::Session,
    fetch: FetchRequest,
    checkpoint: Option<String>,
    batch_size: u32,
    tx: mpsc::Sender<Bytes>,
    start: &mut Option<StartSignal>,
) -> &'static str {
    {
        let mut stream = match session.stream(&fetch, checkpoint.as_deref()).await {
            Ok(stream) => stream,
            Err(e) => return report(&tx, start, e).await,
        };
        loop {
            match stream.next(batch_size.max(1)).await {
                Ok(Some(batch)) => {
                    let mut chunk = String::new();
                    for record in &batch.records {
                        // A record that is not JSON ends the stream with an error line; the
                        // batch is not sent, so resuming from the last checkpoint loses nothing.
                        if let Err(e) = sluice::wire::record_line(record, &mut chunk) {
                            return report(&tx, start, e).await;
                        }
                    }
                    if let Some(cp) = &batch.checkpoint {
                        sluice::wire::checkpoint_line(cp, &mut chunk);
                    }
                    if let Some(signal) = start.take() {
                        let _ = signal.send(Ok(()));
                    }
                    if tx.send(Bytes::from(chunk)).await.is_err() {
                        // The client went away: dropping the session cancels the guest.
                        return "client_gone";
                    }
                }
                Ok(None) => break,
                Err(e) => return report(&tx, start, e).await,
            }
        }
        let _ = stream.close().await;
    }
    let _ = session.close().await;
    if let Some(signal) = start.take() {
        let _ = signal.send(Ok(()));
    }
    "ok"
}
