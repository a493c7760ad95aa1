//! Where a DAG run's tasks stand while it runs: which a failed dependency blocks for good,
//! which may start now, and what a cancel leaves. Pure bookkeeping; the runner does the I/O.

use std::collections::HashMap;

use super::dag::{DagDef, TaskDef};
use super::runs::RunState;

/// The states of one run's tasks, moved on as they start and finish.
pub struct Frontier<'a> {
    dag: &'a DagDef,
    states: HashMap<&'a str, RunState>,
}

impl<'a> Frontier<'a> {
    /// Every task queued.
    pub fn new(dag: &'a DagDef) -> Self {
        Self {
            dag,
            states: dag
                .tasks
                .iter()
                .map(|t| (t.id.as_str(), RunState::Queued))
                .collect(),
        }
    }

    fn state(&self, id: &str) -> Option<RunState> {
        self.states.get(id).copied()
    }

    /// Queued tasks that a failed, skipped or cancelled dependency keeps from ever running:
    /// now `upstream_failed`, returned so the runner records them.
    pub fn block(&mut self) -> Vec<&'a str> {
        let blocked: Vec<&'a str> = self
            .dag
            .tasks
            .iter()
            .filter(|t| self.state(&t.id) == Some(RunState::Queued))
            .filter(|t| {
                t.depends_on.iter().any(|d| {
                    matches!(
                        self.state(d),
                        Some(
                            RunState::Failed
                                | RunState::UpstreamFailed
                                | RunState::Skipped
                                | RunState::Cancelled
                        )
                    )
                })
            })
            .map(|t| t.id.as_str())
            .collect();
        for id in &blocked {
            self.states.insert(id, RunState::UpstreamFailed);
        }
        blocked
    }

    /// Queued tasks whose dependencies all succeeded: now running, returned to be started.
    pub fn start(&mut self) -> Vec<&'a TaskDef> {
        let ready: Vec<&'a TaskDef> = self
            .dag
            .tasks
            .iter()
            .filter(|t| self.state(&t.id) == Some(RunState::Queued))
            .filter(|t| {
                t.depends_on
                    .iter()
                    .all(|d| self.state(d) == Some(RunState::Succeeded))
            })
            .collect();
        for task in &ready {
            self.states.insert(&task.id, RunState::Running);
        }
        ready
    }

    /// A started task ended in `state`.
    pub fn finish(&mut self, id: &str, state: RunState) {
        if let Some((key, _)) = self.states.remove_entry(id) {
            self.states.insert(key, state);
        }
    }

    /// What a cancel leaves: running tasks cancelled, queued ones skipped, in DAG order.
    pub fn cancelled(&self) -> Vec<(&'a str, RunState)> {
        self.dag
            .tasks
            .iter()
            .filter_map(|t| match self.state(&t.id) {
                Some(RunState::Running) => Some((t.id.as_str(), RunState::Cancelled)),
                Some(RunState::Queued) => Some((t.id.as_str(), RunState::Skipped)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a → b → d, a → c; e alone. Loaded in dependency order: a, e, b, c, d.
    fn dag() -> DagDef {
        let text = r#"
            name = "f"
            [[tasks]]
            id = "a"
            kind = "empty"
            [[tasks]]
            id = "b"
            kind = "empty"
            depends_on = ["a"]
            [[tasks]]
            id = "c"
            kind = "empty"
            depends_on = ["a"]
            [[tasks]]
            id = "d"
            kind = "empty"
            depends_on = ["b"]
            [[tasks]]
            id = "e"
            kind = "empty"
        "#;
        super::super::dag::parse("f.toml", text, &["empty"]).unwrap()
    }

    fn ids(tasks: &[&TaskDef]) -> Vec<String> {
        tasks.iter().map(|t| t.id.clone()).collect()
    }

    #[test]
    fn tasks_start_when_their_dependencies_succeed_and_failures_block_downstream() {
        let dag = dag();
        let mut f = Frontier::new(&dag);
        assert!(f.block().is_empty());
        assert_eq!(ids(&f.start()), ["a", "e"]);
        assert!(f.start().is_empty(), "running tasks start once");
        f.finish("a", RunState::Succeeded);
        assert_eq!(ids(&f.start()), ["b", "c"]);
        f.finish("b", RunState::Failed);
        assert_eq!(f.block(), ["d"]);
        assert!(f.start().is_empty());
        assert_eq!(
            f.cancelled(),
            [("e", RunState::Cancelled), ("c", RunState::Cancelled)]
        );
    }

    #[test]
    fn a_cancel_skips_what_never_started() {
        let dag = dag();
        let mut f = Frontier::new(&dag);
        f.start();
        assert_eq!(
            f.cancelled(),
            [
                ("a", RunState::Cancelled),
                ("e", RunState::Cancelled),
                ("b", RunState::Skipped),
                ("c", RunState::Skipped),
                ("d", RunState::Skipped),
            ]
        );
    }
}
