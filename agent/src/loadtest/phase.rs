//! One stretch of constant-shape load — a whole test, or one capacity step: starts the users or
//! connections, drains their figures once a second into a sample, judges the thresholds live,
//! and ends at its duration, its request count, a stop or a broken threshold.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::closed::{self, ClosedLoop};
use super::open::{self, Schedule};
use super::spec::Load;
use super::stats::{Recorder, Sample, Window};
use super::targets::Prepared;
use super::thresholds::{Threshold, judge_all};

/// Shards per phase: enough that users rarely share one.
const SHARDS: usize = 32;

pub struct Phase<'a> {
    pub prepared: &'a Arc<Prepared>,
    pub load: &'a Load,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    /// Figures before this point settle the load and are not judged.
    pub judge_after: Duration,
    pub thresholds: &'a [Threshold],
    pub abort_on_fail: bool,
    /// Hold past `duration` (up to twice it), a second at a time, until the last seconds'
    /// throughput is steady: a capacity step judged mid-swing would misjudge the level.
    pub until_steady: bool,
    /// The capacity step, from 1; 0 outside a search.
    pub step: u32,
    pub level: f64,
    pub seed: u64,
}

pub struct Outcome {
    /// What the thresholds are judged on: everything after `judge_after`.
    pub judged: Window,
    /// Everything, settling included.
    pub all: Window,
    /// A threshold broke and the test aborts on that.
    pub aborted: bool,
}

impl Phase<'_> {
    /// Runs until the phase ends or `stop` is cancelled; `publish` gets each second's sample.
    pub async fn run(
        &self,
        stop: &CancellationToken,
        publish: &(dyn Fn(Sample) + Sync),
    ) -> Outcome {
        let recorder = Recorder::new(SHARDS);
        let active = Arc::new(AtomicU32::new(0));
        let next_body = Arc::new(AtomicU64::new(self.seed % 1_000));
        let stopping = stop.child_token();
        let mut set = JoinSet::new();
        let started = Instant::now();
        let open = match self.load {
            Load::Closed {
                users,
                spawn_rate,
                think_min,
                think_max,
            } => {
                let spec = ClosedLoop {
                    users: *users,
                    spawn_rate: *spawn_rate,
                    think_min: *think_min,
                    think_max: *think_max,
                    max_requests: self.max_requests,
                };
                closed::spawn(
                    &mut set,
                    &spec,
                    self.prepared,
                    &recorder,
                    &active,
                    &next_body,
                    &stopping,
                    self.seed,
                );
                None
            }
            Load::Open {
                start_rate,
                stages,
                connections,
            } => {
                let schedule = Arc::new(Mutex::new(Schedule::new(
                    *start_rate,
                    stages.clone(),
                    self.longest(),
                )));
                open::spawn(
                    &mut set,
                    *connections,
                    &schedule,
                    started,
                    self.prepared,
                    &recorder,
                    &active,
                    &next_body,
                    &stopping,
                );
                Some(schedule)
            }
        };
        let missed = |at: Duration| {
            open.as_ref().map_or(0, |s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .drain_due(at)
            })
        };

        let mut judged = Window::default();
        let mut all = Window::default();
        let mut aborted = false;
        let mut last = started;
        let mut ticks = tokio::time::interval_at(
            (started + Duration::from_secs(1)).into(),
            Duration::from_secs(1),
        );
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline = started + self.duration;
        let mut recent_rps: Vec<f64> = Vec::new();
        let mut ended = false;
        while !ended {
            tokio::select! {
                _ = ticks.tick() => {}
                () = tokio::time::sleep_until(deadline.into()) => {
                    if self.until_steady
                        && !steady(&recent_rps)
                        && deadline + Duration::from_secs(1) <= started + self.longest()
                    {
                        deadline += Duration::from_secs(1);
                        continue;
                    }
                    ended = true;
                }
                () = stopping.cancelled() => ended = true,
                Some(_) = set.join_next(), if !set.is_empty() => {
                    // Users end early only at the request count: the phase ends with the last.
                    if !set.is_empty() {
                        continue;
                    }
                }
            }
            if set.is_empty() {
                ended = true;
            }
            if ended {
                // No new requests; those in flight finish (the target's timeout bounds them).
                stopping.cancel();
                while set.join_next().await.is_some() {}
            }
            let now = Instant::now();
            let elapsed = now.duration_since(started);
            let mut window = recorder.drain();
            if ended {
                // Only at the end: mid-test, a time just due may be about to go out.
                window.missed += missed(elapsed.min(deadline.duration_since(started)));
            }
            window.seconds = now.duration_since(last).as_secs_f64();
            last = now;
            all.add(&window, true);
            if elapsed > self.judge_after {
                judged.add(&window, true);
                recent_rps.push(window.rps());
            }
            let sample = Sample {
                elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                users: active.load(Ordering::Relaxed),
                target_rate: match &open {
                    Some(s) => s
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .rate_now(elapsed),
                    None => self.level,
                },
                step: self.step,
                interval: window.figures(open.is_some()),
                total_requests: all.requests(),
                total_failures: all.failed,
                total_latency: super::stats::Latency::of(&judged.latency),
            };
            publish(sample);
            if self.abort_on_fail
                && !ended
                && judged.requests() > 0
                && judge_all(self.thresholds, &judged)
                    .iter()
                    .any(|v| !v.passed)
            {
                aborted = true;
                stopping.cancel();
            }
        }
        Outcome {
            judged,
            all,
            aborted,
        }
    }

    /// The longest the phase may hold.
    fn longest(&self) -> Duration {
        if self.until_steady {
            self.duration * 2
        } else {
            self.duration
        }
    }
}

/// Whether the last three seconds' throughput agree within 20% (or a request a second).
fn steady(rps: &[f64]) -> bool {
    let Some(last) = rps.len().checked_sub(3).map(|from| &rps[from..]) else {
        return false;
    };
    let (lo, hi) = last
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    hi <= lo * 1.2 + 1.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn steady_means_three_seconds_within_a_fifth() {
        assert!(!super::steady(&[100.0, 100.0]));
        assert!(super::steady(&[10.0, 100.0, 100.0, 110.0]));
        assert!(!super::steady(&[100.0, 150.0, 100.0]));
        assert!(super::steady(&[0.0, 1.0, 0.5]));
    }
}
