//! Files on an SSH server (`root: sftp://GRANT/DIR`), through the host's
//! sftp capability: `GRANT` names an sftp grant (`--allow-sftp
//! GRANT=sftp://USER@HOST/ROOT`), which holds the server, the login and the
//! pinned host key; `DIR` is a directory under the grant's root. The
//! connector never sees the key or the server's address, and no path
//! leaves the grant's root.
//!
//! One SSH connection per session, opened at first use and opened again
//! after it is lost. Reads go a megabyte per host call from any offset (a
//! checkpoint resumes by seeking, no re-read); writes go to a temporary
//! name that the host renames over the file once every byte is stored, and
//! removes otherwise; deletes remove the file.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;

use sluice_sdk::sftp::{FileReader, Session, Upload};
use sluice_sdk::{ConnectorError, Result};

use crate::format::{past_end, Source};

/// Directories `discover` descends at most.
const MAX_DEPTH: usize = 16;
/// Entries `discover` lists at most.
const MAX_ENTRIES: usize = 100_000;

/// A grant's server and the directory `root` names under the grant's root.
#[derive(Clone)]
pub struct SftpStore {
    grant: String,
    /// `/`-separated, relative to the grant's root, without slashes at either end.
    dir: String,
    /// The session, once opened; dropped after a lost connection.
    session: Rc<RefCell<Option<Rc<Session>>>>,
}

impl SftpStore {
    /// The store for `root`, when it is an `sftp://` URL.
    ///
    /// # Errors
    ///
    /// `invalid-config` for a URL without a grant name or with a login in it.
    pub fn from_root(root: &str) -> Result<Option<Self>> {
        let Some(rest) = root.strip_prefix("sftp://") else {
            return Ok(None);
        };
        let (grant, dir) = rest.split_once('/').unwrap_or((rest, ""));
        if grant.is_empty() || grant.contains(['@', ':']) {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `root`: `{root}` must be sftp://GRANT/DIR, where GRANT names an sftp grant (which holds the server and the login: --allow-sftp GRANT=sftp://USER@HOST/DIR)"
            )));
        }
        Ok(Some(Self {
            grant: grant.to_string(),
            dir: dir.trim_matches('/').to_string(),
            session: Rc::default(),
        }))
    }

    /// The session, connecting when there is none.
    fn session(&self) -> Result<Rc<Session>> {
        if let Some(session) = self.session.borrow().as_ref() {
            return Ok(Rc::clone(session));
        }
        let session = Rc::new(Session::open(&self.grant)?);
        *self.session.borrow_mut() = Some(Rc::clone(&session));
        Ok(session)
    }

    /// Run `call` on the session; a lost connection is forgotten, so the
    /// next call connects again.
    fn with<T>(&self, call: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let result = call(&*self.session()?);
        if let Err(ConnectorError::Unavailable(_)) = &result {
            self.session.borrow_mut().take();
        }
        result
    }

    /// The file a resource names: a path relative to the root's directory,
    /// absolute under the grant's root (`/in/a.csv`), or `sftp://GRANT/PATH`.
    ///
    /// # Errors
    ///
    /// `invalid-request` for a path that names no file.
    pub fn file(&self, resource: &str) -> Result<SftpFile> {
        let prefix = format!("sftp://{}/", self.grant);
        let path = if let Some(absolute) = resource.strip_prefix(&prefix) {
            absolute.to_string()
        } else if let Some(absolute) = resource.strip_prefix('/') {
            absolute.to_string()
        } else if self.dir.is_empty() {
            resource.to_string()
        } else {
            format!("{}/{resource}", self.dir)
        };
        if resource.is_empty() || path.is_empty() || path.ends_with('/') {
            return Err(ConnectorError::InvalidRequest(format!(
                "resource `{resource}` names no file"
            )));
        }
        Ok(SftpFile {
            name: format!("{prefix}{path}"),
            store: self.clone(),
            path,
        })
    }

    /// The root's directory exists and is a directory.
    ///
    /// # Errors
    ///
    /// As the host answered; `invalid-config` when `root` is not a directory.
    pub fn health_check(&self) -> Result<()> {
        let entry = self.with(|session| session.stat(&self.dir))?;
        if !entry.is_dir {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `root`: `sftp://{}/{}` is not a directory",
                self.grant, self.dir
            )));
        }
        Ok(())
    }

    /// Every file under the root's directory, as `sftp://GRANT/PATH`.
    ///
    /// # Errors
    ///
    /// As the host answered; `invalid-request` past [`MAX_ENTRIES`] files.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut pending = vec![(self.dir.clone(), 0)];
        while let Some((dir, depth)) = pending.pop() {
            for entry in self.with(|session| session.list_dir(&dir))? {
                if entry.is_dir {
                    if depth < MAX_DEPTH {
                        pending.push((entry.path, depth + 1));
                    }
                } else {
                    found.push(format!("sftp://{}/{}", self.grant, entry.path));
                }
                if found.len() >= MAX_ENTRIES {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "more than {MAX_ENTRIES} files under `sftp://{}/{}`: set `root` to a smaller directory",
                        self.grant, self.dir
                    )));
                }
            }
        }
        Ok(found)
    }
}

/// One file on the server.
#[derive(Clone)]
pub struct SftpFile {
    store: SftpStore,
    /// Relative to the grant's root.
    path: String,
    /// `sftp://GRANT/PATH`, how errors name it.
    name: String,
}

impl SftpFile {
    /// Store `bytes` as the file: under a temporary name, renamed over it
    /// once every byte is stored.
    ///
    /// # Errors
    ///
    /// `denied` through a read-only grant; as the host answered otherwise
    /// (the temporary file is removed then).
    pub fn store(&self, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
        self.store.with(|session| {
            let mut upload = Upload::create(session, &self.path)?;
            write(&mut upload)?;
            upload.finish()?;
            Ok(())
        })
    }

    /// Remove the file.
    ///
    /// # Errors
    ///
    /// `not-found` when it does not exist; `denied` through a read-only grant.
    pub fn delete(&self) -> Result<()> {
        self.store.with(|session| session.remove(&self.path))
    }

    fn reader(&self, offset: u64) -> Result<FileReader> {
        self.store
            .with(|session| FileReader::open(session, &self.path, offset))
    }
}

impl Source for SftpFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn head(&self, len: usize) -> Result<Vec<u8>> {
        self.reader(0)?.read_at(0, len as u64)
    }

    fn open_at(&self, offset: u64) -> Result<Box<dyn Read>> {
        if offset > 0 {
            let size = self.size()?;
            if offset > size {
                return Err(past_end(&self.name, offset, size));
            }
        }
        Ok(Box::new(self.reader(offset)?))
    }

    fn size(&self) -> Result<u64> {
        let entry = self.store.with(|session| session.stat(&self.path))?;
        Ok(entry.size)
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let bytes = self.reader(offset)?.read_at(offset, len)?;
        let got = bytes.len() as u64;
        if got < len {
            return Err(past_end(&self.name, offset + len, offset + got));
        }
        Ok(bytes)
    }

    fn clone_box(&self) -> Box<dyn Source> {
        Box::new(self.clone())
    }
}
