//! The WASI clocks and random generators of a recorded or replayed session.
//!
//! Recording wraps the real ones and writes down each value handed out.
//! Replaying hands out the recorded values in order; a replay that reads
//! the clock more often than the recorded run (a guest that waits in a loop
//! reads it as often as time allows) goes on from the last recorded reading
//! with real elapsed time, and one that draws more random bytes gets fresh
//! ones — neither is a request, so neither is a divergence.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::TryRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use super::{Player, Recorder, Tape};

/// Give `wasi` the clocks and generators of `tape`.
pub(crate) fn apply(wasi: &mut WasiCtxBuilder, tape: &Tape) {
    match tape {
        Tape::Record(recorder) => {
            let seed: u128 = {
                let mut bytes = [0u8; 16];
                // Not secret: `insecure-seed` is documented as guessable.
                getrandom::fill(&mut bytes).unwrap_or_default();
                u128::from_le_bytes(bytes)
            };
            recorder.seed(seed);
            wasi.wall_clock(RecordingWall {
                real: wasmtime_wasi::clocks::wall_clock(),
                recorder: Arc::clone(recorder),
            })
            .monotonic_clock(RecordingMonotonic {
                real: wasmtime_wasi::clocks::monotonic_clock(),
                recorder: Arc::clone(recorder),
            })
            .secure_random(RecordingRng {
                real: wasmtime_wasi::thread_rng(),
                recorder: Arc::clone(recorder),
                secure: true,
            })
            .insecure_random(RecordingRng {
                real: wasmtime_wasi::thread_rng(),
                recorder: Arc::clone(recorder),
                secure: false,
            })
            .insecure_random_seed(seed);
        }
        Tape::Replay(player) => {
            if let Some(seed) = player.seed() {
                wasi.insecure_random_seed(seed);
            }
            wasi.wall_clock(ReplayWall {
                player: Arc::clone(player),
                last: Mutex::new(None),
            })
            .monotonic_clock(ReplayMonotonic {
                player: Arc::clone(player),
                last: Mutex::new(None),
            })
            .secure_random(ReplayRng {
                player: Arc::clone(player),
                fresh: wasmtime_wasi::thread_rng(),
                secure: true,
            })
            .insecure_random(ReplayRng {
                player: Arc::clone(player),
                fresh: wasmtime_wasi::thread_rng(),
                secure: false,
            });
        }
    }
}

struct RecordingWall {
    real: Box<dyn HostWallClock + Send>,
    recorder: Arc<Recorder>,
}

impl HostWallClock for RecordingWall {
    fn resolution(&self) -> Duration {
        self.real.resolution()
    }

    fn now(&self) -> Duration {
        let now = self.real.now();
        self.recorder.wall(now);
        now
    }
}

struct RecordingMonotonic {
    real: Box<dyn HostMonotonicClock + Send>,
    recorder: Arc<Recorder>,
}

impl HostMonotonicClock for RecordingMonotonic {
    fn resolution(&self) -> u64 {
        self.real.resolution()
    }

    fn now(&self) -> u64 {
        let now = self.real.now();
        self.recorder.monotonic(now);
        now
    }
}

struct RecordingRng {
    real: Box<dyn wasmtime_wasi::Rng + Send>,
    recorder: Arc<Recorder>,
    secure: bool,
}

impl TryRng for RecordingRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let value = self.real.next_u32();
        self.recorder.random(self.secure, &value.to_le_bytes());
        Ok(value)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let value = self.real.next_u64();
        self.recorder.random(self.secure, &value.to_le_bytes());
        Ok(value)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.real.fill_bytes(dst);
        self.recorder.random(self.secure, dst);
        Ok(())
    }
}

/// A recorded clock: its readings in order, then the last one plus the
/// real time since the recording ran out.
struct ReplayWall {
    player: Arc<Player>,
    last: Mutex<Option<(Duration, Instant)>>,
}

impl HostWallClock for ReplayWall {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match self.player.next_wall() {
            Some((secs, nanos)) => {
                let now = Duration::new(secs, nanos);
                *last = Some((now, Instant::now()));
                now
            }
            None => match *last {
                Some((at, since)) => at + since.elapsed(),
                None => wasmtime_wasi::clocks::wall_clock().now(),
            },
        }
    }
}

struct ReplayMonotonic {
    player: Arc<Player>,
    last: Mutex<Option<(u64, Instant)>>,
}

impl HostMonotonicClock for ReplayMonotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match self.player.next_monotonic() {
            Some(now) => {
                *last = Some((now, Instant::now()));
                now
            }
            None => match *last {
                Some((at, since)) => at.saturating_add(since.elapsed().as_nanos() as u64),
                None => wasmtime_wasi::clocks::monotonic_clock().now(),
            },
        }
    }
}

struct ReplayRng {
    player: Arc<Player>,
    fresh: Box<dyn wasmtime_wasi::Rng + Send>,
    secure: bool,
}

impl TryRng for ReplayRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if !self.player.random(self.secure, dst) {
            self.fresh.fill_bytes(dst);
        }
        Ok(())
    }
}
