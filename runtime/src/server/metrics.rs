//! Prometheus metrics: invocations by tenant, connector, operation and
//! outcome; duration histograms; active sessions; denials; and the upstream
//! HTTP counters of every instance's grants.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    invocations: Mutex<BTreeMap<(String, String, String, String), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    denials: Mutex<BTreeMap<(String, String), u64>>,
    active_sessions: AtomicI64,
}

/// Decrements the active-session gauge when dropped.
pub struct ActiveSession<'m>(&'m Metrics);

impl Drop for ActiveSession<'_> {
    fn drop(&mut self) {
        self.0.active_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Count a session as active until the guard drops.
    pub fn session(&self) -> ActiveSession<'_> {
        self.active_sessions.fetch_add(1, Ordering::Relaxed);
        ActiveSession(self)
    }

    /// Sessions open right now.
    pub fn active_sessions(&self) -> i64 {
        self.active_sessions.load(Ordering::Relaxed)
    }

    /// Record one finished invocation.
    pub fn invocation(
        &self,
        tenant: &str,
        connector: &str,
        operation: &str,
        outcome: &str,
        took: Duration,
    ) {
        *self
            .invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((
                tenant.into(),
                connector.into(),
                operation.into(),
                outcome.into(),
            ))
            .or_default() += 1;
        let mut durations = self
            .durations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let histogram = durations.entry(operation.to_string()).or_default();
        let seconds = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[i] += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    /// Record capability denials.
    pub fn denials(&self, tenant: &str, denials: &[crate::Denial]) {
        let mut all = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
        for denial in denials {
            *all.entry((tenant.into(), denial.capability.to_string()))
                .or_default() += 1;
        }
    }

    /// The Prometheus text, with `upstream` lines `(tenant, instance, origin, counters)` appended.
    pub fn render(
        &self,
        upstream: &[(
            String,
            String,
            String,
            crate::capability::http::resilience::CounterSnapshot,
        )],
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP sluice_invocations_total Connector invocations by outcome.\n# TYPE sluice_invocations_total counter\n");
        for ((tenant, connector, operation, outcome), n) in self
            .invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "sluice_invocations_total{{tenant=\"{}\",connector=\"{}\",operation=\"{}\",outcome=\"{}\"}} {n}",
                escape(tenant), escape(connector), escape(operation), escape(outcome)
            );
        }
        out.push_str("# HELP sluice_invocation_duration_seconds Time to answer an invocation.\n# TYPE sluice_invocation_duration_seconds histogram\n");
        for (operation, h) in self
            .durations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "sluice_invocation_duration_seconds_bucket{{operation=\"{operation}\",le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "sluice_invocation_duration_seconds_bucket{{operation=\"{operation}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(
                out,
                "sluice_invocation_duration_seconds_sum{{operation=\"{operation}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "sluice_invocation_duration_seconds_count{{operation=\"{operation}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP sluice_active_sessions Connector sessions open now.\n# TYPE sluice_active_sessions gauge\n");
        let _ = writeln!(out, "sluice_active_sessions {}", self.active_sessions());
        out.push_str("# HELP sluice_denials_total Capabilities the host refused.\n# TYPE sluice_denials_total counter\n");
        for ((tenant, capability), n) in self
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "sluice_denials_total{{tenant=\"{}\",capability=\"{capability}\"}} {n}",
                escape(tenant)
            );
        }
        out.push_str("# HELP sluice_upstream_http Upstream HTTP counters per instance and origin.\n# TYPE sluice_upstream_http counter\n");
        for (tenant, instance, origin, c) in upstream {
            for (name, value) in [
                ("requests", c.requests),
                ("retries", c.retries),
                ("throttled", c.throttled),
                ("breaker_opens", c.breaker_opens),
                ("breaker_rejections", c.breaker_rejections),
                ("failures", c.failures),
                ("bytes", c.bytes),
            ] {
                let _ = writeln!(
                    out,
                    "sluice_upstream_http_{name}_total{{tenant=\"{}\",instance=\"{}\",origin=\"{}\"}} {value}",
                    escape(tenant), escape(instance), escape(origin)
                );
            }
        }
        out
    }
}
