//! The DAG runner: queues runs, executes their tasks in dependency order with retries, backoff
//! and timeouts, cancels on request, schedules by cron, and reports every state change and log
//! line to the store and to watchers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::dag::{DagDef, DagError, TaskDef, cron_schedule};
use super::frontier::Frontier;
use super::logger::Logger;
use super::metrics::EtlMetrics;
use super::runs::*;
use super::store::EtlStore;
use super::tasks::{TaskContext, TaskKinds};
use crate::now_ms;

/// How often the scheduler looks for due runs.
const SCHEDULER_TICK: Duration = Duration::from_secs(1);
/// How long the scheduler lease outlives its last renewal: an agent that dies hands
/// scheduling to another within this.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a run outlives its agent's last heartbeat (one a tick while it has active runs)
/// before the scheduling agent fails it: the agent is gone, or cannot reach the database.
const RUN_TTL: Duration = Duration::from_secs(30);
/// The file in the runs directory holding this agent's id, the owner of the runs it starts:
/// kept across restarts, so a restarted agent knows its interrupted runs at once.
const AGENT_ID_FILE: &str = "agent-id";

/// A DAG as listed: its definition, whether it is paused, when it runs next.
#[derive(Clone, Debug)]
pub struct DagStatus {
    pub def: DagDef,
    pub paused: bool,
    pub next_run_at: Option<i64>,
}

#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: EtlStore,
    dags: RwLock<BTreeMap<String, DagDef>>,
    load_errors: Vec<DagError>,
    kinds: TaskKinds,
    events: broadcast::Sender<RunEvent>,
    active: Mutex<HashMap<String, CancellationToken>>,
    runs_dir: PathBuf,
    /// This agent's id: the owner of the runs it starts.
    owner: String,
    shutdown: CancellationToken,
    started_at: i64,
    metrics: EtlMetrics,
}

impl Runner {
    /// Marks runs an earlier agent left unfinished as failed, then starts the scheduler.
    pub async fn start(
        store: EtlStore,
        dags: Vec<DagDef>,
        load_errors: Vec<DagError>,
        kinds: TaskKinds,
        runs_dir: PathBuf,
        shutdown: CancellationToken,
        metrics: EtlMetrics,
    ) -> Result<Self> {
        let owner = agent_id(&runs_dir)?;
        let interrupted = store
            .fail_interrupted(
                "the agent stopped while this run was active",
                Some(&owner),
                now_ms() - ttl_ms(RUN_TTL),
            )
            .await?;
        if !interrupted.is_empty() {
            tracing::warn!(runs = ?interrupted, "marked runs interrupted by a restart as failed");
        }
        for e in &load_errors {
            tracing::error!(file = %e.file, line = e.line, reason = %e.reason, "DAG file refused");
        }
        let (events, _) = broadcast::channel(4096);
        let runner = Self {
            inner: Arc::new(Inner {
                store,
                dags: RwLock::new(dags.into_iter().map(|d| (d.name.clone(), d)).collect()),
                load_errors,
                kinds,
                events,
                active: Mutex::new(HashMap::new()),
                runs_dir,
                owner,
                shutdown,
                started_at: now_ms(),
                metrics,
            }),
        };
        tokio::spawn(runner.clone().schedule());
        Ok(runner)
    }

    pub fn store(&self) -> &EtlStore {
        &self.inner.store
    }

    pub fn load_errors(&self) -> &[DagError] {
        &self.inner.load_errors
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.inner.events.subscribe()
    }

    /// This agent's id, the owner of the runs it starts (kept in its runs directory).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Runs queued or running in this agent now.
    pub fn active_runs(&self) -> usize {
        self.inner.active.lock().map_or(0, |a| a.len())
    }

    fn dag(&self, name: &str) -> Result<DagDef> {
        self.inner
            .dags
            .read()
            .map_err(|_| EtlError::Corrupt("DAG table lock poisoned".into()))?
            .get(name)
            .cloned()
            .ok_or_else(|| EtlError::NotFound {
                what: "DAG",
                id: name.to_owned(),
            })
    }

    pub async fn list_dags(&self) -> Result<Vec<DagStatus>> {
        let defs: Vec<DagDef> = self
            .inner
            .dags
            .read()
            .map_err(|_| EtlError::Corrupt("DAG table lock poisoned".into()))?
            .values()
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(defs.len());
        for def in defs {
            let paused = self.inner.store.paused(&def).await?;
            let next_run_at = if paused {
                None
            } else {
                self.next_fire(&def).await?
            };
            out.push(DagStatus {
                def,
                paused,
                next_run_at,
            });
        }
        Ok(out)
    }

