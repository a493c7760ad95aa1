//! Typed DAG operations on [`Client`]: what the console asks of an etl agent's runner — the
//! DAGs, their runs and log lines, triggering, pausing, cancelling, and following a run to its
//! end — in plain types, without building protobuf requests.

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};

use crate::client::Client;
use crate::registry::CallError;
use crate::v1;

/// A run's or a task's state, as the runner reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Not yet queued (a task waiting on its upstream), or a state this client does not know.
    Pending,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    UpForRetry,
    UpstreamFailed,
    Skipped,
}

impl RunState {
    /// The state's name as Airflow writes it (`up_for_retry`).
    pub fn name(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::UpForRetry => "up_for_retry",
            RunState::UpstreamFailed => "upstream_failed",
            RunState::Skipped => "skipped",
        }
    }

    /// Whether nothing more happens to a run or task in this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded
                | RunState::Failed
                | RunState::Cancelled
                | RunState::UpstreamFailed
                | RunState::Skipped
        )
    }

    /// Whether a task in this state is still to do: waiting, running or retrying.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RunState::Pending | RunState::Queued | RunState::Running | RunState::UpForRetry
        )
    }
}

impl From<i32> for RunState {
    fn from(state: i32) -> Self {
        match v1::RunState::try_from(state).unwrap_or(v1::RunState::Unspecified) {
            v1::RunState::Unspecified => RunState::Pending,
            v1::RunState::Queued => RunState::Queued,
            v1::RunState::Running => RunState::Running,
            v1::RunState::Succeeded => RunState::Succeeded,
            v1::RunState::Failed => RunState::Failed,
            v1::RunState::Cancelled => RunState::Cancelled,
            v1::RunState::UpForRetry => RunState::UpForRetry,
            v1::RunState::UpstreamFailed => RunState::UpstreamFailed,
            v1::RunState::Skipped => RunState::Skipped,
        }
    }
}

/// A task of a DAG as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskDecl {
    pub id: String,
    pub kind: String,
    pub depends_on: Vec<String>,
}

/// A DAG as the runner loaded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagInfo {
    pub name: String,
    pub description: String,
    /// A cron expression; empty for a DAG run only by hand.
    pub schedule: String,
    pub paused: bool,
    /// The declared parameters with their defaults.
    pub params: BTreeMap<String, String>,
    pub tasks: Vec<TaskDecl>,
    /// The file it was loaded from; empty for a built-in DAG.
    pub source: String,
    /// 0 when nothing is scheduled.
    pub next_run_at_ms: i64,
}

/// A DAG file the runner refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagFileError {
    pub file: String,
    pub line: u32,
    pub reason: String,
}

/// The DAGs an agent runs, and the files it refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DagList {
    pub dags: Vec<DagInfo>,
    pub errors: Vec<DagFileError>,
}

/// One attempt of a task within a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRun {
    pub task_id: String,
    pub kind: String,
    pub state: RunState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub duration_s: f64,
    pub error: String,
}

/// A run of a DAG.
#[derive(Clone, Debug, PartialEq)]
pub struct DagRunInfo {
    pub run_id: String,
    pub dag: String,
    pub state: RunState,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub params: BTreeMap<String, String>,
    pub queued_at_ms: i64,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub duration_s: f64,
    pub tasks: Vec<TaskRun>,
    pub error: String,
}

/// A log line of a task attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Increasing within a run.
    pub seq: i64,
    pub timestamp_ms: i64,
    pub task_id: String,
    pub attempt: u32,
    pub level: String,
    pub message: String,
}

/// The run (an empty `task_id`) or one of its tasks entered `state`.
#[derive(Clone, Debug, PartialEq)]
pub struct StateChange {
    pub task_id: String,
    pub state: RunState,
    pub attempt: u32,
    pub error: String,
}

/// What a run event says.
#[derive(Clone, Debug, PartialEq)]
pub enum RunChange {
    State(StateChange),
    Log(LogEntry),
}

/// Something that happened to a run, as the agent streams it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEvent {
    pub timestamp_ms: i64,
    pub run_id: String,
    pub dag: String,
    pub change: RunChange,
}

impl RunEvent {
    /// The state the run itself reached, when this event is the run's (not a task's).
    pub fn run_state(&self) -> Option<RunState> {
        match &self.change {
            RunChange::State(s) if s.task_id.is_empty() => Some(s.state),
            _ => None,
        }
    }
}

impl From<v1::Dag> for DagInfo {
    fn from(d: v1::Dag) -> Self {
        Self {
            name: d.name,
            description: d.description,
            schedule: d.schedule,
            paused: d.paused,
            params: d.params.into_iter().collect(),
            tasks: d
                .tasks
                .into_iter()
                .map(|t| TaskDecl {
                    id: t.id,
                    kind: t.kind,
                    depends_on: t.depends_on,
                })
                .collect(),
            source: d.source,
            next_run_at_ms: d.next_run_at_ms,
        }
    }
}

