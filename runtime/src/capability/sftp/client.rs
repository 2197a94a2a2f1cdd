//! One SSH connection through a grant: connect within the grant's timeout,
//! refuse any host key the grant does not pin (before the login is sent),
//! log in with the grant's key or password, open the SFTP subsystem. Also
//! the grant's path rule ([`Connection::path`]) and what each SFTP failure
//! becomes ([`Failure`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{Config as SftpConfig, RawSftpSession, SftpSession};
use russh_sftp::protocol::{Packet, StatusCode};
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, OwnedSemaphorePermit};

use super::grant::{Login, SftpGrant};

/// A failure before it becomes a `connector-error`.
#[derive(Debug)]
pub(crate) enum Failure {
    Denied(String),
    NotFound(String),
    Unavailable(String),
    /// The grant's `timeout_ms` expired waiting for what is named.
    Timeout(String),
    /// The request cannot be answered within the host's bounds.
    TooLarge(String),
}

/// Entries one directory listing may hold; a server sending more (or
/// without end) is refused rather than held in memory.
pub(crate) const MAX_LIST_ENTRIES: usize = 100_000;

pub(crate) type SftpResult<T> = Result<T, Failure>;

/// The client side of the SSH handshake: accepts only the pinned keys, and
/// remembers the fingerprint of one it refused, for the error.
struct Pinned {
    grant: Arc<SftpGrant>,
    refused: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            return Ok(false);
        };
        if self.grant.known_hosts.admits(key) {
            return Ok(true);
        }
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(key.fingerprint(HashAlg::Sha256).to_string());
        Ok(false)
    }
}

/// A logged-in SFTP session, holding one of its grant's connections.
pub(crate) struct Connection {
    pub grant: Arc<SftpGrant>,
    handle: Handle<Pinned>,
    pub sftp: SftpSession,
    /// A second SFTP channel for requests the high-level session lacks
    /// (`posix-rename@openssh.com`), opened when first needed.
    raw: OnceCell<RawSftpSession>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// Connect, check the host key, log in and start SFTP, each step
    /// within the grant's timeout.
    pub async fn open(grant: Arc<SftpGrant>) -> SftpResult<Self> {
        let name = grant.name.clone();
        let address = grant.url.address();
        let permit = within(
            &grant,
            format!("a free connection of sftp grant `{name}` (all its connections are open)"),
            async {
                Ok(Arc::clone(&grant.connections)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"))
            },
        )
        .await?;
        let stream = within(&grant, format!("a TCP connection to {address}"), async {
            TcpStream::connect((grant.url.host.as_str(), grant.url.port))
                .await
                .map_err(|e| {
                    Failure::Unavailable(format!(
                        "sftp grant `{name}`: cannot connect to {address}: {e}"
                    ))
                })
        })
        .await?;
        let _ = stream.set_nodelay(true);
        let config = Arc::new(client::Config {
            preferred: russh::Preferred {
                key: grant
                    .known_hosts
                    .keys()
                    .iter()
                    .map(|key| key.algorithm())
                    .collect::<Vec<_>>()
                    .into(),
                ..russh::Preferred::default()
            },
            inactivity_timeout: Some(Duration::from_secs(600)),
            ..client::Config::default()
        });
        let refused = Arc::new(Mutex::new(None));
        let handler = Pinned {
            grant: Arc::clone(&grant),
            refused: Arc::clone(&refused),
        };
        let connected = within(&grant, format!("the SSH handshake with {address}"), async {
            client::connect_stream(config, stream, handler)
                .await
                .map_err(|e| {
                    let refused = refused.lock().unwrap_or_else(PoisonError::into_inner).take();
                    match refused {
                        Some(fingerprint) => Failure::Denied(format!(
                            "sftp grant `{name}`: the server at {address} offered host key {fingerprint}, which the grant's known_hosts does not pin; the connection was refused before logging in"
                        )),
                        None => Failure::Unavailable(format!(
                            "sftp grant `{name}`: SSH handshake with {address} failed: {e}"
                        )),
                    }
                })
        })
        .await?;
        let mut handle = connected;
        within(&grant, format!("the SSH login to {address}"), async {
            log_in(&grant, &mut handle).await
        })
        .await?;
        let sftp = within(&grant, format!("the SFTP subsystem of {address}"), async {
            let channel = handle
                .channel_open_session()
                .await
                .map_err(|e| lost(&grant, e))?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| lost(&grant, e))?;
            SftpSession::new_with_config(channel.into_stream(), sftp_config(&grant))
                .await
                .map_err(|e| {
                    Failure::Unavailable(format!(
                        "sftp grant `{name}`: the server at {address} did not start SFTP: {e}"
                    ))
                })
        })
        .await?;
        Ok(Self {
            grant,
            handle,
            sftp,
            raw: OnceCell::new(),
            _permit: permit,
        })
    }

    /// `path` as the server's absolute path ([`resolve`]).
    pub fn path(&self, path: &str) -> SftpResult<String> {
        resolve(&self.grant, path)
    }

