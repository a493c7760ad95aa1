//! Keeping finished tests: each is logged over gRPC as a run of the `load_tests` experiment in
//! the tracking role — params from its spec, each second's figures as metrics with steps, its
//! summary as metrics, the whole report as the `report.json` artifact — and read back from
//! there by list and show, so past tests compare and chart like training runs.

use std::collections::HashMap;

use readmit_proto::{Client, MetricPoint, RunEnd};

use super::LoadTestError;
use super::engine::{State, Summary};
use super::spec::{Load, TargetKind};

pub const EXPERIMENT: &str = "load_tests";
const REPORT: &str = "report.json";
const ID_TAG: &str = "readmit.loadtest.id";
/// The summary without samples and steps, for lists: a tag holds up to 8000 characters.
const SUMMARY_TAG: &str = "readmit.loadtest.summary";
const MAX_REPORT_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct Keeper {
    url: String,
    token: Option<String>,
    tls: readmit_proto::ClientTls,
}

fn unavailable(e: impl std::fmt::Display) -> LoadTestError {
    LoadTestError::Unavailable {
        reason: format!("tracking: {e}"),
    }
}

/// Whether `id` is one the engine makes (`lt-` and 12 hex digits): only those reach a filter.
fn is_test_id(id: &str) -> bool {
    id.strip_prefix("lt-")
        .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Keeper {
    pub fn new(url: String, token: Option<String>, tls: readmit_proto::ClientTls) -> Self {
        Self { url, token, tls }
    }

    async fn client(&self) -> Result<Option<Client>, LoadTestError> {
        if self.url.is_empty() {
            return Ok(None);
        }
        Client::connect_with(&self.url, self.token.as_deref(), &self.tls)
            .await
            .map(Some)
            .map_err(unavailable)
    }

    /// Logs a finished test; the run's id, or `None` with no tracking role to keep it in.
    pub async fn keep(&self, summary: &Summary) -> Result<Option<String>, LoadTestError> {
        let Some(client) = self.client().await? else {
            return Ok(None);
        };
        let experiment = client
            .experiment_id_or_create(EXPERIMENT)
            .await
            .map_err(unavailable)?;
        let mut lite = summary.clone();
        lighten(&mut lite);
        let mut tags: HashMap<String, String> = [
            (ID_TAG, summary.id.clone()),
            ("readmit.loadtest.state", state_name(summary.state).into()),
            ("readmit.loadtest.target", summary.spec.target.url.clone()),
            ("mlflow.source.name", "readmit-agent/loadtest".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Ok(text) = serde_json::to_string(&lite)
            && text.len() <= 8000
        {
            tags.insert(SUMMARY_TAG.into(), text);
        }
        let name = if summary.spec.name.is_empty() {
            summary.id.clone()
        } else {
            summary.spec.name.clone()
        };
        let run_id = client
            .create_run(&experiment, &name, summary.started_at_ms, tags)
            .await
            .map_err(unavailable)?;
        let mut params = params(summary);
        params.retain(|(_, v)| !v.is_empty());
        client
            .log_all(&run_id, &params, &metrics(summary))
            .await
            .map_err(unavailable)?;
        let mut report = summary.clone();
        report.run_id.clone_from(&run_id);
        let bytes = serde_json::to_vec_pretty(&report).map_err(|e| LoadTestError::Internal {
            reason: e.to_string(),
        })?;
        client
            .upload_bytes(&run_id, REPORT, bytes)
            .await
            .map_err(unavailable)?;
        let status = match summary.state {
            State::Finished | State::Running => RunEnd::Finished,
            State::Stopped => RunEnd::Killed,
            State::Failed | State::Aborted => RunEnd::Failed,
        };
        client
            .set_terminated(&run_id, status, summary.ended_at_ms)
            .await
            .map_err(unavailable)?;
        Ok(Some(run_id))
    }

    async fn experiment(&self) -> Result<Option<(Client, String)>, LoadTestError> {
        let Some(client) = self.client().await? else {
            return Ok(None);
        };
        let Some(id) = client
            .experiment_id(EXPERIMENT)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        Ok(Some((client, id)))
    }

    /// A kept test's full report; `None` when it is not kept.
    pub async fn get(&self, id: &str) -> Result<Option<Summary>, LoadTestError> {
        if !is_test_id(id) {
            return Ok(None);
        }
        let Some((client, experiment)) = self.experiment().await? else {
            return Ok(None);
        };
        let runs = client
            .runs_where(&experiment, &format!("tags.`{ID_TAG}` = '{id}'"), 1)
            .await
            .map_err(unavailable)?;
        let Some(run_id) = runs
            .first()
            .and_then(|r| r.info.as_ref())
            .map(|i| i.run_id.clone())
        else {
            return Ok(None);
        };
        report(&client, &run_id).await.map(Some)
    }

    /// Kept tests, newest first, from their runs' summary tags.
    pub async fn list(&self, max: usize) -> Result<Vec<Summary>, LoadTestError> {
        let Some((client, experiment)) = self.experiment().await? else {
            return Ok(Vec::new());
        };
        let runs = client
            .runs_where(&experiment, "", u32::try_from(max).unwrap_or(1000))
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(runs.len());
        for run in &runs {
            let Some(run_id) = run.info.as_ref().map(|i| i.run_id.clone()) else {
                continue;
            };
            let tagged = run
                .data
                .as_ref()
                .and_then(|d| d.tags.get(SUMMARY_TAG))
                .and_then(|text| serde_json::from_str::<Summary>(text).ok());
            let summary = match tagged {
                Some(s) => s,
                // A summary too long for a tag (many thresholds, long names): its report.
                None if run
                    .data
                    .as_ref()
                    .is_some_and(|d| d.tags.contains_key(ID_TAG)) =>
                {
                    match report(&client, &run_id).await {
                        Ok(mut s) => {
                            lighten(&mut s);
                            s
                        }
                        Err(e) => {
                            tracing::warn!(run = %run_id, error = %e, "a kept load test's report cannot be read");
                            continue;
                        }
                    }
                }
                None => continue,
            };
            out.push(Summary { run_id, ..summary });
        }
        Ok(out)
    }
}

/// A kept run's whole report.
async fn report(client: &Client, run_id: &str) -> Result<Summary, LoadTestError> {
    let bytes = client
        .download_bytes(run_id, REPORT, MAX_REPORT_BYTES)
        .await
        .map_err(unavailable)?;
    serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("run {run_id}'s {REPORT}: {e}")))
}

/// The summary as lists show it: without samples, steps and the last sample.
fn lighten(summary: &mut Summary) {
    summary.samples.clear();
    summary.steps.clear();
    summary.last = None;
}

pub fn state_name(state: State) -> &'static str {
    match state {
        State::Running => "running",
        State::Finished => "finished",
        State::Stopped => "stopped",
        State::Failed => "failed",
        State::Aborted => "aborted",
    }
}

