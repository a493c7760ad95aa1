//! The DAG runner on SQLite, MariaDB and PostgreSQL: dependencies, hand-offs through the run
//! directory, retries, timeouts, cancel, limits, schedules and recovery after a crash.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use readmit_agent::db::Db;
use readmit_agent::etl::dag::{self, DagDef};
use readmit_agent::etl::metrics::EtlMetrics;
use readmit_agent::etl::runner::Runner;
use readmit_agent::etl::runs::{EtlError, RunEventKind, RunState};
use readmit_agent::etl::store::EtlStore;
use readmit_agent::etl::tasks::TaskKinds;
use support::Backend;
use tokio_util::sync::CancellationToken;

fn dag(text: &str) -> DagDef {
    dag::parse("test.toml", text, &TaskKinds::builtin().names()).unwrap()
}

async fn start_runner(
    url: &str,
    dags: Vec<DagDef>,
    runs_dir: &std::path::Path,
) -> (Runner, CancellationToken) {
    let store = EtlStore::open(Db::connect(url).await.unwrap())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let metrics = EtlMetrics::new(&prometheus::Registry::new()).unwrap();
    let runner = Runner::start(
        store,
        dags,
        Vec::new(),
        TaskKinds::builtin(),
        runs_dir.to_owned(),
        shutdown.clone(),
        metrics,
    )
    .await
    .unwrap();
    (runner, shutdown)
}

fn task_states(run: &readmit_agent::etl::runs::DagRun) -> Vec<(String, RunState, u32)> {
    run.tasks
        .iter()
        .map(|t| (t.task_id.clone(), t.state, t.attempt))
        .collect()
}

