//! Prometheus metrics, kept and written by `prometheus-client`: invocations
//! by tenant, connector, operation and outcome; duration and
//! instantiation-time histograms; active sessions; denials (atomic counters
//! and histograms, no lock held by the hot path but the family's read lock);
//! and, read at each scrape, the artifact cache, warm sessions and the
//! upstream HTTP counters of every instance's grants.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use sluice::capability::http::resilience::CounterSnapshot;

/// Bucket bounds of invocation durations, seconds.
const DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// Bucket bounds of instantiation times, seconds (10 µs to 100 ms).
const INSTANTIATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    tenant: String,
    connector: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    tenant: String,
    capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    tenant: String,
    instance: String,
    origin: String,
}

/// One upstream counter family: name, help text, and how to read it.
type UpstreamFamily = (&'static str, &'static str, fn(&CounterSnapshot) -> u64);

/// The upstream counter families, each typed before its samples.
const UPSTREAM_FAMILIES: [UpstreamFamily; 7] = [
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

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS.iter().copied())
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    durations: Family<OperationLabels, Histogram, fn() -> Histogram>,
    instantiations: Histogram,
    denials: Family<DenialLabels, Counter>,
    active_sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let invocations = Family::<InvocationLabels, Counter>::default();
        let durations: Family<OperationLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let instantiations = Histogram::new(INSTANTIATION_BUCKETS.iter().copied());
        let denials = Family::<DenialLabels, Counter>::default();
        let active_sessions = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "sluice_invocations",
            "Connector invocations by outcome",
            invocations.clone(),
        );
        registry.register(
            "sluice_invocation_duration_seconds",
            "Time to answer an invocation",
            durations.clone(),
        );
        registry.register(
            "sluice_instantiation_seconds",
            "Time to create a store and instantiate a connector for an invocation",
            instantiations.clone(),
        );
        registry.register(
            "sluice_active_sessions",
            "Connector sessions open now",
            active_sessions.clone(),
        );
        registry.register(
            "sluice_denials",
            "Capabilities the host refused",
            denials.clone(),
        );
        Self {
            registry,
            invocations,
            durations,
            instantiations,
            denials,
            active_sessions,
        }
    }
}

/// Decrements the active-session gauge when dropped.
pub struct ActiveSession<'m>(&'m Metrics);

impl Drop for ActiveSession<'_> {
    fn drop(&mut self) {
        self.0.active_sessions.dec();
    }
}

/// What is read at scrape time: the artifact cache, warm sessions and the
/// upstream counters of every instance's grants.
#[derive(Debug)]
struct Snapshot {
    artifacts: sluice::CacheStats,
    warm_sessions: usize,
    upstream: Vec<(String, String, String, CounterSnapshot)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cache = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "sluice_artifact_cache",
            "Connectors loaded from the compiled-artifact cache (hit), compiled, or rejected by its integrity check",
            None,
            cache.metric_type(),
        )?;
        for (event, n) in [
            ("hit", self.artifacts.hits),
            ("compiled", self.artifacts.compiled),
            ("rejected", self.artifacts.rejected),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&CacheLabels { event })?)?;
        }
        let warm = ConstGauge::new(self.warm_sessions as i64);
        let gauge = encoder.encode_descriptor(
            "sluice_warm_sessions",
            "Guest sessions kept open between invocations",
            None,
            warm.metric_type(),
        )?;
        warm.encode(gauge)?;
        for (name, help, value) in UPSTREAM_FAMILIES {
            let name = format!("sluice_upstream_http_{name}");
            let help = format!("{help}, per instance and origin");
            let mut family = encoder.encode_descriptor(&name, &help, None, cache.metric_type())?;
            for (tenant, instance, origin, counters) in &self.upstream {
                let labels = UpstreamLabels {
                    tenant: tenant.clone(),
                    instance: instance.clone(),
                    origin: origin.clone(),
                };
                ConstCounter::new(value(counters)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// Count a session as active until the guard drops.
    pub fn session(&self) -> ActiveSession<'_> {
        self.active_sessions.inc();
        ActiveSession(self)
    }

    /// Sessions open right now.
    pub fn active_sessions(&self) -> i64 {
        self.active_sessions.get()
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
        self.invocations
            .get_or_create(&InvocationLabels {
                tenant: tenant.into(),
                connector: connector.into(),
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.durations
            .get_or_create(&OperationLabels {
                operation: operation.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Record how long instantiating a connector for an invocation took.
    pub fn instantiated(&self, took: Duration) {
        self.instantiations.observe(took.as_secs_f64());
    }

    /// Record capability denials.
    pub fn denials(&self, tenant: &str, denials: &[sluice::Denial]) {
        for denial in denials {
            self.denials
                .get_or_create(&DenialLabels {
                    tenant: tenant.into(),
                    capability: denial.capability.to_string(),
                })
                .inc();
        }
    }

    /// The Prometheus text (format 0.0.4): the kept metrics, then what is
    /// read now — the artifact cache's counters, `warm_sessions`, and the
    /// `upstream` counters `(tenant, instance, origin, counters)`.
    pub fn render(
        &self,
        artifacts: sluice::CacheStats,
        warm_sessions: usize,
        upstream: &[(String, String, String, CounterSnapshot)],
    ) -> String {
        let mut out = String::new();
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(Snapshot {
            artifacts,
            warm_sessions,
            upstream: upstream.to_vec(),
        }));
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &scrape);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_typed_before_their_samples_and_counted() {
        let metrics = Metrics::default();
        metrics.invocation("t1", "c1", "fetch", "ok", Duration::from_millis(3));
        metrics.invocation("t1", "c1", "fetch", "ok", Duration::from_millis(30));
        let guard = metrics.session();
        assert_eq!(metrics.active_sessions(), 1);
        let text = metrics.render(sluice::CacheStats::default(), 2, &[]);
        drop(guard);
        assert_eq!(metrics.active_sessions(), 0);
        for line in [
            "# TYPE sluice_invocations_total counter",
            "sluice_invocations_total{tenant=\"t1\",connector=\"c1\",operation=\"fetch\",outcome=\"ok\"} 2",
            "# TYPE sluice_invocation_duration_seconds histogram",
            "sluice_invocation_duration_seconds_bucket{operation=\"fetch\",le=\"0.005\"} 1",
            "sluice_invocation_duration_seconds_count{operation=\"fetch\"} 2",
            "sluice_active_sessions 1",
            "sluice_warm_sessions 2",
            "# TYPE sluice_upstream_http_requests_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
