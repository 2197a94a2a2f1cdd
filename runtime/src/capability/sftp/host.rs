//! The `sluice:connector/sftp` host: a borrowed [`SftpView`] of one store's
//! state implements the WIT interface, so the sftp host reaches only its
//! grants, its resources and the session's denial and timeout logs.

use std::io::SeekFrom;
use std::sync::Arc;

use russh_sftp::client::fs::{File, Metadata};
use russh_sftp::protocol::OpenFlags;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use wasmtime::component::{HasData, Resource, ResourceTable};

use super::client::{Connection, Failure, SftpResult};
use super::grant::{SftpMode, SftpPolicy};
use crate::bindings::sluice::connector::sftp::{
    Entry, Host as SftpHost, HostReader, HostSession, HostUpload,
};
use crate::bindings::ConnectorError;
use crate::capability::denial::{Capability, Denial, Denials, Expiries, GrantTimeout};

/// Most bytes one `reader.read` returns.
const MAX_READ: u32 = 4 << 20;

/// What the sftp host borrows from a store's state for one call.
pub(crate) struct SftpView<'a> {
    /// The store's resources (sessions, readers, uploads live here).
    pub table: &'a mut ResourceTable,
    /// The session's sftp grants.
    pub policy: &'a SftpPolicy,
    /// Where a denied grant name is recorded.
    pub denials: &'a Denials,
    /// Where an expired grant timeout is recorded.
    pub expiries: &'a Expiries,
}

/// Links [`SftpView`] into `add_to_linker`.
pub(crate) struct HasSftp;

impl HasData for HasSftp {
    type Data<'a> = SftpView<'a>;
}

/// A guest's session resource: one logged-in SSH connection.
pub struct SftpSession(Arc<Connection>);

/// A guest's reader resource: a file open on the server.
pub struct SftpReader {
    connection: Arc<Connection>,
    path: String,
    file: File,
}

/// A guest's upload resource: a temporary file beside its target.
pub struct SftpUpload {
    connection: Arc<Connection>,
    temporary: String,
    target: String,
    /// Open until `finish` closes it; `None` after.
    file: Option<File>,
    written: u64,
}

impl SftpView<'_> {
    /// The WIT error for a failure; an expired timeout is recorded, so the
    /// call's resulting `timeout` names the grant's setting.
    fn error(&self, connection: &Connection, failure: Failure) -> ConnectorError {
        match failure {
            Failure::Denied(m) => ConnectorError::Denied(m),
            Failure::NotFound(m) => ConnectorError::NotFound(m),
            Failure::Unavailable(m) => ConnectorError::Unavailable(m),
            Failure::TooLarge(m) => ConnectorError::InvalidRequest(m),
            Failure::Timeout(waited_for) => {
                self.expiries.record(GrantTimeout {
                    capability: Capability::Sftp,
                    waited_for: format!("{waited_for} (sftp grant `{}`)", connection.grant.name()),
                    setting: "timeout_ms",
                    limit: connection.grant.timeout,
                });
                ConnectorError::Timeout
            }
        }
    }

    fn connection(&self, this: &Resource<SftpSession>) -> wasmtime::Result<Arc<Connection>> {
        Ok(Arc::clone(&self.table.get(this)?.0))
    }
}

/// What `metadata` says about `path` (relative to the root, as the guest wrote it).
fn entry(path: String, metadata: &Metadata) -> Entry {
    Entry {
        path,
        is_dir: metadata.is_dir(),
        size: if metadata.is_dir() { 0 } else { metadata.len() },
        modified: metadata.mtime.map(u64::from),
    }
}

/// A write through a read-only grant is refused before it reaches the server.
fn writable(connection: &Connection, what: &str, path: &str) -> SftpResult<()> {
    match connection.grant.mode() {
        SftpMode::ReadWrite => Ok(()),
        SftpMode::ReadOnly => Err(Failure::Denied(format!(
            "sftp grant `{}` is read-only: cannot {what} `{path}`; grant it read-write (`\"mode\": \"read-write\"`, CLI --allow-sftp-write)",
            connection.grant.name()
        ))),
    }
}

impl SftpHost for SftpView<'_> {}

