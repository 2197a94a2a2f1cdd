//! Prometheus metrics: invocations by tenant, connector, operation and
//! outcome; duration and instantiation-time histograms; active sessions;
//! denials; the artifact cache; and the upstream HTTP counters of every
//! instance's grants.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Bucket bounds of invocation durations, seconds.
const DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// Bucket bounds of instantiation times, seconds (10 µs to 100 ms).
const INSTANTIATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1,
];

/// An upstream counter family: name, help text, and how to read it.
type UpstreamFamily = (
    &'static str,
    &'static str,
    fn(&crate::capability::http::resilience::CounterSnapshot) -> u64,
);

/// A cumulative Prometheus histogram.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (count, bound) in self.counts.iter_mut().zip(self.bounds) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// Append the series of `name` with `labels` (`key="value",` pairs, or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let labels = labels.trim_end_matches(',');
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{labels} {}", self.sum);
        let _ = writeln!(out, "{name}_count{labels} {}", self.count);
    }
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    invocations: Mutex<BTreeMap<(String, String, String, String), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    instantiations: Mutex<Option<Histogram>>,
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
        durations
            .entry(operation.to_string())
            .or_insert_with(|| Histogram::new(DURATION_BUCKETS))
            .observe(took);
    }

    /// Record how long instantiating a connector for an invocation took.
    pub fn instantiated(&self, took: Duration) {
        self.instantiations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| Histogram::new(INSTANTIATION_BUCKETS))
            .observe(took);
    }

    /// Record capability denials.
    pub fn denials(&self, tenant: &str, denials: &[crate::Denial]) {
        let mut all = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
        for denial in denials {
            *all.entry((tenant.into(), denial.capability.to_string()))
                .or_default() += 1;
        }
    }

    /// The Prometheus text, with the artifact cache's counters and `upstream`
    /// lines `(tenant, instance, origin, counters)` appended.
    pub fn render(
        &self,
        artifacts: crate::CacheStats,
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
            h.render(
                &mut out,
                "sluice_invocation_duration_seconds",
                &format!("operation=\"{}\",", escape(operation)),
            );
        }
        out.push_str("# HELP sluice_instantiation_seconds Time to create a store and instantiate a connector for an invocation.\n# TYPE sluice_instantiation_seconds histogram\n");
        self.instantiations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| Histogram::new(INSTANTIATION_BUCKETS))
            .render(&mut out, "sluice_instantiation_seconds", "");
        out.push_str("# HELP sluice_artifact_cache_total Connectors loaded from the compiled-artifact cache (hit), compiled, or rejected by its integrity check.\n# TYPE sluice_artifact_cache_total counter\n");
        for (event, n) in [
            ("hit", artifacts.hits),
            ("compiled", artifacts.compiled),
            ("rejected", artifacts.rejected),
        ] {
            let _ = writeln!(out, "sluice_artifact_cache_total{{event=\"{event}\"}} {n}");
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
        // One family per counter, each typed before its samples.
        let families: [UpstreamFamily; 7] = [
            ("requests", "Requests sent upstream", |c| c.requests),
            ("retries", "Requests sent again after a failure", |c| {
                c.retries
            }),
            (
                "throttled",
                "Requests that waited for the rate limit",
                |c| c.throttled,
            ),
            ("breaker_opens", "Times the circuit breaker opened", |c| {
                c.breaker_opens
            }),
            (
                "breaker_rejections",
                "Requests refused while the breaker was open",
                |c| c.breaker_rejections,
            ),
            ("failures", "Failed upstream requests", |c| c.failures),
            ("bytes", "Response body bytes received", |c| c.bytes),
        ];
        for (name, help, value) in families {
            let _ = writeln!(
                out,
                "# HELP sluice_upstream_http_{name}_total {help}, per instance and origin.\n# TYPE sluice_upstream_http_{name}_total counter"
            );
            for (tenant, instance, origin, c) in upstream {
                let _ = writeln!(
                    out,
                    "sluice_upstream_http_{name}_total{{tenant=\"{}\",instance=\"{}\",origin=\"{}\"}} {}",
                    escape(tenant), escape(instance), escape(origin), value(c)
                );
            }
        }
        out
    }
}
