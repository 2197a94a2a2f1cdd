//! Write sluice connectors.
//!
//! A connector is a WASI 0.2 component implementing the `sluice:connector`
//! world. This crate holds the generated bindings plus what every connector
//! needs, so a connector is mostly its own logic:
//!
//! - [`Connector`], [`Session`] and [`RecordStream`]: the traits you implement,
//!   and [`export_connector!`] to export them;
//! - [`config::parse`]: typed config from the JSON config, with errors that
//!   name the offending field;
//! - `schema` (feature `schema`): the config's JSON Schema, derived from
//!   the config type and checked in as `config.schema.json`;
//! - [`RecordBuilder`]: records from JSON values;
//! - [`query::apply`]: filters, sort, field selection and offset/cursor
//!   pagination over in-memory records;
//! - [`log`]: structured logs that land in the host's `tracing`;
//! - [`http`]: a small outgoing HTTP client whose denials are typed;
//! - [`sql`]: databases by grant name, errors typed;
//! - [`net`]: a buffered TCP connection to a granted address, with deadlines;
//! - [`secrets`]: the login a connector presents over its own sockets;
//! - [`queue`]: what message-queue connectors share (waiting, message bodies);
//! - [`io_error`]: WASI I/O errors turned into typed connector errors.
//!
//! # A complete minimal connector
//!
//! ```no_run
//! use serde::Deserialize;
//! use sluice_sdk::{
//!     config, query, Connector, ConnectorError, Descriptor, FetchRequest, FetchResponse,
//!     RecordBuilder, ResourceInfo, Session,
//! };
//!
//! /// Config: how many numbers to count to.
//! #[derive(Deserialize)]
//! #[cfg_attr(test, derive(schemars::JsonSchema))]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     up_to: u32,
//! }
//!
//! struct Counter;
//!
//! struct CounterSession {
//!     up_to: u32,
//! }
//!
//! impl Connector for Counter {
//!     type Session = CounterSession;
//!
//!     fn describe() -> Descriptor {
//!         sluice_sdk::descriptor("counter", "0.1.0", "Counts from 1 to `up_to`")
//!             // Derived from `Config`, kept equal to it by a test (`schema`).
//!             .config_schema_text(include_str!("../config.schema.json"))
//!             .build()
//!     }
//!
//!     fn open(config_json: &str) -> Result<CounterSession, ConnectorError> {
//!         let config: Config = config::parse(config_json)?;
//!         Ok(CounterSession { up_to: config.up_to })
//!     }
//! }
//!
//! impl Session for CounterSession {
//!     fn discover(&self) -> Result<Vec<ResourceInfo>, ConnectorError> {
//!         Ok(vec![ResourceInfo { name: "numbers".into(), schema: None }])
//!     }
//!
//!     fn fetch(&self, req: FetchRequest) -> Result<FetchResponse, ConnectorError> {
//!         if req.resource != "numbers" {
//!             return Err(ConnectorError::NotFound(format!("no resource `{}`", req.resource)));
//!         }
//!         let records = (1..=self.up_to).map(|n| RecordBuilder::new(serde_json::json!({ "n": n })).id(n.to_string()));
//!         query::apply(&req, records)
//!     }
//! }
//!
//! sluice_sdk::export_connector!(Counter);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type
//! `cdylib`) and run it with `sluice run counter.wasm --config '{"up_to": 3}' fetch numbers`.

#![deny(missing_docs)]

/// Bindings generated from the `connector` world in `wit/`.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "connector",
        pub_export_macro: true,
        default_bindings_module: "sluice_sdk::bindings",
        generate_all,
    });
}

pub mod config;
mod export;
pub mod fields;
pub mod http;
pub mod json_lines;
pub mod link;
pub mod log;
pub mod net;
pub mod query;
pub mod queue;
mod record;
#[cfg(feature = "schema")]
pub mod schema;
pub mod secrets;
pub mod sftp;
pub mod sql;

pub use bindings::sluice::connector::types::{
    Batch, Capabilities, ConnectorError, Descriptor, ExecuteRequest, ExecuteResponse, FetchRequest,
    FetchResponse, Filter, FilterOp, Pagination, Record, ResourceInfo, SortDirection, SortField,
};
pub use export::{Connector, RecordStream, Session, SessionExport, StreamExport};
pub use record::{descriptor, io_error, DescriptorBuilder, RecordBuilder};

/// Result type of connector operations.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// Export a type implementing [`Connector`] as this component's `connector-api`.
///
/// Use it once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        struct __SluiceExport;

        impl $crate::bindings::exports::sluice::connector::connector_api::Guest for __SluiceExport {
            type Session = $crate::SessionExport<$connector>;
            type RecordStream = $crate::StreamExport;

            fn describe() -> $crate::Descriptor {
                <$connector as $crate::Connector>::describe()
            }
        }

        $crate::bindings::export!(__SluiceExport with_types_in $crate::bindings);
    };
}
