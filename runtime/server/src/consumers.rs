//! Consumer leases: consume a queue over HTTP with explicit acknowledgement.
//!
//! `POST /v1/instances/{instance}/consumers` opens a session of the instance
//! and a stream of one resource, pinned to a lease with an unguessable id;
//! then `…/consumers/{consumer}/next` hands out the next batch, `…/ack` and
//! `…/nack` settle delivered records by id, and `DELETE …/consumers/{consumer}`
//! ends the lease. A lease that sees no call for its idle timeout ends by
//! itself. However a lease ends — closed, expired, failed, its instance
//! changed or deleted — its session is closed without acknowledging anything,
//! so the broker redelivers every record that was delivered but not acked.
//!
//! Threat model: leases are found by tenant, instance and id together, so
//! one tenant can neither use nor probe another's (404 either way). Each
//! lease holds one of its tenant's invocation permits for as long as it
//! lives, so a tenant that opens many starves only itself, and the idle
//! timeout is bounded so a forgotten lease gives its permit back. Every call
//! re-reads the instance: a lease outlives no change of grants or secrets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::body::{json_response, parse_body, read_body, text_json_response, Reply};
use crate::instances::{instance, limits_of};
use crate::invoke::{fetch_request, records_json, FilterSpec, InvokeSpec, SortSpec};
use crate::model::Tenant;
use crate::state::instance_version;
use crate::ApiError;
use crate::State;

/// The idle timeout of a lease that names none.
const DEFAULT_IDLE_MS: u64 = 30_000;
/// The longest idle timeout a lease may ask for.
const MAX_IDLE_MS: u64 = 600_000;
/// The most records one `next` hands out.
const MAX_BATCH: u32 = 10_000;

/// `POST /v1/instances/{instance}/consumers`: what to consume.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsumerSpec {
    /// The resource to consume (a queue, stream, subject or topic).
    pub(crate) resource: String,
    #[serde(default)]
    pub(crate) filters: Vec<FilterSpec>,
    #[serde(default)]
    pub(crate) sort: Vec<SortSpec>,
    #[serde(default)]
    pub(crate) fields: Vec<String>,
    /// Connector-specific options of the stream.
    pub(crate) options: Option<Value>,
    /// Resume after this checkpoint.
    pub(crate) checkpoint: Option<String>,
    /// End the lease after this long without a call (1 to 600000 ms;
    /// default 30000); its unacknowledged records are then redelivered.
    pub(crate) idle_timeout_ms: Option<u64>,
}

/// `POST …/consumers/{consumer}/next`: how many records at most.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NextSpec {
    /// At most this many records (1 to 10000; default 100).
    pub(crate) max: Option<u32>,
}

/// `POST …/consumers/{consumer}/ack` or `…/nack`: the records, by id.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettleSpec {
    /// Ids of delivered records.
    pub(crate) ids: Vec<String>,
}

/// A lease as `POST …/consumers` answers it.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub(crate) struct LeaseView {
    /// The lease's id, for the calls that follow.
    pub(crate) id: String,
    /// The instance it consumes through.
    pub(crate) instance: String,
    /// The resource it consumes.
    pub(crate) resource: String,
    /// How long it lives without a call.
    pub(crate) idle_timeout_ms: u64,
}

