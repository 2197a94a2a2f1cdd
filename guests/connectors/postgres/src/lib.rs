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
mod select;
mod write;

use std::collections::HashMap;

use catalog::Table;
use select::{OrderKey, Statement};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::sql::{self, Connection, RowStream};
use sluice_sdk::{
    config, Batch, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, Record, RecordStream, ResourceInfo, Result,
    Session,
};

/// The largest page `fetch` returns, as `describe` advertises: a page is
/// held whole in the host and the guest (stream for more).
const MAX_PAGE_SIZE: u32 = 100_000;
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

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FetchOptions {
    /// Also return the total number of matching rows.
    count: bool,
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
        Ok(PgSession { config, conn })
    }
}

impl PgSession {
    fn table(&self, resource: &str) -> Result<Table> {
        Table::load(
            &self.conn,
            &self.config.schema,
            resource,
            self.config.keys.get(resource).map(Vec::as_slice),
        )
    }

    /// The columns a read returns: the requested fields plus the order keys.
    fn read_columns(table: &Table, fields: &[String], order: &[OrderKey]) -> Result<Vec<String>> {
        let mut columns: Vec<String> = if fields.is_empty() {
            table.columns.iter().map(|(n, _)| n.clone()).collect()
        } else {
            fields
                .iter()
                .map(|f| table.column(f).map(str::to_string))
                .collect::<Result<_>>()?
        };
        for key in order {
            if !columns.contains(&key.column) {
                columns.push(key.column.clone());
            }
        }
        Ok(columns)
    }
}

/// Turns result rows into records, keeping only the requested fields.
struct Shaper {
    columns: Vec<String>,
    /// `"column":` of each visible column (the leading columns the caller
    /// asked for; the rest are order keys), escaped once.
    keys_json: Vec<String>,
    key_positions: Vec<usize>,
    order_positions: Vec<usize>,
}

impl Shaper {
    fn new(columns: Vec<String>, visible: usize, table: &Table, order: &[OrderKey]) -> Self {
        let position = |name: &String| columns.iter().position(|c| c == name).unwrap_or(0);
        Self {
            key_positions: table.key.iter().map(position).collect(),
            order_positions: order.iter().map(|k| position(&k.column)).collect(),
            keys_json: columns
                .iter()
                .take(visible)
                .map(|c| format!("{}:", Value::String(c.clone())))
                .collect(),
            columns,
        }
    }

    /// The record of one row (a JSON array from the host): the values' JSON
    /// text is spliced into the object as it is, never parsed and printed again.
    fn record(&self, row: &str) -> Result<Record> {
        let values = sql::row_raw(row)?;
        if values.len() != self.columns.len() {
            return Err(ConnectorError::Internal(format!(
                "row has {} values for {} columns",
                values.len(),
                self.columns.len()
            )));
        }
        let mut data = String::with_capacity(
            row.len() + self.keys_json.iter().map(String::len).sum::<usize>() + 2,
        );
        data.push('{');
        for (i, (key, value)) in self.keys_json.iter().zip(&values).enumerate() {
            if i > 0 {
                data.push(',');
            }
            data.push_str(key);
            data.push_str(value.get());
        }
        data.push('}');
        let id = if self.key_positions.is_empty() {
            None
        } else {
            let parts = self
                .key_positions
                .iter()
                .map(|&i| key_text(values[i].get()))
                .collect::<Result<Vec<_>>>()?;
            Some(parts.join(","))
        };
        Ok(Record {
            id,
            data,
            metadata: None,
            timestamp: None,
        })
    }

    /// The row's values of the order keys, for a cursor or checkpoint.
    fn position(&self, row: &str) -> Result<Vec<Value>> {
        let values = sql::row_raw(row)?;
        self.order_positions
            .iter()
            .map(|&i| {
                values
                    .get(i)
                    .ok_or_else(|| ConnectorError::Internal("row is missing an order key".into()))
                    .and_then(|raw| parse(raw.get()))
            })
            .collect()
    }
}

/// A key value as record-id text: numbers as written, strings unquoted.
fn key_text(raw: &str) -> Result<String> {
    if raw.starts_with('"') {
        parse(raw).map(|v| sluice_sdk::query::value_text(&v))
    } else {
        Ok(raw.to_string())
    }
}

/// One value of a host row.
fn parse(text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| ConnectorError::Internal(format!("bad value from the host: {e}")))
}