fn params(s: &Summary) -> Vec<(String, String)> {
    let spec = &s.spec;
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let mut p: Vec<(&str, String)> = vec![
        ("test_id", s.id.clone()),
        ("target_url", spec.target.url.clone()),
        ("target_kind", spec.target.kind.name().into()),
        ("timeout_ms", ms(spec.target.timeout)),
        ("duration_ms", ms(spec.duration)),
        ("payload", s.payload.clone()),
        (
            "thresholds",
            spec.thresholds
                .iter()
                .map(|t| t.text.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("abort_on_fail", spec.abort_on_fail.to_string()),
    ];
    match &spec.target.kind {
        TargetKind::Invocations { batch } => p.push(("batch", batch.to_string())),
        TargetKind::OipInfer { model } => p.push(("model", model.clone())),
        TargetKind::Predict | TargetKind::GrpcPredict => {}
    }
    if let Some(max) = spec.max_requests {
        p.push(("max_requests", max.to_string()));
    }
    match &spec.load {
        Load::Closed {
            users,
            spawn_rate,
            think_min,
            think_max,
        } => {
            p.push(("load", "closed".into()));
            p.push(("users", users.to_string()));
            p.push(("spawn_rate", spawn_rate.to_string()));
            p.push(("think_min_ms", ms(*think_min)));
            p.push(("think_max_ms", ms(*think_max)));
        }
        Load::Open {
            start_rate,
            stages,
            connections,
        } => {
            p.push(("load", "open".into()));
            p.push(("start_rate", start_rate.to_string()));
            p.push((
                "stages",
                stages
                    .iter()
                    .map(|st| format!("{}:{}ms", st.rate, st.duration.as_millis()))
                    .collect::<Vec<_>>()
                    .join(","),
            ));
            p.push(("connections", connections.to_string()));
        }
    }
    if let Some(c) = &spec.capacity {
        p.push(("capacity_start", c.start.to_string()));
        p.push(("capacity_step", c.step.to_string()));
        p.push(("capacity_max", c.max.to_string()));
        p.push(("capacity_step_duration_ms", ms(c.step_duration)));
        p.push(("capacity_refine", c.refine.to_string()));
    }
    p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn metrics(s: &Summary) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    let end = s.ended_at_ms.max(s.started_at_ms);
    let mut point = |key: &str, value: f64, timestamp_ms: i64, step: i64| {
        if value.is_finite() {
            out.push(MetricPoint {
                key: key.to_owned(),
                value,
                timestamp_ms,
                step,
            });
        }
    };
    for (i, sample) in s.samples.iter().enumerate() {
        let at = s.started_at_ms + (sample.elapsed_s * 1000.0) as i64;
        let step = i64::try_from(i).unwrap_or(i64::MAX);
        let f = &sample.interval;
        point("rps", f.rps, at, step);
        point("p50_ms", f.latency.p50_ms, at, step);
        point("p95_ms", f.latency.p95_ms, at, step);
        point("p99_ms", f.latency.p99_ms, at, step);
        point("failures", f.failures as f64, at, step);
        point("users", f64::from(sample.users), at, step);
        if sample.step > 0 {
            point("capacity_step", f64::from(sample.step), at, step);
        }
    }
    for step in &s.steps {
        let i = i64::from(step.index);
        point("step_level", f64::from(step.level), end, i);
        point("step_rps", step.figures.rps, end, i);
        point("step_p95_ms", step.figures.latency.p95_ms, end, i);
        point("step_p99_ms", step.figures.latency.p99_ms, end, i);
        point("step_error_rate", step.figures.error_rate, end, i);
        point("step_passed", f64::from(u8::from(step.passed)), end, i);
    }
    let t = &s.total;
    for (key, value) in [
        ("requests", t.requests as f64),
        ("total_failures", t.failures as f64),
        ("late", t.late as f64),
        ("missed", t.missed as f64),
        ("error_rate", t.error_rate),
        ("total_rps", t.rps),
        ("total_mean_ms", t.latency.mean_ms),
        ("total_p50_ms", t.latency.p50_ms),
        ("total_p90_ms", t.latency.p90_ms),
        ("total_p95_ms", t.latency.p95_ms),
        ("total_p99_ms", t.latency.p99_ms),
        ("total_p999_ms", t.latency.p999_ms),
        ("total_max_ms", t.latency.max_ms),
        ("passed", f64::from(u8::from(s.passed))),
    ] {
        point(key, value, end, 0);
    }
    if let Some(c) = &s.capacity {
        point("capacity_max_level", f64::from(c.max_level), end, 0);
        point("capacity_rps", c.rps, end, 0);
    }
    out
}
