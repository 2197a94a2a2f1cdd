//! Per-session limits: memory, CPU per call, wall clock per call, resource
//! table size and hostcall fuel. Exceeding one stops the call with a typed
//! error and leaves the host healthy.

use std::time::Duration;

use crate::error::Error;

/// Limits applied to every session (all configurable; see the defaults on each field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory of the guest, in bytes: all its memories together
    /// (a component may define several). Default 256 MiB.
    pub memory_bytes: usize,
    /// CPU time one call may spend running guest code. Default 10 s.
    pub cpu_per_call: Duration,
    /// Wall-clock time one call may take, guest code and host I/O together. Default 60 s.
    pub wall_clock_per_call: Duration,
    /// Most live resources (files, sockets, streams, ...) a session may hold. Default 10 000.
    pub max_resources: usize,
    /// Bytes of strings and lists the host will copy out of the guest in one
    /// host call (or one call result). Default 128 MiB.
    pub hostcall_fuel: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            cpu_per_call: Duration::from_secs(10),
            wall_clock_per_call: Duration::from_secs(60),
            max_resources: 10_000,
            hostcall_fuel: 128 << 20,
        }
    }
}

impl Limits {
    /// Check that every limit is usable.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the limit.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| {
            Err(Error::InvalidConfig(format!(
                "limit `{what}` must be positive"
            )))
        };
        if self.memory_bytes == 0 {
            return bad("memory_bytes");
        }
        if self.cpu_per_call.is_zero() {
            return bad("cpu_per_call");
        }
        if self.wall_clock_per_call.is_zero() {
            return bad("wall_clock_per_call");
        }
        if self.max_resources == 0 {
            return bad("max_resources");
        }
        if self.hostcall_fuel == 0 {
            return bad("hostcall_fuel");
        }
        Ok(())
    }
}

/// Raised inside the guest when a limit is hit; turned into an [`Error`] by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitExceeded {
    Memory(usize),
    Cpu(Duration),
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitExceeded::Memory(limit) => write!(f, "memory limit of {limit} bytes exceeded"),
            LimitExceeded::Cpu(limit) => write!(f, "CPU limit of {limit:?} exceeded"),
        }
    }
}

impl std::error::Error for LimitExceeded {}

impl From<LimitExceeded> for Error {
    fn from(limit: LimitExceeded) -> Self {
        match limit {
            LimitExceeded::Memory(limit) => Error::MemoryLimit { limit },
            LimitExceeded::Cpu(limit) => Error::CpuLimit(limit),
        }
    }
}

/// Most table elements one store may hold, all its tables together.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Enforces the memory limit and counts CPU ticks of the current call.
///
/// The memory limit covers the whole store: every linear memory of every
/// core instance the component holds is summed, so a component with N
/// memories gets the quota once, not N times. Table elements are summed
/// the same way.
pub(crate) struct StoreLimiter {
    memory_bytes: usize,
    /// Bytes of linear memory the store holds now (all memories).
    memory_used: usize,
    /// The growth last allowed, taken back if the growth then fails.
    memory_pending: usize,
    /// Table elements the store holds now (all tables).
    table_elements: usize,
    table_pending: usize,
    /// Epoch ticks the current call may run guest code for.
    pub cpu_ticks_allowed: u64,
    /// Epoch ticks the current call has run guest code for.
    pub cpu_ticks_used: u64,
    pub cpu_limit: Duration,
}

impl StoreLimiter {
    /// `memory_ceiling` is the largest memory the instance allocator can give
    /// (the pooling allocator's slot size); the limit never exceeds it, so
    /// hitting it is always reported as the memory limit.
    pub fn new(limits: &Limits, tick: Duration, memory_ceiling: Option<usize>) -> Self {
        let ticks = limits.cpu_per_call.as_nanos() / tick.as_nanos().max(1);
        Self {
            memory_bytes: memory_ceiling
                .map_or(limits.memory_bytes, |c| c.min(limits.memory_bytes)),
            memory_used: 0,
            memory_pending: 0,
            table_elements: 0,
            table_pending: 0,
            cpu_ticks_allowed: u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
            cpu_ticks_used: 0,
            cpu_limit: limits.cpu_per_call,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called for each memory's creation (from 0) and each growth.
        let growth = desired.saturating_sub(current);
        let total = self.memory_used.saturating_add(growth);
        if total > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded::Memory(
                self.memory_bytes,
            )));
        }
        self.memory_used = total;
        self.memory_pending = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_used = self.memory_used.saturating_sub(self.memory_pending);
        self.memory_pending = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real connector.
        let growth = desired.saturating_sub(current);
        let total = self.table_elements.saturating_add(growth);
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        self.table_pending = growth;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table_elements = self.table_elements.saturating_sub(self.table_pending);
        self.table_pending = 0;
        Ok(())
    }
}
