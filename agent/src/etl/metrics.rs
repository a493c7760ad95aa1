//! The DAG runner's Prometheus metrics: runs and task attempts by outcome, and how long they
//! took.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

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

/// RawData and CleanData in numbers: rows written by ingests and appends, and every table's
/// size as of the last change.
#[derive(Clone)]
pub struct DataMetrics {
    rows_written: IntCounterVec,
    table_rows: IntGaugeVec,
}

impl DataMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            rows_written: IntCounterVec::new(
                Opts::new(
                    "readmit_etl_rows_ingested_total",
                    "Rows written to RawData by ingests and batch appends, by table.",
                ),
                &["table"],
            )?,
            table_rows: IntGaugeVec::new(
                Opts::new(
                    "readmit_etl_table_rows",
                    "Rows in each RawData and CleanData table, as of the last change.",
                ),
                &["database", "table"],
            )?,
        };
        registry.register(Box::new(m.rows_written.clone()))?;
        registry.register(Box::new(m.table_rows.clone()))?;
        Ok(m)
    }

    pub fn rows_written(&self, table: &str, rows: i64) {
        self.rows_written
            .with_label_values(&[table])
            .inc_by(u64::try_from(rows).unwrap_or_default());
    }

    pub fn set_table_rows(&self, database: &str, table: &str, rows: i64) {
        self.table_rows
            .with_label_values(&[database, table])
            .set(rows);
    }

    /// The last known size of a table, if it was ever measured.
    pub fn table_rows(&self, database: &str, table: &str) -> Option<i64> {
        self.table_rows
            .get_metric_with_label_values(&[database, table])
            .ok()
            .map(|g| g.get())
    }
}