    pub async fn set_paused(&self, dag: &str, paused: bool) -> Result<DagStatus> {
        let def = self.dag(dag)?;
        self.inner.store.set_paused(dag, paused).await?;
        let next_run_at = if paused {
            None
        } else {
            self.next_fire(&def).await?
        };
        Ok(DagStatus {
            def,
            paused,
            next_run_at,
        })
    }

    /// Queues a run and starts it. The trigger may set only the DAG's declared parameters, each
    /// checked against its type; a task's own parameters always win.
    pub async fn trigger(&self, dag: &str, params: BTreeMap<String, String>) -> Result<DagRun> {
        self.trigger_as(dag, "manual", params).await
    }

    async fn trigger_as(
        &self,
        dag: &str,
        trigger: &str,
        params: BTreeMap<String, String>,
    ) -> Result<DagRun> {
        let def = self.dag(dag)?;
        // Only declared parameters, with values of their types: a trigger can never reach a
        // task's own parameters (a shell task's command among them).
        let params =
            super::params::resolve(&def.name, &def.params, &params).map_err(|(name, reason)| {
                EtlError::Invalid {
                    field: format!("params[{name}]"),
                    reason,
                }
            })?;
        let run = self
            .inner
            .store
            .create_run(&def, trigger, &params, &self.inner.owner)
            .await?;
        let cancel = self.inner.shutdown.child_token();
        self.inner
            .active
            .lock()
            .map_err(|_| EtlError::Corrupt("active runs lock poisoned".into()))?
            .insert(run.run_id.clone(), cancel.clone());
        self.emit(
            &run.run_id,
            &run.dag,
            String::new(),
            RunState::Queued,
            0,
            None,
        );
        tokio::spawn(self.clone().execute(run.clone(), def, cancel));
        Ok(run)
    }

    /// Cancels a queued or running run: its running task is stopped (a shell command is
    /// killed), the rest are skipped.
    pub async fn cancel(&self, run_id: &str) -> Result<DagRun> {
        let run = self.inner.store.get_run(run_id).await?;
        if run.state.is_finished() {
            return Err(EtlError::Conflict(format!(
                "run {run_id} already ended {}",
                run.state
            )));
        }
        let token = self
            .inner
            .active
            .lock()
            .map_err(|_| EtlError::Corrupt("active runs lock poisoned".into()))?
            .get(run_id)
            .cloned();
        match token {
            Some(token) => token.cancel(),
            // Another agent runs it, or it was left behind: record the cancel here.
            None => {
                self.inner
                    .store
                    .set_run_state(run_id, RunState::Cancelled, Some("cancelled"))
                    .await?
            }
        }
        self.wait(run_id).await
    }