impl From<v1::TaskInstance> for TaskRun {
    fn from(t: v1::TaskInstance) -> Self {
        Self {
            task_id: t.task_id,
            kind: t.kind,
            state: t.state.into(),
            attempt: t.attempt,
            max_attempts: t.max_attempts,
            started_at_ms: t.started_at_ms,
            ended_at_ms: t.ended_at_ms,
            duration_s: t.duration_s,
            error: t.error,
        }
    }
}

impl From<v1::DagRun> for DagRunInfo {
    fn from(r: v1::DagRun) -> Self {
        Self {
            run_id: r.run_id,
            dag: r.dag,
            state: r.state.into(),
            trigger: r.trigger,
            params: r.params.into_iter().collect(),
            queued_at_ms: r.queued_at_ms,
            started_at_ms: r.started_at_ms,
            ended_at_ms: r.ended_at_ms,
            duration_s: r.duration_s,
            tasks: r.tasks.into_iter().map(TaskRun::from).collect(),
            error: r.error,
        }
    }
}

impl From<v1::LogLine> for LogEntry {
    fn from(l: v1::LogLine) -> Self {
        Self {
            seq: l.seq,
            timestamp_ms: l.timestamp_ms,
            task_id: l.task_id,
            attempt: l.attempt,
            level: l.level,
            message: l.message,
        }
    }
}

impl RunEvent {
    /// The event in plain types; `None` for an event without a body (none is sent today).
    fn from_wire(e: v1::RunEvent) -> Option<Self> {
        let change = match e.event? {
            v1::run_event::Event::State(s) => RunChange::State(StateChange {
                task_id: s.task_id,
                state: s.state.into(),
                attempt: s.attempt,
                error: s.error,
            }),
            v1::run_event::Event::Log(l) => RunChange::Log(l.into()),
        };
        Some(Self {
            timestamp_ms: e.timestamp_ms,
            run_id: e.run_id,
            dag: e.dag,
            change,
        })
    }
}

impl Client {
    /// Every DAG the agent runs, and the DAG files it refused.
    pub async fn list_dags(&self) -> Result<DagList, CallError> {
        let reply = self
            .etl()
            .list_dags(v1::ListDagsRequest {})
            .await
            .map_err(CallError::status("list DAGs"))?
            .into_inner();
        Ok(DagList {
            dags: reply.dags.into_iter().map(DagInfo::from).collect(),
            errors: reply
                .errors
                .into_iter()
                .map(|e| DagFileError {
                    file: e.file,
                    line: e.line,
                    reason: e.reason,
                })
                .collect(),
        })
    }

