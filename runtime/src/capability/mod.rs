//! Capabilities: one module and one policy type each, deny by default.
//!
//! Each capability owns its whole policy: what a grant declares (a serde
//! config type), what it opens (a policy with its live state), the checks,
//! and the host side of its interface. [`GrantsConfig`](crate::GrantsConfig)
//! and [`Grants`](crate::Grants) gather them; [`Ceiling`] bounds them for a
//! tenant; denials and expired grant timeouts are recorded in the session's
//! logs kept here.

mod ceiling;
pub(crate) mod denial;
pub mod files;
pub(crate) mod grants;
mod host;
pub mod http;
pub(crate) mod log;
pub(crate) mod output;
pub mod secrets;
pub mod sftp;
pub mod sockets;
pub mod sql;

pub use ceiling::{Ceiling, Outside, SqlHostRule, SqlTarget};
