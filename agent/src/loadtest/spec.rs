//! A load test as asked ([`SpecInput`], every field hostile) and as run ([`Spec`]): checked
//! once against the agent's ceilings and target allowlist, so the engine only sees valid tests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LoadTestError;
use super::safety::{Limits, check_target};
use super::thresholds::{self, Threshold};

/// What a request goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TargetKind {
    /// `POST /predict`, one record.
    Predict,
    /// MLflow's `POST /invocations`, `batch` records as `dataframe_records`.
    Invocations { batch: usize },
    /// The Open Inference Protocol's `POST /v2/models/{model}/infer`, one record.
    OipInfer { model: String },
    /// `readmit.v1.Inference/Predict` over gRPC, one record.
    GrpcPredict,
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Predict => "predict",
            TargetKind::Invocations { .. } => "invocations",
            TargetKind::OipInfer { .. } => "oip_infer",
            TargetKind::GrpcPredict => "grpc_predict",
        }
    }

    /// Records one request carries.
    pub fn records(&self) -> usize {
        match self {
            TargetKind::Invocations { batch } => *batch,
            _ => 1,
        }
    }
}

/// A checked target: the agent's base URL (`http://host:port`) and what to call on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub url: String,
    pub kind: TargetKind,
    /// A request not answered in this time counts as a `timeout` error.
    pub timeout: Duration,
}

/// One ramp stage of an open-loop test: the rate moves linearly to `rate` over `duration`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub rate: f64,
    pub duration: Duration,
}

/// How load is offered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "model")]
pub enum Load {
    /// Locust's model: `users` each send, wait for the answer, think, send again.
    Closed {
        users: u32,
        /// Users started per second; 0 starts them all at once.
        spawn_rate: f64,
        think_min: Duration,
        think_max: Duration,
    },
    /// k6's arrival rate, wrk2's constant throughput: requests are due at a schedule whatever
    /// the server does, sent over `connections` connections.
    Open {
        start_rate: f64,
        stages: Vec<Stage>,
        connections: u32,
    },
}

/// A capacity search: the users (closed loop) or the rate (open loop) stepped up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub start: u32,
    pub step: u32,
    pub max: u32,
    /// How long each step holds; its first third settles and is not judged.
    pub step_duration: Duration,
    /// Bisection steps between the last good and the first bad level.
    pub refine: u32,
}

/// A valid load test: what the engine runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub target: Target,
    pub load: Load,
    /// How long the test runs (an open loop: its stages' total).
    pub duration: Duration,
    /// Stop after this many requests (closed loop only).
    pub max_requests: Option<u64>,
    pub thresholds: Vec<Threshold>,
    pub abort_on_fail: bool,
    pub capacity: Option<Capacity>,
}

/// A load test as a caller sent it, in plain types; [`SpecInput::check`] validates it.
#[derive(Clone, Debug, Default)]
pub struct SpecInput {
    pub name: String,
    pub target_url: String,
    /// The gRPC URL of the agent serving `target_url`, which vouches for it (see
    /// `safety::vouched_listeners`); empty for none.
    pub target_agent: String,
    /// `predict`, `invocations`, `oip_infer` or `grpc_predict`.
    pub target_kind: String,
    pub batch: u32,
    pub model: String,
    pub timeout_ms: u64,
    pub closed: Option<ClosedInput>,
    pub open: Option<OpenInput>,
    pub duration_ms: u64,
    pub max_requests: u64,
    pub thresholds: Vec<String>,
    pub abort_on_fail: bool,
    pub capacity: Option<CapacityInput>,
}

#[derive(Clone, Debug, Default)]
pub struct ClosedInput {
    pub users: u32,
    pub spawn_rate: f64,
    pub think_min_ms: u64,
    pub think_max_ms: u64,
}

#[derive(Clone, Debug, Default)]
pub struct OpenInput {
    pub start_rate: f64,
    /// (rate, duration in ms)
    pub stages: Vec<(f64, u64)>,
    pub connections: u32,
}

