//! Host bindings generated from `wit/` (the `connector` world).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "connector",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "sluice:connector/sql.connection": crate::capability::sql::SqlConnection,
        "sluice:connector/sql.transaction": crate::capability::sql::SqlTransaction,
        "sluice:connector/sql.row-stream": crate::capability::sql::SqlRowStream,
        "sluice:connector/sftp.session": crate::capability::sftp::SftpSession,
        "sluice:connector/sftp.reader": crate::capability::sftp::SftpReader,
        "sluice:connector/sftp.upload": crate::capability::sftp::SftpUpload,
    },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use self::sluice::connector::types::{
    Batch, Capabilities, ConnectorError, Descriptor, ExecuteRequest, ExecuteResponse, FetchRequest,
    FetchResponse, Filter, FilterOp, Pagination, Record, ResourceInfo, SortDirection, SortField,
};
