//! Capacity search, the original's real question: step the users (closed loop) or the rate
//! (open loop) up — Locust's step-load shape — holding each step until its throughput is
//! steady (at least its duration, at most twice that) and judging it after it settled; stop at
//! the first step that breaks a threshold, bisect between the last good and the first bad
//! level, and report the most held within the objective, with every step.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::phase::Phase;
use super::spec::{Capacity, Load, Spec};
use super::stats::{Figures, Sample};
use super::targets::Prepared;
use super::thresholds::{Verdict, judge_all};

/// One step of a search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub index: u32,
    /// Users (closed loop) or requests/s due (open loop).
    pub level: u32,
    pub passed: bool,
    pub figures: Figures,
    pub verdicts: Vec<Verdict>,
}

/// What a search found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// `users` or `rate`.
    pub dimension: String,
    /// The most users (or rate) that held every threshold; 0 when even the first step broke.
    pub max_level: u32,
    /// Requests/s answered at that level.
    pub rps: f64,
    /// The least level that broke a threshold; 0 when none did up to the maximum.
    pub first_bad: u32,
    /// Whether the search stopped at its maximum with every step good.
    pub reached_max: bool,
}

/// The load of one step at `level`, shaped like the test's own load.
fn at_level(load: &Load, level: u32) -> Load {
    match load {
        Load::Closed {
            think_min,
            think_max,
            ..
        } => Load::Closed {
            users: level,
            // Every user at once: the step's settling time covers the ramp.
            spawn_rate: 0.0,
            think_min: *think_min,
            think_max: *think_max,
        },
        Load::Open { connections, .. } => Load::Open {
            start_rate: f64::from(level),
            stages: Vec::new(),
            connections: *connections,
        },
    }
}

/// One search in progress: what every step needs.
struct Search<'a> {
    spec: &'a Spec,
    capacity: &'a Capacity,
    prepared: &'a Arc<Prepared>,
    stop: &'a CancellationToken,
    seed: u64,
    publish: &'a (dyn Fn(Sample) + Sync),
    on_step: &'a (dyn Fn(&Step) + Sync),
    steps: Vec<Step>,
}

impl Search<'_> {
    /// Holds `level` for a step; whether it held the objective, `None` once stopped.
    async fn step(&mut self, level: u32) -> Option<bool> {
        if self.stop.is_cancelled() {
            return None;
        }
        let load = at_level(&self.spec.load, level);
        let index = u32::try_from(self.steps.len()).unwrap_or(u32::MAX) + 1;
        let phase = Phase {
            prepared: self.prepared,
            load: &load,
            duration: self.capacity.step_duration,
            max_requests: None,
            judge_after: self.capacity.step_duration / 3,
            thresholds: &self.spec.thresholds,
            abort_on_fail: false,
            until_steady: true,
            step: index,
            level: f64::from(level),
            seed: self.seed.wrapping_add(u64::from(index)),
        };
        let outcome = phase.run(self.stop, self.publish).await;
        if self.stop.is_cancelled() {
            return None;
        }
        let verdicts = judge_all(&self.spec.thresholds, &outcome.judged);
        let passed = outcome.judged.requests() > 0 && verdicts.iter().all(|v| v.passed);
        let step = Step {
            index,
            level,
            passed,
            figures: outcome
                .judged
                .figures(matches!(self.spec.load, Load::Open { .. })),
            verdicts,
        };
        (self.on_step)(&step);
        self.steps.push(step);
        Some(passed)
    }

    fn last_rps(&self) -> f64 {
        self.steps.last().map_or(0.0, |s| s.figures.rps)
    }
}

/// Runs the search; `publish` gets every second's sample, `on_step` each finished step.
pub async fn search(
    spec: &Spec,
    capacity: &Capacity,
    prepared: &Arc<Prepared>,
    stop: &CancellationToken,
    seed: u64,
    publish: &(dyn Fn(Sample) + Sync),
    on_step: &(dyn Fn(&Step) + Sync),
) -> (Found, Vec<Step>) {
    let mut search = Search {
        spec,
        capacity,
        prepared,
        stop,
        seed,
        publish,
        on_step,
        steps: Vec::new(),
    };
    let mut good: Option<(u32, f64)> = None;
    let mut bad: Option<u32> = None;
    let mut level = capacity.start;
    while let Some(passed) = search.step(level).await {
        if !passed {
            bad = Some(level);
            break;
        }
        good = Some((level, search.last_rps()));
        if level >= capacity.max {
            break;
        }
        level = level.saturating_add(capacity.step).min(capacity.max);
    }
    if let (Some((mut lo, mut lo_rps)), Some(mut hi)) = (good, bad) {
        for _ in 0..capacity.refine {
            if hi - lo <= 1 {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            match search.step(mid).await {
                None => break,
                Some(true) => {
                    lo = mid;
                    lo_rps = search.last_rps();
                }
                Some(false) => hi = mid,
            }
        }
        good = Some((lo, lo_rps));
        bad = Some(hi);
    }
    let (max_level, rps) = good.unwrap_or((0, 0.0));
    let found = Found {
        dimension: if matches!(spec.load, Load::Open { .. }) {
            "rate"
        } else {
            "users"
        }
        .into(),
        max_level,
        rps,
        first_bad: bad.unwrap_or(0),
        reached_max: bad.is_none() && max_level >= capacity.max,
    };
    (found, search.steps)
}
