//! Warm sessions: guest sessions an instance keeps open between invocations.
//!
//! Opening a fresh session per invocation costs a store, an instantiation,
//! the connector's `open` and, afterwards, resetting its memory (measured by
//! `make bench`: ~140 µs for the file connector against ~30 µs for the same
//! fetch on an open session). So after a successful invocation the session
//! is kept, bounded per instance and in total, and the next invocation of
//! the same instance takes it. A session is only reused for the exact
//! instance record, tenant ceiling and quotas it was opened with (their
//! digest is its version); one that failed, trapped or hit a limit is never
//! kept; idle ones are closed after [`IDLE_TIMEOUT`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Session;

/// How long a kept session may sit unused before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Idle {
    version: String,
    since: Instant,
    session: Session,
}

/// Kept sessions by instance key (`tenant/instance`).
pub struct WarmSessions {
    per_instance: usize,
    max_total: usize,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    /// Sessions in `idle`, changed only while its lock is held (so `give`
    /// never walks every instance on the invocation path).
    total: AtomicUsize,
}

impl WarmSessions {
    /// Keep at most `per_instance` idle sessions per instance and `max_total` in all.
    pub fn new(per_instance: usize, max_total: usize) -> Self {
        Self {
            per_instance,
            max_total,
            idle: Mutex::default(),
            total: AtomicUsize::new(0),
        }
    }

    /// A kept session of `key` opened as `version`; kept ones of another
    /// version are dropped (the instance changed).
    pub fn take(&self, key: &str, version: &str) -> Option<Session> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let sessions = idle.get_mut(key)?;
            stale.extend(sessions.extract_if(.., |s| s.version != version));
            let found = sessions.pop().map(|s| s.session);
            if sessions.is_empty() {
                idle.remove(key);
            }
            let removed = stale.len() + usize::from(found.is_some());
            self.total.fetch_sub(removed, Ordering::Relaxed);
            found
        };
        drop(stale);
        found
    }

    /// Keep `session` for the next invocation of `key`; hands it back when
    /// there is no room (the caller closes it).
    pub fn give(&self, key: &str, version: String, session: Session) -> Option<Session> {
        if !session.is_usable() {
            return Some(session);
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let total = self.total.load(Ordering::Relaxed);
        let sessions = idle.entry(key.to_string()).or_default();
        if sessions.len() >= self.per_instance || total >= self.max_total {
            if sessions.is_empty() {
                idle.remove(key);
            }
            return Some(session);
        }
        sessions.push(Idle {
            version,
            since: Instant::now(),
            session,
        });
        self.total.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Drop every kept session of `key` (the instance was changed or deleted).
    pub fn forget(&self, key: &str) {
        let removed = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let removed = idle.remove(key);
            let count = removed.as_ref().map_or(0, Vec::len);
            self.total.fetch_sub(count, Ordering::Relaxed);
            removed
        };
        drop(removed);
    }

    /// Take out the sessions idle for longer than `timeout`, to be closed.
    pub fn expired(&self, timeout: Duration) -> Vec<Session> {
        let mut expired = Vec::new();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for sessions in idle.values_mut() {
            expired.extend(
                sessions
                    .extract_if(.., |s| s.since.elapsed() > timeout)
                    .map(|s| s.session),
            );
        }
        idle.retain(|_, sessions| !sessions.is_empty());
        self.total.fetch_sub(expired.len(), Ordering::Relaxed);
        expired
    }

    /// Sessions kept now.
    pub fn len(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}