#[derive(Clone, Debug, Default)]
pub struct CapacityInput {
    pub start: u32,
    pub step: u32,
    pub max: u32,
    pub step_duration_ms: u64,
    pub refine: u32,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> LoadTestError {
    LoadTestError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn ceiling(field: &'static str, value: f64, limit: f64, setting: &'static str) -> LoadTestError {
    LoadTestError::OverLimit {
        field,
        value,
        limit,
        setting,
    }
}

/// The default request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most records one invocations request may carry.
const MAX_BATCH: u32 = 10_000;
/// The most thresholds one test may carry.
const MAX_THRESHOLDS: usize = 32;
/// The most connections an open loop may hold.
const MAX_CONNECTIONS: u32 = 10_000;

impl SpecInput {
    /// Validates every field against `limits` and the allowlist, naming the bad one.
    pub fn check(self, limits: &Limits) -> Result<Spec, LoadTestError> {
        let url = check_target(&self.target_url, limits)?;
        let kind = match self.target_kind.trim() {
            "" | "predict" => TargetKind::Predict,
            "invocations" => {
                let batch = if self.batch == 0 { 1 } else { self.batch };
                if batch > MAX_BATCH {
                    return Err(invalid(
                        "target.batch",
                        format!("{batch} is over {MAX_BATCH}"),
                    ));
                }
                TargetKind::Invocations {
                    batch: batch as usize,
                }
            }
            "oip_infer" | "oip" => {
                let model = match self.model.trim() {
                    "" => crate::inference::DEFAULT_TARGET
                        .trim_start_matches("models:/")
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    m => m.to_owned(),
                };
                if !model
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    return Err(invalid(
                        "target.model",
                        format!("{model:?} is not a model name (letters, digits, _ - .)"),
                    ));
                }
                TargetKind::OipInfer { model }
            }
            "grpc_predict" | "grpc" => TargetKind::GrpcPredict,
            other => {
                return Err(invalid(
                    "target.kind",
                    format!("{other:?} is not predict, invocations, oip_infer or grpc_predict"),
                ));
            }
        };
        let timeout = match self.timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms if ms > 300_000 => {
                return Err(invalid("target.timeout_ms", "at most 300000 (5 minutes)"));
            }
            ms => Duration::from_millis(ms),
        };
        let target = Target { url, kind, timeout };
        let thresholds = self
            .thresholds
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.trim().is_empty())
            .map(thresholds::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("thresholds", e.to_string()))?;
        if thresholds.len() > MAX_THRESHOLDS {
            return Err(invalid("thresholds", format!("at most {MAX_THRESHOLDS}")));
        }

        let load = match (self.closed, self.open) {
            (Some(_), Some(_)) => return Err(invalid("load", "give closed or open, not both")),
            (None, None) => return Err(invalid("load", "give a closed or an open loop")),
            (Some(c), None) => check_closed(&c, limits, self.capacity.is_some())?,
            (None, Some(o)) => check_open(&o, limits, self.capacity.is_some())?,
        };
        let capacity = self
            .capacity
            .map(|c| check_capacity(&c, &load, limits, &thresholds))
            .transpose()?;

        let duration = match (&load, &capacity) {
            (_, Some(c)) => {
                // Up to max/step steps plus the refinement, each held up to twice
                // step_duration while it settles.
                let steps = u64::from(c.max.saturating_sub(c.start) / c.step.max(1) + 1)
                    + u64::from(c.refine);
                c.step_duration
                    .saturating_mul(2)
                    .saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX))
            }
            (Load::Open { stages, .. }, None) if !stages.is_empty() => {
                if self.duration_ms != 0 {
                    return Err(invalid(
                        "duration_ms",
                        "an open loop with stages lasts as long as its stages; leave it 0",
                    ));
                }
                stages.iter().map(|s| s.duration).sum()
            }
            _ => Duration::from_millis(self.duration_ms),
        };
        let max_requests = (self.max_requests > 0).then_some(self.max_requests);
        if max_requests.is_some() && !matches!(load, Load::Closed { .. }) {
            return Err(invalid(
                "max_requests",
                "only a closed loop stops at a request count; an open loop sends its schedule",
            ));
        }
        if duration.is_zero() && max_requests.is_none() {
            return Err(invalid(
                "duration_ms",
                "give a duration (or, for a closed loop, a request count)",
            ));
        }
        let longest = if duration.is_zero() {
            limits.max_duration
        } else {
            duration
        };
        if longest > limits.max_duration {
            return Err(ceiling(
                if capacity.is_some() {
                    "capacity"
                } else {
                    "duration_ms"
                },
                longest.as_secs_f64(),
                limits.max_duration.as_secs_f64(),
                "loadtest_max_duration_s",
            ));
        }
        if self.abort_on_fail && thresholds.is_empty() {
            return Err(invalid("abort_on_fail", "there is no threshold to fail"));
        }
        let name = self.name.trim();
        if name.len() > 200 || name.chars().any(char::is_control) {
            return Err(invalid(
                "name",
                "at most 200 characters, no control characters",
            ));
        }
        Ok(Spec {
            name: name.to_owned(),
            target,
            load,
            duration: if duration.is_zero() {
                limits.max_duration
            } else {
                duration
            },
            max_requests,
            thresholds,
            abort_on_fail: self.abort_on_fail,
            capacity,
        })
    }
}

