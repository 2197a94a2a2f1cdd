//! The library's error type.

use std::time::Duration;

pub use crate::bindings::ConnectorError;
use crate::capability::denial::{Denial, GrantTimeout};

/// Everything that can go wrong loading, opening or calling a connector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file ({0}); expected a component built for wasm32-wasip2")]
    NotWasm(String),
    /// The bytes are a core module, not a component.
    #[error("this is a core WebAssembly module, not a component; build the connector for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)")]
    CoreModule,
    /// The component does not export the connector interface.
    #[error("the component does not export `{expected}` (it exports: {})", if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") })]
    WrongWorld {
        /// The export the host looks for.
        expected: &'static str,
        /// What the component exports instead.
        exports: Vec<String>,
    },
    /// The component imports something this host does not provide.
    #[error("the component needs imports this host does not provide: {0}")]
    UnsupportedImport(String),
    /// The component failed to validate or compile.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A grant is malformed.
    #[error("invalid grant: {0}")]
    InvalidGrant(String),
    /// A limit or runtime setting is malformed.
    #[error("invalid runtime configuration: {0}")]
    InvalidConfig(String),
    /// The connector returned a typed error.
    #[error("{}", .0.describe())]
    Connector(ConnectorError),
    /// The host refused a capability the connector needed; the call failed because of it.
    #[error("{0}")]
    Denied(Denial),
    /// The call used more CPU time than its limit.
    #[error("the call exceeded its CPU limit of {0:?} and was stopped")]
    CpuLimit(Duration),
    /// A timeout set by a grant expired (an upstream too slow for the grant's
    /// setting), and the connector's call failed because of it.
    #[error("{0}")]
    GrantTimeout(GrantTimeout),
    /// The call ran past its wall-clock deadline (guest code and host I/O together).
    #[error("timeout: the call exceeded its wall-clock deadline of {0:?} and was stopped")]
    Timeout(Duration),
    /// The guest tried to grow its memory past the limit.
    #[error(
        "the connector tried to use more than its memory limit of {limit} bytes and was stopped"
    )]
    MemoryLimit {
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest tried to hold more live resources (files, sockets, streams) than allowed.
    #[error("the connector tried to hold more than {limit} live resources (files, sockets, streams) and was stopped")]
    ResourceLimit {
        /// The limit.
        limit: usize,
    },
    /// The guest passed more data to one host call than allowed.
    #[error("the connector passed more than {limit} bytes to one host call and was stopped")]
    HostcallLimit {
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest trapped (a panic, a stack overflow, an out-of-bounds
    /// access, ...): what happened, then — when the guest wrote anything to
    /// stdout or stderr during the call — [`OUTPUT_FOLLOWS`] and the last
    /// few KiB of it (a panic message, a traceback); [`Error::guest_output`]
    /// gives that part alone.
    #[error("the connector crashed: {0}")]
    Trap(String),
    /// An earlier call failed in a way that leaves the session unusable.
    #[error("the session is unusable after an earlier failure ({0}); open a new session")]
    SessionPoisoned(String),
    /// Bytes that are a precompiled wasmtime artifact, not a component: only
    /// artifacts this host compiled itself are ever deserialized.
    #[error("precompiled artifacts are not accepted; upload the component (`.wasm`) and the host compiles it")]
    PrecompiledArtifact,
    /// An unexpected host-side failure.
    #[error("host error: {0}")]
    Host(String),
    /// A file that is not a recording this version can replay.
    #[error("bad recording: {0}")]
    Recording(String),
}

/// What separates a crash from the guest's last output in [`Error::Trap`].
pub const OUTPUT_FOLLOWS: &str = "\n--- the connector's last output (stdout and stderr) ---\n";

impl Error {
    /// For a crash, the last few KiB the guest wrote to stdout and stderr
    /// during the call, if it wrote anything.
    pub fn guest_output(&self) -> Option<&str> {
        match self {
            Error::Trap(text) => text.split_once(OUTPUT_FOLLOWS).map(|(_, output)| output),
            _ => None,
        }
    }

    /// Whether the error is a deadline: the wall clock, the CPU limit, a grant's timeout or the connector's own `timeout`.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Timeout(_)
                | Error::CpuLimit(_)
                | Error::GrantTimeout(_)
                | Error::Connector(ConnectorError::Timeout)
        )
    }

    /// Whether a capability was denied, by the host or as reported by the connector.
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            Error::Denied(_) | Error::Connector(ConnectorError::Denied(_))
        )
    }

    /// Whether the error was caused by a bad `.wasm` (not wasm, core module, wrong world, bad imports).
    pub fn is_invalid_component(&self) -> bool {
        matches!(
            self,
            Error::NotWasm(_)
                | Error::CoreModule
                | Error::WrongWorld { .. }
                | Error::UnsupportedImport(_)
                | Error::InvalidComponent(_)
                | Error::PrecompiledArtifact
        )
    }

    /// The connector's typed error, if this is one.
    pub fn connector_error(&self) -> Option<&ConnectorError> {
        match self {
            Error::Connector(e) => Some(e),
            Error::Denied(d) => d.connector_error.as_ref(),
            _ => None,
        }
    }
}

impl ConnectorError {
    /// A sentence a person can act on: the variant's name and its message.
    pub fn describe(&self) -> String {
        match self {
            ConnectorError::InvalidConfig(m) => format!("invalid config: {m}"),
            ConnectorError::InvalidRequest(m) => format!("invalid request: {m}"),
            ConnectorError::Unsupported(m) => format!("unsupported: {m}"),
            ConnectorError::Denied(m) => format!("denied: {m}"),
            ConnectorError::NotFound(m) => format!("not found: {m}"),
            ConnectorError::Unavailable(m) => format!("unavailable: {m}"),
            ConnectorError::RateLimited(Some(s)) => format!("rate limited: retry after {s} s"),
            ConnectorError::RateLimited(None) => "rate limited".to_string(),
            ConnectorError::Timeout => {
                "timeout: a deadline the connector set for itself expired".to_string()
            }
            ConnectorError::Internal(m) => format!("connector bug: {m}"),
        }
    }

    /// A stable machine-readable name of the variant (`invalid-config`, `denied`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ConnectorError::InvalidConfig(_) => "invalid-config",
            ConnectorError::InvalidRequest(_) => "invalid-request",
            ConnectorError::Unsupported(_) => "unsupported",
            ConnectorError::Denied(_) => "denied",
            ConnectorError::NotFound(_) => "not-found",
            ConnectorError::Unavailable(_) => "unavailable",
            ConnectorError::RateLimited(_) => "rate-limited",
            ConnectorError::Timeout => "timeout",
            ConnectorError::Internal(_) => "internal",
        }
    }
}
