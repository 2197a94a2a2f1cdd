//! Files: host directories mounted into the guest as WASI preopens.
//!
//! Threat model: the guest names paths. It can reach only the mounted
//! directories; cap-std resolves every path beneath its mount and refuses
//! `..` and symlinks that lead outside. A `ro` mount opens its directory
//! and files without write permission, so writes fail even when the host
//! user could write.

use std::path::PathBuf;

use serde::Deserialize;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::Error;

/// Whether a mount may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum MountMode {
    /// Read only (the default).
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read and write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// One host directory visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host directory (canonical).
    pub host: PathBuf,
    /// Absolute path the guest sees.
    pub guest: String,
    /// Access mode.
    pub mode: MountMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MountSpec {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    mode: MountMode,
}

impl Mount {
    /// Make a mount, checking that `host` is a directory and `guest` an absolute path.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the problem.
    pub fn new(host: impl Into<PathBuf>, guest: &str, mode: MountMode) -> Result<Self, Error> {
        let host = host.into();
        let canonical = host
            .canonicalize()
            .map_err(|e| Error::InvalidGrant(format!("mount `{}`: {e}", host.display())))?;
        if !canonical.is_dir() {
            return Err(Error::InvalidGrant(format!(
                "mount `{}` is not a directory",
                host.display()
            )));
        }
        if !guest.starts_with('/') || guest.split('/').any(|part| part == "..") {
            return Err(Error::InvalidGrant(format!(
                "mount guest path `{guest}` must be absolute and free of `..` (e.g. `/data`)"
            )));
        }
        Ok(Self {
            host: canonical,
            guest: guest.to_string(),
            mode,
        })
    }

    /// Parse `HOST:GUEST[:ro|rw]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for any other shape.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let bad = || {
            Error::InvalidGrant(format!(
                "mount `{spec}`: write `HOST_DIR:GUEST_DIR[:ro|rw]`, e.g. `./data:/data:ro`"
            ))
        };
        let mut parts = spec.rsplitn(3, ':').collect::<Vec<_>>();
        parts.reverse();
        let (host, guest, mode) = match parts.as_slice() {
            [host, guest, "ro"] => (*host, *guest, MountMode::ReadOnly),
            [host, guest, "rw"] => (*host, *guest, MountMode::ReadWrite),
            [_, _, _] => {
                // `a:b:c` where c is not a mode: the host part held a colon.
                let (host, guest) = spec.rsplit_once(':').ok_or_else(bad)?;
                (host, guest, MountMode::ReadOnly)
            }
            [host, guest] => (*host, *guest, MountMode::ReadOnly),
            _ => return Err(bad()),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(bad());
        }
        Self::new(host, guest, mode)
    }
}

/// The mounts of one session.
#[derive(Debug, Clone, Default)]
pub struct FilesPolicy {
    mounts: Vec<Mount>,
}

impl FilesPolicy {
    pub(crate) fn from_specs(specs: Vec<MountSpec>) -> Result<Self, Error> {
        let mut policy = Self::default();
        for spec in specs {
            policy.add(Mount::new(spec.host, &spec.guest, spec.mode)?)?;
        }
        Ok(policy)
    }

    /// Add a mount.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] when the guest path is already mounted.
    pub fn add(&mut self, mount: Mount) -> Result<(), Error> {
        if self.mounts.iter().any(|m| m.guest == mount.guest) {
            return Err(Error::InvalidGrant(format!(
                "guest path `{}` is mounted twice",
                mount.guest
            )));
        }
        self.mounts.push(mount);
        Ok(())
    }

    /// The mounts.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Preopen every mount.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder) -> Result<(), Error> {
        for mount in &self.mounts {
            let perms = match mount.mode {
                MountMode::ReadOnly => FsPerms::ReadOnly,
                MountMode::ReadWrite => FsPerms::ReadWrite,
            };
            wasi.preopened_dir(&mount.host, &mount.guest, perms)
                .map_err(|e| {
                    Error::InvalidGrant(format!("mount `{}`: {e}", mount.host.display()))
                })?;
        }
        Ok(())
    }
}
