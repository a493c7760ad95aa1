//! Runs load tests: each on the engine's own tokio runtime (its own threads, made on first
//! use), so generating load never takes the agent's serving workers; at most
//! `loadtest_max_concurrent` at once. A test runs to its end, a stop, a broken threshold (when
//! it aborts on one) or the agent's shutdown, whether or not anyone watches; its summary is
//! then kept in tracking.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::LoadTestError;
use super::capacity::{self, Found, Step};
use super::keep::Keeper;
use super::payloads;
use super::phase::Phase;
use super::safety::Limits;
use super::spec::{Load, Spec, SpecInput};
use super::stats::{Figures, Sample};
use super::targets::{Prepared, TargetTls};
use super::thresholds::{Verdict, judge_all};

/// Threads of the engine's runtime.
const THREADS: usize = 2;
/// Finished tests kept in memory (all are kept in tracking).
const RECENT: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Finished,
    Stopped,
    Failed,
    Aborted,
}

impl State {
    pub fn is_done(self) -> bool {
        self != State::Running
    }
}

/// A test as reported: while it runs, and as its kept report once it ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub spec: Spec,
    pub state: State,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub total: Figures,
    pub verdicts: Vec<Verdict>,
    pub passed: bool,
    pub steps: Vec<Step>,
    pub capacity: Option<Found>,
    pub error: String,
    pub run_id: String,
    pub payload: String,
    pub last: Option<Sample>,
    /// Every second's sample: in the kept report, empty while running.
    #[serde(default)]
    pub samples: Vec<Sample>,
}

struct Test {
    stop: CancellationToken,
    progress: watch::Sender<Summary>,
}

/// The runtime the tests run on; shut down without blocking when the agent drops it.
struct EngineRuntime(Option<tokio::runtime::Runtime>);

impl Drop for EngineRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What an engine is given: its bounds, where it reads payloads and keeps tests, and the
/// credentials its clients present.
pub struct EngineConfig {
    pub limits: Limits,
    /// The ETL role's test split for payloads; none for synthetic records.
    pub etl: Option<crate::etl::Etl>,
    /// The tracking role that keeps finished tests; empty keeps them only in memory.
    pub tracking_url: String,
    /// How the keeper calls tracking.
    pub tracking_tls: readmit_proto::ClientTls,
    /// The agent's own token, sent to targets, tracking and vouching agents.
    pub token: Option<String>,
    /// How the engine's clients call `https://` targets and vouching agents.
    pub target_tls: TargetTls,
    pub shutdown: CancellationToken,
}

struct Inner {
    limits: Limits,
    runtime: OnceLock<Result<EngineRuntime, String>>,
    tests: Mutex<Vec<Arc<Test>>>,
    etl: Option<crate::etl::Etl>,
    keeper: Keeper,
    /// What the engine's clients send to targets (the agent's own token).
    token: Option<String>,
    target_tls: TargetTls,
    shutdown: CancellationToken,
}

/// The engine of one agent. Cheap to clone.
#[derive(Clone)]
pub struct LoadTests {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LoadTests {
    pub fn new(config: EngineConfig) -> Self {
        let keeper = Keeper::new(
            config.tracking_url,
            config.token.clone(),
            config.tracking_tls,
        );
        Self {
            inner: Arc::new(Inner {
                limits: config.limits,
                runtime: OnceLock::new(),
                tests: Mutex::new(Vec::new()),
                etl: config.etl,
                keeper,
                token: config.token,
                target_tls: config.target_tls,
                shutdown: config.shutdown,
            }),
        }
    }

    /// The limits a test is checked against: the agent's, and the listeners of the agent the
    /// test names as its target's (when it vouches for them).
    async fn limits_for(&self, input: &SpecInput) -> Result<Limits, LoadTestError> {
        let mut limits = self.inner.limits.clone();
        let agent = input.target_agent.trim();
        // Only a target the allowlist alone refuses needs an agent to vouch for it: one it
        // opens needs none, and a malformed one is refused without calling anyone.
        let refused = matches!(
            super::safety::check_target(&input.target_url, &limits),
            Err(LoadTestError::NotAllowed { .. })
        );
        if !agent.is_empty() && refused {
            // Only an agent that proves who it is may vouch: the engine sends it (and then the
            // targets it names) this agent's token, so a host that merely answers must not get it.
            let verified = agent.starts_with("https://") && self.inner.target_tls.ca.is_some();
            if !verified {
                return Err(LoadTestError::NotAllowed {
                    target: agent.to_owned(),
                    reason: "an agent vouches for its listeners only over https:// with its \
                             certificate checked against this agent's tls_ca: over plain text \
                             any host could answer, and the engine would send it its token"
                        .into(),
                });
            }
            if !input.target_url.trim().starts_with("https://") {
                return Err(LoadTestError::Invalid {
                    field: "target.url",
                    reason: "a target an agent vouches for is loaded over https://, as that \
                             agent serves"
                        .into(),
                });
            }
            let tls = self.inner.target_tls.client();
            let vouched =
                super::safety::vouched_listeners(agent, self.inner.token.as_deref(), &tls).await?;
            limits.allow.extend(vouched);
        }
        Ok(limits)
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    fn handle(&self) -> Result<tokio::runtime::Handle, LoadTestError> {
        let rt = self.inner.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(THREADS)
                .thread_name("loadtest")
                .enable_all()
                .build()
                .map(|rt| EngineRuntime(Some(rt)))
                .map_err(|e| e.to_string())
        });
        match rt {
            Ok(EngineRuntime(Some(rt))) => Ok(rt.handle().clone()),
            Ok(EngineRuntime(None)) => Err(LoadTestError::Internal {
                reason: "the runtime is shut down".into(),
            }),
            Err(e) => Err(LoadTestError::Internal {
                reason: format!("cannot start the engine's runtime: {e}"),
            }),
        }
    }

