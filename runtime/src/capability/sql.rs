//! SQL: databases by grant name.
//!
//! The WIT interface is part of the contract now; this host build carries no
//! sql grants yet, so every `open` is denied (deny by default) with a message
//! naming the grant the guest asked for. No connection resource can therefore
//! exist, and the methods on one are unreachable by construction: their
//! resource types are uninhabited.

use wasmtime::component::Resource;

use crate::bindings::sluice::connector::sql::{
    Column, Host, HostConnection, HostRowStream, HostTransaction, RowSet, SqlError,
};
use crate::error::{Capability, Denial};
use crate::state::HostState;

/// A pooled database connection (none can be opened in this build).
pub enum SqlConnection {}
/// An open transaction (none can be opened in this build).
pub enum SqlTransaction {}
/// A streamed query (none can be opened in this build).
pub enum SqlRowStream {}

type Json = String;

impl Host for HostState {}

impl HostConnection for HostState {
    async fn open(
        &mut self,
        grant: String,
    ) -> wasmtime::Result<Result<Resource<SqlConnection>, SqlError>> {
        let denial = Denial {
            capability: Capability::Sql,
            attempted: format!("open database `{grant}`"),
            grant: format!(
                "a sql grant named `{grant}` (sql grants are not available in this host yet)"
            ),
            connector_error: None,
        };
        let message = denial.to_string();
        self.denials.record(denial);
        Ok(Err(SqlError::Denied(message)))
    }

    async fn query(
        &mut self,
        this: Resource<SqlConnection>,
        _: String,
        _: Vec<Json>,
    ) -> wasmtime::Result<Result<RowSet, SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn query_stream(
        &mut self,
        this: Resource<SqlConnection>,
        _: String,
        _: Vec<Json>,
        _: u32,
    ) -> wasmtime::Result<Result<Resource<SqlRowStream>, SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn execute(
        &mut self,
        this: Resource<SqlConnection>,
        _: String,
        _: Vec<Json>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn begin(
        &mut self,
        this: Resource<SqlConnection>,
    ) -> wasmtime::Result<Result<Resource<SqlTransaction>, SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn drop(&mut self, _: Resource<SqlConnection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl HostTransaction for HostState {
    async fn query(
        &mut self,
        this: Resource<SqlTransaction>,
        _: String,
        _: Vec<Json>,
    ) -> wasmtime::Result<Result<RowSet, SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn execute(
        &mut self,
        this: Resource<SqlTransaction>,
        _: String,
        _: Vec<Json>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn commit(
        &mut self,
        this: Resource<SqlTransaction>,
    ) -> wasmtime::Result<Result<(), SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn rollback(
        &mut self,
        this: Resource<SqlTransaction>,
    ) -> wasmtime::Result<Result<(), SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn drop(&mut self, _: Resource<SqlTransaction>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl HostRowStream for HostState {
    async fn columns(&mut self, this: Resource<SqlRowStream>) -> wasmtime::Result<Vec<Column>> {
        Err(unopenable(this.rep()))
    }

    async fn next(
        &mut self,
        this: Resource<SqlRowStream>,
    ) -> wasmtime::Result<Result<Option<Vec<Json>>, SqlError>> {
        Err(unopenable(this.rep()))
    }

    async fn drop(&mut self, _: Resource<SqlRowStream>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// A guest forged a handle the host never issued: trap.
fn unopenable(rep: u32) -> wasmtime::Error {
    wasmtime::Error::msg(format!("sql resource {rep} was never issued by this host"))
}
