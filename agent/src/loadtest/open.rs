//! The open loop (k6's arrival rate, wrk2's constant throughput): requests are due on a
//! schedule set by the rate and its ramp, whatever the server does. Each connection takes the
//! next due time, waits for it, and sends. Latency counts from the due time, so a stall that
//! holds requests back shows in the percentiles (coordinated omission corrected); the service
//! time from the actual send is kept beside it. A request sent more than [`LATE`] after it was
//! due is counted late; one due before the end but never sent is counted missed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::spec::{Load, Stage};
use super::stats::Recorder;
use super::targets::{Conn, Prepared};

/// How far past its due time a request may go out before it counts as late.
pub const LATE: Duration = Duration::from_millis(10);

/// The due times of an open loop, as offsets from its start: the n-th request is due when
/// the rate's integral reaches n, so a ramp from 0 starts slowly and smoothly.
pub struct Schedule {
    start_rate: f64,
    stages: Vec<Stage>,
    /// Linear pieces of the rate: start time, rate at start, slope, length, requests before.
    pieces: Vec<(f64, f64, f64, f64, f64)>,
    end: Duration,
    n: u64,
}

impl Schedule {
    pub fn new(start_rate: f64, stages: Vec<Stage>, end: Duration) -> Self {
        let mut pieces = Vec::new();
        if stages.is_empty() {
            pieces.push((0.0, start_rate, 0.0, end.as_secs_f64(), 0.0));
        } else {
            let (mut t, mut rate, mut before) = (0.0, start_rate, 0.0);
            for stage in &stages {
                let length = stage.duration.as_secs_f64();
                let slope = (stage.rate - rate) / length;
                pieces.push((t, rate, slope, length, before));
                before += (rate + stage.rate) / 2.0 * length;
                t += length;
                rate = stage.rate;
            }
        }
        Self {
            start_rate,
            stages,
            pieces,
            end,
            n: 0,
        }
    }

    /// When request `n` (from 0) is due, if before the end.
    fn due(&self, n: u64) -> Option<Duration> {
        let n = n as f64;
        for &(t0, rate, slope, length, before) in &self.pieces {
            let count = rate * length + slope * length * length / 2.0;
            if n >= before + count {
                continue;
            }
            let m = n - before;
            // rate·τ + slope·τ²/2 = m, the smallest τ ≥ 0.
            let tau = if slope.abs() < 1e-12 {
                m / rate
            } else {
                (-rate + (rate * rate + 2.0 * slope * m).max(0.0).sqrt()) / slope
            };
            let at = t0 + tau.clamp(0.0, length);
            return (at.is_finite() && at < self.end.as_secs_f64())
                .then(|| Duration::from_secs_f64(at));
        }
        None
    }

    /// The next due time, or `None` once the schedule reaches the end.
    pub fn take(&mut self) -> Option<Duration> {
        let due = self.due(self.n)?;
        self.n += 1;
        Some(due)
    }

    /// Takes every time due before `elapsed`: the requests that were never sent.
    pub fn drain_due(&mut self, elapsed: Duration) -> u64 {
        let mut missed = 0;
        while self.due(self.n).is_some_and(|due| due < elapsed) {
            self.n += 1;
            missed += 1;
        }
        missed
    }

    pub fn rate_now(&self, elapsed: Duration) -> f64 {
        Load::rate_at(self.start_rate, &self.stages, elapsed).unwrap_or(0.0)
    }
}

/// Starts `connections` senders into `set` over `schedule`, timed from `started`.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    set: &mut JoinSet<()>,
    connections: u32,
    schedule: &Arc<Mutex<Schedule>>,
    started: Instant,
    prepared: &Arc<Prepared>,
    recorder: &Recorder,
    busy: &Arc<AtomicU32>,
    next_body: &Arc<AtomicU64>,
    stopping: &CancellationToken,
) {
    for c in 0..connections {
        let shard = recorder.shard(c as usize);
        let schedule = Arc::clone(schedule);
        let prepared = Arc::clone(prepared);
        let busy = Arc::clone(busy);
        let next_body = Arc::clone(next_body);
        let stopping = stopping.clone();
        set.spawn(async move {
            let mut conn = Conn::new(prepared);
            while !stopping.is_cancelled() {
                let Some(due) = schedule
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                else {
                    break;
                };
                let due = started + due;
                tokio::select! {
                    // A time already due goes out, even as the test stops.
                    biased;
                    () = tokio::time::sleep_until(due.into()) => {}
                    // Not due yet when the test stopped: neither sent nor missed.
                    () = stopping.cancelled() => break,
                }
                let sent = Instant::now();
                if sent.duration_since(due) > LATE {
                    shard.late();
                }
                busy.fetch_add(1, Ordering::Relaxed);
                let index = next_body.fetch_add(1, Ordering::Relaxed) as usize;
                let outcome = conn.send(index).await;
                let done = Instant::now();
                busy.fetch_sub(1, Ordering::Relaxed);
                shard.record(outcome, done.duration_since(due), done.duration_since(sent));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_follows_the_rate_and_its_ramp() {
        let mut constant = Schedule::new(100.0, vec![], Duration::from_secs(2));
        let mut n = 0;
        while constant.take().is_some() {
            n += 1;
        }
        assert_eq!(n, 200);
        // 0 → 100/s over 2 s, then 100/s for 1 s: about 100 + 100 requests.
        let stages = vec![
            Stage {
                rate: 100.0,
                duration: Duration::from_secs(2),
            },
            Stage {
                rate: 100.0,
                duration: Duration::from_secs(1),
            },
        ];
        let mut ramp = Schedule::new(0.0, stages, Duration::from_secs(3));
        let mut n = 0;
        while ramp.take().is_some() {
            n += 1;
        }
        assert!((190..=210).contains(&n), "{n}");
        let mut s = Schedule::new(10.0, vec![], Duration::from_secs(10));
        s.take();
        assert_eq!(s.drain_due(Duration::from_secs(1)), 9);
        assert_eq!(s.drain_due(Duration::from_secs(100)), 90);
    }
}