impl HostSession for SftpView<'_> {
    async fn open(
        &mut self,
        grant: String,
    ) -> wasmtime::Result<Result<Resource<SftpSession>, ConnectorError>> {
        let Some(grant) = self.policy.grant(&grant).cloned() else {
            // The name is the guest's: only its start reaches the log.
            let grant: String = grant.chars().take(64).collect();
            let denial = Denial {
                capability: Capability::Sftp,
                attempted: format!("open sftp grant `{grant}`"),
                grant: format!(
                    "an sftp grant named `{grant}` (--allow-sftp {grant}=sftp://USER@HOST/DIR)"
                ),
                api_grant: format!("an sftp grant named `{grant}` to the instance's `grants.sftp`"),
                connector_error: None,
            };
            let message = denial.to_string();
            self.denials.record(denial);
            return Ok(Err(ConnectorError::Denied(message)));
        };
        match Connection::open(Arc::clone(&grant)).await {
            Ok(connection) => Ok(Ok(self.table.push(SftpSession(Arc::new(connection)))?)),
            Err(Failure::Timeout(waited_for)) => {
                self.expiries.record(GrantTimeout {
                    capability: Capability::Sftp,
                    waited_for: format!("{waited_for} (sftp grant `{}`)", grant.name()),
                    setting: "timeout_ms",
                    limit: grant.timeout,
                });
                Ok(Err(ConnectorError::Timeout))
            }
            Err(Failure::Denied(m)) => Ok(Err(ConnectorError::Denied(m))),
            Err(Failure::NotFound(m) | Failure::Unavailable(m) | Failure::TooLarge(m)) => {
                Ok(Err(ConnectorError::Unavailable(m)))
            }
        }
    }

    async fn writable(&mut self, this: Resource<SftpSession>) -> wasmtime::Result<bool> {
        Ok(self.connection(&this)?.grant.mode() == SftpMode::ReadWrite)
    }

    async fn stat(
        &mut self,
        this: Resource<SftpSession>,
        path: String,
    ) -> wasmtime::Result<Result<Entry, ConnectorError>> {
        let connection = self.connection(&this)?;
        let result = async {
            let full = connection.path(&path)?;
            let what = format!("stat {full}");
            let metadata = connection
                .request(&what, connection.sftp.metadata(full.clone()))
                .await?;
            Ok(entry(path, &metadata))
        }
        .await;
        Ok(result.map_err(|e| self.error(&connection, e)))
    }

    async fn list_dir(
        &mut self,
        this: Resource<SftpSession>,
        path: String,
    ) -> wasmtime::Result<Result<Vec<Entry>, ConnectorError>> {
        let connection = self.connection(&this)?;
        let result = async {
            let full = connection.path(&path)?;
            let listing = connection.list(&full).await?;
            let prefix = path.trim_matches('/');
            Ok(listing
                .into_iter()
                .filter(|item| !matches!(item.filename.as_str(), "." | ".."))
                .map(|item| {
                    let relative = match prefix {
                        "" => item.filename,
                        dir => format!("{dir}/{}", item.filename),
                    };
                    entry(relative, &item.attrs)
                })
                .collect())
        }
        .await;
        Ok(result.map_err(|e| self.error(&connection, e)))
    }

    async fn open_read(
        &mut self,
        this: Resource<SftpSession>,
        path: String,
    ) -> wasmtime::Result<Result<Resource<SftpReader>, ConnectorError>> {
        let connection = self.connection(&this)?;
        let result = async {
            let full = connection.path(&path)?;
            let what = format!("open {full}");
            let file = connection
                .request(&what, connection.sftp.open(full.clone()))
                .await?;
            Ok(SftpReader {
                connection: Arc::clone(&connection),
                path: full,
                file,
            })
        }
        .await;
        match result {
            Ok(reader) => Ok(Ok(self.table.push(reader)?)),
            Err(e) => Ok(Err(self.error(&connection, e))),
        }
    }

    async fn create(
        &mut self,
        this: Resource<SftpSession>,
        path: String,
    ) -> wasmtime::Result<Result<Resource<SftpUpload>, ConnectorError>> {
        let connection = self.connection(&this)?;
        let result = async {
            writable(&connection, "write", &path)?;
            let target = connection.file_path(&path)?;
            let temporary = format!("{target}.sluice-partial-{:016x}", fastrand::u64(..));
            let what = format!("create {temporary}");
            let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
            let file = connection
                .request(
                    &what,
                    connection.sftp.open_with_flags(temporary.clone(), flags),
                )
                .await?;
            Ok(SftpUpload {
                connection: Arc::clone(&connection),
                temporary,
                target,
                file: Some(file),
                written: 0,
            })
        }
        .await;
        match result {
            Ok(upload) => Ok(Ok(self.table.push(upload)?)),
            Err(e) => Ok(Err(self.error(&connection, e))),
        }
    }

    async fn remove(
        &mut self,
        this: Resource<SftpSession>,
        path: String,
    ) -> wasmtime::Result<Result<(), ConnectorError>> {
        let connection = self.connection(&this)?;
        let result = async {
            writable(&connection, "remove", &path)?;
            let full = connection.file_path(&path)?;
            let what = format!("remove {full}");
            connection
                .request(&what, connection.sftp.remove_file(full.clone()))
                .await
        }
        .await;
        Ok(result.map_err(|e| self.error(&connection, e)))
    }

    async fn drop(&mut self, this: Resource<SftpSession>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostReader for SftpView<'_> {
    async fn read(
        &mut self,
        this: Resource<SftpReader>,
        offset: u64,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, ConnectorError>> {
        let reader = self.table.get_mut(&this)?;
        let connection = Arc::clone(&reader.connection);
        let what = format!("read {}", reader.path);
        let result = connection
            .request(&what, async {
                reader.file.seek(SeekFrom::Start(offset)).await?;
                let mut bytes = Vec::new();
                (&mut reader.file)
                    .take(u64::from(max.min(MAX_READ)))
                    .read_to_end(&mut bytes)
                    .await?;
                Ok(bytes)
            })
            .await;
        Ok(result.map_err(|e| self.error(&connection, e)))
    }

    async fn drop(&mut self, this: Resource<SftpReader>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostUpload for SftpView<'_> {
    async fn write(
        &mut self,
        this: Resource<SftpUpload>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), ConnectorError>> {
        let upload = self.table.get_mut(&this)?;
        let connection = Arc::clone(&upload.connection);
        let what = format!("write {}", upload.temporary);
        let result = match upload.file.as_mut() {
            Some(file) => {
                connection
                    .request(&what, async { Ok(file.write_all(&bytes).await?) })
                    .await
            }
            None => Err(Failure::Unavailable(format!(
                "{what}: the upload is finished"
            ))),
        };
        if result.is_ok() {
            upload.written += bytes.len() as u64;
        }
        Ok(result.map_err(|e| self.error(&connection, e)))
    }

    async fn finish(
        &mut self,
        this: Resource<SftpUpload>,
    ) -> wasmtime::Result<Result<u64, ConnectorError>> {
        let mut upload = self.table.delete(this)?;
        let connection = Arc::clone(&upload.connection);
        let result = async {
            if let Some(mut file) = upload.file.take() {
                let what = format!("close {}", upload.temporary);
                connection
                    .request(&what, async { Ok(file.shutdown().await?) })
                    .await?;
            }
            connection
                .replace(&upload.temporary, &upload.target)
                .await?;
            Ok(upload.written)
        }
        .await;
        if result.is_err() {
            discard(&mut upload).await;
        }
        Ok(result.map_err(|e| self.error(&connection, e)))
    }

    async fn drop(&mut self, this: Resource<SftpUpload>) -> wasmtime::Result<()> {
        let mut upload = self.table.delete(this)?;
        discard(&mut upload).await;
        Ok(())
    }
}

/// Close and remove an unfinished upload's temporary file, so a failed
/// write leaves nothing beside its target (best effort: the connection may
/// be what failed).
async fn discard(upload: &mut SftpUpload) {
    let connection = &upload.connection;
    if let Some(mut file) = upload.file.take() {
        let _ = connection
            .request("close", async { Ok(file.shutdown().await?) })
            .await;
    }
    let what = format!("remove {}", upload.temporary);
    if let Err(Failure::Unavailable(e) | Failure::Denied(e)) = connection
        .request(&what, connection.sftp.remove_file(upload.temporary.clone()))
        .await
    {
        tracing::warn!(grant = connection.grant.name(), "{e}");
    }
}
