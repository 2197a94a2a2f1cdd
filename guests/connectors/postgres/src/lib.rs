//! The `postgres` connector: tables and views of one schema, through a host
//! sql grant (the connector never sees the URL or the password).
//!
//! - `fetch` builds SQL from validated, quoted identifiers and bound values:
//!   filters, multi-field sort, field selection, offset pagination and keyset
//!   pagination (an opaque cursor holding the last row's sort key, so
//!   concurrent inserts neither skip nor repeat rows); `{"count": true}` in
//!   the options adds the total count.
//! - `discover` lists tables and views with their columns and types.
//! - `stream` reads a server-side portal, one batch per fetch, and emits the
//!   last row's key as checkpoint.
//! - `execute` runs `insert`, `update`, `delete` or `upsert` of a list of
//!   records in one transaction (`{"returning": true}` returns the rows).

mod catalog;

use std::collections::HashMap;

use serde::Deserialize;
use sluice_sdk::{config, Connector, Descriptor, Result};
use sluice_sql_connector::session::{self, CAPABILITIES};
use sluice_sql_connector::{Dialect, TableSession};

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// Name of the host's sql grant.
    grant: String,
    /// Schema whose tables are the resources.
    #[serde(default = "default_schema")]
    schema: String,
    /// Page size when a fetch gives none.
    #[serde(default = "default_page_size")]
    #[cfg_attr(test, schemars(range(min = 1)))]
    page_size: u32,
    /// Rows a stream reads from the database at a time (the caller's
    /// batches are cut from them; one more is read ahead).
    #[serde(default = "sluice_sql_connector::default_fetch_size")]
    #[cfg_attr(test, schemars(range(min = 1, max = 100000)))]
    fetch_size: u32,
    /// Key columns per table, for tables without a primary key (views).
    #[serde(default)]
    keys: HashMap<String, Vec<String>>,
}

fn default_schema() -> String {
    "public".into()
}

fn default_page_size() -> u32 {
    500
}

struct Postgres;

impl Connector for Postgres {
    type Session = TableSession<catalog::PgCatalog>;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "PostgreSQL tables and views through a host sql grant",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(CAPABILITIES)
        .build()
    }

    fn open(config_json: &str) -> Result<Self::Session> {
        let config: Config = config::parse(config_json)?;
        let conn = session::connect(&config.grant, Dialect::Postgres)?;
        let catalog = catalog::PgCatalog {
            schema: config.schema,
        };
        TableSession::new(conn, catalog, config.page_size, config.keys)?
            .with_fetch_size(config.fetch_size)
    }
}

sluice_sdk::export_connector!(Postgres);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
