//! The interruption tax: a CPU-bound guest on an engine that compiles epoch
//! checks in (so the CPU limit can stop it) against one that does not.

use std::time::{Duration, Instant};

use sluice::{Grants, Limits, Runtime, RuntimeConfig};

use crate::report::{Report, Row, Target};
use crate::Scale;

/// The probe's `spin`, natively.
fn spin(rounds: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rounds {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    x
}

/// Best of `runs` spins through the probe on a runtime with or without epoch checks.
async fn guest_spin(interruptible: bool, rounds: u64, runs: usize) -> (Duration, String) {
    let runtime = Runtime::with_config(RuntimeConfig {
        interruptible,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let probe = runtime
        .load_file(sluice_tests::guest("sluice_probe"))
        .expect("probe loads");
    let limits = Limits {
        cpu_per_call: Duration::from_secs(120),
        wall_clock_per_call: Duration::from_secs(120),
        ..Limits::default()
    };
    let mut session = probe
        .open_with_limits("{}", &Grants::none(), &limits)
        .await
        .expect("probe opens");
    let request = sluice_tests::probe_request("spin", serde_json::json!({ "count": rounds }));
    let mut best = Duration::MAX;
    let mut hash = String::new();
    for _ in 0..runs {
        let began = Instant::now();
        let page = session.fetch(&request).await.expect("spin");
        best = best.min(began.elapsed());
        hash = page.records[0].data.clone();
    }
    (best, hash)
}

pub async fn run(scale: Scale, report: &mut Report) {
    let rounds = scale.pick(400_000_000u64, 100_000_000);
    let runs = scale.pick(5, 3);
    let (on, hash_on) = guest_spin(true, rounds, runs).await;
    let (off, hash_off) = guest_spin(false, rounds, runs).await;
    assert_eq!(hash_on, hash_off, "the same work both ways");
    let mut native = Duration::MAX;
    let mut result = 0;
    for _ in 0..runs {
        let began = Instant::now();
        result = spin(std::hint::black_box(rounds));
        native = native.min(began.elapsed());
    }
    assert!(
        hash_on.contains(&result.to_string()),
        "the guest computed what native code did: {hash_on} vs {result}"
    );
    report.add(Row {
        metric: "interruption tax (CPU limit on vs off)".into(),
        unit: "s",
        sluice: on.as_secs_f64(),
        baseline: off.as_secs_f64(),
        target: Target::RatioAtMost(1.15),
        note: format!(
            "{rounds} xorshift rounds in the probe, best of {runs}; baseline: the same guest on an engine without epoch checks; \
             native code: {:.3} s (guest with checks {:.2}x native)",
            native.as_secs_f64(),
            on.as_secs_f64() / native.as_secs_f64()
        ),
    });
}
