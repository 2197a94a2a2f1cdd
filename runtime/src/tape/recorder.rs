//! The [`Recorder`]: writes a session's host answers to a recording as they
//! happen, so a run that crashes or is killed still leaves what came before.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::event::{Event, Outcome, RecordedMount, RecordingHeader, FORMAT_VERSION};
use super::redact::Redactor;
use crate::capability::files::MountMode;
use crate::component::Connector;
use crate::error::Error;
use crate::Grants;

/// Writes one run's host answers to a file, secrets redacted. Shared by the
/// session's capabilities; see the [module docs](super).
pub struct Recorder {
    path: String,
    redactor: Redactor,
    writer: Mutex<Writer>,
    next_http: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The file, and the clock readings and random bytes not written yet (they
/// come in thousands of small calls, so they are written as one event
/// before the next other event).
struct Writer {
    out: std::io::BufWriter<std::fs::File>,
    wall: Vec<(u64, u32)>,
    monotonic: Vec<u64>,
    secure: Vec<u8>,
    insecure: Vec<u8>,
    seed: Option<u128>,
    failed: Option<std::io::Error>,
    /// The digest of each file's contents last recorded.
    contents: HashMap<String, [u8; 32]>,
}

impl Recorder {
    /// Create (or truncate) the recording at `path` and write its header:
    /// the connector, `config` with secret-looking fields redacted, what
    /// `grants` mount and what they grant that is not recorded, and
    /// `invocation` (the caller's own description of what it runs, redacted
    /// as the config is).
    ///
    /// Every secret value `grants` were given, and every redacted config
    /// value, is redacted wherever it appears in the recording.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `config` is not JSON; [`Error::Io`]
    /// when the file cannot be written.
    pub fn create(
        path: &Path,
        connector: &Connector,
        config: &str,
        grants: &Grants,
        invocation: Value,
    ) -> Result<Self, Error> {
        let mut config: Value = serde_json::from_str(config)
            .map_err(|e| Error::InvalidConfig(format!("the config is not JSON: {e}")))?;
        let redactor = Redactor::new(grants.secrets.values().map(str::to_string));
        redactor.json(&mut config);
        let mut invocation = invocation;
        redactor.json(&mut invocation);
        let mut unrecorded = Vec::new();
        if !grants.sockets.is_empty() {
            unrecorded.push("tcp".to_string());
        }
        if !grants.sftp.is_empty() {
            unrecorded.push("sftp".to_string());
        }
        let header = RecordingHeader {
            sluice_recording: FORMAT_VERSION,
            sluice: env!("CARGO_PKG_VERSION").to_string(),
            connector: connector.name().to_string(),
            connector_sha256: connector.sha256().to_string(),
            config,
            invocation,
            mounts: grants
                .files
                .mounts()
                .iter()
                .map(|m| RecordedMount {
                    guest: m.guest.clone(),
                    writable: m.mode == MountMode::ReadWrite,
                })
                .collect(),
            unrecorded,
        };
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        // The records themselves are in it: readable by this user alone.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?
        };
        let mut out = std::io::BufWriter::new(file);
        let line = serde_json::to_string(&header).map_err(|e| Error::Host(e.to_string()))?;
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(io)?;
        Ok(Self {
            path: path.display().to_string(),
            redactor,
            writer: Mutex::new(Writer {
                out,
                wall: Vec::new(),
                monotonic: Vec::new(),
                secure: Vec::new(),
                insecure: Vec::new(),
                seed: None,
                failed: None,
                contents: HashMap::new(),
            }),
            next_http: AtomicU64::new(1),
        })
    }

    /// Where the recording is written.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Write the run's end: success, or the error it ended with (redacted),
    /// and flush.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when any part of the recording could not be written.
    pub fn finish(&self, failure: Option<&str>) -> Result<(), Error> {
        let outcome = match failure {
            None => Outcome::Ok,
            Some(message) => Outcome::Failed(self.redactor.text(message)),
        };
        self.write(Event::End { outcome });
        let mut writer = self.lock();
        let flushed = writer.out.flush();
        match writer.failed.take().map_or(flushed, Err) {
            Ok(()) => Ok(()),
            Err(source) => Err(Error::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub(crate) fn next_http_id(&self) -> u64 {
        self.next_http.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write `event` after the clock readings and random bytes before it.
    pub(crate) fn write(&self, event: Event) {
        let mut writer = self.lock();
        writer.flush_pending();
        writer.line(&event);
    }

    pub(crate) fn wall(&self, now: std::time::Duration) {
        self.lock().wall.push((now.as_secs(), now.subsec_nanos()));
    }

    pub(crate) fn monotonic(&self, now: u64) {
        self.lock().monotonic.push(now);
    }

    pub(crate) fn random(&self, secure: bool, bytes: &[u8]) {
        let mut writer = self.lock();
        if secure {
            writer.secure.extend_from_slice(bytes);
        } else {
            writer.insecure.extend_from_slice(bytes);
        }
    }

    pub(crate) fn seed(&self, seed: u128) {
        self.lock().seed = Some(seed);
    }

    /// Whether `bytes` are new contents of the file at `path`: a file
    /// opened again unchanged is recorded once.
    pub(crate) fn first_contents(&self, path: &str, bytes: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        self.lock().contents.insert(path.to_string(), digest) != Some(digest)
    }
}

impl Writer {
    fn line(&mut self, event: &Event) {
        if self.failed.is_some() {
            return;
        }
        let written = serde_json::to_string(event)
            .map_err(std::io::Error::other)
            .and_then(|line| writeln!(self.out, "{line}"))
            .and_then(|()| self.out.flush());
        if let Err(e) = written {
            self.failed = Some(e);
        }
    }

    fn flush_pending(&mut self) {
        if !self.wall.is_empty() || !self.monotonic.is_empty() {
            let event = Event::Clock {
                wall: std::mem::take(&mut self.wall),
                monotonic: std::mem::take(&mut self.monotonic),
            };
            self.line(&event);
        }
        if !self.secure.is_empty() || !self.insecure.is_empty() || self.seed.is_some() {
            let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
            let event = Event::Random {
                secure: b64(std::mem::take(&mut self.secure)),
                insecure: b64(std::mem::take(&mut self.insecure)),
                seed: self.seed.take().map(|s| s.to_string()),
            };
            self.line(&event);
        }
    }
}