fn check_closed(c: &ClosedInput, limits: &Limits, search: bool) -> Result<Load, LoadTestError> {
    if c.users == 0 && !search {
        return Err(invalid("closed.users", "at least 1"));
    }
    if f64::from(c.users) > f64::from(limits.max_users) {
        return Err(ceiling(
            "closed.users",
            f64::from(c.users),
            f64::from(limits.max_users),
            "loadtest_max_users",
        ));
    }
    if !c.spawn_rate.is_finite() || c.spawn_rate < 0.0 {
        return Err(invalid(
            "closed.spawn_rate",
            "a finite number of users a second, 0 for all at once",
        ));
    }
    if c.think_min_ms > c.think_max_ms {
        return Err(invalid(
            "closed.think_min_ms",
            format!(
                "{} ms is over think_max_ms {} ms",
                c.think_min_ms, c.think_max_ms
            ),
        ));
    }
    if c.think_max_ms > 600_000 {
        return Err(invalid(
            "closed.think_max_ms",
            "at most 600000 (10 minutes)",
        ));
    }
    Ok(Load::Closed {
        users: c.users,
        spawn_rate: c.spawn_rate,
        think_min: Duration::from_millis(c.think_min_ms),
        think_max: Duration::from_millis(c.think_max_ms),
    })
}

fn check_rate(field: &'static str, rate: f64, limits: &Limits) -> Result<(), LoadTestError> {
    if !rate.is_finite() || rate < 0.0 {
        return Err(invalid(
            field,
            "a finite, non-negative number of requests a second",
        ));
    }
    if rate > limits.max_rate {
        return Err(ceiling(field, rate, limits.max_rate, "loadtest_max_rate"));
    }
    Ok(())
}

fn check_open(o: &OpenInput, limits: &Limits, search: bool) -> Result<Load, LoadTestError> {
    check_rate("open.start_rate", o.start_rate, limits)?;
    let mut stages = Vec::with_capacity(o.stages.len());
    if o.stages.len() > 100 {
        return Err(invalid("open.stages", "at most 100 stages"));
    }
    for (i, (rate, ms)) in o.stages.iter().enumerate() {
        check_rate("open.stages.rate", *rate, limits)?;
        if *ms == 0 {
            return Err(invalid(
                "open.stages.duration_ms",
                format!("stage {} lasts 0 ms", i + 1),
            ));
        }
        stages.push(Stage {
            rate: *rate,
            duration: Duration::from_millis(*ms),
        });
    }
    let peak = stages.iter().map(|s| s.rate).fold(o.start_rate, f64::max);
    if peak <= 0.0 && !search {
        return Err(invalid("open.start_rate", "the rate is 0 throughout"));
    }
    let connections = match o.connections {
        0 => 64,
        n if n > MAX_CONNECTIONS => {
            return Err(invalid(
                "open.connections",
                format!("at most {MAX_CONNECTIONS}"),
            ));
        }
        n => n,
    };
    if f64::from(connections) > f64::from(limits.max_users) {
        return Err(ceiling(
            "open.connections",
            f64::from(connections),
            f64::from(limits.max_users),
            "loadtest_max_users",
        ));
    }
    Ok(Load::Open {
        start_rate: o.start_rate,
        stages,
        connections,
    })
}

fn check_capacity(
    c: &CapacityInput,
    load: &Load,
    limits: &Limits,
    thresholds: &[Threshold],
) -> Result<Capacity, LoadTestError> {
    if thresholds.is_empty() {
        return Err(invalid(
            "thresholds",
            "a capacity search needs an objective, e.g. \"p95<100ms,errors<1%\"",
        ));
    }
    if c.max == 0 {
        return Err(invalid("capacity.max", "at least 1"));
    }
    let (limit, setting) = match load {
        Load::Closed { .. } => (f64::from(limits.max_users), "loadtest_max_users"),
        Load::Open { .. } => (limits.max_rate, "loadtest_max_rate"),
    };
    if f64::from(c.max) > limit {
        return Err(ceiling("capacity.max", f64::from(c.max), limit, setting));
    }
    let start = c.start.max(1);
    if start > c.max {
        return Err(invalid(
            "capacity.start",
            format!("{start} is over capacity.max {}", c.max),
        ));
    }
    let step = if c.step == 0 {
        // Ten steps from start to max by default.
        ((c.max - start) / 10).max(1)
    } else {
        c.step
    };
    let step_duration = match c.step_duration_ms {
        0 => Duration::from_secs(10),
        ms if ms < 1_000 => {
            return Err(invalid(
                "capacity.step_duration_ms",
                "at least 1000: a step needs time to settle and to be measured",
            ));
        }
        ms => Duration::from_millis(ms),
    };
    if c.refine > 10 {
        return Err(invalid("capacity.refine", "at most 10"));
    }
    Ok(Capacity {
        start,
        step,
        max: c.max,
        step_duration,
        refine: if c.refine == 0 { 3 } else { c.refine },
    })
}

