//! The closed loop, Locust's model: each user sends, waits for the answer, thinks for a random
//! time in the range, and sends again. Users start at the spawn rate. A request count, when
//! set, is claimed before each send, so exactly that many are sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::stats::{ErrorKind, Recorder};
use super::targets::{Conn, Prepared};

pub struct ClosedLoop {
    pub users: u32,
    pub spawn_rate: f64,
    pub think_min: Duration,
    pub think_max: Duration,
    pub max_requests: Option<u64>,
}

/// A small, fast generator for think times (SplitMix64): no cryptography needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[min, max]`.
    pub fn between(&mut self, min: Duration, max: Duration) -> Duration {
        if max <= min {
            return min;
        }
        let span = u64::try_from((max - min).as_micros()).unwrap_or(u64::MAX);
        min + Duration::from_micros(self.next_u64() % span.saturating_add(1))
    }
}

/// Starts the users into `set`; they stop starting requests when `stopping` is cancelled and
/// finish the one in flight (bounded by the target's timeout).
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    set: &mut JoinSet<()>,
    spec: &ClosedLoop,
    prepared: &Arc<Prepared>,
    recorder: &Recorder,
    active: &Arc<AtomicU32>,
    next_body: &Arc<AtomicU64>,
    stopping: &CancellationToken,
    seed: u64,
) {
    let claimed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for user in 0..spec.users {
        let start_at = if spec.spawn_rate > 0.0 {
            started + Duration::from_secs_f64(f64::from(user) / spec.spawn_rate)
        } else {
            started
        };
        let shard = recorder.shard(user as usize);
        let prepared = Arc::clone(prepared);
        let active = Arc::clone(active);
        let next_body = Arc::clone(next_body);
        let claimed = Arc::clone(&claimed);
        let stopping = stopping.clone();
        let (think_min, think_max, max) = (spec.think_min, spec.think_max, spec.max_requests);
        let mut rng = Rng::new(seed ^ (u64::from(user) << 32));
        set.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(start_at.into()) => {}
                () = stopping.cancelled() => return,
            }
            active.fetch_add(1, Ordering::Relaxed);
            let mut conn = Conn::new(prepared);
            while !stopping.is_cancelled() {
                if max.is_some_and(|max| claimed.fetch_add(1, Ordering::Relaxed) >= max) {
                    break;
                }
                let index = next_body.fetch_add(1, Ordering::Relaxed) as usize;
                let sent = Instant::now();
                let outcome = conn.send(index).await;
                let took = sent.elapsed();
                shard.record(outcome, took, took);
                let mut think = rng.between(think_min, think_max);
                if outcome == Err(ErrorKind::Connect) {
                    // A refused connection answers at once: do not spin on it.
                    think = think.max(Duration::from_millis(10));
                }
                if !think.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(think) => {}
                        () = stopping.cancelled() => break,
                    }
                }
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_times_stay_in_range_and_vary() {
        let mut rng = Rng::new(1);
        let (lo, hi) = (Duration::from_secs(1), Duration::from_secs(3));
        let draws: Vec<Duration> = (0..1000).map(|_| rng.between(lo, hi)).collect();
        assert!(draws.iter().all(|d| *d >= lo && *d <= hi));
        let mean = draws.iter().sum::<Duration>().as_secs_f64() / 1000.0;
        assert!((mean - 2.0).abs() < 0.1, "{mean}");
        assert_eq!(rng.between(lo, lo), lo);
    }
}
