//! Regression tests for the adversarial review of `sluice serve` (issue 10):
//! each test is one attack a hostile tenant tried, and asserts it fails.

mod abi;
mod disk;
mod files;
mod files_api;
mod http;
mod limits;
mod server;
mod sftp;
mod sql;
mod store;
mod streams;

use std::net::SocketAddr;

use sluice_server::{Server, ServerConfig};

use crate::server::ADMIN;

/// A server on `data_dir` with the test admin token, configured further by `adjust`.
pub(crate) async fn start_with(
    data_dir: &std::path::Path,
    adjust: impl FnOnce(&mut ServerConfig),
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let mut config = ServerConfig {
        admin_token: Some(ADMIN.into()),
        max_upload_bytes: 4 << 20,
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), data_dir.to_path_buf())
    };
    adjust(&mut config);
    let server = Server::bind(config).await.expect("server binds");
    let addr = server.local_addr().unwrap();
    (addr, tokio::spawn(server.run()))
}
