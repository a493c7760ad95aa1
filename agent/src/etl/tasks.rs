//! Task kinds: what a DAG's tasks can do. Each kind is code in the agent; DAG files only name
//! kinds and give them parameters.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::runner::Logger;

/// What one attempt of one task gets to work with.
pub struct TaskContext {
    pub run_id: String,
    pub dag: String,
    pub task_id: String,
    pub attempt: u32,
    /// The DAG's parameters, then the task's, then the trigger's, later ones winning.
    pub params: BTreeMap<String, String>,
    /// The run's directory: tasks hand data to each other through durable files here, so a
    /// retried task finds its inputs.
    pub dir: PathBuf,
    pub(super) logger: Logger,
}

impl TaskContext {
    pub async fn info(&self, message: &str) {
        self.logger
            .log(&self.task_id, self.attempt, "INFO", message)
            .await;
    }

    pub async fn warn(&self, message: &str) {
        self.logger
            .log(&self.task_id, self.attempt, "WARN", message)
            .await;
    }

    /// A parameter, or `default` when it is missing or blank.
    pub fn param_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or(default)
    }

    /// A parameter, or an error naming it.
    pub fn param(&self, key: &str) -> Result<&str, String> {
        self.params
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("parameter {key:?} is required"))
    }
}

pub type TaskFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

pub trait TaskKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(&self, ctx: TaskContext) -> TaskFuture;
}

/// The kinds an agent offers, by name.
#[derive(Clone, Default)]
pub struct TaskKinds(HashMap<&'static str, Arc<dyn TaskKind>>);

impl TaskKinds {
    /// The kinds every ETL agent has.
    pub fn builtin() -> Self {
        let mut kinds = Self::default();
        kinds.add(Arc::new(Empty));
        kinds.add(Arc::new(Shell));
        kinds
    }

    pub fn add(&mut self, kind: Arc<dyn TaskKind>) {
        self.0.insert(kind.name(), kind);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn TaskKind>> {
        self.0.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.0.keys().copied().collect();
        names.sort();
        names
    }
}

/// Does nothing: joins branches, as Airflow's EmptyOperator does.
struct Empty;

impl TaskKind for Empty {
    fn name(&self) -> &'static str {
        "empty"
    }

    fn run(&self, _ctx: TaskContext) -> TaskFuture {
        Box::pin(async { Ok(()) })
    }
}

/// Runs `command` with `sh -c` in the run's directory, its output as log lines; parameters
/// arrive as `READMIT_PARAM_<KEY>`. A timeout or a cancel kills it.
struct Shell;

impl TaskKind for Shell {
    fn name(&self) -> &'static str {
        "shell"
    }

    fn run(&self, ctx: TaskContext) -> TaskFuture {
        Box::pin(async move {
            let command = ctx.param("command")?.to_owned();
            tokio::fs::create_dir_all(&ctx.dir)
                .await
                .map_err(|e| format!("run directory: {e}"))?;
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c")
                .arg(&command)
                .current_dir(&ctx.dir)
                .env("READMIT_RUN_ID", &ctx.run_id)
                .env("READMIT_DAG", &ctx.dag)
                .env("READMIT_TASK_ID", &ctx.task_id)
                .env("READMIT_ATTEMPT", ctx.attempt.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            for (k, v) in &ctx.params {
                cmd.env(format!("READMIT_PARAM_{}", k.to_ascii_uppercase()), v);
            }
            let mut child = cmd.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
            let stdout = child.stdout.take().map(|o| BufReader::new(o).lines());
            let stderr = child.stderr.take().map(|e| BufReader::new(e).lines());
            let out = async {
                if let Some(mut lines) = stdout {
                    while let Ok(Some(line)) = lines.next_line().await {
                        ctx.info(&line).await;
                    }
                }
            };
            let err = async {
                if let Some(mut lines) = stderr {
                    while let Ok(Some(line)) = lines.next_line().await {
                        ctx.warn(&line).await;
                    }
                }
            };
            let (status, (), ()) = tokio::join!(child.wait(), out, err);
            let status = status.map_err(|e| format!("waiting for the command: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("command exited with {status}"))
            }
        })
    }
}
