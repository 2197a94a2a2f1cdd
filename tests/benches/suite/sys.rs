//! Process memory, percentiles and the machine's description.

use std::time::{Duration, Instant};

/// The time of each of `n` runs of `run`.
pub async fn sample(n: usize, mut run: impl AsyncFnMut()) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let began = Instant::now();
        run().await;
        samples.push(began.elapsed());
    }
    samples
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resident memory now, bytes.
pub fn rss() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Start measuring peak resident memory from now.
pub fn reset_peak() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last `reset_peak`, bytes.
pub fn peak_rss() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// The `p`th percentile (0..=100) of `samples`, in microseconds.
pub fn percentile_us(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let index = ((samples.len() - 1) as f64 * p / 100.0).round() as usize;
    samples[index].as_secs_f64() * 1e6
}

/// CPU model, core count and memory.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib >> 20);
    format!("{model}, {cores} cores, {memory} GiB")
}
