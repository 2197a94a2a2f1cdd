//! Storage behind one trait. The embedded default keeps every object as a
//! file in a data directory, written atomically (temp file, fsync, rename,
//! fsync of the directory), so a crash leaves each object fully old or fully new.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Object storage: values by kind and key (keys may contain `/` to scope them).
pub trait Store: Send + Sync + 'static {
    /// Read an object.
    fn get(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Write an object atomically.
    fn put(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), Error>;
    /// Delete an object; `false` when it did not exist.
    fn delete(&self, kind: &str, key: &str) -> Result<bool, Error>;
    /// Keys of `kind` starting with `prefix`, sorted.
    fn list(&self, kind: &str, prefix: &str) -> Result<Vec<String>, Error>;
}

/// A local data directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Keys are made of `[A-Za-z0-9_-]` segments joined by `/`: never `..`, never absolute.
fn check_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!("invalid storage key `{key}`")))
    }
}

impl LocalStore {
    /// Open (and create) a data directory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        Ok(Self { root })
    }

    fn path(&self, kind: &str, key: &str) -> Result<PathBuf, Error> {
        check_key(kind)?;
        check_key(key)?;
        Ok(self.root.join(kind).join(key))
    }
}

impl Store for LocalStore {
    fn get(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path(kind, key)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn put(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), Error> {
        let path = self.path(kind, key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id(),
            fastrand::u64(..)
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(value)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&path, e));
        }
        Ok(())
    }

    fn delete(&self, kind: &str, key: &str) -> Result<bool, Error> {
        let path = self.path(kind, key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn list(&self, kind: &str, prefix: &str) -> Result<Vec<String>, Error> {
        check_key(kind)?;
        let base = self.root.join(kind);
        let mut keys = Vec::new();
        collect(&base, &base, &mut keys).map_err(|e| io(&base, e))?;
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }
}

fn collect(base: &Path, dir: &Path, keys: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // temp files of unfinished writes
        }
        if entry.file_type()?.is_dir() {
            collect(base, &path, keys)?;
        } else if let Ok(relative) = path.strip_prefix(base) {
            keys.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_keys_cannot_escape() {
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", fastrand::u64(..)));
        let store = LocalStore::open(&dir).unwrap();
        store.put("tenants", "t1", b"one").unwrap();
        store.put("instances", "t1/i1", b"a").unwrap();
        store.put("instances", "t2/i2", b"b").unwrap();
        assert_eq!(
            store.get("tenants", "t1").unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(store.list("instances", "t1/").unwrap(), ["t1/i1"]);
        assert!(store.delete("tenants", "t1").unwrap());
        assert!(!store.delete("tenants", "t1").unwrap());
        for bad in ["../x", "/etc/passwd", "a//b", "a/../b", ""] {
            assert!(store.put("tenants", bad, b"x").is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
