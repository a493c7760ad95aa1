//! A task's log: each line stored with its run, task and attempt, and sent to the run's
//! watchers. Apart from the runner, so task kinds log without importing it.

use tokio::sync::broadcast;

use super::runs::{RunEvent, RunEventKind};
use super::store::EtlStore;

/// Writes a task's log lines to the store and to watchers.
#[derive(Clone)]
pub struct Logger {
    store: EtlStore,
    events: broadcast::Sender<RunEvent>,
    run_id: String,
    dag: String,
}

impl Logger {
    pub fn new(
        store: EtlStore,
        events: broadcast::Sender<RunEvent>,
        run_id: &str,
        dag: &str,
    ) -> Self {
        Self {
            store,
            events,
            run_id: run_id.to_owned(),
            dag: dag.to_owned(),
        }
    }

    pub async fn log(&self, task_id: &str, attempt: u32, level: &str, message: &str) {
        match self
            .store
            .append_log(&self.run_id, task_id, attempt, level, message)
            .await
        {
            Ok(line) => {
                let _ = self.events.send(RunEvent {
                    timestamp: line.timestamp,
                    run_id: self.run_id.clone(),
                    dag: self.dag.clone(),
                    kind: RunEventKind::Log(line),
                });
            }
            Err(e) => {
                tracing::warn!(run = %self.run_id, task = task_id, error = %e, "cannot store a log line")
            }
        }
    }
}
