//! The [`Player`]: a recording read back, answering a session's host calls
//! in the recorded order and keeping the first call that differs.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use super::event::{
    DirEntry, Event, HeaderLine, HttpAnswer, HttpFailure, HttpRequest, Outcome, RecordingHeader,
    SqlCall, FORMAT_VERSION,
};
use super::redact::Redactor;
use crate::error::Error;
use crate::Grants;

/// A response body as the recorded connector read it.
#[derive(Debug, Default)]
pub(crate) struct RecordedBody {
    pub chunks: VecDeque<Bytes>,
    /// Trailers or the error that ended it; `None` when the connector
    /// stopped reading before the end.
    pub end: Option<(Option<Vec<HeaderLine>>, Option<HttpFailure>)>,
}

/// A recorded HTTP exchange's head.
#[derive(Debug)]
pub(crate) struct RecordedExchange {
    pub id: u64,
    pub request: HttpRequest,
    pub answer: HttpAnswer,
}

/// A recorded `open-at`.
#[derive(Debug)]
pub(crate) struct RecordedOpen {
    pub path: String,
    pub answer: String,
}

/// What a replay found; see [`Player::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Host calls answered from the recording, the request matching.
    pub matched: u64,
    /// Host calls in the recording (HTTP requests, `sql` calls, files opened).
    pub recorded: u64,
    /// The first difference: a request the recording does not have next, a
    /// recorded request never made, or a different ending. `None` when the
    /// replay made exactly the recorded calls and ended the same way.
    pub divergence: Option<String>,
    /// How the recorded run ended.
    pub recorded_outcome: Option<Outcome>,
}

impl ReplayReport {
    /// Whether the replay made exactly the recorded calls and ended as the recording did.
    pub fn is_faithful(&self) -> bool {
        self.divergence.is_none()
    }
}

