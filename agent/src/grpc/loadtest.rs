//! The `readmit.v1.LoadTest` gRPC service, served by agents with the inference role: converts
//! and delegates to `loadtest::LoadTests`, and holds the one mapping from load-test errors to
//! gRPC status. `WatchLoadTest` streams a sample a second and ends with the test or the agent.

use std::pin::Pin;

use futures_util::Stream;
use readmit_proto::v1;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::loadtest::capacity::{Found, Step};
use crate::loadtest::spec::{
    CapacityInput, ClosedInput, Load, OpenInput, Spec, SpecInput, TargetKind,
};
use crate::loadtest::stats::{Figures, Latency, Sample};
use crate::loadtest::thresholds::Verdict;
use crate::loadtest::{LoadTestError, LoadTests, State, Summary};

/// The one mapping from load-test errors to gRPC status codes.
pub fn status(error: &LoadTestError) -> Status {
    let message = error.to_string();
    match error {
        LoadTestError::Invalid { .. } | LoadTestError::OverLimit { .. } => {
            Status::invalid_argument(message)
        }
        LoadTestError::NotAllowed { .. } => Status::permission_denied(message),
        LoadTestError::Busy { .. } => Status::resource_exhausted(message),
        LoadTestError::NotFound { .. } => Status::not_found(message),
        LoadTestError::Unavailable { .. } => Status::unavailable(message),
        LoadTestError::Internal { .. } => {
            tracing::error!(error = %message, "load test failed");
            Status::internal(message)
        }
    }
}

pub struct LoadTestService {
    tests: LoadTests,
    shutdown: CancellationToken,
}

pub fn server(
    tests: LoadTests,
    shutdown: CancellationToken,
) -> v1::load_test_server::LoadTestServer<LoadTestService> {
    v1::load_test_server::LoadTestServer::new(LoadTestService { tests, shutdown })
}