/// A SELECT over `table` honouring filters, order and an optional "after" position.
fn build_select(
    table: &Table,
    columns: &[String],
    req: &FetchRequest,
    order: &[OrderKey],
    after: Option<&[Value]>,
) -> Result<Statement> {
    let mut stmt = Statement::default();
    let mut conditions = select::conditions(table, &req.filters, &mut stmt)?;
    if let Some(after) = after {
        conditions.push(select::after(order, after, &mut stmt));
    }
    let list: Vec<String> = columns.iter().map(|c| table.select_expr(c)).collect();
    stmt.sql = format!("SELECT {} FROM {}", list.join(", "), table.qualified());
    if !conditions.is_empty() {
        stmt.sql
            .push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if !order.is_empty() {
        stmt.sql
            .push_str(&format!(" ORDER BY {}", select::order_by(table, order)));
    }
    Ok(stmt)
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
        let options: FetchOptions = config::parse_options(req.options.as_deref())?;
        let table = self.table(&req.resource)?;
        let order = select::order(&table, &req.sort)?;
        let visible = if req.fields.is_empty() {
            table.columns.len()
        } else {
            req.fields.len()
        };
        let columns = Self::read_columns(&table, &req.fields, &order)?;
        let page_size = req
            .pagination
            .as_ref()
            .map_or(self.config.page_size, |p| p.page_size);
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(ConnectorError::InvalidRequest(format!(
                "page size {page_size}: it must be from 1 to {MAX_PAGE_SIZE} (stream for more)"
            )));
        }
        let cursor = req.pagination.as_ref().and_then(|p| p.cursor.clone());
        let offset = req.pagination.as_ref().and_then(|p| p.offset);
        // Without a key no order is unique, so keyset paging would skip tied
        // rows: such a table pages by offset, in an order made deterministic
        // by every orderable column.
        let keyed = !table.key.is_empty();
        let paging_order = if keyed {
            order.clone()
        } else {
            select::deterministic(&table, &order)
        };
        let (after, start) = match (&cursor, keyed) {
            (Some(c), true) => (Some(select::decode_position(&order, c)?), None),
            (Some(c), false) => (None, Some(select::decode_offset(&paging_order, c)?)),
            (None, _) => (None, offset),
        };
        let mut stmt = build_select(&table, &columns, &req, &paging_order, after.as_deref())?;
        let limit = stmt.bind(&json!(u64::from(page_size) + 1));
        stmt.sql.push_str(&format!(" LIMIT {limit}"));
        if let Some(start) = start {
            let start = stmt.bind(&json!(start));
            stmt.sql.push_str(&format!(" OFFSET {start}"));
        }
        let set = self
            .conn
            .query(&stmt.sql, &stmt.params)
            .map_err(sql::error)?;
        let shaper = Shaper::new(columns, visible, &table, &order);
        let mut rows = set.rows;
        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let next_cursor = match (more, rows.last()) {
            (true, Some(last)) if keyed => {
                Some(select::encode_position(&order, &shaper.position(last)?))
            }
            (true, Some(_)) => Some(select::encode_offset(
                &paging_order,
                start.unwrap_or(0) + rows.len() as u64,
            )),
            _ => None,
        };
        let total_count = if options.count {
            Some(self.count(&table, &req)?)
        } else {
            None
        };
        Ok(FetchResponse {
            records: rows
                .iter()
                .map(|r| shaper.record(r))
                .collect::<Result<_>>()?,
            total_count,
            next_cursor,
        })
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let table = self.table(&req.resource)?;
        let order = select::order(&table, &req.sort)?;
        if order.is_empty() {
            return Err(ConnectorError::Unsupported(format!(
                "streaming `{}`: it has no primary key to checkpoint by; configure `keys`",
                table.name
            )));
        }
        let visible = if req.fields.is_empty() {
            table.columns.len()
        } else {
            req.fields.len()
        };
        let columns = Self::read_columns(&table, &req.fields, &order)?;
        let after = checkpoint
            .as_deref()
            .map(|c| select::decode_position(&order, c))
            .transpose()?;
        let stmt = build_select(&table, &columns, &req, &order, after.as_deref())?;
        let rows = self
            .conn
            .query_stream(&stmt.sql, &stmt.params, self.config.page_size)
            .map_err(sql::error)?;
        Ok(Box::new(PgStream {
            rows,
            pending: std::collections::VecDeque::new(),
            shaper: Shaper::new(columns, visible, &table, &order),
            order,
        }))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        let table = self.table(&req.resource)?;
        write::execute(&self.conn, &table, &req)
    }
}

impl PgSession {
    fn count(&self, table: &Table, req: &FetchRequest) -> Result<u64> {
        let mut stmt = Statement::default();
        let conditions = select::conditions(table, &req.filters, &mut stmt)?;
        stmt.sql = format!("SELECT count(*) FROM {}", table.qualified());
        if !conditions.is_empty() {
            stmt.sql
                .push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        let set = self
            .conn
            .query(&stmt.sql, &stmt.params)
            .map_err(sql::error)?;
        set.rows
            .first()
            .map(|r| sql::row_values(r))
            .transpose()?
            .and_then(|v| v.first().and_then(Value::as_u64))
            .ok_or_else(|| ConnectorError::Internal("count returned no row".into()))
    }
}

struct PgStream {
    rows: RowStream,
    /// Rows the host sent that the caller's batch size has not taken yet.
    pending: std::collections::VecDeque<String>,
    shaper: Shaper,
    order: Vec<OrderKey>,
}

impl RecordStream for PgStream {
    /// At most `max` records (the caller's batch size; the portal fetches in
    /// the config's `page_size`), the checkpoint after the last of them.
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        if self.pending.is_empty() {
            match self.rows.next().map_err(sql::error)? {
                Some(rows) => self.pending.extend(rows),
                None => return Ok(None),
            }
        }
        let take = (max.max(1) as usize).min(self.pending.len());
        let rows: Vec<String> = self.pending.drain(..take).collect();
        let checkpoint = match rows.last() {
            Some(last) => Some(select::encode_position(
                &self.order,
                &self.shaper.position(last)?,
            )),
            None => None,
        };
        Ok(Some(Batch {
            records: rows
                .iter()
                .map(|r| self.shaper.record(r))
                .collect::<Result<_>>()?,
            checkpoint,
        }))
    }
}

sluice_sdk::export_connector!(Postgres);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