    /// `path` as the server's absolute path of a file ([`resolve_file`]).
    pub fn file_path(&self, path: &str) -> SftpResult<String> {
        resolve_file(&self.grant, path)
    }

    /// Run one SFTP request within the grant's timeout, its failure named
    /// after `what` (`read /data/a.csv`).
    pub async fn request<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, SftpError>>,
    ) -> SftpResult<T> {
        within(
            &self.grant,
            format!("the SFTP server's answer to {what}"),
            async { request.await.map_err(|e| failure(&self.grant, what, e)) },
        )
        .await
    }

    /// The second SFTP channel, opened on first use.
    async fn raw(&self) -> SftpResult<&RawSftpSession> {
        self.raw
            .get_or_try_init(|| async {
                let channel = self
                    .handle
                    .channel_open_session()
                    .await
                    .map_err(|e| lost(&self.grant, e))?;
                channel
                    .request_subsystem(true, "sftp")
                    .await
                    .map_err(|e| lost(&self.grant, e))?;
                let raw = RawSftpSession::new_with_config(
                    channel.into_stream(),
                    sftp_config(&self.grant),
                );
                self.request("the start of a second SFTP channel", raw.init())
                    .await?;
                Ok::<_, Failure>(raw)
            })
            .await
    }

    /// The entries of the directory `dir` (the server's path), at most
    /// [`MAX_LIST_ENTRIES`], read a server packet at a time.
    pub async fn list(&self, dir: &str) -> SftpResult<Vec<russh_sftp::protocol::File>> {
        let what = format!("list {dir}");
        let raw = self.raw().await?;
        let handle = self.request(&what, raw.opendir(dir)).await?.handle;
        let mut entries = Vec::new();
        let listed = loop {
            let next = self
                .request(&what, async {
                    match raw.readdir(handle.as_str()).await {
                        Ok(name) => Ok(Some(name.files)),
                        Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => {
                            Ok(None)
                        }
                        Err(other) => Err(other),
                    }
                })
                .await;
            match next {
                Ok(Some(files)) => entries.extend(files),
                Ok(None) => break Ok(entries),
                Err(other) => break Err(other),
            }
            if entries.len() > MAX_LIST_ENTRIES {
                break Err(Failure::TooLarge(format!(
                    "sftp grant `{}`: {what}: more than {MAX_LIST_ENTRIES} entries; list a smaller directory",
                    self.grant.name
                )));
            }
        };
        let _ = self.request(&what, raw.close(handle)).await;
        listed
    }

    /// Rename `from` over `to`: atomically with OpenSSH's
    /// `posix-rename@openssh.com`; on a server without it, by removing `to`
    /// first (plain SFTP rename refuses an existing target).
    pub async fn replace(&self, from: &str, to: &str) -> SftpResult<()> {
        let what = format!("rename {from} to {to}");
        let raw = self.raw().await?;
        let mut data = Vec::new();
        for text in [from, to] {
            let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(text.as_bytes());
        }
        let reply = self
            .request(&what, raw.extended("posix-rename@openssh.com", data))
            .await?;
        match reply {
            Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(status) if status.status_code == StatusCode::OpUnsupported => {
                match self.request(&what, self.sftp.remove_file(to)).await {
                    Ok(()) | Err(Failure::NotFound(_)) => {}
                    Err(other) => return Err(other),
                }
                self.request(&what, self.sftp.rename(from, to)).await
            }
            Packet::Status(status) => Err(failure(&self.grant, &what, SftpError::Status(status))),
            _ => Err(Failure::Unavailable(format!(
                "sftp grant `{}`: {what}: unexpected reply",
                self.grant.name
            ))),
        }
    }
}

fn sftp_config(grant: &SftpGrant) -> SftpConfig {
    SftpConfig {
        request_timeout_secs: grant.timeout.as_secs().max(1),
        ..SftpConfig::default()
    }
}

/// Log in with the grant's key (RSA with the best hash the server takes) or password.
async fn log_in(grant: &SftpGrant, handle: &mut Handle<Pinned>) -> SftpResult<()> {
    let user = grant.url.user.clone();
    let result = match &grant.login {
        Some(Login::Key(key)) => {
            let hash = match key.algorithm().is_rsa() {
                true => handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| lost(grant, e))?
                    .flatten(),
                false => None,
            };
            handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::clone(key), hash))
                .await
        }
        Some(Login::Password(password)) => {
            handle.authenticate_password(user, password.as_ref()).await
        }
        None => {
            return Err(Failure::Denied(format!(
                "sftp grant `{}` has no login: its secret was not provided",
                grant.name
            )))
        }
    };
    if result.map_err(|e| lost(grant, e))?.success() {
        return Ok(());
    }
    Err(Failure::Denied(format!(
        "sftp grant `{}`: the server refused the login of `{}` with the grant's {}",
        grant.name,
        grant.url.user,
        match grant.login {
            Some(Login::Key(_)) => "key",
            _ => "password",
        }
    )))
}