    fn running(&self) -> usize {
        lock(&self.inner.tests)
            .iter()
            .filter(|t| !t.progress.borrow().state.is_done())
            .count()
    }

    /// Checks and starts a test; its first summary (running).
    pub async fn start(&self, input: SpecInput) -> Result<Summary, LoadTestError> {
        let limits = self.limits_for(&input).await?;
        let spec = input.check(&limits)?;
        let running = self.running();
        if running >= self.inner.limits.max_concurrent {
            return Err(LoadTestError::Busy { running });
        }
        if self.inner.shutdown.is_cancelled() {
            return Err(LoadTestError::Unavailable {
                reason: "the agent is shutting down".into(),
            });
        }
        let id = format!("lt-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let seed = u64::from_str_radix(&id[3..], 16).unwrap_or(1);
        // Read here, on the agent's runtime, which owns the ETL role's connections.
        let (records, payload) = match &self.inner.etl {
            Some(etl) => match payloads::test_split(etl, payloads::RECORDS).await {
                Some(r) => (r, payloads::FROM_TEST_SPLIT),
                None => (
                    payloads::synthetic(payloads::RECORDS, seed),
                    payloads::FROM_SYNTHETIC,
                ),
            },
            None => (
                payloads::synthetic(payloads::RECORDS, seed),
                payloads::FROM_SYNTHETIC,
            ),
        };
        let bodies = payloads::encode(&spec.target, &records).await?;
        let prepared = Prepared::new(
            &spec.target.url,
            bodies,
            spec.target.timeout,
            self.inner.token.as_deref(),
            &self.inner.target_tls,
        )?;
        let first = Summary {
            id: id.clone(),
            spec,
            state: State::Running,
            started_at_ms: crate::now_ms(),
            ended_at_ms: 0,
            total: Figures::default(),
            verdicts: Vec::new(),
            passed: false,
            steps: Vec::new(),
            capacity: None,
            error: String::new(),
            run_id: String::new(),
            payload: payload.to_owned(),
            last: None,
            samples: Vec::new(),
        };
        let handle = self.handle()?;
        let test = Arc::new(Test {
            stop: self.inner.shutdown.child_token(),
            progress: watch::channel(first.clone()).0,
        });
        {
            let mut tests = lock(&self.inner.tests);
            let running = tests
                .iter()
                .filter(|t| !t.progress.borrow().state.is_done())
                .count();
            if running >= self.inner.limits.max_concurrent {
                return Err(LoadTestError::Busy { running });
            }
            tests.push(Arc::clone(&test));
            // Forget the oldest finished ones beyond RECENT; tracking keeps them.
            let mut finished = tests
                .iter()
                .filter(|t| t.progress.borrow().state.is_done())
                .count();
            tests.retain(|t| {
                if finished > RECENT && t.progress.borrow().state.is_done() {
                    finished -= 1;
                    false
                } else {
                    true
                }
            });
        }
        tracing::info!(test = %id, target = %first.spec.target.url, kind = first.spec.target.kind.name(), "load test started");
        let keeper = self.inner.keeper.clone();
        handle.spawn(async move {
            let watched = Arc::clone(&test);
            if let Err(e) = tokio::spawn(run(test, prepared, keeper, seed)).await {
                // A defect in the engine: the test ends failed instead of running forever.
                let reason = if e.is_panic() {
                    "the load-test engine failed (a panic; see the agent's log)"
                } else {
                    "the load-test engine's runtime stopped"
                };
                tracing::error!(error = %e, "load test task ended abnormally");
                watched.progress.send_modify(|s| {
                    s.state = State::Failed;
                    s.error = reason.into();
                    s.ended_at_ms = crate::now_ms();
                });
            }
        });
        Ok(first)
    }

    fn find(&self, id: &str) -> Option<Arc<Test>> {
        lock(&self.inner.tests)
            .iter()
            .find(|t| t.progress.borrow().id == id)
            .cloned()
    }

    /// A test's summary: from memory, else its kept report in tracking.
    pub async fn get(&self, id: &str) -> Result<Summary, LoadTestError> {
        if let Some(test) = self.find(id) {
            return Ok(test.progress.borrow().clone());
        }
        match self.inner.keeper.get(id).await? {
            Some(summary) => Ok(summary),
            None => Err(LoadTestError::NotFound { id: id.to_owned() }),
        }
    }

    /// Running and recent tests, then kept ones, newest first, at most `max`.
    pub async fn list(&self, max: usize) -> Result<Vec<Summary>, LoadTestError> {
        let mut out: Vec<Summary> = lock(&self.inner.tests)
            .iter()
            .map(|t| t.progress.borrow().clone())
            .collect();
        match self.inner.keeper.list(max).await {
            Ok(kept) => {
                for s in kept {
                    if !out.iter().any(|o| o.id == s.id) {
                        out.push(s);
                    }
                }
            }
            // What is in memory still answers when tracking is away.
            Err(e) => tracing::warn!(error = %e, "cannot list kept load tests"),
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.started_at_ms));
        out.truncate(max);
        Ok(out)
    }