async fn suite(backend: Backend) {
    let Some(db) = support::fresh(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dags = vec![
        dag(r#"
name = "handoff"
[[tasks]]
id = "produce"
kind = "shell"
params = { command = "echo rows=15000 > batch.txt && echo produced" }
[[tasks]]
id = "consume"
kind = "shell"
depends_on = ["produce"]
params = { command = "cat batch.txt" }
[[tasks]]
id = "join"
kind = "empty"
depends_on = ["produce", "consume"]
"#),
        dag(r#"
name = "flaky"
[[tasks]]
id = "once_fails"
kind = "shell"
retries = 2
retry_delay = "20ms"
params = { command = "test -f marker || { touch marker; echo first attempt fails >&2; exit 3; }" }
"#),
        dag(r#"
name = "broken"
[[tasks]]
id = "fails"
kind = "shell"
params = { command = "exit 1" }
[[tasks]]
id = "after"
kind = "empty"
depends_on = ["fails"]
"#),
        dag(r#"
name = "slow"
[[tasks]]
id = "sleeps"
kind = "shell"
timeout = "300ms"
params = { command = "sleep 5" }
"#),
        dag(r#"
name = "long"
[[tasks]]
id = "sleeps"
kind = "shell"
params = { command = "echo $$ > pid; exec sleep 30" }
[[tasks]]
id = "never"
kind = "empty"
depends_on = ["sleeps"]
"#),
        dag(r#"
name = "ticking"
schedule = "* * * * * *"
paused = true
[[tasks]]
id = "tick"
kind = "empty"
"#),
    ];
    let (runner, shutdown) = start_runner(&db.url, dags.clone(), dir.path()).await;
    let mut events = runner.subscribe();

    // Dependencies in order, data handed over through the run directory.
    let run = runner.trigger("handoff", BTreeMap::new()).await.unwrap();
    let run = runner.wait(&run.run_id).await.unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert!(
        task_states(&run)
            .iter()
            .all(|(_, s, a)| *s == RunState::Succeeded && *a == 1)
    );
    let logs = runner
        .store()
        .logs(&run.run_id, Some("consume"), 0)
        .await
        .unwrap();
    assert!(logs.iter().any(|l| l.message == "rows=15000"), "{logs:?}");
    assert!(
        dir.path().join(&run.run_id).join("batch.txt").is_file(),
        "hand-off files are durable"
    );

    // A retry picks up where the first attempt left its marker.
    let run = runner.trigger("flaky", BTreeMap::new()).await.unwrap();
    let run = runner.wait(&run.run_id).await.unwrap();
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(
        task_states(&run),
        [("once_fails".to_owned(), RunState::Succeeded, 2)]
    );
    let logs = runner.store().logs(&run.run_id, None, 0).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.level == "WARN" && l.message == "first attempt fails")
    );
    assert!(logs.iter().any(|l| l.message.starts_with("retrying in")));

    // A failure stops what depends on it and names the task.
    let run = runner
        .wait(
            &runner
                .trigger("broken", BTreeMap::new())
                .await
                .unwrap()
                .run_id,
        )
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Failed);
    assert!(
        run.error.as_deref().unwrap().contains("task fails"),
        "{:?}",
        run.error
    );
    assert_eq!(task_states(&run)[1].1, RunState::UpstreamFailed);

    // A timeout ends the attempt.
    let run = runner
        .wait(
            &runner
                .trigger("slow", BTreeMap::new())
                .await
                .unwrap()
                .run_id,
        )
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Failed);
    assert!(
        run.tasks[0].error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        run.tasks[0]
    );

    // Cancel kills the running command and skips the rest; one active run per DAG.
    let run = runner.trigger("long", BTreeMap::new()).await.unwrap();
    let pid_file = dir.path().join(&run.run_id).join("pid");
    for _ in 0..200 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let second = runner.trigger("long", BTreeMap::new()).await.unwrap_err();
    assert!(matches!(second, EtlError::Conflict(_)), "{second}");
    let cancelled = tokio::time::timeout(Duration::from_secs(10), runner.cancel(&run.run_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    assert_eq!(
        task_states(&cancelled)
            .iter()
            .map(|(_, s, _)| *s)
            .collect::<Vec<_>>(),
        [RunState::Cancelled, RunState::Skipped]
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc = std::path::Path::new("/proc").join(pid.trim());
    for _ in 0..100 {
        if !proc.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!proc.exists(), "the cancelled command was killed");
    assert!(
        runner.cancel(&run.run_id).await.is_err(),
        "an ended run cannot be cancelled"
    );

    // Watchers saw the first run's states.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let RunEventKind::State { task_id, state, .. } = e.kind
            && task_id.is_empty()
        {
            seen.push(state);
        }
    }
    assert_eq!(
        &seen[..3],
        [RunState::Queued, RunState::Running, RunState::Succeeded]
    );

    // A paused scheduled DAG does not run; unpaused, it runs on its schedule.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        runner
            .store()
            .list_runs(Some("ticking"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    runner.set_paused("ticking", false).await.unwrap();
    let mut scheduled = Vec::new();
    for _ in 0..60 {
        scheduled = runner.store().list_runs(Some("ticking"), 10).await.unwrap();
        if !scheduled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        scheduled.first().is_some_and(|r| r.trigger == "schedule"),
        "{scheduled:?}"
    );
    runner.set_paused("ticking", true).await.unwrap();
    assert!(matches!(
        runner.trigger("nope", BTreeMap::new()).await,
        Err(EtlError::NotFound { .. })
    ));

    // A crash mid-run: the next agent marks the run failed instead of leaving it running.
    let store = runner.store().clone();
    let owner = runner.owner().to_owned();
    let stuck = store
        .create_run(&dags[4], "manual", &BTreeMap::new(), &owner)
        .await
        .unwrap();
    // A run of another agent sharing the database, alive: not this agent's to fail.
    let elsewhere = store
        .create_run(&dags[2], "manual", &BTreeMap::new(), "agent-elsewhere")
        .await
        .unwrap();
    store
        .set_run_state(&stuck.run_id, RunState::Running, None)
        .await
        .unwrap();
    store
        .set_task_state(&stuck.run_id, "sleeps", RunState::Running, 1, None)
        .await
        .unwrap();
    shutdown.cancel();
    let (restarted, shutdown) = start_runner(&db.url, dags, dir.path()).await;
    let after = restarted.store().get_run(&stuck.run_id).await.unwrap();
    assert_eq!(after.state, RunState::Failed);
    assert!(after.error.as_deref().unwrap().contains("agent stopped"));
    assert_eq!(
        task_states(&after)
            .iter()
            .map(|(_, s, _)| *s)
            .collect::<Vec<_>>(),
        [RunState::Failed, RunState::UpstreamFailed]
    );
    assert_eq!(restarted.owner(), owner, "the agent id survives a restart");
    let store = restarted.store();
    let alive = store.get_run(&elsewhere.run_id).await.unwrap();
    assert_eq!(alive.state, RunState::Queued, "{alive:?}");
    // Once that agent's heartbeats stop for longer than the limit, its run is failed too.
    let now = readmit_agent::now_ms();
    store.heartbeat("agent-elsewhere", now).await.unwrap();
    assert!(
        store
            .fail_interrupted("gone", None, now - 30_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.fail_interrupted("gone", None, now + 1).await.unwrap(),
        std::slice::from_ref(&elsewhere.run_id)
    );
    let gone = store.get_run(&elsewhere.run_id).await.unwrap();
    assert_eq!(
        (gone.state, gone.error.as_deref()),
        (RunState::Failed, Some("gone"))
    );

    // One scheduler per database: the lease goes to one holder until it expires or is given up.
    let t = readmit_agent::now_ms() + 60_000;
    assert!(store.take_lease("agent-a", t, 10_000).await.unwrap());
    assert!(!store.take_lease("agent-b", t + 1, 10_000).await.unwrap());
    assert!(store.take_lease("agent-a", t + 2, 10_000).await.unwrap());
    assert!(
        !store
            .take_lease("agent-b", t + 9_000, 10_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_lease("agent-b", t + 10_003, 10_000)
            .await
            .unwrap()
    );
    store.release_lease("agent-b").await.unwrap();
    assert!(
        store
            .take_lease("agent-a", t + 10_004, 10_000)
            .await
            .unwrap()
    );
    shutdown.cancel();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_on_sqlite() {
    suite(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_on_mariadb() {
    suite(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_on_postgres() {
    suite(Backend::Postgres).await;
}