/// A recording being replayed. See the [module docs](super).
pub struct Player {
    header: RecordingHeader,
    pub(crate) redactor: Redactor,
    http: Mutex<VecDeque<RecordedExchange>>,
    bodies: Mutex<HashMap<u64, RecordedBody>>,
    sql: Mutex<VecDeque<(SqlCall, Value)>>,
    opens: Mutex<VecDeque<RecordedOpen>>,
    wall: Mutex<VecDeque<(u64, u32)>>,
    monotonic: Mutex<VecDeque<u64>>,
    secure: Mutex<VecDeque<u8>>,
    insecure: Mutex<VecDeque<u8>>,
    seed: Option<u128>,
    end: Option<Outcome>,
    recorded: u64,
    matched: AtomicU64,
    divergence: Mutex<Option<String>>,
    /// The recorded files, laid out as the mounts held them.
    files: Option<PathBuf>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("connector", &self.header.connector)
            .field("recorded", &self.recorded)
            .finish_non_exhaustive()
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        if let Some(dir) = &self.files {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Player {
    /// Read the recording at `path`, and lay out the files it holds in a
    /// fresh temporary directory (removed when the player is dropped).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot be read or the files laid out;
    /// [`Error::Recording`] when it is not a recording this version reads.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut lines = std::io::BufReader::new(file).lines();
        let bad = |line: usize, why: String| {
            Error::Recording(format!("{} line {line}: {why}", path.display()))
        };
        let first = lines
            .next()
            .transpose()
            .map_err(io)?
            .ok_or_else(|| bad(1, "empty file".into()))?;
        let header: RecordingHeader = serde_json::from_str(&first)
            .map_err(|e| bad(1, format!("not a sluice recording header ({e})")))?;
        if header.sluice_recording != FORMAT_VERSION {
            return Err(bad(
                1,
                format!(
                    "recording format {} (this sluice reads format {FORMAT_VERSION})",
                    header.sluice_recording
                ),
            ));
        }
        let mut player = Self {
            header,
            redactor: Redactor::default(),
            http: Mutex::default(),
            bodies: Mutex::default(),
            sql: Mutex::default(),
            opens: Mutex::default(),
            wall: Mutex::default(),
            monotonic: Mutex::default(),
            secure: Mutex::default(),
            insecure: Mutex::default(),
            seed: None,
            end: None,
            recorded: 0,
            matched: AtomicU64::new(0),
            divergence: Mutex::default(),
            files: None,
        };
        let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
        let mut listings: Vec<(String, Vec<DirEntry>)> = Vec::new();
        let b64 = |line: usize, text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| bad(line, format!("bad base64 ({e})")))
        };
        for (index, line) in lines.enumerate() {
            let number = index + 2;
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let event: Event = serde_json::from_str(&line)
                .map_err(|e| bad(number, format!("not a recorded event ({e})")))?;
            match event {
                Event::Http {
                    id,
                    request,
                    answer,
                } => {
                    player.recorded += 1;
                    player.http.get_mut().unwrap().push_back(RecordedExchange {
                        id,
                        request,
                        answer,
                    });
                }
                Event::HttpBody { id, data } => {
                    let data = b64(number, &data)?;
                    let bodies = player.bodies.get_mut().unwrap();
                    bodies.entry(id).or_default().chunks.push_back(data.into());
                }
                Event::HttpEnd {
                    id,
                    trailers,
                    error,
                } => {
                    let bodies = player.bodies.get_mut().unwrap();
                    bodies.entry(id).or_default().end = Some((trailers, error));
                }
                Event::Sql { call, answer } => {
                    player.recorded += 1;
                    player.sql.get_mut().unwrap().push_back((call, answer));
                }
                Event::FileOpen {
                    path,
                    answer,
                    contents: data,
                    ..
                } => {
                    player.recorded += 1;
                    if let Some(data) = data {
                        contents.push((path.clone(), b64(number, &data)?));
                    }
                    player
                        .opens
                        .get_mut()
                        .unwrap()
                        .push_back(RecordedOpen { path, answer });
                }
                Event::DirList { path, entries } => listings.push((path, entries)),
                Event::Clock { wall, monotonic } => {
                    player.wall.get_mut().unwrap().extend(wall);
                    player.monotonic.get_mut().unwrap().extend(monotonic);
                }
                Event::Random {
                    secure,
                    insecure,
                    seed,
                } => {
                    player
                        .secure
                        .get_mut()
                        .unwrap()
                        .extend(b64(number, &secure)?);
                    player
                        .insecure
                        .get_mut()
                        .unwrap()
                        .extend(b64(number, &insecure)?);
                    if let Some(seed) = seed {
                        player.seed = Some(
                            seed.parse()
                                .map_err(|_| bad(number, format!("bad seed `{seed}`")))?,
                        );
                    }
                }
                Event::End { outcome } => player.end = Some(outcome),
            }
        }
        player.files = super::files::lay_out(&player.header.mounts, &contents, &listings)?;
        Ok(player)
    }

    /// The recording's header: the connector, config (redacted) and invocation.
    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// The grants a replay runs with: the recorded files, mounted where the
    /// recorded run had its mounts (writes go to the copy); nothing else.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] when a recorded mount path is unusable.
    pub fn grants(&self) -> Result<Grants, Error> {
        let mut grants = Grants::none();
        if let Some(root) = &self.files {
            for (index, mount) in self.header.mounts.iter().enumerate() {
                let host = super::files::mount_dir(root, index);
                let mode = if mount.writable { "rw" } else { "ro" };
                grants = grants.mount(&format!("{}:{}:{mode}", host.display(), mount.guest))?;
            }
        }
        Ok(grants)
    }

    /// How the replayed run went against the recording, given how it ended
    /// (`failure`: its error message, `None` for success).
    pub fn finish(&self, failure: Option<&str>) -> ReplayReport {
        let left = [
            lock(&self.http)
                .front()
                .map(|e| format!("HTTP {} {}", e.request.method, e.request.uri)),
            lock(&self.sql)
                .front()
                .map(|(call, _)| format!("sql {}", describe_sql(call))),
            lock(&self.opens)
                .front()
                .map(|open| format!("open `{}`", open.path)),
        ];
        if let Some(next) = left.into_iter().flatten().next() {
            self.diverge(format!(
                "the replay ended before making every recorded call; the next one recorded: {next}"
            ));
        }
        let outcome = match failure {
            None => Outcome::Ok,
            Some(message) => Outcome::Failed(self.redactor.text(message)),
        };
        if let Some(recorded) = &self.end {
            if *recorded != outcome {
                self.diverge(format!(
                    "the recorded run ended with {recorded}; the replay ended with {outcome}"
                ));
            }
        }
        ReplayReport {
            matched: self.matched.load(Ordering::Relaxed),
            recorded: self.recorded,
            divergence: lock(&self.divergence).clone(),
            recorded_outcome: self.end.clone(),
        }
    }

    /// Keep `what` as the divergence unless one came before.
    pub(crate) fn diverge(&self, what: String) {
        let mut divergence = lock(&self.divergence);
        if divergence.is_none() {
            tracing::debug!(divergence = %what, "replay diverged");
            *divergence = Some(what);
        }
    }

    pub(crate) fn matched(&self) {
        self.matched.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn next_exchange(&self) -> Option<RecordedExchange> {
        lock(&self.http).pop_front()
    }

    pub(crate) fn take_body(&self, id: u64) -> RecordedBody {
        lock(&self.bodies).remove(&id).unwrap_or_default()
    }

    pub(crate) fn next_sql(&self) -> Option<(SqlCall, Value)> {
        lock(&self.sql).pop_front()
    }

    pub(crate) fn next_open(&self) -> Option<RecordedOpen> {
        lock(&self.opens).pop_front()
    }

    pub(crate) fn next_wall(&self) -> Option<(u64, u32)> {
        lock(&self.wall).pop_front()
    }

    pub(crate) fn next_monotonic(&self) -> Option<u64> {
        lock(&self.monotonic).pop_front()
    }

    /// Recorded random bytes into `buf`; false once they have run out.
    pub(crate) fn random(&self, secure: bool, buf: &mut [u8]) -> bool {
        let mut bytes = lock(if secure { &self.secure } else { &self.insecure });
        if bytes.len() < buf.len() {
            return false;
        }
        let wanted = buf.len();
        for (slot, byte) in buf.iter_mut().zip(bytes.drain(..wanted)) {
            *slot = byte;
        }
        true
    }

    pub(crate) fn seed(&self) -> Option<u128> {
        self.seed
    }
}

/// A `sql` call as a divergence message names it.
pub(crate) fn describe_sql(call: &SqlCall) -> String {
    let mut text = call.call.clone();
    if !call.text.is_empty() {
        text.push_str(&format!(" `{}`", call.text));
    }
    if !call.params.is_empty() {
        text.push_str(&format!(" with [{}]", call.params.join(", ")));
    }
    text
}
