//! SFTP: files on SSH servers by grant *name*, on the host's SSH client
//! (russh and russh-sftp; no pure-Rust SSH client builds for
//! `wasm32-wasip2`, and this way the key never enters the guest).
//!
//! Threat model: the guest chooses paths and bytes, the grant chooses the
//! server, the login and the directory. The host holds the private key (or
//! password) and pins the server's host keys (`known_hosts` lines): a server
//! offering any other key is refused before the login is sent, so a
//! redirected or spoofed address learns nothing. Every path is relative to
//! the grant's root; `..` is refused, not resolved (what the server's own
//! symlinks reach is the login's business, as with a SQL role). A
//! `read-only` grant refuses writes and removals before they reach the
//! server. Writes go to a temporary name beside the target and are renamed
//! over it only when finished (atomically with OpenSSH's `posix-rename`);
//! an unfinished write removes its temporary file. Each grant holds at most
//! `max_connections` connections at once (a session waits for a free one up
//! to the grant's timeout), and every connect, login and request is bounded
//! by that timeout.

mod client;
mod grant;
mod host;

pub use grant::{
    KnownHosts, SftpGrant, SftpGrantConfig, SftpMode, SftpPolicy, SftpUrl, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
};
pub(crate) use host::{HasSftp, SftpView};
pub use host::{SftpReader, SftpSession, SftpUpload};
