//! A live connector: one `Store`, one instance, one guest `session` resource.
//!
//! Every call runs under the session's limits: the epoch callback stops guest
//! code past its CPU budget, a wall-clock timeout covers guest code and host
//! I/O together, and the memory limiter refuses growth past the limit. A call
//! stopped by a limit or a trap leaves the store in an unknown state, so the
//! session refuses further calls; the `Runtime` and other sessions are
//! untouched.

use std::sync::Arc;

use wasmtime::component::{ResourceAny, ResourceTable, ResourceTableError};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::exports::sluice::connector::connector_api::Guest as Api;
use crate::bindings::{
    Batch, Connector as Bindings, ConnectorError, Descriptor, ExecuteRequest, ExecuteResponse,
    FetchRequest, FetchResponse, ResourceInfo,
};
use crate::capability::denial::{Denial, Denials, Expiries};
use crate::capability::grants::Grants;
use crate::capability::http::HttpHooks;
use crate::capability::log::LogTags;
use crate::capability::output::{GuestOutput, GuestStream};
use crate::component::Connector;
use crate::error::{Error, OUTPUT_FOLLOWS};
use crate::limits::{LimitExceeded, Limits, StoreLimiter};
use crate::state::HostState;
use crate::tape::Tape;

/// An open connector session. Dropping it disconnects: the store and every
/// host resource it holds (files, sockets, requests) are released.
/// [`Session::close`] also lets the connector run its own cleanup.
pub struct Session {
    store: Store<HostState>,
    bindings: Bindings,
    handle: Option<ResourceAny>,
    limits: Limits,
    denials: Denials,
    /// Grant timeouts that expired during the current call.
    expiries: Expiries,
    id: u64,
    poisoned: Option<String>,
    /// Stream handles dropped without `close`, released before the next call.
    abandoned: Vec<ResourceAny>,
    /// How long creating the store and instantiating the component took.
    instantiation_time: std::time::Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("limits", &self.limits)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The outcome of one guest call before classification.
type CallOutcome<T> =
    Result<wasmtime::Result<Result<T, ConnectorError>>, tokio::time::error::Elapsed>;

impl Session {
    /// A fresh store and instance with `grants` and `limits`; no guest session yet.
    pub(crate) async fn instantiate(
        connector: &Connector,
        grants: &Grants,
        limits: &Limits,
        tape: Option<&Tape>,
    ) -> Result<Self, Error> {
        let started = std::time::Instant::now();
        let runtime = connector.runtime();
        let id = runtime.next_session_id();
        grants.check_secrets()?;
        let denials = Denials::default();
        let expiries = Expiries::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(runtime.config().inline_file_io);
        let output = GuestOutput::default();
        let tags = LogTags {
            connector: connector.name_arc(),
            session: id,
        };
        let stream = |name| GuestStream {
            output: output.clone(),
            name,
            tags: tags.clone(),
            secrets: grants.secrets.clone(),
        };
        wasi.stdout(stream("stdout")).stderr(stream("stderr"));
        if let Some(tape) = tape {
            crate::tape::apply_clocks(&mut wasi, tape);
        }
        grants.files.apply(&mut wasi)?;
        Arc::new(grants.sockets.clone()).apply(&mut wasi, &denials);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: HttpHooks {
                policy: Arc::new(grants.http.clone()),
                denials: denials.clone(),
                expiries: expiries.clone(),
                tape: tape.cloned(),
            },
            table,
            limiter: StoreLimiter::new(
                limits,
                runtime.config().epoch_tick,
                runtime
                    .config()
                    .pooling
                    .as_ref()
                    .map(|p| p.max_memory_bytes),
            ),
            log: tags,
            denials: denials.clone(),
            expiries: expiries.clone(),
            sql: grants.sql.clone(),
            sftp: grants.sftp.clone(),
            forwarded: Default::default(),
            secrets: grants.secrets.clone(),
            output,
            tape: tape.cloned(),
            opened: Default::default(),
        };
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(limits.hostcall_fuel);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let limiter = &mut ctx.data_mut().limiter;
            limiter.cpu_ticks_used += 1;
            if limiter.cpu_ticks_used > limiter.cpu_ticks_allowed {
                return Err(wasmtime::Error::new(LimitExceeded::Cpu(limiter.cpu_limit)));
            }
            // Yield so a long-running guest shares its thread with other tasks.
            Ok(UpdateDeadline::Yield(1))
        });
        let instantiated = tokio::time::timeout(
            limits.wall_clock_per_call,
            connector.pre().instantiate_async(&mut store),
        )
        .await;
        let bindings = match instantiated {
            Err(_) => return Err(Error::Timeout(limits.wall_clock_per_call)),
            Ok(Err(e)) => return Err(classify_trap(e, limits)),
            Ok(Ok(bindings)) => bindings,
        };
        Ok(Self {
            store,
            bindings,
            handle: None,
            limits: limits.clone(),
            denials,
            expiries,
            id,
            poisoned: None,
            abandoned: Vec::new(),
            instantiation_time: started.elapsed(),
        })
    }

    /// Run the guest's `session.open`.
    pub(crate) async fn connect(&mut self, config: &str) -> Result<(), Error> {
        let config = config.to_string();
        let handle = self
            .call(async |api, store| api.session().call_open(store, &config).await)
            .await?;
        self.handle = Some(handle);
        // Debug: a busy server opens sessions all the time.
        tracing::debug!(
            connector = %self.store.data().log.connector,
            session = self.id,
            instantiate_us = self.instantiation_time.as_micros() as u64,
            "session opened"
        );
        Ok(())
    }

    /// Call `describe` (allowed before or after `open`).
    pub(crate) async fn describe(&mut self) -> Result<Descriptor, Error> {
        self.call(async |api, store| api.call_describe(store).await.map(Ok))
            .await
    }

    /// This session's number, unique within its runtime (it tags the guest's logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How long creating this session's store and instantiating the
    /// component took (before the connector's `open`).
    pub fn instantiation_time(&self) -> std::time::Duration {
        self.instantiation_time
    }

    /// Whether the session still takes calls (no earlier call trapped or hit a limit).
    pub fn is_usable(&self) -> bool {
        self.poisoned.is_none()
    }

    /// The limits this session runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every capability the host refused this session so far.
    pub fn denials(&self) -> Vec<Denial> {
        self.denials.all()
    }

    fn handle(&self) -> Result<ResourceAny, Error> {
        self.handle
            .ok_or_else(|| Error::SessionPoisoned("the session was never opened".into()))
    }

    /// Check the upstream is reachable.
    ///
    /// # Errors
    ///
    /// The connector's error, a denial, a limit or a trap.
    pub async fn health(&mut self) -> Result<(), Error> {
        let handle = self.handle()?;
        self.call(async |api, store| api.session().call_health_check(store, handle).await)
            .await
    }

    /// List the resources the connector can read.
    ///
    /// # Errors
    ///
    /// As [`Session::health`].
    pub async fn discover(&mut self) -> Result<Vec<ResourceInfo>, Error> {
        let handle = self.handle()?;
        self.call(async |api, store| api.session().call_discover(store, handle).await)
            .await
    }

    /// Read one page of a resource.
    ///
    /// # Errors
    ///
    /// As [`Session::health`].
    pub async fn fetch(&mut self, req: &FetchRequest) -> Result<FetchResponse, Error> {
        let handle = self.handle()?;
        self.call(async |api, store| api.session().call_fetch(store, handle, req).await)
            .await
    }

    /// Open a stream over a resource, resuming after `checkpoint` when given.
    ///
    /// # Errors
    ///
    /// As [`Session::health`].
    pub async fn stream(
        &mut self,
        req: &FetchRequest,
        checkpoint: Option<&str>,
    ) -> Result<RecordStream<'_>, Error> {
        let handle = self.handle()?;
        let stream = self
            .call(async |api, store| {
                api.session()
                    .call_stream(store, handle, req, checkpoint)
                    .await
            })
            .await?;
        Ok(RecordStream {
            session: self,
            handle: Some(stream),
        })
    }

    /// Write to a resource.
    ///
    /// # Errors
    ///
    /// As [`Session::health`].
    pub async fn execute(&mut self, req: &ExecuteRequest) -> Result<ExecuteResponse, Error> {
        let handle = self.handle()?;
        self.call(async |api, store| api.session().call_execute(store, handle, req).await)
            .await
    }

    /// Disconnect, letting the connector run its own cleanup first.
    ///
    /// # Errors
    ///
    /// A limit or trap error if the connector's cleanup misbehaves; the
    /// session is released either way.
    pub async fn close(mut self) -> Result<(), Error> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        if self.poisoned.is_some() {
            return Ok(());
        }
        self.release_abandoned().await?;
        self.drop_resource(handle).await
    }

    /// One guest call: [`Session::begin`], the call under the wall-clock
    /// deadline, [`Session::finish`].
    async fn call<T>(
        &mut self,
        call: impl AsyncFnOnce(
            &Api,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<T, ConnectorError>>,
    ) -> Result<T, Error> {
        let mark = self.begin().await?;
        let api = self.bindings.sluice_connector_connector_api();
        let outcome =
            tokio::time::timeout(self.limits.wall_clock_per_call, call(api, &mut self.store)).await;
        self.finish(mark, outcome)
    }

    /// Prepare a call: refuse if poisoned, release abandoned streams, reset the CPU budget.
    /// Returns the denial count, so the call's own denials can be told apart.
    async fn begin(&mut self) -> Result<usize, Error> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::SessionPoisoned(reason.clone()));
        }
        self.release_abandoned().await?;
        self.store.data().output.clear();
        self.reset_cpu();
        self.expiries.take();
        Ok(self.denials.len())
    }

    fn reset_cpu(&mut self) {
        self.store.data_mut().limiter.cpu_ticks_used = 0;
        self.store.set_epoch_deadline(1);
    }

    async fn release_abandoned(&mut self) -> Result<(), Error> {
        while let Some(handle) = self.abandoned.pop() {
            self.drop_resource(handle).await?;
        }
        Ok(())
    }

    async fn drop_resource(&mut self, handle: ResourceAny) -> Result<(), Error> {
        self.reset_cpu();
        let outcome = tokio::time::timeout(self.limits.wall_clock_per_call, async {
            handle.resource_drop_async(&mut self.store).await.map(Ok)
        })
        .await;
        let mark = self.denials.len();
        self.finish(mark, outcome)
    }

    /// Classify a call's outcome; poison the session when the store may be inconsistent.
    fn finish<T>(&mut self, mark: usize, outcome: CallOutcome<T>) -> Result<T, Error> {
        let error = match outcome {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(connector_error))) => {
                let connector_error = self.store.data().secrets.redact_error(connector_error);
                // A failure that follows a host denial is reported as that
                // denial; a timeout that follows a grant's, as that timeout.
                let expired = self.expiries.take();
                return Err(match self.denials.first_since(mark) {
                    Some(mut denial) => {
                        denial.connector_error = Some(connector_error);
                        Error::Denied(denial)
                    }
                    None => match (connector_error, expired) {
                        (ConnectorError::Timeout, Some(expired)) => Error::GrantTimeout(expired),
                        (connector_error, _) => Error::Connector(connector_error),
                    },
                });
            }
            Ok(Err(trap)) => match classify_trap(trap, &self.limits) {
                Error::Trap(what) => {
                    let state = self.store.data();
                    Error::Trap(match state.output.tail(&state.secrets) {
                        Some(output) => format!("{what}{OUTPUT_FOLLOWS}{output}"),
                        None => what,
                    })
                }
                other => other,
            },
            Err(_elapsed) => Error::Timeout(self.limits.wall_clock_per_call),
        };
        tracing::warn!(session = self.id, error = %error, "connector call stopped");
        self.poisoned = Some(error.to_string());
        Err(error)
    }
}