fn spec_in(r: v1::LoadTestSpec) -> SpecInput {
    let target = r.target.unwrap_or_default();
    let kind = match v1::TargetKind::try_from(target.kind).unwrap_or(v1::TargetKind::Unspecified) {
        v1::TargetKind::Unspecified | v1::TargetKind::Predict => "predict",
        v1::TargetKind::Invocations => "invocations",
        v1::TargetKind::OipInfer => "oip_infer",
        v1::TargetKind::GrpcPredict => "grpc_predict",
    };
    let (closed, open) = match r.load {
        Some(v1::load_test_spec::Load::Closed(c)) => (
            Some(ClosedInput {
                users: c.users,
                spawn_rate: c.spawn_rate,
                think_min_ms: c.think_min_ms,
                think_max_ms: c.think_max_ms,
            }),
            None,
        ),
        Some(v1::load_test_spec::Load::Open(o)) => (
            None,
            Some(OpenInput {
                start_rate: o.start_rate,
                stages: o.stages.iter().map(|s| (s.rate, s.duration_ms)).collect(),
                connections: o.connections,
            }),
        ),
        None => (None, None),
    };
    SpecInput {
        name: r.name,
        target_url: target.url,
        target_agent: target.agent,
        target_kind: kind.into(),
        batch: target.batch,
        model: target.model,
        timeout_ms: target.timeout_ms,
        closed,
        open,
        duration_ms: r.duration_ms,
        max_requests: r.max_requests,
        thresholds: r.thresholds,
        abort_on_fail: r.abort_on_fail,
        capacity: r.capacity.map(|c| CapacityInput {
            start: c.start,
            step: c.step,
            max: c.max,
            step_duration_ms: c.step_duration_ms,
            refine: c.refine,
        }),
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn spec_out(s: &Spec) -> v1::LoadTestSpec {
    let (kind, batch, model) = match &s.target.kind {
        TargetKind::Predict => (v1::TargetKind::Predict, 0, String::new()),
        TargetKind::Invocations { batch } => (
            v1::TargetKind::Invocations,
            u32::try_from(*batch).unwrap_or(u32::MAX),
            String::new(),
        ),
        TargetKind::OipInfer { model } => (v1::TargetKind::OipInfer, 0, model.clone()),
        TargetKind::GrpcPredict => (v1::TargetKind::GrpcPredict, 0, String::new()),
    };
    let load = match &s.load {
        Load::Closed {
            users,
            spawn_rate,
            think_min,
            think_max,
        } => v1::load_test_spec::Load::Closed(v1::ClosedLoop {
            users: *users,
            spawn_rate: *spawn_rate,
            think_min_ms: ms(*think_min),
            think_max_ms: ms(*think_max),
        }),
        Load::Open {
            start_rate,
            stages,
            connections,
        } => v1::load_test_spec::Load::Open(v1::OpenLoop {
            start_rate: *start_rate,
            stages: stages
                .iter()
                .map(|st| v1::RateStage {
                    rate: st.rate,
                    duration_ms: ms(st.duration),
                })
                .collect(),
            connections: *connections,
        }),
    };
    v1::LoadTestSpec {
        name: s.name.clone(),
        target: Some(v1::LoadTarget {
            url: s.target.url.clone(),
            kind: kind as i32,
            batch,
            model,
            timeout_ms: ms(s.target.timeout),
            agent: String::new(),
        }),
        load: Some(load),
        duration_ms: ms(s.duration),
        max_requests: s.max_requests.unwrap_or(0),
        thresholds: s.thresholds.iter().map(|t| t.text.clone()).collect(),
        abort_on_fail: s.abort_on_fail,
        capacity: s.capacity.map(|c| v1::CapacitySearch {
            start: c.start,
            step: c.step,
            max: c.max,
            step_duration_ms: ms(c.step_duration),
            refine: c.refine,
        }),
    }
}

fn latency_out(l: &Latency) -> v1::Latency {
    v1::Latency {
        mean_ms: l.mean_ms,
        p50_ms: l.p50_ms,
        p90_ms: l.p90_ms,
        p95_ms: l.p95_ms,
        p99_ms: l.p99_ms,
        p999_ms: l.p999_ms,
        max_ms: l.max_ms,
    }
}

fn figures_out(f: &Figures) -> v1::Figures {
    v1::Figures {
        requests: f.requests,
        failures: f.failures,
        late: f.late,
        missed: f.missed,
        seconds: f.seconds,
        rps: f.rps,
        error_rate: f.error_rate,
        latency: Some(latency_out(&f.latency)),
        service: f.service.as_ref().map(latency_out),
        errors: f
            .errors
            .iter()
            .map(|(kind, count)| v1::ErrorCount {
                kind: kind.clone(),
                count: *count,
            })
            .collect(),
    }
}

fn state_out(s: State) -> v1::LoadTestState {
    match s {
        State::Running => v1::LoadTestState::Running,
        State::Finished => v1::LoadTestState::Finished,
        State::Stopped => v1::LoadTestState::Stopped,
        State::Failed => v1::LoadTestState::Failed,
        State::Aborted => v1::LoadTestState::Aborted,
    }
}

fn sample_out(id: &str, state: State, s: &Sample) -> v1::LoadTestSample {
    v1::LoadTestSample {
        test_id: id.to_owned(),
        state: state_out(state) as i32,
        elapsed_s: s.elapsed_s,
        users: s.users,
        target_rate: s.target_rate,
        step: s.step,
        interval: Some(figures_out(&s.interval)),
        total_requests: s.total_requests,
        total_failures: s.total_failures,
        total_latency: Some(latency_out(&s.total_latency)),
    }
}

fn verdict_out(v: &Verdict) -> v1::ThresholdResult {
    v1::ThresholdResult {
        threshold: v.threshold.clone(),
        passed: v.passed,
        observed: v.observed,
    }
}

fn step_out(s: &Step) -> v1::CapacityStep {
    v1::CapacityStep {
        index: s.index,
        level: s.level,
        passed: s.passed,
        figures: Some(figures_out(&s.figures)),
        thresholds: s.verdicts.iter().map(verdict_out).collect(),
    }
}

fn found_out(f: &Found) -> v1::CapacityResult {
    v1::CapacityResult {
        dimension: f.dimension.clone(),
        max_level: f.max_level,
        rps: f.rps,
        first_bad: f.first_bad,
        reached_max: f.reached_max,
    }
}

fn summary_out(s: &Summary) -> v1::LoadTestSummary {
    v1::LoadTestSummary {
        test_id: s.id.clone(),
        spec: Some(spec_out(&s.spec)),
        state: state_out(s.state) as i32,
        started_at_ms: s.started_at_ms,
        ended_at_ms: s.ended_at_ms,
        total: Some(figures_out(&s.total)),
        thresholds: s.verdicts.iter().map(verdict_out).collect(),
        passed: s.passed,
        steps: s.steps.iter().map(step_out).collect(),
        capacity: s.capacity.as_ref().map(found_out),
        error: s.error.clone(),
        run_id: s.run_id.clone(),
        payload: s.payload.clone(),
        last: s.last.as_ref().map(|l| sample_out(&s.id, s.state, l)),
    }
}

type SampleStream = Pin<Box<dyn Stream<Item = Result<v1::LoadTestSample, Status>> + Send>>;

#[tonic::async_trait]
impl v1::load_test_server::LoadTest for LoadTestService {
    async fn start_load_test(
        &self,
        r: Request<v1::LoadTestSpec>,
    ) -> Result<Response<v1::LoadTestSummary>, Status> {
        let summary = self
            .tests
            .start(spec_in(r.into_inner()))
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(summary_out(&summary)))
    }

    async fn stop_load_test(
        &self,
        r: Request<v1::LoadTestRef>,
    ) -> Result<Response<v1::LoadTestSummary>, Status> {
        let summary = self
            .tests
            .stop(&r.into_inner().test_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(summary_out(&summary)))
    }

    async fn get_load_test(
        &self,
        r: Request<v1::LoadTestRef>,
    ) -> Result<Response<v1::LoadTestSummary>, Status> {
        let summary = self
            .tests
            .get(&r.into_inner().test_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(summary_out(&summary)))
    }

    async fn list_load_tests(
        &self,
        r: Request<v1::ListLoadTestsRequest>,
    ) -> Result<Response<v1::ListLoadTestsReply>, Status> {
        let max = match r.into_inner().max {
            0 => 50,
            n => n.min(1000) as usize,
        };
        let tests = self.tests.list(max).await.map_err(|e| status(&e))?;
        Ok(Response::new(v1::ListLoadTestsReply {
            tests: tests.iter().map(summary_out).collect(),
        }))
    }

    type WatchLoadTestStream = SampleStream;

    async fn watch_load_test(
        &self,
        r: Request<v1::LoadTestRef>,
    ) -> Result<Response<Self::WatchLoadTestStream>, Status> {
        let id = r.into_inner().test_id;
        let mut rx = self.tests.watch(&id).map_err(|e| status(&e))?;
        let shutdown = self.shutdown.clone();
        let stream = async_stream(move |tx| async move {
            let mut last_sent: Option<f64> = None;
            loop {
                let (state, sample) = {
                    let s = rx.borrow_and_update();
                    (s.state, s.last.clone())
                };
                // The last one again once the test has ended, so the watcher sees how.
                if let Some(sample) = sample
                    && (last_sent != Some(sample.elapsed_s) || state.is_done())
                {
                    last_sent = Some(sample.elapsed_s);
                    if tx.send(Ok(sample_out(&id, state, &sample))).await.is_err() {
                        // The client went away; the test runs on.
                        return;
                    }
                }
                if state.is_done() {
                    return;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a small channel; the task ends when the receiver is dropped.
fn async_stream<F, Fut>(f: F) -> SampleStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<v1::LoadTestSample, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