impl Load {
    /// The open loop's rate at `t` into the test: linear between the stages' ends.
    pub fn rate_at(start_rate: f64, stages: &[Stage], t: Duration) -> Option<f64> {
        if stages.is_empty() {
            return Some(start_rate);
        }
        let mut from = start_rate;
        let mut begin = Duration::ZERO;
        for stage in stages {
            let end = begin + stage.duration;
            if t < end {
                let f = (t - begin).as_secs_f64() / stage.duration.as_secs_f64();
                return Some(from + (stage.rate - from) * f);
            }
            from = stage.rate;
            begin = end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::for_tests()
    }

    fn closed(users: u32) -> SpecInput {
        SpecInput {
            target_url: "http://127.0.0.1:8080".into(),
            closed: Some(ClosedInput {
                users,
                spawn_rate: 10.0,
                think_min_ms: 1000,
                think_max_ms: 3000,
            }),
            duration_ms: 60_000,
            ..SpecInput::default()
        }
    }

    #[test]
    fn a_closed_loop_checks_and_bad_fields_name_themselves() {
        let spec = closed(50).check(&limits()).unwrap();
        assert_eq!(spec.target.kind, TargetKind::Predict);
        assert_eq!(spec.duration, Duration::from_secs(60));
        let err = closed(5000).check(&limits()).unwrap_err().to_string();
        assert!(
            err.contains("closed.users") && err.contains("loadtest_max_users"),
            "{err}"
        );
        let mut bad = closed(5);
        bad.closed.as_mut().unwrap().think_min_ms = 5000;
        assert!(
            bad.check(&limits())
                .unwrap_err()
                .to_string()
                .contains("think_min_ms")
        );
        let mut bad = closed(5);
        bad.target_kind = "billing".into();
        assert!(
            bad.check(&limits())
                .unwrap_err()
                .to_string()
                .contains("target.kind")
        );
        let mut bad = closed(5);
        bad.duration_ms = 0;
        assert!(
            bad.check(&limits())
                .unwrap_err()
                .to_string()
                .contains("duration")
        );
        let mut bad = closed(5);
        bad.thresholds = vec!["p95<fast".into()];
        assert!(
            bad.check(&limits())
                .unwrap_err()
                .to_string()
                .contains("fast")
        );
    }

    #[test]
    fn open_loop_stages_ramp_linearly_and_set_the_duration() {
        let input = SpecInput {
            target_url: "http://127.0.0.1:1".into(),
            open: Some(OpenInput {
                start_rate: 0.0,
                stages: vec![(100.0, 10_000), (100.0, 5_000)],
                connections: 0,
            }),
            ..SpecInput::default()
        };
        let spec = input.check(&limits()).unwrap();
        assert_eq!(spec.duration, Duration::from_secs(15));
        let Load::Open { stages, .. } = &spec.load else {
            panic!()
        };
        assert_eq!(
            Load::rate_at(0.0, stages, Duration::from_secs(5)),
            Some(50.0)
        );
        assert_eq!(
            Load::rate_at(0.0, stages, Duration::from_secs(12)),
            Some(100.0)
        );
        assert_eq!(Load::rate_at(0.0, stages, Duration::from_secs(15)), None);
    }

    #[test]
    fn a_capacity_search_needs_an_objective() {
        let mut input = closed(0);
        input.capacity = Some(CapacityInput {
            max: 100,
            ..CapacityInput::default()
        });
        let err = input.clone().check(&limits()).unwrap_err().to_string();
        assert!(err.contains("objective"), "{err}");
        input.thresholds = vec!["p95<100ms".into()];
        let spec = input.check(&limits()).unwrap();
        let c = spec.capacity.unwrap();
        assert_eq!((c.start, c.step, c.refine), (1, 9, 3));
    }
}