    /// The last `limit` runs (the agent's default for 0), newest first, of one DAG or of all.
    pub async fn dag_runs(
        &self,
        dag: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DagRunInfo>, CallError> {
        let runs = self
            .etl()
            .list_dag_runs(v1::ListDagRunsRequest {
                dag: dag.unwrap_or_default().into(),
                limit,
            })
            .await
            .map_err(CallError::status(format!(
                "runs of {}",
                dag.unwrap_or("every DAG")
            )))?
            .into_inner()
            .runs;
        Ok(runs.into_iter().map(DagRunInfo::from).collect())
    }

    /// One run with its tasks.
    pub async fn dag_run(&self, run_id: &str) -> Result<DagRunInfo, CallError> {
        let run = self
            .etl()
            .get_dag_run(v1::GetDagRunRequest {
                run_id: run_id.into(),
            })
            .await
            .map_err(CallError::status(format!("run {run_id}")))?;
        Ok(run.into_inner().into())
    }

    /// Starts a run of `dag` with `params` over its declared defaults.
    pub async fn trigger_dag(
        &self,
        dag: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<DagRunInfo, CallError> {
        let run = self
            .etl()
            .trigger_dag(v1::TriggerDagRequest {
                dag: dag.into(),
                params: params.clone().into_iter().collect(),
            })
            .await
            .map_err(CallError::status(format!("trigger {dag}")))?;
        Ok(run.into_inner().into())
    }

    /// Pauses or resumes a DAG's schedule; returns the DAG as it now is.
    pub async fn set_dag_paused(&self, dag: &str, paused: bool) -> Result<DagInfo, CallError> {
        let what = if paused { "pause" } else { "resume" };
        let d = self
            .etl()
            .set_dag_paused(v1::SetDagPausedRequest {
                dag: dag.into(),
                paused,
            })
            .await
            .map_err(CallError::status(format!("{what} {dag}")))?;
        Ok(d.into_inner().into())
    }

    /// Cancels a queued or running run; returns the run as it now is.
    pub async fn cancel_dag_run(&self, run_id: &str) -> Result<DagRunInfo, CallError> {
        let run = self
            .etl()
            .cancel_dag_run(v1::CancelDagRunRequest {
                run_id: run_id.into(),
            })
            .await
            .map_err(CallError::status(format!("cancel run {run_id}")))?;
        Ok(run.into_inner().into())
    }

    /// A run's log lines after `after_seq` (0 for all), of one task or (`None`) of all.
    pub async fn run_logs(
        &self,
        run_id: &str,
        task: Option<&str>,
        after_seq: i64,
    ) -> Result<Vec<LogEntry>, CallError> {
        let lines = self
            .etl()
            .get_run_logs(v1::GetRunLogsRequest {
                run_id: run_id.into(),
                task_id: task.unwrap_or_default().into(),
                after_seq,
            })
            .await
            .map_err(CallError::status(format!("logs of run {run_id}")))?
            .into_inner()
            .lines;
        Ok(lines.into_iter().map(LogEntry::from).collect())
    }

    /// The events of one run (every run for `None`) from now on, until the agent ends the
    /// stream or the connection breaks.
    pub async fn watch_runs(
        &self,
        run_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<RunEvent, CallError>> + Send + 'static, CallError> {
        let what = match run_id {
            Some(id) => format!("events of run {id}"),
            None => "run events".to_owned(),
        };
        let stream = self
            .etl()
            .watch_runs(v1::WatchRunsRequest {
                run_id: run_id.unwrap_or_default().into(),
            })
            .await
            .map_err(CallError::status(what.clone()))?
            .into_inner();
        Ok(stream.filter_map(move |e| {
            let e = e
                .map_err(CallError::status(what.clone()))
                .map(RunEvent::from_wire)
                .transpose();
            std::future::ready(e)
        }))
    }

    /// Follows a run to its end, handing each of its events to `on_event` as it comes, and
    /// returns the run as the agent stored it at the end. A run that ended before the watch
    /// began is returned at once.
    pub async fn follow_run(
        &self,
        run_id: &str,
        mut on_event: impl FnMut(&RunEvent, &DagRunInfo),
    ) -> Result<DagRunInfo, CallError> {
        let events = self.watch_runs(Some(run_id)).await?;
        let mut events = std::pin::pin!(events);
        // Read after subscribing, so no event between the two is missed.
        let mut current = self.dag_run(run_id).await?;
        while !current.state.is_terminal() {
            match events.next().await {
                Some(event) => {
                    let event = event?;
                    if let RunChange::State(s) = &event.change {
                        if s.task_id.is_empty() {
                            current.state = s.state;
                        } else if let Some(task) =
                            current.tasks.iter_mut().find(|t| t.task_id == s.task_id)
                        {
                            task.state = s.state;
                        }
                    }
                    on_event(&event, &current);
                    if event.run_state().is_some_and(RunState::is_terminal) {
                        current = self.dag_run(run_id).await?;
                    }
                }
                // The stream ended: what the agent stored is the answer.
                None => return self.dag_run(run_id).await,
            }
        }
        Ok(current)
    }

    /// Starts a run of `dag` and follows it to its end (see [`Client::follow_run`]).
    pub async fn trigger_and_follow(
        &self,
        dag: &str,
        params: &BTreeMap<String, String>,
        on_event: impl FnMut(&RunEvent, &DagRunInfo),
    ) -> Result<DagRunInfo, CallError> {
        let run = self.trigger_dag(dag, params).await?;
        self.follow_run(&run.run_id, on_event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_state_has_a_plain_one_and_unknown_ones_read_as_pending() {
        for (wire, plain) in [
            (v1::RunState::Unspecified, RunState::Pending),
            (v1::RunState::Queued, RunState::Queued),
            (v1::RunState::Running, RunState::Running),
            (v1::RunState::Succeeded, RunState::Succeeded),
            (v1::RunState::Failed, RunState::Failed),
            (v1::RunState::Cancelled, RunState::Cancelled),
            (v1::RunState::UpForRetry, RunState::UpForRetry),
            (v1::RunState::UpstreamFailed, RunState::UpstreamFailed),
            (v1::RunState::Skipped, RunState::Skipped),
        ] {
            assert_eq!(RunState::from(wire as i32), plain);
        }
        assert_eq!(RunState::from(99), RunState::Pending);
        assert!(RunState::UpstreamFailed.is_terminal() && !RunState::UpForRetry.is_terminal());
        assert!(RunState::UpForRetry.is_open() && !RunState::Skipped.is_open());
    }
}