    /// Stops a test and waits for it to end; its summary.
    pub async fn stop(&self, id: &str) -> Result<Summary, LoadTestError> {
        let Some(test) = self.find(id) else {
            // A kept test has ended already.
            return self.get(id).await;
        };
        test.stop.cancel();
        let mut rx = test.progress.subscribe();
        let timeout = test.progress.borrow().spec.target.timeout + Duration::from_secs(30);
        let ended = tokio::time::timeout(timeout, rx.wait_for(|s| s.state.is_done())).await;
        match ended {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => Err(LoadTestError::Unavailable {
                reason: format!("load test {id} did not end in {} s", timeout.as_secs()),
            }),
        }
    }

    /// Follows a test's progress: a new value each second and when it ends.
    pub fn watch(&self, id: &str) -> Result<watch::Receiver<Summary>, LoadTestError> {
        self.find(id)
            .map(|t| t.progress.subscribe())
            .ok_or_else(|| LoadTestError::NotFound { id: id.to_owned() })
    }
}

/// Runs one test to its end and keeps it.
async fn run(test: Arc<Test>, prepared: Arc<Prepared>, keeper: Keeper, seed: u64) {
    let spec = test.progress.borrow().spec.clone();
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let publish = |sample: Sample| {
        lock(&samples).push(sample.clone());
        test.progress.send_modify(|s| s.last = Some(sample));
    };
    let open = matches!(spec.load, Load::Open { .. });
    let mut summary = test.progress.borrow().clone();
    match &spec.capacity {
        None => {
            let phase = Phase {
                prepared: &prepared,
                load: &spec.load,
                duration: spec.duration,
                max_requests: spec.max_requests,
                judge_after: Duration::ZERO,
                thresholds: &spec.thresholds,
                abort_on_fail: spec.abort_on_fail,
                until_steady: false,
                step: 0,
                level: match spec.load {
                    Load::Closed { users, .. } => f64::from(users),
                    Load::Open { start_rate, .. } => start_rate,
                },
                seed,
            };
            let outcome = phase.run(&test.stop, &publish).await;
            summary.verdicts = judge_all(&spec.thresholds, &outcome.all);
            summary.passed = summary.verdicts.iter().all(|v| v.passed);
            summary.total = outcome.all.figures(open);
            summary.state = if summary.total.none_connected() {
                State::Failed
            } else if outcome.aborted {
                State::Aborted
            } else if test.stop.is_cancelled() {
                State::Stopped
            } else {
                State::Finished
            };
        }
        Some(c) => {
            let on_step = |step: &Step| {
                test.progress.send_modify(|s| s.steps.push(step.clone()));
            };
            let (found, steps) =
                capacity::search(&spec, c, &prepared, &test.stop, seed, &publish, &on_step).await;
            let best = steps
                .iter()
                .rfind(|s| s.passed && s.level == found.max_level)
                .or(steps.last());
            if let Some(best) = best {
                summary.total = best.figures.clone();
                summary.verdicts = best.verdicts.clone();
            }
            summary.passed = found.max_level > 0;
            summary.steps = steps;
            summary.capacity = Some(found);
            summary.state = if summary
                .steps
                .first()
                .is_some_and(|s| s.figures.none_connected())
            {
                State::Failed
            } else if test.stop.is_cancelled() {
                State::Stopped
            } else {
                State::Finished
            };
        }
    }
    if summary.state == State::Failed {
        summary.error = format!(
            "no connection to {} could be made: every request failed to connect",
            spec.target.url
        );
    }
    summary.ended_at_ms = crate::now_ms();
    summary.last = test.progress.borrow().last.clone();
    summary.samples = std::mem::take(&mut *lock(&samples));
    tracing::info!(
        test = %summary.id,
        state = ?summary.state,
        requests = summary.total.requests,
        passed = summary.passed,
        "load test ended"
    );
    match keeper.keep(&summary).await {
        Ok(Some(run_id)) => summary.run_id = run_id,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(test = %summary.id, error = %e, "cannot keep the load test in tracking");
            summary.error = format!("not kept in tracking: {e}");
        }
    }
    test.progress.send_replace(summary);
}
