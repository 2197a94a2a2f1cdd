//! Files: host directories mounted into the guest as WASI preopens.
//!
//! Threat model: the guest names paths. It can reach only the mounted
//! directories; cap-std resolves every path beneath its mount and refuses
//! `..` and symlinks that lead outside. A `ro` mount opens its directory
//! and files without write permission, so writes fail even when the host
//! user could write.
//!
//! A mount is resolved exactly once, when it is made, into an open directory
//! handle; every session preopens that handle, never the path again. So a
//! guest that can write a parent of another mount (and may create symlinks
//! there, relative ones included) cannot swap the mounted directory for a
//! symlink and lead a later session elsewhere: the handle pins the directory
//! it was made from. A mount made [`Mount::beneath`] a root is resolved with
//! cap-std from that root's handle, so neither `..` nor a symlink on the way
//! can leave the root, and the directories it creates are created beneath
//! the root too.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use serde::{Deserialize, Serialize};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::Error;

/// Whether a mount may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum MountMode {
    /// Read only (the default).
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read and write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// One host directory visible to the guest, held open.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Host directory as named when the mount was made (for messages).
    pub host: PathBuf,
    /// Absolute path the guest sees.
    pub guest: String,
    /// Access mode.
    pub mode: MountMode,
    /// The directory, opened once; sessions preopen this handle.
    dir: Arc<Dir>,
}

impl PartialEq for Mount {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host && self.guest == other.guest && self.mode == other.mode
    }
}

impl Eq for Mount {}

/// A mount as a grant declares it: `{"host": "./data", "guest": "/data", "mode": "ro"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Host directory (on a server: beneath the tenant's file root).
    pub host: PathBuf,
    /// Absolute path the guest sees.
    pub guest: String,
    /// Access mode (read-only by default).
    #[serde(default)]
    pub mode: MountMode,
}

impl Mount {
    /// Make a mount, checking that `host` is a directory and `guest` an absolute path.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] naming the problem.
    pub fn new(host: impl Into<PathBuf>, guest: &str, mode: MountMode) -> Result<Self, Error> {
        let host = host.into();
        check_guest_path(guest)?;
        let canonical = host
            .canonicalize()
            .map_err(|e| Error::InvalidGrant(format!("mount `{}`: {e}", host.display())))?;
        if !canonical.is_dir() {
            return Err(Error::InvalidGrant(format!(
                "mount `{}` is not a directory",
                host.display()
            )));
        }
        let dir = Dir::open_ambient_dir(&canonical, ambient_authority())
            .map_err(|e| Error::InvalidGrant(format!("mount `{}`: {e}", host.display())))?;
        Ok(Self {
            host: canonical,
            guest: guest.to_string(),
            mode,
            dir: Arc::new(dir),
        })
    }

    /// Make a mount of `relative` beneath the directory `root`, creating the
    /// directories on the way (beneath `root`) when `create` is set.
    /// `relative` must be a plain relative path (no `..`, no root); symlinks
    /// on the way are followed only while they stay beneath `root`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] when `relative` is not plain, leads outside
    /// `root`, or is not a directory.
    pub fn beneath(
        root: &Dir,
        relative: &Path,
        guest: &str,
        mode: MountMode,
        create: bool,
    ) -> Result<Self, Error> {
        check_guest_path(guest)?;
        let shown = relative.display().to_string();
        if !is_plain_relative(relative) {
            return Err(Error::InvalidGrant(format!(
                "mount `{shown}` must be a relative path without `..` (e.g. `data/in`)"
            )));
        }
        let refused = |e: std::io::Error| Error::InvalidGrant(format!("mount `{shown}`: {e}"));
        let target = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        if create {
            root.create_dir_all(target).map_err(refused)?;
        }
        let dir = root.open_dir(target).map_err(refused)?;
        Ok(Self {
            host: relative.to_path_buf(),
            guest: guest.to_string(),
            mode,
            dir: Arc::new(dir),
        })
    }

