//! The embedded default: every object is a file in a data directory, written
//! atomically (temp file, fsync, rename, fsync of the directory), so a crash
//! leaves each object fully old or fully new. Blocking file I/O runs on
//! tokio's blocking pool.
//!
//! The directory belongs to one server process, so small objects (tenants,
//! tokens, instances, metadata) are also kept in memory once read: the hot
//! path of an invocation reads them without touching the disk. Writes and
//! cache fills are serialized, so the cache never holds an older value than
//! the disk.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Objects larger than this are read from disk every time (component bytes).
const CACHED_OBJECT_BYTES: usize = 64 << 10;

/// Cached objects at most; past it the cache starts over.
const CACHED_OBJECTS: usize = 100_000;

/// Objects by `kind/key`: `None` caches "absent".
type Cache = HashMap<String, Option<Arc<Vec<u8>>>>;

use super::{check_key, ObjectStore};
use crate::error::Error;

/// A local data directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    cache: Arc<Mutex<Cache>>,
    /// Held while writing and while filling the cache from disk.
    writing: Arc<Mutex<()>>,
    /// Named locks (one process per data directory, so in-process is enough).
    locks: super::NamedLocks,
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Runtime(sluice::Error::Io {
        path: path.display().to_string(),
        source,
    })
}

impl LocalStore {
    /// Open (and create) a data directory.
    ///
    /// # Errors
    ///
    /// [`sluice::Error::Io`] when it cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        Ok(Self {
            root,
            cache: Arc::default(),
            writing: Arc::default(),
            locks: super::NamedLocks::default(),
        })
    }

    fn cached(&self, kind: &str, key: &str) -> Option<Option<Arc<Vec<u8>>>> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&format!("{kind}/{key}"))
            .cloned()
    }

    fn remember(&self, kind: &str, key: &str, value: Option<&[u8]>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let name = format!("{kind}/{key}");
        match value {
            Some(bytes) if bytes.len() > CACHED_OBJECT_BYTES => {
                cache.remove(&name);
            }
            _ => {
                if cache.len() >= CACHED_OBJECTS {
                    cache.clear();
                }
                cache.insert(name, value.map(|v| Arc::new(v.to_vec())));
            }
        }
    }

    fn path(&self, kind: &str, key: &str) -> Result<PathBuf, Error> {
        check_key(kind)?;
        check_key(key)?;
        Ok(self.root.join(kind).join(key))
    }

    /// Run blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LocalStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| Error::Storage(format!("store task failed: {e}")))?
    }

    fn get_now(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path(kind, key)?;
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = self.cached(kind, key) {
            return Ok(hit.map(|v| v.to_vec()));
        }
        let value = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&path, e)),
        };
        self.remember(kind, key, value.as_deref());
        Ok(value)
    }

    /// Write `value` to a synced temp file beside `path`, then `install` it
    /// (rename to replace, hard link to create only) and sync the directory.
    fn write_now(
        &self,
        kind: &str,
        key: &str,
        value: &[u8],
        install: fn(&Path, &Path) -> std::io::Result<()>,
    ) -> Result<bool, Error> {
        let path = self.path(kind, key)?;
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
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
            install(&tmp, &path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                self.remember(kind, key, Some(value));
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io(&dir, e))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => {
                // What is on disk is unknown now: read it again next time.
                self.cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&format!("{kind}/{key}"));
                Err(io(&path, e))
            }
        }
    }

    fn delete_now(&self, kind: &str, key: &str) -> Result<bool, Error> {
        let path = self.path(kind, key)?;
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = std::fs::remove_file(&path);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&format!("{kind}/{key}"));
        match removed {
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

    fn list_now(&self, kind: &str, prefix: &str) -> Result<Vec<String>, Error> {
        check_key(kind)?;
        let base = self.root.join(kind);
        let mut keys = Vec::new();
        collect(&base, &base, &mut keys).map_err(|e| io(&base, e))?;
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        check_key(kind)?;
        check_key(key)?;
        if let Some(hit) = self.cached(kind, key) {
            return Ok(hit.map(|v| v.to_vec()));
        }
        let (kind, key) = (kind.to_string(), key.to_string());
        self.blocking(move |s| s.get_now(&kind, &key)).await
    }

    async fn put(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), Error> {
        let (kind, key, value) = (kind.to_string(), key.to_string(), value.to_vec());
        self.blocking(move |s| {
            s.write_now(&kind, &key, &value, |tmp, path| std::fs::rename(tmp, path))
        })
        .await
        .map(drop)
    }

    async fn create(&self, kind: &str, key: &str, value: &[u8]) -> Result<bool, Error> {
        let (kind, key, value) = (kind.to_string(), key.to_string(), value.to_vec());
        // A hard link fails when the name exists: create-if-absent, atomically.
        self.blocking(move |s| {
            s.write_now(&kind, &key, &value, |tmp, path| {
                std::fs::hard_link(tmp, path)
            })
        })
        .await
    }

    async fn delete(&self, kind: &str, key: &str) -> Result<bool, Error> {
        let (kind, key) = (kind.to_string(), key.to_string());
        self.blocking(move |s| s.delete_now(&kind, &key)).await
    }

    async fn list(&self, kind: &str, prefix: &str) -> Result<Vec<String>, Error> {
        let (kind, prefix) = (kind.to_string(), prefix.to_string());
        self.blocking(move |s| s.list_now(&kind, &prefix)).await
    }

    async fn lock(&self, name: &str) -> Result<super::StoreLock, Error> {
        Ok(super::StoreLock::new(self.locks.lock(name).await))
    }

    async fn check(&self) -> Result<(), Error> {
        tokio::fs::metadata(&self.root)
            .await
            .map(drop)
            .map_err(|e| io(&self.root, e))
    }

    fn describe(&self) -> String {
        format!("data directory {}", self.root.display())
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

    #[tokio::test]
    async fn objects_round_trip_and_keys_cannot_escape() {
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", fastrand::u64(..)));
        let store = LocalStore::open(&dir).unwrap();
        store.put("tenants", "t1", b"one").await.unwrap();
        store.put("instances", "t1/i1", b"a").await.unwrap();
        store.put("instances", "t2/i2", b"b").await.unwrap();
        assert_eq!(
            store.get("tenants", "t1").await.unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(store.list("instances", "t1/").await.unwrap(), ["t1/i1"]);
        assert!(!store.create("tenants", "t1", b"two").await.unwrap());
        assert!(store.create("tenants", "t3", b"three").await.unwrap());
        assert_eq!(
            store.get("tenants", "t1").await.unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert!(store.delete("tenants", "t1").await.unwrap());
        assert!(!store.delete("tenants", "t1").await.unwrap());
        for bad in ["../x", "/etc/passwd", "a//b", "a/../b", ""] {
            assert!(store.put("tenants", bad, b"x").await.is_err(), "{bad}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("tenants"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
