//! The results table and its JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::Scale;

/// Whether smaller or larger figures are better, and the bound.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The sluice figure must be at most this (absolute, in the row's unit).
    AtMost(f64),
    /// sluice ÷ baseline must be at least this (throughput ratios).
    RatioAtLeast(f64),
    /// sluice ÷ baseline must be at most this (slowdown ratios).
    RatioAtMost(f64),
    /// Reported for context, with no target of its own.
    Informational,
}

/// One measured metric.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// Unit of `sluice` and `baseline`.
    pub unit: &'static str,
    /// The sluice figure.
    pub sluice: f64,
    /// The native figure measured in the same run.
    pub baseline: f64,
    /// What the figure must satisfy.
    pub target: Target,
    /// How the baseline was obtained, sizes, and anything to know.
    pub note: String,
}

impl Row {
    fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            f64::NAN
        } else {
            self.sluice / self.baseline
        }
    }

    /// Whether the target is met; `None` for rows without a target.
    fn pass(&self) -> Option<bool> {
        match self.target {
            Target::AtMost(max) => Some(self.sluice <= max),
            Target::RatioAtLeast(min) => Some(self.ratio() >= min),
            Target::RatioAtMost(max) => Some(self.ratio() <= max),
            Target::Informational => None,
        }
    }

    fn verdict(&self) -> &'static str {
        match self.pass() {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "-",
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtMost(max) => format!("<= {} {}", number(max), self.unit),
            Target::RatioAtLeast(min) => format!("ratio >= {min}"),
            Target::RatioAtMost(max) => format!("ratio <= {max}"),
            Target::Informational => "-".into(),
        }
    }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "-".into()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// One point of a scaling curve: the same work at one size.
#[derive(Debug, Clone)]
pub struct ScalePoint {
    /// Which work.
    pub curve: &'static str,
    /// How much of it, e.g. `512 MB`.
    pub size: String,
    /// Throughput at this size.
    pub throughput: f64,
    /// Unit of `throughput`.
    pub unit: &'static str,
    /// How far the process's peak RSS during it rose above the RSS before
    /// it (sessions opened for it included), MB.
    pub rss_growth_mb: f64,
}

/// Every row of a run.
pub struct Report {
    scale: Scale,
    rows: Vec<Row>,
    /// Suites that could not finish: name and why.
    failures: Vec<(String, String)>,
    /// Peer tools measured beside a row: the row's metric, the peer, and its
    /// figure in the row's unit or why it was not measured.
    peers: Vec<(String, String, Result<f64, String>)>,
    /// Points of the scaling curves, in order.
    scaling: Vec<ScalePoint>,
}

impl Report {
    /// An empty report.
    pub fn new(scale: Scale) -> Self {
        Self {
            scale,
            rows: Vec::new(),
            failures: Vec::new(),
            peers: Vec::new(),
            scaling: Vec::new(),
        }
    }

    /// Record that suite `name` could not finish, and why; the rest of the
    /// run goes on and the table says so.
    pub fn failed(&mut self, name: &str, why: String) {
        eprintln!("bench: {name} FAILED: {why}");
        self.failures.push((name.to_string(), why));
    }

    /// Add a row and print it at once.
    pub fn add(&mut self, row: Row) {
        eprintln!(
            "bench:   {}: sluice {} {} | native {} | {}",
            row.metric,
            number(row.sluice),
            row.unit,
            number(row.baseline),
            row.verdict()
        );
        self.rows.push(row);
    }

    /// Record what peer tool `peer` achieved on the work of the row
    /// `metric` (in that row's unit), or why it could not be measured.
    pub fn peer(&mut self, metric: &str, peer: &str, figure: Result<f64, String>) {
        match &figure {
            Ok(value) => eprintln!("bench:   {metric}: peer {peer} {}", number(*value)),
            Err(why) => eprintln!("bench:   {metric}: peer {peer} not measured: {why}"),
        }
        self.peers
            .push((metric.to_string(), peer.to_string(), figure));
    }

    /// Add a point to a scaling curve and print it at once.
    pub fn scale(&mut self, point: ScalePoint) {
        eprintln!(
            "bench:   {} at {}: {} {}, peak RSS +{} MB",
            point.curve,
            point.size,
            number(point.throughput),
            point.unit,
            number(point.rss_growth_mb)
        );
        self.scaling.push(point);
    }

