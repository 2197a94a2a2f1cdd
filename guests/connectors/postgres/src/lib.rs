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
    /// Name of the host's sql grant.
    grant: String,
    /// Schema whose tables are the resources.
    #[serde(default = "default_schema")]
    schema: String,
    /// Page size when a fetch gives none, and the stream batch size.
    #[serde(default = "default_page_size")]
    #[cfg_attr(test, schemars(range(min = 1)))]
    page_size: u32,
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

struct PgSession {
    config: Config,
    conn: Connection,
}

impl Connector for Postgres {
    type Session = PgSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "PostgreSQL tables and views through a host sql grant",
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

    fn open(config_json: &str) -> Result<PgSession> {
        let config: Config = config::parse(config_json)?;
        if config.page_size == 0 {
            return Err(ConnectorError::InvalidConfig(
                "field `page_size`: must be at least 1".into(),
            ));
        }
        let conn = Connection::open(&config.grant).map_err(sql::error)?;
        let dialect = conn.dialect();
        if Dialect::from_name(&dialect) != Some(Dialect::Postgres) {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `grant`: `{}` is a {dialect} database; use the {dialect} connector",
                config.grant
            )));
        }
        Ok(PgSession { config, conn })
    }
}

impl PgSession {
    fn table(&self, resource: &str) -> Result<Table> {
        catalog::load(
            &self.conn,
            &self.config.schema,
            resource,
            self.config.keys.get(resource).map(Vec::as_slice),
        )
    }
}

impl Session for PgSession {
    fn health_check(&self) -> Result<()> {
        self.conn.query("SELECT 1", &[]).map_err(sql::error)?;
        Ok(())
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        catalog::list(&self.conn, &self.config.schema)?
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

sluice_sdk::export_connector!(Postgres);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
