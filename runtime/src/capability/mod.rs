//! Capabilities: one module and one policy type each, deny by default.

pub mod files;
pub mod http;
pub mod log;
pub mod sockets;
pub mod sql;