/// What wasmtime says when hostcall fuel runs out (its error type is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Turn a wasmtime error from a guest call into a typed [`Error`].
fn classify_trap(err: wasmtime::Error, limits: &Limits) -> Error {
    if let Some(limit) = err.downcast_ref::<LimitExceeded>() {
        return (*limit).into();
    }
    if let Some(ResourceTableError::Full) = err.downcast_ref::<ResourceTableError>() {
        return Error::ResourceLimit {
            limit: limits.max_resources,
        };
    }
    if format!("{err:#}").contains(HOSTCALL_FUEL_EXHAUSTED) {
        return Error::HostcallLimit {
            limit: limits.hostcall_fuel,
        };
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        let what = match trap {
            wasmtime::Trap::StackOverflow => "stack overflow (recursion too deep)".to_string(),
            wasmtime::Trap::UnreachableCodeReached => {
                "wasm `unreachable` reached (a panic, an uncaught exception or an abort)"
                    .to_string()
            }
            other => format!("wasm trap: {other}"),
        };
        return Error::Trap(what);
    }
    Error::Trap(format!("{err:#}"))
}

/// An open stream. Dropping it releases the guest's stream before the
/// session's next call; [`RecordStream::close`] releases it now.
pub struct RecordStream<'s> {
    session: &'s mut Session,
    handle: Option<ResourceAny>,
}