    /// Waits until the run has ended and returns it.
    pub async fn wait(&self, run_id: &str) -> Result<DagRun> {
        let mut events = self.subscribe();
        loop {
            let run = self.inner.store.get_run(run_id).await?;
            if run.state.is_finished() {
                return Ok(run);
            }
            // Wake on this run's next event, or look again shortly in case it was missed.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Ok(e) = events.recv().await {
                    if e.run_id == run_id && matches!(e.kind, RunEventKind::State { ref task_id, .. } if task_id.is_empty()) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    fn emit(
        &self,
        run_id: &str,
        dag: &str,
        task_id: String,
        state: RunState,
        attempt: u32,
        error: Option<String>,
    ) {
        let _ = self.inner.events.send(RunEvent {
            timestamp: now_ms(),
            run_id: run_id.to_owned(),
            dag: dag.to_owned(),
            kind: RunEventKind::State {
                task_id,
                state,
                attempt,
                error,
            },
        });
    }

    async fn set_task(
        &self,
        run: &DagRun,
        task: &str,
        state: RunState,
        attempt: u32,
        error: Option<&str>,
    ) {
        if let Err(e) = self
            .inner
            .store
            .set_task_state(&run.run_id, task, state, attempt, error)
            .await
        {
            tracing::error!(run = %run.run_id, task, error = %e, "cannot record a task state");
        }
        self.emit(
            &run.run_id,
            &run.dag,
            task.to_owned(),
            state,
            attempt,
            error.map(str::to_owned),
        );
    }

    async fn execute(self, run: DagRun, dag: DagDef, cancel: CancellationToken) {
        let started = std::time::Instant::now();
        let outcome = self.drive(&run, &dag, &cancel).await;
        let (state, error) = match outcome {
            Ok(()) => (RunState::Succeeded, None),
            Err((state, error)) => (state, Some(error)),
        };
        if let Err(e) = self
            .inner
            .store
            .set_run_state(&run.run_id, state, error.as_deref())
            .await
        {
            tracing::error!(run = %run.run_id, error = %e, "cannot record the run's end");
        }
        super::handoff::forget(&self.inner.runs_dir.join(&run.run_id));
        if let Ok(mut active) = self.inner.active.lock() {
            active.remove(&run.run_id);
        }
        self.inner
            .metrics
            .run_ended(&run.dag, state.as_str(), started.elapsed().as_secs_f64());
        tracing::info!(run = %run.run_id, state = %state, "DAG run ended");
        self.emit(&run.run_id, &run.dag, String::new(), state, 0, error);
    }

    /// Runs the tasks; `Err((state, why))` when the run fails or is cancelled.
    async fn drive(
        &self,
        run: &DagRun,
        dag: &DagDef,
        cancel: &CancellationToken,
    ) -> Result<(), (RunState, String)> {
        let logger = Logger::new(
            self.inner.store.clone(),
            self.inner.events.clone(),
            &run.run_id,
            &run.dag,
        );
        if let Err(e) = self
            .inner
            .store
            .set_run_state(&run.run_id, RunState::Running, None)
            .await
        {
            return Err((RunState::Failed, e.to_string()));
        }
        self.emit(
            &run.run_id,
            &run.dag,
            String::new(),
            RunState::Running,
            0,
            None,
        );
        let mut frontier = Frontier::new(dag);
        let mut running: JoinSet<(String, Result<(), String>)> = JoinSet::new();
        let mut first_error: Option<String> = None;
        loop {
            for id in frontier.block() {
                self.set_task(run, id, RunState::UpstreamFailed, 0, None)
                    .await;
            }
            for task in frontier.start() {
                let ctx_params = merged_params(task, &run.params);
                let this = self.clone();
                let (task, run, logger) = (task.clone(), run.clone(), logger.clone());
                let env = dag.env.clone();
                running.spawn(async move {
                    let result = this.attempts(&run, &task, ctx_params, &env, logger).await;
                    (task.id, result)
                });
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    // Dropping the tasks' futures stops them; a shell command is killed.
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    for (id, state) in frontier.cancelled() {
                        self.set_task(run, id, state, 0, None).await;
                    }
                    let shutting_down = self.inner.shutdown.is_cancelled();
                    return Err(if shutting_down {
                        (RunState::Failed, "the agent is shutting down".into())
                    } else {
                        (RunState::Cancelled, "cancelled".into())
                    });
                }
                Some(joined) = running.join_next() => {
                    let (task_id, result) = match joined {
                        Ok(done) => done,
                        Err(e) => return Err((RunState::Failed, format!("a task panicked: {e}"))),
                    };
                    let state = match result {
                        Ok(()) => RunState::Succeeded,
                        Err(error) => {
                            first_error.get_or_insert_with(|| format!("task {task_id}: {error}"));
                            RunState::Failed
                        }
                    };
                    frontier.finish(&task_id, state);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err((RunState::Failed, e)),
        }
    }

    /// One task's attempts: retries with exponential backoff after `retry_delay`, each attempt
    /// bounded by the task's timeout. Returns the last error if none succeeded.
    async fn attempts(
        &self,
        run: &DagRun,
        task: &TaskDef,
        params: BTreeMap<String, String>,
        dag_env: &[String],
        logger: Logger,
    ) -> Result<(), String> {
        let kind = self.inner.kinds.get(&task.kind);
        let max = task.retries + 1;
        let mut last_error = String::new();
        for attempt in 1..=max {
            self.set_task(run, &task.id, RunState::Running, attempt, None)
                .await;
            let Some(kind) = &kind else {
                last_error = format!("this agent has no task kind {:?}", task.kind);
                break;
            };
            let ctx = TaskContext {
                run_id: run.run_id.clone(),
                dag: run.dag.clone(),
                task_id: task.id.clone(),
                attempt,
                params: params.clone(),
                fixed: task.params.clone(),
                env: dag_env.to_vec(),
                dir: self.inner.runs_dir.join(&run.run_id),
                logger: logger.clone(),
            };
            logger
                .log(
                    &task.id,
                    attempt,
                    "INFO",
                    &format!("attempt {attempt} of {max} ({})", task.kind),
                )
                .await;
            let started = std::time::Instant::now();
            let outcome = match task.timeout {
                Some(limit) => tokio::time::timeout(limit, kind.run(ctx))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "timed out after {}",
                            humantime::format_duration(limit)
                        ))
                    }),
                None => kind.run(ctx).await,
            };
            let took = started.elapsed().as_secs_f64();
            let result = if outcome.is_ok() {
                "succeeded"
            } else {
                "failed"
            };
            self.inner
                .metrics
                .attempt_ended(&run.dag, &task.id, result, took);
            match outcome {
                Ok(()) => {
                    logger
                        .log(
                            &task.id,
                            attempt,
                            "INFO",
                            &format!("succeeded in {took:.3} s"),
                        )
                        .await;
                    self.set_task(run, &task.id, RunState::Succeeded, attempt, None)
                        .await;
                    return Ok(());
                }
                Err(error) => {
                    logger
                        .log(
                            &task.id,
                            attempt,
                            "ERROR",
                            &format!("failed after {took:.3} s: {error}"),
                        )
                        .await;
                    last_error = error;
                    if attempt < max {
                        let delay = task.retry_delay.saturating_mul(1 << (attempt - 1).min(10));
                        self.set_task(
                            run,
                            &task.id,
                            RunState::UpForRetry,
                            attempt,
                            Some(&last_error),
                        )
                        .await;
                        logger
                            .log(
                                &task.id,
                                attempt,
                                "INFO",
                                &format!("retrying in {}", humantime::format_duration(delay)),
                            )
                            .await;
                        tokio::time::sleep(delay).await;
                    } else {
                        self.set_task(run, &task.id, RunState::Failed, attempt, Some(&last_error))
                            .await;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// When a scheduled DAG runs next, from its last scheduled time (or the agent's start).
    async fn next_fire(&self, dag: &DagDef) -> Result<Option<i64>> {
        let Some(expr) = &dag.schedule else {
            return Ok(None);
        };
        let Ok(schedule) = cron_schedule(expr) else {
            return Ok(None);
        };
        let after = self
            .inner
            .store
            .last_scheduled_at(&dag.name)
            .await?
            .unwrap_or(self.inner.started_at);
        let Some(after) = Utc.timestamp_millis_opt(after).single() else {
            return Ok(None);
        };
        Ok(schedule.after(&after).next().map(|t| t.timestamp_millis()))
    }

    /// Triggers scheduled DAGs when due. Missed times are not caught up: one run for the
    /// latest due time, as Airflow does with `catchup = False`.
    async fn schedule(self) {
        let mut tick = tokio::time::interval(SCHEDULER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let ttl = ttl_ms(LEASE_TTL);
        let mut holding = false;
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let store = &self.inner.store;
            if self.active_runs() > 0
                && let Err(e) = store.heartbeat(&self.inner.owner, now_ms()).await
            {
                tracing::warn!(error = %e, "cannot record the runs' heartbeat");
            }
            match store.take_lease(&holder, now_ms(), ttl).await {
                Ok(taken) => {
                    if taken != holding {
                        tracing::info!(holder = %holder, taken, "scheduler lease");
                    }
                    holding = taken;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the scheduler lease");
                    holding = false;
                }
            }
            if !holding {
                continue;
            }
            // The scheduling agent also fails the runs of agents that stopped without a restart.
            match store
                .fail_interrupted(
                    "the agent running this run stopped sending heartbeats",
                    None,
                    now_ms() - ttl_ms(RUN_TTL),
                )
                .await
            {
                Ok(ids) if !ids.is_empty() => {
                    tracing::warn!(runs = ?ids, "failed the runs of an agent that stopped");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot look for abandoned runs"),
            }
            let Ok(dags) = self.list_dags().await else {
                continue;
            };
            let now = now_ms();
            for status in dags {
                let Some(due) = status.next_run_at.filter(|t| *t <= now) else {
                    continue;
                };
                let latest = latest_due(&status.def, due, now);
                if let Err(e) = self
                    .inner
                    .store
                    .set_last_scheduled_at(&status.def, latest)
                    .await
                {
                    tracing::error!(dag = %status.def.name, error = %e, "cannot record a schedule time");
                    continue;
                }
                match self
                    .trigger_as(&status.def.name, "schedule", BTreeMap::new())
                    .await
                {
                    Ok(run) => {
                        tracing::info!(dag = %status.def.name, run = %run.run_id, "scheduled run")
                    }
                    Err(e) => {
                        tracing::warn!(dag = %status.def.name, error = %e, "scheduled run skipped")
                    }
                }
            }
        }
        if holding {
            let _ = self.inner.store.release_lease(&holder).await;
        }
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// This agent's id from its runs directory, made on first start.
fn agent_id(runs_dir: &std::path::Path) -> Result<String> {
    let path = runs_dir.join(AGENT_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(EtlError::io(&path)(e)),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    super::io::write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

/// The last fire time at or before `now`, starting from a due one.
fn latest_due(dag: &DagDef, due: i64, now: i64) -> i64 {
    let Some(schedule) = dag.schedule.as_deref().and_then(|e| cron_schedule(e).ok()) else {
        return due;
    };
    let Some(start) = Utc.timestamp_millis_opt(due).single() else {
        return due;
    };
    schedule
        .after(&start)
        .take_while(|t| t.timestamp_millis() <= now)
        .last()
        .map_or(due, |t| t.timestamp_millis())
}

/// The run's declared parameters, then the task's own, which a trigger cannot change.
fn merged_params(task: &TaskDef, run: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut params = run.clone();
    params.extend(task.params.clone());
    params
}
