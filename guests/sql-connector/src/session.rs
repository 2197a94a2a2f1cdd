//! [`TableSession`]: a connector session over one database's tables — the
//! whole `Session` of a sql connector, given how it reads its catalogue.

use std::collections::HashMap;

use serde_json::Value;
use sluice_sdk::sql::{self, Connection};
use sluice_sdk::{
    Capabilities, ConnectorError, ExecuteRequest, ExecuteResponse, FetchRequest, FetchResponse,
    RecordStream, ResourceInfo, Result, Session,
};

use crate::dialect::Dialect;
use crate::read::{self, MAX_PAGE_SIZE};
use crate::table::Table;
use crate::write;

/// How a database's catalogue names its tables and describes one.
pub trait Catalog: 'static {
    /// The tables and views a session offers, by name.
    ///
    /// # Errors
    ///
    /// The database's errors.
    fn list(&self, conn: &Connection) -> Result<Vec<String>>;

    /// The table `name`, its key `configured` when given.
    ///
    /// # Errors
    ///
    /// `not-found` for an unknown table; `invalid-request` for a configured
    /// key column that does not exist.
    fn load(&self, conn: &Connection, name: &str, configured: Option<&[String]>) -> Result<Table>;
}

/// What every sql connector can do, as `describe` advertises it.
pub const CAPABILITIES: Capabilities = Capabilities {
    streaming: true,
    pagination: true,
    filtering: true,
    sorting: true,
    aggregation: false,
    transactions: true,
    max_page_size: Some(MAX_PAGE_SIZE),
};

/// Open the grant `grant`, which must be a `dialect` database.
///
/// # Errors
///
/// `invalid-config` naming the right connector for another dialect's grant;
/// the host's errors as [`sql::error`] maps them.
pub fn connect(grant: &str, dialect: Dialect) -> Result<Connection> {
    let conn = Connection::open(grant).map_err(sql::error)?;
    let found = conn.dialect();
    if Dialect::from_name(&found) != Some(dialect) {
        return Err(ConnectorError::InvalidConfig(format!(
            "field `grant`: `{grant}` is a {found} database; use the {found} connector"
        )));
    }
    Ok(conn)
}

/// A session over the tables `catalog` describes.
pub struct TableSession<C: Catalog> {
    /// The connection, through the host's grant.
    pub conn: Connection,
    /// How tables are found.
    pub catalog: C,
    /// Page size when a fetch gives none.
    pub page_size: u32,
    /// Rows a stream reads from the database at a time.
    pub fetch_size: u32,
    /// Key columns per table, for tables without a primary key (views).
    pub keys: HashMap<String, Vec<String>>,
}

impl<C: Catalog> TableSession<C> {
    /// A session; `page_size` must be at least 1.
    ///
    /// # Errors
    ///
    /// `invalid-config` for a page size of 0.
    pub fn new(
        conn: Connection,
        catalog: C,
        page_size: u32,
        keys: HashMap<String, Vec<String>>,
    ) -> Result<Self> {
        if page_size == 0 {
            return Err(ConnectorError::InvalidConfig(
                "field `page_size`: must be at least 1".into(),
            ));
        }
        Ok(Self {
            conn,
            catalog,
            page_size,
            fetch_size: crate::default_fetch_size(),
            keys,
        })
    }

    /// Read streams `fetch_size` rows at a time (1 to 100000).
    ///
    /// # Errors
    ///
    /// `invalid-config` naming `fetch_size` when out of range.
    pub fn with_fetch_size(mut self, fetch_size: u32) -> Result<Self> {
        if !(1..=100_000).contains(&fetch_size) {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `fetch_size`: {fetch_size} must be from 1 to 100000"
            )));
        }
        self.fetch_size = fetch_size;
        Ok(self)
    }

    fn table(&self, resource: &str) -> Result<Table> {
        self.catalog.load(
            &self.conn,
            resource,
            self.keys.get(resource).map(Vec::as_slice),
        )
    }
}

impl<C: Catalog> Session for TableSession<C> {
    fn health_check(&self) -> Result<()> {
        self.conn.query("SELECT 1", &[]).map_err(sql::error)?;
        Ok(())
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        self.catalog
            .list(&self.conn)?
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
        read::fetch(&self.conn, &table, &req, self.page_size)
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
            self.fetch_size,
        )
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        let table = self.table(&req.resource)?;
        write::execute(&self.conn, &table, &req)
    }
}

/// The rows of a catalogue query, each as its values.
///
/// # Errors
///
/// The database's errors.
pub fn catalog_rows(
    conn: &Connection,
    statement: &str,
    params: &[&str],
) -> Result<Vec<Vec<Value>>> {
    let params: Vec<String> = params
        .iter()
        .map(|p| Value::String((*p).to_string()).to_string())
        .collect();
    let set = conn.query(statement, &params).map_err(sql::error)?;
    set.rows.iter().map(|r| sql::row_values(r)).collect()
}

/// A catalogue value as text (NULL as empty).
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