/// `future`'s outcome, or [`Failure::Timeout`] when the grant's timeout expires first.
async fn within<T>(
    grant: &SftpGrant,
    waited_for: String,
    future: impl std::future::Future<Output = SftpResult<T>>,
) -> SftpResult<T> {
    tokio::time::timeout(grant.timeout, future)
        .await
        .unwrap_or(Err(Failure::Timeout(waited_for)))
}

fn lost(grant: &SftpGrant, e: russh::Error) -> Failure {
    Failure::Unavailable(format!(
        "sftp grant `{}`: the SSH connection to {} failed: {e}",
        grant.name,
        grant.url.address()
    ))
}

/// What an SFTP failure of `what` means to the guest.
fn failure(grant: &SftpGrant, what: &str, e: SftpError) -> Failure {
    let name = &grant.name;
    match e {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => {
                Failure::NotFound(format!("sftp grant `{name}`: {what}: no such file"))
            }
            StatusCode::PermissionDenied => Failure::Denied(format!(
                "sftp grant `{name}`: {what}: the server refused it: {}",
                status.error_message
            )),
            code => Failure::Unavailable(format!(
                "sftp grant `{name}`: {what}: {code}: {}",
                status.error_message
            )),
        },
        SftpError::Timeout => Failure::Timeout(format!("the SFTP server's answer to {what}")),
        other => Failure::Unavailable(format!(
            "sftp grant `{name}`: {what}: the connection failed: {other}"
        )),
    }
}

/// `path` (relative to the grant's root, `/`-separated; a leading `/` also
/// means the root) as the server's absolute path. `..` is refused rather
/// than resolved, so no spelling leaves the root; `.` and empty parts are
/// dropped.
fn resolve(grant: &SftpGrant, path: &str) -> SftpResult<String> {
    let mut full = grant.url.root.clone();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Failure::Denied(format!(
                    "sftp grant `{}`: path `{path}` climbs with `..`; paths stay within the grant's root",
                    grant.name
                )))
            }
            _ if part.chars().any(char::is_control) => {
                return Err(Failure::Denied(format!(
                    "sftp grant `{}`: path {path:?} holds a control character",
                    grant.name
                )))
            }
            _ => {
                full.push('/');
                full.push_str(part);
            }
        }
    }
    if full.is_empty() {
        full.push('/');
    }
    Ok(full)
}

/// [`resolve`] for a file to write or remove: at least one name below the
/// root (the root itself is refused: its temporary file would sit beside
/// the root, outside it).
fn resolve_file(grant: &SftpGrant, path: &str) -> SftpResult<String> {
    let full = resolve(grant, path)?;
    if full.len() <= grant.url.root.len().max(1) {
        return Err(Failure::Denied(format!(
            "sftp grant `{}`: path `{path}` names the grant's root, not a file under it",
            grant.name
        )));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::sftp::{KnownHosts, SftpGrantConfig, SftpMode, SftpPolicy, SftpUrl};

    fn grant(root: &str) -> Arc<SftpGrant> {
        let spec = SftpGrantConfig {
            name: "g".into(),
            url: SftpUrl::parse(&format!("sftp://u@h{root}")).unwrap(),
            known_hosts: KnownHosts::parse(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID3PXBqtXbKQxJkKvDeXTnLGtYM4pkOHDRzU5xNl3qbv",
            )
            .unwrap(),
            key_secret: None,
            password_secret: Some("pw".into()),
            mode: SftpMode::ReadWrite,
            max_connections: None,
            timeout_ms: None,
        };
        let policy = SftpPolicy::from_config(&[spec]).unwrap();
        Arc::clone(policy.grant("g").unwrap())
    }

    fn denied(result: SftpResult<String>) -> String {
        match result {
            Err(Failure::Denied(why)) => why,
            other => panic!("expected denied, got {other:?}"),
        }
    }

    #[test]
    fn paths_stay_under_the_root_however_written() {
        let g = grant("/srv/x");
        assert_eq!(resolve(&g, "a/./b//c.csv").unwrap(), "/srv/x/a/b/c.csv");
        assert_eq!(resolve(&g, "/a.csv").unwrap(), "/srv/x/a.csv");
        assert_eq!(resolve(&g, "").unwrap(), "/srv/x");
        for path in ["..", "a/../../b", "/../x", "a/..", "a\nb"] {
            denied(resolve(&g, path));
        }
        assert_eq!(resolve(&grant(""), "").unwrap(), "/");
        assert_eq!(resolve(&grant(""), "a").unwrap(), "/a");
    }

    #[test]
    fn a_file_to_write_or_remove_is_below_the_root_never_the_root() {
        for root in ["/srv/x", ""] {
            let g = grant(root);
            for path in ["", "/", ".", "./"] {
                let why = denied(resolve_file(&g, path));
                assert!(
                    why.contains("names the grant's root"),
                    "{root} {path}: {why}"
                );
            }
            assert_eq!(resolve_file(&g, "f").unwrap(), format!("{root}/f"));
        }
    }
}