/// What a lease's task is asked to do; each answers on its own channel.
enum Command {
    Next {
        max: u32,
        reply: oneshot::Sender<Result<String, ApiError>>,
    },
    Ack {
        ids: Vec<String>,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Nack {
        ids: Vec<String>,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Close,
}

/// A live lease: the channel to its task and the instance version it was opened at.
struct Lease {
    commands: mpsc::Sender<Command>,
    version: String,
}

/// The node's live leases, by `tenant/instance/lease`.
#[derive(Default)]
pub(crate) struct Consumers {
    leases: Mutex<HashMap<String, Lease>>,
}

impl Consumers {
    fn insert(&self, key: String, lease: Lease) {
        self.lock().insert(key, lease);
    }

    fn get(&self, key: &str) -> Option<(mpsc::Sender<Command>, String)> {
        self.lock()
            .get(key)
            .map(|lease| (lease.commands.clone(), lease.version.clone()))
    }

    fn remove(&self, key: &str) -> Option<mpsc::Sender<Command>> {
        self.lock().remove(key).map(|lease| lease.commands)
    }

    /// End every lease of an instance (changed or deleted).
    pub(crate) fn forget_instance(&self, instance_key: &str) {
        let prefix = format!("{instance_key}/");
        let ended: Vec<mpsc::Sender<Command>> = {
            let mut leases = self.lock();
            let keys: Vec<String> = leases
                .keys()
                .filter(|key| key.starts_with(&prefix))
                .cloned()
                .collect();
            keys.iter()
                .filter_map(|key| leases.remove(key))
                .map(|lease| lease.commands)
                .collect()
        };
        for commands in ended {
            let _ = commands.try_send(Command::Close);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lease_key(tenant: &Tenant, instance: &str, lease: &str) -> String {
    format!("{}/{instance}/{lease}", tenant.id)
}

fn lease_gone(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no consumer `{id}`: it never existed, was closed, expired after its idle timeout, or ended with an error (its unacknowledged records are redelivered)"),
    )
}

fn bad_body(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
}

/// `POST /v1/instances/{instance}/consumers`: open a lease.
pub(crate) async fn create(
    state: &Arc<State>,
    tenant: &Tenant,
    id: &str,
    req: Request<Incoming>,
) -> Reply {
    let instance = instance(state, tenant, id).await?;
    let spec: ConsumerSpec = parse_body(&read_body(req, 1 << 20).await?)?;
    let idle_ms = spec.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_MS);
    if !(1..=MAX_IDLE_MS).contains(&idle_ms) {
        return Err(bad_body(format!(
            "idle_timeout_ms: give 1 to {MAX_IDLE_MS}"
        )));
    }
    if spec.resource.is_empty() {
        return Err(bad_body("resource: name what to consume".into()));
    }
    let fetch = fetch_request(&InvokeSpec {
        resource: spec.resource.clone(),
        filters: spec.filters,
        sort: spec.sort,
        fields: spec.fields,
        options: spec.options,
        ..InvokeSpec::default()
    })?;
    let permit = state.permit(tenant).await?;
    let connector = state.connector(&tenant.id, &instance.connector).await?;
    let grants = state.instance_grants(tenant, &instance)?;
    let session = connector
        .open_with_limits(&instance.config.to_string(), &grants, &limits_of(tenant))
        .await?;
    state.metrics.instantiated(session.instantiation_time());

    let lease = crate::new_token();
    let key = lease_key(tenant, &instance.id, &lease);
    let (commands, inbox) = mpsc::channel(8);
    let (started, start) = oneshot::channel();
    let task = LeaseTask {
        state: Arc::clone(state),
        key: key.clone(),
        idle: Duration::from_millis(idle_ms),
    };
    tokio::spawn(task.run(session, fetch, spec.checkpoint, inbox, started, permit));
    start
        .await
        .map_err(|_| ApiError::from(sluice::Error::Host("the consumer's task ended".into())))??;
    state.consumers.insert(
        key,
        Lease {
            commands,
            version: instance_version(tenant, &instance),
        },
    );
    tracing::info!(
        tenant = tenant.id,
        instance = instance.id,
        idle_ms,
        "consumer lease opened"
    );
    Ok(json_response(
        StatusCode::CREATED,
        &json!(LeaseView {
            id: lease,
            instance: instance.id,
            resource: spec.resource,
            idle_timeout_ms: idle_ms,
        }),
    ))
}

/// `POST …/consumers/{consumer}/{action}`: `next`, `ack` or `nack`.
pub(crate) async fn command(
    state: &Arc<State>,
    tenant: &Tenant,
    id: &str,
    lease: &str,
    action: &str,
    req: Request<Incoming>,
) -> Reply {
    if !matches!(action, "next" | "ack" | "nack") {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no consumer action `{action}`; one of next, ack, nack"),
        ));
    }
    let body = read_body(req, 8 << 20).await?;
    let key = lease_key(tenant, id, lease);
    let commands = live(state, tenant, id, lease).await?;
    match action {
        "next" => {
            let spec: NextSpec = if body.is_empty() {
                NextSpec::default()
            } else {
                parse_body(&body)?
            };
            let max = spec.max.unwrap_or(100);
            if !(1..=MAX_BATCH).contains(&max) {
                return Err(bad_body(format!("max: give 1 to {MAX_BATCH}")));
            }
            let (reply, answer) = oneshot::channel();
            send(state, &key, &commands, Command::Next { max, reply }, lease).await?;
            let text = answer.await.map_err(|_| lease_gone(lease))??;
            Ok(text_json_response(StatusCode::OK, text))
        }
        _ => {
            let spec: SettleSpec = parse_body(&body)?;
            let count = spec.ids.len();
            let (reply, answer) = oneshot::channel();
            let command = if action == "ack" {
                Command::Ack {
                    ids: spec.ids,
                    reply,
                }
            } else {
                Command::Nack {
                    ids: spec.ids,
                    reply,
                }
            };
            send(state, &key, &commands, command, lease).await?;
            answer.await.map_err(|_| lease_gone(lease))??;
            let word = if action == "ack" { "acked" } else { "nacked" };
            Ok(json_response(StatusCode::OK, &json!({ word: count })))
        }
    }
}

/// `DELETE …/consumers/{consumer}`: end a lease now.
pub(crate) async fn close(state: &Arc<State>, tenant: &Tenant, id: &str, lease: &str) -> Reply {
    let commands = state
        .consumers
        .remove(&lease_key(tenant, id, lease))
        .ok_or_else(|| lease_gone(lease))?;
    let _ = commands.send(Command::Close).await;
    Ok(json_response(StatusCode::OK, &json!({ "deleted": lease })))
}

/// The lease's channel, if it is live and its instance unchanged since it opened.
async fn live(
    state: &Arc<State>,
    tenant: &Tenant,
    id: &str,
    lease: &str,
) -> Result<mpsc::Sender<Command>, ApiError> {
    let key = lease_key(tenant, id, lease);
    let (commands, version) = state.consumers.get(&key).ok_or_else(|| lease_gone(lease))?;
    let current = match instance(state, tenant, id).await {
        Ok(instance) => Some(instance_version(tenant, &instance)),
        Err(e) if e.status == StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    if current.as_deref() != Some(version.as_str()) {
        if let Some(commands) = state.consumers.remove(&key) {
            let _ = commands.send(Command::Close).await;
        }
        return Err(ApiError::new(
            StatusCode::GONE,
            "consumer_ended",
            format!("consumer `{lease}` ended: its instance was changed or deleted since it opened; open a new one (unacknowledged records are redelivered)"),
        ));
    }
    Ok(commands)
}

/// Hand `command` to the lease's task; the entry of a task that has ended
/// (its idle timeout, an error) is removed here if it was still listed.
async fn send(
    state: &State,
    key: &str,
    commands: &mpsc::Sender<Command>,
    command: Command,
    lease: &str,
) -> Result<(), ApiError> {
    if commands.send(command).await.is_err() {
        state.consumers.remove(key);
        return Err(lease_gone(lease));
    }
    Ok(())
}

/// The task that owns a lease's session and stream.
struct LeaseTask {
    state: Arc<State>,
    key: String,
    idle: Duration,
}

impl LeaseTask {
    async fn run(
        self,
        mut session: sluice::Session,
        fetch: sluice::FetchRequest,
        checkpoint: Option<String>,
        mut inbox: mpsc::Receiver<Command>,
        started: oneshot::Sender<Result<(), ApiError>>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let _permit = permit;
        let _active = self.state.metrics.session();
        let ending = match session.stream(&fetch, checkpoint.as_deref()).await {
            Err(e) => {
                let _ = started.send(Err(e.into()));
                "refused"
            }
            Ok(mut stream) => {
                let _ = started.send(Ok(()));
                let ending = self.serve(&mut stream, &mut inbox).await;
                // Closed without acknowledging: what was delivered but not
                // acked stays with the broker, to be delivered again.
                let _ = stream.close().await;
                ending
            }
        };
        let _ = session.close().await;
        self.state.consumers.remove(&self.key);
        tracing::info!(lease = self.key, ending, "consumer lease ended");
    }

    /// Answer commands until the lease ends; how it ended.
    async fn serve(
        &self,
        stream: &mut sluice::RecordStream<'_>,
        inbox: &mut mpsc::Receiver<Command>,
    ) -> &'static str {
        loop {
            let command = match tokio::time::timeout(self.idle, inbox.recv()).await {
                Err(_) => return "idle timeout",
                Ok(None) | Ok(Some(Command::Close)) => return "closed",
                Ok(Some(command)) => command,
            };
            match command {
                Command::Next { max, reply } => match stream.next(max).await {
                    Ok(Some(batch)) => {
                        let mut text = String::from("{\"records\":");
                        let written = records_json(&batch.records, &mut text);
                        text.push_str(&format!(
                            ",\"checkpoint\":{},\"end\":false}}",
                            json!(batch.checkpoint)
                        ));
                        let failed = written.is_err();
                        let _ = reply.send(written.map(|()| text).map_err(ApiError::from));
                        if failed {
                            return "error";
                        }
                    }
                    Ok(None) => {
                        let end = r#"{"records":[],"checkpoint":null,"end":true}"#;
                        let _ = reply.send(Ok(end.to_string()));
                        return "end of stream";
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return "error";
                    }
                },
                Command::Ack { ids, reply } => {
                    let result = stream.ack(&ids).await;
                    let failed = result.is_err();
                    let _ = reply.send(result.map_err(ApiError::from));
                    if failed {
                        return "error";
                    }
                }
                Command::Nack { ids, reply } => {
                    let result = stream.nack(&ids).await;
                    let failed = result.is_err();
                    let _ = reply.send(result.map_err(ApiError::from));
                    if failed {
                        return "error";
                    }
                }
                Command::Close => return "closed",
            }
        }
    }
}