    /// The scaling table: each point's throughput against the curve's first.
    fn scaling_table(&self) -> String {
        let mut table = String::from(
            "| work | size | throughput | vs the smallest | host peak RSS above its start |\n|---|---|---|---|---|\n",
        );
        for point in &self.scaling {
            let first = self
                .scaling
                .iter()
                .find(|p| p.curve == point.curve)
                .map_or(f64::NAN, |p| p.throughput);
            let _ = writeln!(
                table,
                "| {} | {} | {} {} | {}x | {} MB |",
                point.curve,
                point.size,
                number(point.throughput),
                point.unit,
                number(point.throughput / first),
                number(point.rss_growth_mb)
            );
        }
        table
    }

    /// The peer names, in the order first seen.
    fn peer_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (_, peer, _) in &self.peers {
            if !names.contains(&peer.as_str()) {
                names.push(peer);
            }
        }
        names
    }

    /// The table cell of `peer` on `row`: its figure and sluice ÷ it.
    fn peer_cell(&self, row: &Row, peer: &str) -> String {
        let found = self
            .peers
            .iter()
            .find(|(metric, name, _)| *metric == row.metric && name == peer);
        match found {
            Some((_, _, Ok(value))) => format!(
                "{} {} ({}x)",
                number(*value),
                row.unit,
                number(row.sluice / value)
            ),
            Some((_, _, Err(_))) => "not measured".into(),
            None => "-".into(),
        }
    }

    /// Print the table and write `target/bench/results.json`.
    pub fn finish(&self, took: Duration) {
        let mut table = String::new();
        let peers = self.peer_names();
        let _ = writeln!(
            table,
            "| metric | sluice | native baseline | ratio | target | result |{}\n|---|---|---|---|---|---|{}",
            peers
                .iter()
                .map(|p| format!(" {p} (sluice ÷ it) |"))
                .collect::<String>(),
            "---|".repeat(peers.len())
        );
        for row in &self.rows {
            let _ = writeln!(
                table,
                "| {} | {} {} | {} {} | {} | {} | {} |{}",
                row.metric,
                number(row.sluice),
                row.unit,
                number(row.baseline),
                row.unit,
                number(row.ratio()),
                row.target_text(),
                row.verdict(),
                peers
                    .iter()
                    .map(|p| format!(" {} |", self.peer_cell(row, p)))
                    .collect::<String>()
            );
        }
        for (name, why) in &self.failures {
            let _ = writeln!(table, "\n**{name}: not measured** ({why})");
        }
        for (metric, peer, figure) in &self.peers {
            if let Err(why) = figure {
                let _ = writeln!(
                    table,
                    "\n**peer {peer} on \"{metric}\": not measured** ({why})"
                );
            }
        }
        let machine = crate::sys::machine();
        println!("\n{table}");
        if !self.scaling.is_empty() {
            println!(
                "Scaling (throughput should hold and memory stay flat as the work grows):\n\n{}",
                self.scaling_table()
            );
        }
        println!(
            "{} metrics with a target, {} met it; {} run in {:.0} s on {machine}",
            self.rows.iter().filter(|r| r.pass().is_some()).count(),
            self.rows.iter().filter(|r| r.pass() == Some(true)).count(),
            if self.scale.quick { "QUICK" } else { "full" },
            took.as_secs_f64()
        );
        let results = json!({
            "machine": machine,
            "quick": self.scale.quick,
            "seconds": took.as_secs_f64(),
            "failures": self.failures.iter().map(|(name, why)| json!({ "suite": name, "why": why })).collect::<Vec<_>>(),
            "peers": self.peers.iter().map(|(metric, peer, figure)| match figure {
                Ok(value) => json!({ "metric": metric, "peer": peer, "figure": finite(*value) }),
                Err(why) => json!({ "metric": metric, "peer": peer, "why": why }),
            }).collect::<Vec<_>>(),
            "scaling": self.scaling.iter().map(|p| json!({
                "work": p.curve,
                "size": p.size,
                "throughput": finite(p.throughput),
                "unit": p.unit,
                "rss_growth_mb": finite(p.rss_growth_mb),
            })).collect::<Vec<_>>(),
            "rows": self.rows.iter().map(|r| json!({
                "metric": r.metric,
                "unit": r.unit,
                "sluice": finite(r.sluice),
                "baseline": finite(r.baseline),
                "ratio": finite(r.ratio()),
                "target": r.target_text(),
                "pass": r.pass(),
                "note": r.note,
            })).collect::<Vec<_>>(),
        });
        let dir = sluice_tests::root().join("target/bench");
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::write(
                dir.join("results.json"),
                serde_json::to_string_pretty(&results).unwrap_or_default(),
            )
        });
        match written {
            Ok(()) => println!("written: {}", dir.join("results.json").display()),
            Err(e) => eprintln!("bench: cannot write results.json: {e}"),
        }
    }
}

fn finite(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}
