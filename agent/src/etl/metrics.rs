//! The DAG runner's Prometheus metrics: runs and task attempts by outcome, and how long they
//! took.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Seconds, from a quick shell task to a long training run.
const DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone)]
pub struct EtlMetrics {
    runs: IntCounterVec,
    run_seconds: HistogramVec,
    attempts: IntCounterVec,
    attempt_seconds: HistogramVec,
    active: IntGauge,
}

impl EtlMetrics {
    /// Metrics registered in `registry`; a runner without a registry (tests) gets its own.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            runs: IntCounterVec::new(
                Opts::new(
                    "readmit_dag_runs_total",
                    "DAG runs that ended, by DAG and final state.",
                ),
                &["dag", "state"],
            )?,
            run_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "readmit_dag_run_duration_seconds",
                    "Time from a DAG run's start to its end.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["dag"],
            )?,
            attempts: IntCounterVec::new(
                Opts::new(
                    "readmit_task_attempts_total",
                    "Task attempts that ended, by DAG, task and outcome.",
                ),
                &["dag", "task", "state"],
            )?,
            attempt_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "readmit_task_attempt_duration_seconds",
                    "Time one task attempt took.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["dag", "task"],
            )?,
            active: IntGauge::new(
                "readmit_dag_runs_active",
                "DAG runs queued or running in this agent.",
            )?,
        };
        registry.register(Box::new(m.runs.clone()))?;
        registry.register(Box::new(m.run_seconds.clone()))?;
        registry.register(Box::new(m.attempts.clone()))?;
        registry.register(Box::new(m.attempt_seconds.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        Ok(m)
    }

    pub fn run_started(&self) {
        self.active.inc();
    }

    pub fn run_ended(&self, dag: &str, state: &str, seconds: f64) {
        self.active.dec();
        self.runs.with_label_values(&[dag, state]).inc();
        self.run_seconds.with_label_values(&[dag]).observe(seconds);
    }

    pub fn attempt_ended(&self, dag: &str, task: &str, state: &str, seconds: f64) {
        self.attempts.with_label_values(&[dag, task, state]).inc();
        self.attempt_seconds
            .with_label_values(&[dag, task])
            .observe(seconds);
    }
}
