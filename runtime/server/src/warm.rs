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
//!
//! A kept session holds the tenant's invocation permit it ran under, so a
//! tenant's sessions — running and kept together — never exceed its
//! `max_concurrent` quota, and so never take more of the shared pooling
//! allocator than that many sessions' worth. When a tenant needs a permit and
//! its kept sessions hold them all, [`WarmSessions::evict`] gives one back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use sluice::Session;

/// A session and the tenant permit it holds.
pub type Held = (Session, OwnedSemaphorePermit);

/// How long a kept session may sit unused before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Idle {
    version: String,
    since: Instant,
    session: Session,
    permit: OwnedSemaphorePermit,
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
    pub fn take(&self, key: &str, version: &str) -> Option<Held> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let sessions = idle.get_mut(key)?;
            stale.extend(sessions.extract_if(.., |s| s.version != version));
            let found = sessions.pop().map(|s| (s.session, s.permit));
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

    /// Keep `session` (with its tenant permit) for the next invocation of
    /// `key`; hands it back when there is no room (the caller closes it).
    pub fn give(
        &self,
        key: &str,
        version: String,
        session: Session,
        permit: OwnedSemaphorePermit,
    ) -> Option<Held> {
        if !session.is_usable() {
            return Some((session, permit));
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let total = self.total.load(Ordering::Relaxed);
        let sessions = idle.entry(key.to_string()).or_default();
        if sessions.len() >= self.per_instance || total >= self.max_total {
            if sessions.is_empty() {
                idle.remove(key);
            }
            return Some((session, permit));
        }
        sessions.push(Idle {
            version,
            since: Instant::now(),
            session,
            permit,
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

    /// Take out the kept session of tenant `tenant` idle the longest, to be
    /// closed (its permit then goes back to the tenant).
    pub fn evict(&self, tenant: &str) -> Option<Held> {
        let prefix = format!("{tenant}/");
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let (key, index) = idle
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .flat_map(|(key, sessions)| {
                sessions
                    .iter()
                    .enumerate()
                    .map(move |(i, s)| (key, i, s.since))
            })
            .min_by_key(|(_, _, since)| *since)
            .map(|(key, i, _)| (key.clone(), i))?;
        let sessions = idle.get_mut(&key)?;
        let evicted = sessions.remove(index);
        if sessions.is_empty() {
            idle.remove(&key);
        }
        self.total.fetch_sub(1, Ordering::Relaxed);
        Some((evicted.session, evicted.permit))
    }

    /// Take out the sessions idle for longer than `timeout`, to be closed.
    pub fn expired(&self, timeout: Duration) -> Vec<Held> {
        let mut expired = Vec::new();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for sessions in idle.values_mut() {
            expired.extend(
                sessions
                    .extract_if(.., |s| s.since.elapsed() > timeout)
                    .map(|s| (s.session, s.permit)),
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
