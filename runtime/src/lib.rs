//! sluice: run untrusted data connectors in a WebAssembly sandbox.
//!
//! A connector is a WASI 0.2 component exporting `sluice:connector/connector-api`
//! (see `wit/connector.wit`). The host gives each session only what its
//! [`Grants`] allow — mounted directories, socket addresses, HTTP origins —
//! and runs every call under [`Limits`] (memory, CPU, wall clock, resources).
//!
//! # Example
//!
//! Load the bundled `file` connector, mount a directory read-only and stream
//! an NDJSON file, resuming from a checkpoint:
//!
//! ```no_run
//! use sluice::{FetchRequest, Grants, Runtime};
//!
//! # async fn run() -> Result<(), sluice::Error> {
//! let runtime = Runtime::new()?;
//! let connector = runtime.load_file("guests/target/wasm32-wasip2/release/sluice_file.wasm")?;
//! let grants = Grants::none().mount("examples/data:/data:ro")?;
//! let mut session = connector.open(r#"{"root": "/data"}"#, &grants).await?;
//!
//! let mut stream = session.stream(&FetchRequest::new("people.ndjson"), None).await?;
//! while let Some(batch) = stream.next(100).await? {
//!     for record in &batch.records {
//!         println!("{}", record.data);
//!     }
//!     // Persist batch.checkpoint to resume later with `session.stream(&req, Some(cp))`.
//! }
//! stream.close().await?;
//! session.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The same program runs as a test: `tests/tests/all/embedding.rs`.
//!
//! # Errors
//!
//! Every failure is an [`Error`]: malformed components, bad grants, the
//! connector's own typed [`ConnectorError`], host [`Denial`]s that name the
//! grant to add, and limits (`CpuLimit`, `Timeout`, `MemoryLimit`). A session
//! whose call was stopped by a limit or a trap refuses further calls; the
//! [`Runtime`] and every other session carry on.

#![deny(missing_docs)]

/// `JsonSchema` (feature `schema`) for a type written as one string.
macro_rules! string_schema {
    ($ty:ty, $name:literal, $description:literal) => {
        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $description })
            }
        }
    };
}
pub(crate) use string_schema;

/// A type written as one string: serialized as its `Display` text, read
/// through its `parse` (so a value that exists was valid when read), and
/// described (feature `schema`) as a string.
macro_rules! text_form {
    ($ty:ty, $name:literal, $description:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        crate::string_schema!($ty, $name, $description);
    };
}
pub(crate) use text_form;

mod artifacts;
mod bindings;
pub mod capability;
mod component;
mod engine;
mod error;
mod json_lines;
mod limits;
mod request;
mod session;
mod state;
pub mod tape;
pub mod wire;

pub use artifacts::{ArtifactCache, CacheStats};
pub use bindings::{
    Batch, Capabilities, ConnectorError, Descriptor, ExecuteRequest, ExecuteResponse, FetchRequest,
    FetchResponse, Filter, FilterOp, Pagination, Record, ResourceInfo, SortDirection, SortField,
};
pub use capability::denial::{Capability, Denial, GrantTimeout};
pub use capability::grants::{Grants, GrantsConfig};
pub use capability::output::TAIL_BYTES as GUEST_OUTPUT_TAIL;
pub use component::{host_provides, Connector, CONNECTOR_EXPORT};
pub use engine::{ComponentBounds, PoolingConfig, Runtime, RuntimeConfig, DEFAULT_EPOCH_TICK};
pub use error::{Error, OUTPUT_FOLLOWS};
pub use limits::Limits;
pub use session::{RecordStream, Session};
