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
use sluice_sdk::sql::{self, Connection};
use sluice_sdk::{
    config, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest, ExecuteResponse,
    FetchRequest, FetchResponse, RecordStream, ResourceInfo, Result, Session,
};
use sluice_sql_connector::read::{self, MAX_PAGE_SIZE};
use sluice_sql_connector::{write, Dialect, Table};

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// Name of the host's sql grant (a `mysql://` URL).
    grant: String,
    /// Database whose tables are the resources (default: the grant URL's).
    #[serde(default)]
    database: Option<String>,
    /// Page size when a fetch gives none, and the stream batch size.
    #[serde(default = "default_page_size")]
    #[cfg_attr(test, schemars(range(min = 1)))]
    page_size: u32,
    /// Key columns per table, for tables without a primary key (views).
    #[serde(default)]
    keys: HashMap<String, Vec<String>>,
}

fn default_page_size() -> u32 {
    500
}

struct Mysql;

struct MySession {
    config: Config,
    database: String,
    conn: Connection,
}

impl Connector for Mysql {
    type Session = MySession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "mysql",
            env!("CARGO_PKG_VERSION"),
            "MySQL and MariaDB tables and views through a host sql grant",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: true,
            filtering: true,
            sorting: true,
            aggregation: false,
            transactions: true,
            max_page_size: Some(MAX_PAGE_SIZE),
        })
        .build()
    }

    fn open(config_json: &str) -> Result<MySession> {
        let config: Config = config::parse(config_json)?;
        if config.page_size == 0 {
            return Err(ConnectorError::InvalidConfig(
                "field `page_size`: must be at least 1".into(),
            ));
        }
        let conn = Connection::open(&config.grant).map_err(sql::error)?;
        let dialect = conn.dialect();
        if Dialect::from_name(&dialect) != Some(Dialect::Mysql) {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `grant`: `{}` is a {dialect} database; use the {dialect} connector",
                config.grant
            )));
        }
        let database = match &config.database {
            Some(database) => database.clone(),
            None => catalog::current_database(&conn)?,
        };
        Ok(MySession {
            config,
            database,
            conn,
        })
    }
}

impl MySession {
    fn table(&self, resource: &str) -> Result<Table> {
        catalog::load(
            &self.conn,
            &self.database,
            resource,
            self.config.keys.get(resource).map(Vec::as_slice),
        )
    }
}

impl Session for MySession {
    fn health_check(&self) -> Result<()> {
        self.conn.query("SELECT 1", &[]).map_err(sql::error)?;
        Ok(())
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        catalog::list(&self.conn, &self.database)?
            .into_iter()
            .map(|name| {
                let table = self.table(&name)?;
                Ok(ResourceInfo {
                    name,
                    schema: Some(table.schema_json().to_string()),
                })
            })
            .collect()
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let table = self.table(&req.resource)?;
        read::fetch(&self.conn, &table, &req, self.config.page_size)
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let table = self.table(&req.resource)?;
        read::stream(
            &self.conn,
            &table,
            &req,
            checkpoint.as_deref(),
            self.config.page_size,
        )
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        let table = self.table(&req.resource)?;
        write::execute(&self.conn, &table, &req)
    }
}

sluice_sdk::export_connector!(Mysql);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
