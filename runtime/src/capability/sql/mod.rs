//! SQL: PostgreSQL databases by grant *name*, on tokio-postgres.
//!
//! Threat model: the guest writes the SQL, so the grant is the boundary. The
//! guest names a grant and never sees its URL or password. A `read-only`
//! grant admits only single plain queries ([`guard`]: no transaction or
//! session control, no `COPY`, `LOCK`, large objects or session advisory
//! locks, through any function, in any order) and runs each inside a `READ
//! ONLY` transaction, so a write fails with `denied` whatever SQL the guest
//! sends. "Read-only" is not a privilege boundary against the database
//! server itself: the role is. A policy can refuse privileged roles
//! ([`SqlUrlPolicy::allow_privileged_roles`]), checked at every connect. Each grant owns one
//! bounded pool shared by every session opened with it; connections are reset
//! before reuse. Statements run under the grant's `statement_timeout`, set on
//! the server and enforced again by the host (which cancels the query), so a
//! guest `SET statement_timeout = 0` buys nothing. Grant URLs are checked
//! against a [`SqlUrlPolicy`] that can refuse Unix sockets, `hostaddr`,
//! multi-host lists and privileged roles (a multi-tenant server refuses them).
//!
//! Streams (`query-stream`) read a server-side portal in batches, so any
//! result size takes bounded memory; explicit transactions and streams run in
//! a task that owns the connection and hands it back when they end.

mod convert;
mod failure;
mod grant;
pub mod guard;
mod host;
mod pool;
mod statement;
mod tasks;

pub(crate) use failure::pg_text;
pub use grant::{
    SqlGrant, SqlGrantConfig, SqlMode, SqlPolicy, SqlUrl, SqlUrlPolicy, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_STATEMENT_TIMEOUT,
};
pub(crate) use host::{HasSql, SqlView};
pub use host::{SqlConnection, SqlRowStream, SqlTransaction};
