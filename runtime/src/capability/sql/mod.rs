//! SQL: databases by grant *name* — PostgreSQL on tokio-postgres, MySQL and
//! MariaDB on mysql_async — behind one WIT interface.
//!
//! Threat model: the guest writes the SQL, so the grant is the boundary. The
//! guest names a grant and never sees its URL or password. A `read-only`
//! grant admits only single plain queries (each dialect's `guard`: no
//! transaction or session control, no `COPY`/`LOAD DATA`/`INTO OUTFILE`,
//! `LOCK`, locking reads, large objects or session locks, through any
//! function, in any order) and runs each inside a `READ ONLY` transaction, so
//! a write fails with `denied` whatever SQL the guest sends. "Read-only" is
//! not a privilege boundary against the database server itself: the role is.
//! A policy can refuse privileged roles
//! ([`SqlUrlPolicy::allow_privileged_roles`]), checked at every connect. Each
//! grant owns one bounded pool shared by every session opened with it;
//! connections are reset before reuse. Statements run under the grant's
//! statement timeout, set on the server and enforced again by the host (which
//! cancels or kills the query), so a guest changing its session's timeout
//! buys nothing. Grant URLs are checked against a [`SqlUrlPolicy`] that can
//! refuse Unix sockets, `hostaddr`, multi-host lists and privileged roles (a
//! multi-tenant server refuses them). MySQL's `LOAD DATA LOCAL` never reads
//! a host file: the host has no handler for it.
//!
//! Streams (`query-stream`) read a result in batches (a PostgreSQL portal, a
//! MySQL result read row by row off the socket), so any result size takes
//! bounded memory; explicit transactions and streams run in a task that owns
//! the connection and hands it back when they end. A stream's rows can be
//! rendered as records by the host (`shape`) and forwarded straight to the
//! caller of the running `record-stream.next` (`forward`): bounded by that
//! call's `max`, and never copied into the guest and back.

mod command;
mod failure;
mod forward;
mod grant;
mod host;
mod json_text;
mod lex;
mod mysql;
mod pool;
mod postgres;
mod shape;
mod url;

pub(crate) use forward::ForwardedRecords;
pub use grant::{
    SqlGrant, SqlGrantConfig, SqlMode, SqlPolicy, SqlUrlPolicy, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_STATEMENT_TIMEOUT,
};
pub(crate) use host::{HasSql, SqlView};
pub use host::{SqlConnection, SqlRowStream, SqlTransaction};
pub use url::{SqlDialect, SqlEndpoint, SqlHost, SqlUrl};
