//! Task kinds: what a DAG's tasks can do. Each kind is code in the agent; DAG files only name
//! kinds and give them parameters.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::logger::Logger;

/// What one attempt of one task gets to work with.
pub struct TaskContext {
    pub run_id: String,
    pub dag: String,
    pub task_id: String,
    pub attempt: u32,
    /// The DAG's declared parameters (the trigger's values, else their defaults), then the
    /// task's own, which win.
    pub params: BTreeMap<String, String>,
    /// The task's own parameters from its DAG file alone: what no trigger can set.
    pub fixed: BTreeMap<String, String>,
    /// The agent's environment variables the DAG file lets its shell tasks see.
    pub env: Vec<String>,
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

/// Where a shell task looks for programs when the agent itself has no PATH.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs the task's own `command` with `sh -c` in the run's directory, its output as log lines.
/// A timeout or a cancel kills it. It starts from an empty environment: PATH, HOME, the run's
/// facts (`READMIT_RUN_ID`, `READMIT_RUN_DIR`, ...), its parameters as `READMIT_PARAM_<KEY>`
/// and the variables its DAG file names in `env`, so the agent's token and cloud keys stay
/// out of reach. Parameters are never spliced into the command line.
struct Shell;

impl TaskKind for Shell {
    fn name(&self) -> &'static str {
        "shell"
    }

    fn run(&self, ctx: TaskContext) -> TaskFuture {
        Box::pin(async move {
            let command = ctx
                .fixed
                .get("command")
                .filter(|c| !c.trim().is_empty())
                .ok_or("parameter \"command\" is required in the task's own params")?
                .to_owned();
            tokio::fs::create_dir_all(&ctx.dir)
                .await
                .map_err(|e| format!("run directory: {e}"))?;
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c")
                .arg(&command)
                .current_dir(&ctx.dir)
                .env_clear()
                .env(
                    "PATH",
                    std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
                )
                .env(
                    "HOME",
                    std::env::var_os("HOME").unwrap_or_else(|| ctx.dir.clone().into()),
                )
                .env("READMIT_RUN_DIR", &ctx.dir)
                .env("READMIT_RUN_ID", &ctx.run_id)
                .env("READMIT_DAG", &ctx.dag)
                .env("READMIT_TASK_ID", &ctx.task_id)
                .env("READMIT_ATTEMPT", ctx.attempt.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            for name in &ctx.env {
                if let Some(value) = std::env::var_os(name) {
                    cmd.env(name, value);
                }
            }
            for (k, v) in ctx.params.iter().filter(|(k, _)| *k != "command") {
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
