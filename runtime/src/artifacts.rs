//! A cache of compiled connectors, so a restart serves without recompiling.
//!
//! Deserializing a compiled artifact runs machine code as-is, so the cache
//! holds only artifacts this host compiled, and proves it: each file is sealed
//! with an HMAC-SHA256 under a key that never leaves the cache directory
//! (created `0600` on first use). Entries are keyed by the component's SHA-256
//! and the engine's fingerprint (wasmtime version, compiler settings, target
//! CPU features, sluice version), so a changed engine never loads a stale
//! artifact. A file that fails its check is deleted and the component is
//! compiled again. Artifacts from anywhere else are never loaded: uploads that
//! are precompiled artifacts are refused ([`crate::Error::PrecompiledArtifact`]).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::Error;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Length of the seal at the end of every cached file.
const SEAL_LEN: usize = 32;

/// Counters of a cache, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Components served from the cache without compiling.
    pub hits: u64,
    /// Components compiled (not in the cache, or the cached file was rejected).
    pub compiled: u64,
    /// Cached files that failed their integrity check and were deleted.
    pub rejected: u64,
}

/// Compiled connectors on disk, sealed by this host (see the module docs).
pub struct ArtifactCache {
    dir: PathBuf,
    key: Vec<u8>,
    hits: AtomicU64,
    compiled: AtomicU64,
    rejected: AtomicU64,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Feeds `Hash` output into SHA-256, to name an engine configuration stably.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read with `finalize`
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The engine's fingerprint: artifacts compiled under another one are never used.
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}

impl ArtifactCache {
    /// Open (and create) a cache directory and its key.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory or key cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let key = load_or_create_key(&dir.join("key"))?;
        Ok(Self {
            dir,
            key,
            hits: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// Counters since the cache was opened.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiled: self.compiled.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    fn path(&self, fingerprint: &str, digest: &str) -> PathBuf {
        self.dir.join(fingerprint).join(format!("{digest}.cwasm"))
    }

    /// The MAC over an entry's name and artifact bytes.
    fn mac(&self, fingerprint: &str, digest: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(fingerprint.as_bytes());
        mac.update(b"\0");
        mac.update(digest.as_bytes());
        mac.update(b"\0");
        mac.update(artifact);
        mac
    }

    /// The compiled component for `bytes` (whose SHA-256 is `digest`), and
    /// whether it came from the cache: from the cache when a sealed artifact
    /// is there, else compiled and stored.
    pub(crate) fn component(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), Error> {
        let fingerprint = engine_fingerprint(engine);
        let path = self.path(&fingerprint, digest);
        if let Some(component) = self.load(engine, &fingerprint, digest, &path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((component, true));
        }
        let component =
            Component::new(engine, bytes).map_err(|e| Error::InvalidComponent(format!("{e:#}")))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.save(&fingerprint, digest, &path, &component) {
            // A cache that cannot be written costs a recompile later, nothing else.
            tracing::warn!(error = %e, digest, "could not cache the compiled connector");
        }
        Ok((component, false))
    }

    fn load(
        &self,
        engine: &Engine,
        fingerprint: &str,
        digest: &str,
        path: &Path,
    ) -> Option<Component> {
        let file = std::fs::read(path).ok()?;
        let sealed = file.len().checked_sub(SEAL_LEN).map(|at| file.split_at(at));
        // Constant-time comparison through the MAC's own verifier.
        let valid = sealed.is_some_and(|(artifact, seal)| {
            self.mac(fingerprint, digest, artifact)
                .verify_slice(seal)
                .is_ok()
        });
        let artifact = match (valid, sealed) {
            (true, Some((artifact, _))) => artifact,
            _ => {
                tracing::warn!(digest, path = %path.display(), "cached artifact failed its integrity check; deleted, recompiling");
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_file(path);
                return None;
            }
        };
        // SAFETY: the artifact was produced by `Component::serialize` on this
        // host under this engine fingerprint: the seal above proves it was
        // written by a holder of this cache's private key, and only this code
        // writes sealed files.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, artifact) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(digest, error = %e, "cached artifact could not be loaded; recompiling");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    fn save(
        &self,
        fingerprint: &str,
        digest: &str,
        path: &Path,
        component: &Component,
    ) -> Result<(), Error> {
        let mut artifact = component
            .serialize()
            .map_err(|e| Error::Host(format!("serialize compiled connector: {e:#}")))?;
        let seal = self
            .mac(fingerprint, digest, &artifact)
            .finalize()
            .into_bytes();
        artifact.extend_from_slice(&seal);
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp = dir.join(format!(".{digest}.tmp-{}", fastrand::u64(..)));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&artifact)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path, e));
        }
        Ok(())
    }
}

/// The cache's private key: 32 random bytes, created once with mode `0600`.
fn load_or_create_key(path: &Path) -> Result<Vec<u8>, Error> {
    match std::fs::read(path) {
        Ok(key) if key.len() == 32 => return Ok(key),
        Ok(_) => {
            return Err(Error::InvalidConfig(format!(
            "artifact cache key `{}` is not 32 bytes; delete the cache directory to start afresh",
            path.display()
        )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path, e)),
    }
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| Error::Host(format!("no randomness for the artifact cache key: {e}")))?;
    // Written whole to a private temp file, then linked into place: a
    // concurrent starter sees no key or a whole one, and the first link wins.
    let tmp = path.with_extension(format!("tmp-{}", fastrand::u64(..)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let linked = options
        .open(&tmp)
        .and_then(|mut file| file.write_all(&key).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(|e| io(path, e))
        }
        Err(e) => Err(io(path, e)),
    }
}
