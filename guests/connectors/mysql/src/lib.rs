//! The `mysql` connector: tables and views of one MySQL or MariaDB database,
//! through a host sql grant (the connector never sees the URL or the
//! password).
//!
//! It shares its query building, reads and writes with the `postgres`
//! connector ([`sluice_sql_connector`]); what is its own is the catalogue
//! (`information_schema`) and how MySQL's types are read and bound:
//! identifiers are checked against the catalogue and quoted with backticks,
//! values always bound; a decimal is compared as a decimal (`CAST(? AS
//! DECIMAL(65, s))`, never as a double); binary values travel as base64;
//! MariaDB's `json` (a `longtext` checked by `json_valid`) reads as JSON.
//!
//! - `fetch`: filters, multi-field sort, fields, offset and keyset
//!   pagination with an opaque cursor; `{"count": true}` adds the total count.
//! - `discover`: tables and views with their columns and types.
//! - `stream`: the result read row by row off the connection, in batches,
//!   the last row's key as checkpoint.
//! - `execute`: `insert`, `update`, `delete` or `upsert` (`ON DUPLICATE KEY
//!   UPDATE`) of a batch of records in one transaction.

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
    /// Name of the host's sql grant (a `mysql://` URL).
    grant: String,
    /// Database whose tables are the resources (default: the grant URL's).
    #[serde(default)]
    database: Option<String>,
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

fn default_page_size() -> u32 {
    500
}

struct Mysql;

impl Connector for Mysql {
    type Session = TableSession<catalog::MyCatalog>;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "mysql",
            env!("CARGO_PKG_VERSION"),
            "MySQL and MariaDB tables and views through a host sql grant",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(CAPABILITIES)
        .build()
    }

    fn open(config_json: &str) -> Result<Self::Session> {
        let config: Config = config::parse(config_json)?;
        let conn = session::connect(&config.grant, Dialect::Mysql)?;
        let database = match config.database {
            Some(database) => database,
            None => catalog::current_database(&conn)?,
        };
        let catalog = catalog::MyCatalog { database };
        TableSession::new(conn, catalog, config.page_size, config.keys)?
            .with_fetch_size(config.fetch_size)
    }
}

sluice_sdk::export_connector!(Mysql);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
