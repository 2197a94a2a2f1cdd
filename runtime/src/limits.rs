//! Per-session limits: memory, CPU per call, wall clock per call, resource
//! table size and hostcall fuel. Exceeding one stops the call with a typed
//! error and leaves the host healthy.

use std::time::Duration;

use crate::error::Error;

/// Limits applied to every session (all configurable; see the defaults on each field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory of the guest, in bytes. Default 256 MiB.
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

/// Enforces the memory limit and counts CPU ticks of the current call.
pub(crate) struct StoreLimiter {
    memory_bytes: usize,
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
            cpu_ticks_allowed: u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
            cpu_ticks_used: 0,
            cpu_limit: limits.cpu_per_call,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded::Memory(
                self.memory_bytes,
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real connector.
        Ok(desired <= 1_000_000)
    }
}