    /// Check, creating nothing, that a mount of `relative` beneath `root`
    /// would stay beneath it: `relative` is plain, and the part of it that
    /// exists already is a chain of directories (symlinks followed only while
    /// they stay beneath `root`). What does not exist yet is fine: it is
    /// created when the mount is made ([`Mount::beneath`] with `create`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] when `relative` is not plain, or an existing
    /// part leads outside `root` or is not a directory.
    pub fn check_beneath(root: &Dir, relative: &Path) -> Result<(), Error> {
        let shown = relative.display().to_string();
        if !is_plain_relative(relative) {
            return Err(Error::InvalidGrant(format!(
                "mount `{shown}` must be a relative path without `..` (e.g. `data/in`)"
            )));
        }
        let refused = |e: std::io::Error| Error::InvalidGrant(format!("mount `{shown}`: {e}"));
        let mut dir = root.try_clone().map_err(refused)?;
        for part in relative.components() {
            dir = match dir.open_dir(part) {
                Ok(next) => next,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(refused(e)),
            };
        }
        Ok(())
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
            [_, _, last] if last.starts_with('/') => {
                // `a:b:/c`: the host part held a colon.
                let (host, guest) = spec.rsplit_once(':').ok_or_else(bad)?;
                (host, guest, MountMode::ReadOnly)
            }
            [_, _, mode] => {
                return Err(Error::InvalidGrant(format!(
                    "mount `{spec}`: unknown mode `{mode}`; use `ro` (read-only, the default) or `rw` (read-write)"
                )))
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

/// Whether `path` is relative and made of plain names only (or empty).
pub fn is_plain_relative(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
}

fn check_guest_path(guest: &str) -> Result<(), Error> {
    if !guest.starts_with('/') || guest.split('/').any(|part| part == "..") {
        return Err(Error::InvalidGrant(format!(
            "mount guest path `{guest}` must be absolute and free of `..` (e.g. `/data`)"
        )));
    }
    Ok(())
}

/// A path that opens exactly the directory `dir` holds, whatever has since
/// happened to the path it was opened by.
#[cfg(target_os = "linux")]
fn handle_path(dir: &Dir, _host: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// Without `/proc`, the canonical path the mount was made from (a weaker
/// guarantee: the path is opened again by name).
#[cfg(not(target_os = "linux"))]
fn handle_path(_dir: &Dir, host: &Path) -> PathBuf {
    host.to_path_buf()
}

/// The mounts of one session.
#[derive(Debug, Clone, Default)]
pub struct FilesPolicy {
    mounts: Vec<Mount>,
}

impl FilesPolicy {
    /// Open every declared mount (host paths as the process sees them).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a host path that is not a directory, or a
    /// guest path mounted twice.
    pub fn from_config(mounts: &[MountConfig]) -> Result<Self, Error> {
        let mut policy = Self::default();
        for mount in mounts {
            policy.add(Mount::new(&mount.host, &mount.guest, mount.mode)?)?;
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
            wasi.preopened_dir(handle_path(&mount.dir, &mount.host), &mount.guest, perms)
                .map_err(|e| {
                    Error::InvalidGrant(format!("mount `{}`: {e}", mount.host.display()))
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(spec: &str) -> String {
        match Mount::parse(spec) {
            Err(Error::InvalidGrant(m)) => m,
            other => panic!("{spec}: expected an invalid grant, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_mount_mode_is_named() {
        let m = message("/tmp:/data:xx");
        assert!(m.contains("unknown mode `xx`") && m.contains("`rw`"), "{m}");
        assert!(message("/tmp:/data:RW").contains("unknown mode `RW`"));
    }

    #[test]
    fn modes_parse_and_a_colon_in_the_host_path_is_kept() {
        let dir = std::env::temp_dir();
        let host = dir.display().to_string();
        let rw = Mount::parse(&format!("{host}:/data:rw")).unwrap();
        assert_eq!(
            (rw.guest.as_str(), rw.mode),
            ("/data", MountMode::ReadWrite)
        );
        let ro = Mount::parse(&format!("{host}:/data")).unwrap();
        assert_eq!(ro.mode, MountMode::ReadOnly);
        // `a:b:/c` reads as host `a:b`, guest `/c` (the host does not exist here).
        let m = message("/no/such:dir:/data");
        assert!(m.contains("/no/such:dir"), "{m}");
    }
}
