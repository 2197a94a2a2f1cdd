//! Reads: `fetch` (a page, by offset or keyset cursor, with an optional
//! total count) and `stream` (a result read in batches, the last row's key
//! as checkpoint), with records built by splicing each value's JSON text as
//! the host wrote it, never parsed and printed again (for a stream, the host
//! builds the records and passes them on itself: `row-stream.forward-records`).

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::sql::{self, Connection, RecordShape, RowStream};
use sluice_sdk::{
    config, Batch, ConnectorError, FetchRequest, FetchResponse, Record, RecordStream, Result,
};

use crate::select::{self, OrderKey, Statement};
use crate::table::{Read, Table};

/// The largest page `fetch` returns, as `describe` advertises: a page is
/// held whole in the host and the guest (stream for more).
pub const MAX_PAGE_SIZE: u32 = 100_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FetchOptions {
    /// Also return the total number of matching rows.
    count: bool,
}

/// The columns a read returns: the requested fields plus the order keys.
fn read_columns(table: &Table, fields: &[String], order: &[OrderKey]) -> Result<Vec<String>> {
    let mut columns: Vec<String> = if fields.is_empty() {
        table.columns.iter().map(|c| c.name.clone()).collect()
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

/// Turns result rows into records, keeping only the requested fields.
struct Shaper {
    columns: Vec<String>,
    /// `"column":` of each visible column (the leading columns the caller
    /// asked for; the rest are order keys), escaped once.
    keys_json: Vec<String>,
    /// Whether each column's value is JSON held as text, spliced as JSON.
    json_text: Vec<bool>,
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
            json_text: columns
                .iter()
                .map(|c| table.info(c).is_some_and(|i| i.read == Read::JsonText))
                .collect(),
            columns,
        }
    }

    /// The record of one row (a JSON array from the host).
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
            if self.json_text[i] {
                push_json_held_as_text(value.get(), &self.columns[i], &mut data)?;
            } else {
                data.push_str(value.get());
            }
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

    /// The same shaping, for the host to apply (`row-stream.forward-records`).
    fn host_shape(&self) -> RecordShape {
        let positions = |list: &[usize]| list.iter().map(|&i| i as u32).collect();
        RecordShape {
            visible: self.keys_json.len() as u32,
            id_columns: positions(&self.key_positions),
            position_columns: positions(&self.order_positions),
            json_text_columns: (0..self.keys_json.len())
                .filter(|&i| self.json_text[i])
                .map(|i| i as u32)
                .collect(),
        }
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

/// A JSON document the database holds as text (a JSON string from the
/// host): its text, on one line, checked to be JSON; NULL stays null.
fn push_json_held_as_text(raw: &str, column: &str, out: &mut String) -> Result<()> {
    if raw == "null" {
        out.push_str(raw);
        return Ok(());
    }
    let text: String = serde_json::from_str(raw)
        .map_err(|e| ConnectorError::Internal(format!("column `{column}`: {e}")))?;
    if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
        return Err(ConnectorError::InvalidRequest(format!(
            "column `{column}` holds text that is not JSON"
        )));
    }
    out.extend(
        text.chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
    );
    Ok(())
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
    let mut stmt = Statement::new(table.dialect);
    let mut conditions = select::conditions(table, &req.filters, &mut stmt)?;
    if let Some(after) = after {
        conditions.push(select::after(table, order, after, &mut stmt)?);
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

/// The number of columns the caller sees (the rest are order keys).
fn visible(table: &Table, req: &FetchRequest) -> usize {
    if req.fields.is_empty() {
        table.columns.len()
    } else {
        req.fields.len()
    }
}

/// One page of `table`: `default_page_size` rows unless the request says.
///
/// A table with a key pages by keyset (an opaque cursor holding the last
/// row's sort key, so concurrent inserts neither skip nor repeat rows).
/// Without a key no order is unique, so keyset paging would skip tied rows:
/// such a table pages by offset, in an order made deterministic by every
/// orderable column.
///
/// # Errors
///
/// `invalid-request` for a bad field, filter, cursor or page size; the
/// database's errors as [`sql::error`] maps them.
pub fn fetch(
    conn: &Connection,
    table: &Table,
    req: &FetchRequest,
    default_page_size: u32,
) -> Result<FetchResponse> {
    let options: FetchOptions = config::parse_options(req.options.as_deref())?;
    let order = select::order(table, &req.sort)?;
    let columns = read_columns(table, &req.fields, &order)?;
    let page_size = req
        .pagination
        .as_ref()
        .map_or(default_page_size, |p| p.page_size);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ConnectorError::InvalidRequest(format!(
            "page size {page_size}: it must be from 1 to {MAX_PAGE_SIZE} (stream for more)"
        )));
    }
    let cursor = req.pagination.as_ref().and_then(|p| p.cursor.clone());
    let offset = req.pagination.as_ref().and_then(|p| p.offset);
    let keyed = !table.key.is_empty();
    let paging_order = if keyed {
        order.clone()
    } else {
        select::deterministic(table, &order)
    };
    let (after, start) = match (&cursor, keyed) {
        (Some(c), true) => (Some(select::decode_position(&order, c)?), None),
        (Some(c), false) => (None, Some(select::decode_offset(&paging_order, c)?)),
        (None, _) => (None, offset),
    };
    let mut stmt = build_select(table, &columns, req, &paging_order, after.as_deref())?;
    let limit = stmt.bind(&json!(u64::from(page_size) + 1));
    stmt.sql.push_str(&format!(" LIMIT {limit}"));
    if let Some(start) = start {
        let start = stmt.bind(&json!(start));
        stmt.sql.push_str(&format!(" OFFSET {start}"));
    }
    let set = conn.query(&stmt.sql, &stmt.params).map_err(sql::error)?;
    let shaper = Shaper::new(columns, visible(table, req), table, &order);
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
        Some(count(conn, table, req)?)
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

/// The number of rows matching the request's filters.
fn count(conn: &Connection, table: &Table, req: &FetchRequest) -> Result<u64> {
    let mut stmt = Statement::new(table.dialect);
    let conditions = select::conditions(table, &req.filters, &mut stmt)?;
    stmt.sql = format!("SELECT count(*) FROM {}", table.qualified());
    if !conditions.is_empty() {
        stmt.sql
            .push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    let set = conn.query(&stmt.sql, &stmt.params).map_err(sql::error)?;
    set.rows
        .first()
        .map(|r| sql::row_values(r))
        .transpose()?
        .and_then(|v| v.first().and_then(Value::as_u64))
        .ok_or_else(|| ConnectorError::Internal("count returned no row".into()))
}

/// Stream `table` in key order from `checkpoint`, the host reading
/// `fetch_size` rows at a time.
///
/// # Errors
///
/// `unsupported` for a table without a key and no sort; as [`fetch`] else.
pub fn stream(
    conn: &Connection,
    table: &Table,
    req: &FetchRequest,
    checkpoint: Option<&str>,
    fetch_size: u32,
) -> Result<Box<dyn RecordStream>> {
    let order = select::order(table, &req.sort)?;
    if order.is_empty() {
        return Err(ConnectorError::Unsupported(format!(
            "streaming `{}`: it has no primary key to checkpoint by; configure `keys`",
            table.name
        )));
    }
    let columns = read_columns(table, &req.fields, &order)?;
    let after = checkpoint
        .map(|c| select::decode_position(&order, c))
        .transpose()?;
    let stmt = build_select(table, &columns, req, &order, after.as_deref())?;
    let rows = conn
        .query_stream(&stmt.sql, &stmt.params, fetch_size)
        .map_err(sql::error)?;
    Ok(Box::new(TableStream {
        rows,
        shape: Shaper::new(columns, visible(table, req), table, &order).host_shape(),
        order,
    }))
}

/// A table read in key order: the host renders each row as a record and
/// passes it on to the caller itself (no row enters the guest); the guest
/// turns the last row's key into the checkpoint.
struct TableStream {
    rows: RowStream,
    shape: RecordShape,
    order: Vec<OrderKey>,
}

impl RecordStream for TableStream {
    /// At most `max` records (the caller's batch size; the host reads in the
    /// connector's fetch size), the checkpoint after the last of them.
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        let Some(forwarded) = self
            .rows
            .forward_records(&self.shape, max)
            .map_err(sql::error)?
        else {
            return Ok(None);
        };
        let position: Vec<Value> = serde_json::from_str(&forwarded.last_position)
            .map_err(|e| ConnectorError::Internal(format!("bad position from the host: {e}")))?;
        Ok(Some(Batch {
            records: Vec::new(),
            checkpoint: Some(select::encode_position(&self.order, &position)),
        }))
    }
}
