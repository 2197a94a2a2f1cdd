//! A tenant's own files, `/v1/files/{path}`: how data gets into the file
//! root that its instances mount (`grants.files`), over the API.
//!
//! Every path is resolved beneath the tenant's root directory handle
//! (cap-std): a path with `..`, an empty or `.` segment, a NUL or a
//! backslash is refused before anything is touched, and a symlink (one a
//! guest made through a read-write mount, say) is never followed out of the
//! root. A file is written whole to a temporary name beside it and renamed
//! into place, so a reader never sees half of it. Files count against the
//! tenant's `max_stored_mib`, and the API answers only when the tenant's
//! ceiling allows `files`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cap_std::fs::Dir;
use http::StatusCode;
use serde_json::json;

use super::api_error::ApiError;
use super::model::Tenant;

/// Entries walked at most when listing or measuring a tenant's files.
const MAX_ENTRIES: usize = 100_000;

/// One file as listed.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct FileView {
    /// Path beneath the tenant's file root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// Refuse the files API to a tenant whose ceiling does not allow files.
pub(super) fn check_enabled(tenant: &Tenant) -> Result<(), ApiError> {
    if tenant.ceiling.files {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "files_not_enabled",
        "this tenant's ceiling does not allow files (`ceiling.files`); ask an admin",
    ))
}

/// The relative path that URL `segments` (percent-encoded) name.
///
/// # Errors
///
/// 422 `invalid_path` naming what is wrong; nothing is touched.
pub(super) fn relative_path(segments: &[&str]) -> Result<PathBuf, ApiError> {
    let invalid =
        |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_path", why);
    if segments.is_empty() {
        return Err(invalid("name a file: /v1/files/{path}".into()));
    }
    let mut path = PathBuf::new();
    for raw in segments {
        let segment = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| invalid(format!("`{raw}` is not UTF-8 once decoded")))?;
        if segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.contains(['/', '\\', '\0'])
            || segment.len() > 255
        {
            return Err(invalid(format!(
                "`{segment}` cannot be part of a file path: plain names only, no `..`, `.`, slashes or NUL"
            )));
        }
        path.push(segment.as_ref());
    }
    Ok(path)
}

fn io_error(path: &Path, e: &std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no file `{}`", path.display()),
        ),
        std::io::ErrorKind::IsADirectory | std::io::ErrorKind::NotADirectory => ApiError::new(
            StatusCode::CONFLICT,
            "not_a_file",
            format!("`{}` is a directory, or lies under a file", path.display()),
        ),
        // Escapes (a symlink out of the root) and permissions land here.
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "denied",
            format!(
                "`{}` cannot be used: it leads outside the tenant's file root or is not permitted",
                path.display()
            ),
        ),
    }
}

/// Write `body` to `path` beneath `root`, whole or not at all.
pub(super) fn write(root: &Dir, path: &Path, body: &Bytes) -> Result<bool, ApiError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = match parent {
        Some(parent) => {
            root.create_dir_all(parent)
                .map_err(|e| io_error(path, &e))?;
            root.open_dir(parent).map_err(|e| io_error(path, &e))?
        }
        None => root.try_clone().map_err(|e| io_error(path, &e))?,
    };
    let name = path.file_name().unwrap_or_default();
    let existed = match dir.symlink_metadata(name) {
        Ok(meta) if meta.is_dir() || meta.file_type().is_symlink() => {
            return Err(io_error(
                path,
                &std::io::Error::from(std::io::ErrorKind::IsADirectory),
            ))
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let temp = format!(".{}.upload-{}", name.to_string_lossy(), fastrand::u64(..));
    let written = (|| {
        let mut file = dir.create(&temp)?;
        file.write_all(body)?;
        file.sync_all()?;
        dir.rename(&temp, &dir, name)
    })();
    if let Err(e) = written {
        let _ = dir.remove_file(&temp);
        return Err(io_error(path, &e));
    }
    Ok(existed)
}

/// The size of the regular file at `path`, if there is one.
pub(super) fn size_of(root: &Dir, path: &Path) -> u64 {
    root.symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len())
}

/// Read the file at `path` (never through a symlink), up to `limit` bytes:
/// a larger one (a guest can write one through a read-write mount) is
/// refused rather than held in the server's memory.
pub(super) fn read(root: &Dir, path: &Path, limit: usize) -> Result<Vec<u8>, ApiError> {
    match root.symlink_metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() > limit as u64 => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "`{}` is {} bytes; the API serves files up to {limit} bytes (read larger ones through an instance)",
                path.display(),
                meta.len()
            ),
        )),
        Ok(meta) if meta.is_file() => root.read(path).map_err(|e| io_error(path, &e)),
        Ok(_) => Err(io_error(
            path,
            &std::io::Error::from(std::io::ErrorKind::IsADirectory),
        )),
        Err(e) => Err(io_error(path, &e)),
    }
}

/// Remove the file at `path` (a symlink is removed, never followed).
pub(super) fn remove(root: &Dir, path: &Path) -> Result<(), ApiError> {
    match root.symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(io_error(
            path,
            &std::io::Error::from(std::io::ErrorKind::IsADirectory),
        )),
        Ok(_) => root.remove_file(path).map_err(|e| io_error(path, &e)),
        Err(e) => Err(io_error(path, &e)),
    }
}

/// Every regular file beneath `root`, sorted by path (symlinks are not
/// followed; at most [`MAX_ENTRIES`] entries are walked).
pub(super) fn list(root: &Dir) -> Result<Vec<FileView>, ApiError> {
    let mut files = Vec::new();
    let mut pending = vec![(
        PathBuf::new(),
        root.try_clone().map_err(|e| io_error(Path::new("."), &e))?,
    )];
    let mut walked = 0usize;
    while let Some((prefix, dir)) = pending.pop() {
        let entries = dir.entries().map_err(|e| io_error(&prefix, &e))?;
        for entry in entries.flatten() {
            walked += 1;
            if walked > MAX_ENTRIES {
                return Err(ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "too_many_files",
                    format!("the tenant's file root holds more than {MAX_ENTRIES} entries"),
                ));
            }
            let name = entry.file_name();
            let path = prefix.join(&name);
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if let Ok(sub) = entry.open_dir() {
                    pending.push((path, sub));
                }
            } else if kind.is_file() {
                let size = entry.metadata().map_or(0, |m| m.len());
                files.push(FileView {
                    path: path.to_string_lossy().replace('\\', "/"),
                    size,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Bytes the tenant's files take.
pub(super) fn used_bytes(root: &Dir) -> Result<u64, ApiError> {
    Ok(list(root)?.iter().map(|f| f.size).sum())
}

/// The answer to a write.
pub(super) fn written(path: &Path, size: usize, existed: bool) -> (StatusCode, serde_json::Value) {
    (
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        json!({ "path": path.to_string_lossy(), "size": size }),
    )
}
