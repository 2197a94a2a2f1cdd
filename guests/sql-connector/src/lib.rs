//! What the `postgres` and `mysql` connectors share, written once: a
//! [`Table`] checked against the database's catalogue, SQL built from
//! validated, quoted identifiers and bound values in either [`Dialect`]
//! (filters, multi-field sort, fields, offset and keyset pagination with an
//! opaque cursor, counts), the reads ([`read::fetch`], [`read::stream`]) and
//! the writes ([`write::execute`]).
//!
//! A connector brings its configuration and its [`session::Catalog`] (how it
//! finds tables, columns, types and keys); [`session::TableSession`] is the
//! rest of its `Session`.

pub mod dialect;
pub mod read;
pub mod select;
pub mod session;
pub mod table;
pub mod write;

pub use dialect::Dialect;
pub use session::{Catalog, TableSession};
pub use table::{Accept, Bind, Column, Read, Table};

/// Rows a stream reads from the database at a time unless the connector's
/// `fetch_size` says otherwise: large enough that a million rows take a few
/// hundred round trips, small enough to hold two batches in memory.
pub fn default_fetch_size() -> u32 {
    5000
}