impl RecordStream<'_> {
    fn handle(&self) -> Result<ResourceAny, Error> {
        self.handle
            .ok_or_else(|| Error::SessionPoisoned("the stream is closed".into()))
    }

    /// The next batch of at most `max` records; `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`Session::health`].
    pub async fn next(&mut self, max: u32) -> Result<Option<Batch>, Error> {
        let handle = self.handle()?;
        // Records the connector forwards from a database row stream during
        // the call come first (they never entered the guest), then its own.
        self.session.store.data_mut().forwarded.open(max);
        let returned = self
            .session
            .call(async |api, store| api.record_stream().call_next(store, handle, max).await)
            .await;
        let forwarded = self.session.store.data_mut().forwarded.close();
        let returned = returned?;
        if forwarded.is_empty() {
            return Ok(returned);
        }
        match returned {
            Some(mut batch) => {
                let own = std::mem::replace(&mut batch.records, forwarded);
                batch.records.extend(own);
                Ok(Some(batch))
            }
            // The connector forwarded records, then said the stream ended:
            // the records still arrive (without a checkpoint), then the end.
            None => Ok(Some(Batch {
                records: forwarded,
                checkpoint: None,
            })),
        }
    }

    /// Acknowledge delivered records by id: the connector settles them at
    /// their source (a queue deletes them), so they are not delivered again.
    /// Acknowledge only what is safely handled — written and flushed, say;
    /// records delivered but never acknowledged are redelivered by
    /// connectors with delivery semantics (queues) when the stream ends.
    /// Connectors without them (files, tables) accept acks and ignore them.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn consume(session: &mut sluice::Session) -> Result<(), sluice::Error> {
    /// use sluice::FetchRequest;
    ///
    /// let mut stream = session.stream(&FetchRequest::new("orders"), None).await?;
    /// while let Some(batch) = stream.next(100).await? {
    ///     // ... write the batch somewhere durable first ...
    ///     let ids: Vec<String> = batch.records.iter().filter_map(|r| r.id.clone()).collect();
    ///     stream.ack(&ids).await?;
    /// }
    /// stream.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::health`].
    pub async fn ack(&mut self, ids: &[String]) -> Result<(), Error> {
        let handle = self.handle()?;
        self.session
            .call(async |api, store| api.record_stream().call_ack(store, handle, ids).await)
            .await
    }

    /// Acknowledge every record of `records` that has an id (those of one
    /// batch, once it is safely handled). Returns whether the connector
    /// settles acks at all: `false` when it answers `unsupported` (no delivery
    /// semantics, so there is nothing to acknowledge now or later).
    ///
    /// # Errors
    ///
    /// As [`RecordStream::ack`], but for `unsupported`.
    pub async fn ack_records(&mut self, records: &[crate::Record]) -> Result<bool, Error> {
        let ids: Vec<String> = records.iter().filter_map(|r| r.id.clone()).collect();
        if ids.is_empty() {
            return Ok(true);
        }
        match self.ack(&ids).await {
            Ok(()) => Ok(true),
            Err(Error::Connector(crate::ConnectorError::Unsupported(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reject delivered records by id, asking their source to deliver them
    /// again (to this stream or another consumer). Connectors without
    /// delivery semantics answer `unsupported`.
    ///
    /// # Errors
    ///
    /// As [`Session::health`].
    pub async fn nack(&mut self, ids: &[String]) -> Result<(), Error> {
        let handle = self.handle()?;
        self.session
            .call(async |api, store| api.record_stream().call_nack(store, handle, ids).await)
            .await
    }

    /// Release the stream now.
    ///
    /// # Errors
    ///
    /// A limit or trap error if the connector's cleanup misbehaves.
    pub async fn close(mut self) -> Result<(), Error> {
        match self.handle.take() {
            Some(handle) if self.session.poisoned.is_none() => {
                self.session.drop_resource(handle).await
            }
            _ => Ok(()),
        }
    }
}

impl Drop for RecordStream<'_> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.session.abandoned.push(handle);
        }
    }
}
