//! The progress line `sluice run --progress` keeps on stderr.

use std::time::Duration;

/// A stream's progress (records, bytes, rate) on one stderr line, redrawn at
/// most four times a second; only when stderr is a terminal, so logs and
/// pipes never see it.
pub(crate) struct Progress {
    enabled: bool,
    started: std::time::Instant,
    drawn: Option<std::time::Instant>,
    records: u64,
    bytes: u64,
}

impl Progress {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            started: std::time::Instant::now(),
            drawn: None,
            records: 0,
            bytes: 0,
        }
    }

    pub(crate) fn add(&mut self, records: usize, bytes: usize) {
        self.records += records as u64;
        self.bytes += bytes as u64;
        let due = self
            .drawn
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(250));
        if self.enabled && due {
            self.drawn = Some(std::time::Instant::now());
            eprint!("\r{}\x1b[K", self.line(self.started.elapsed()));
        }
    }

    pub(crate) fn finish(&self) {
        if self.enabled && self.drawn.is_some() {
            eprintln!("\r{}\x1b[K", self.line(self.started.elapsed()));
        }
    }

    /// `12,345 records, 3.2 MiB, 4,100 records/s`.
    fn line(&self, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64().max(0.001);
        format!(
            "{} records, {}, {} records/s",
            grouped(self.records),
            human_bytes(self.bytes),
            grouped((self.records as f64 / seconds) as u64)
        )
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B, KiB, MiB or GiB with one decimal.
pub(crate) fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_a_person_would_write_it() {
        let mut progress = Progress::new(false);
        progress.add(1_000, 1_536);
        progress.add(233_567, 3 << 20);
        assert_eq!(
            progress.line(Duration::from_secs(2)),
            "234,567 records, 3.0 MiB, 117,283 records/s"
        );
        assert_eq!(grouped(999), "999");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1_536), "1.5 KiB");
    }
}
