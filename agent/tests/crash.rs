//! `kill -9` of the `readmit-agent` process in the middle of a preprocessing DAG: after a
//! restart on the same files the run is failed (never left running), CleanData is the old one
//! (here: none), an append retried with the same request id appends nothing, and the DAG runs
//! through. Killed again inside `save_processed`, CleanData is one whole version.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use readmit_proto::{Client, v1};

/// The agent on ports it picks itself; returns it and its gRPC URL, read from its log.
fn start(dir: &Path) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_readmit-agent"));
    for (key, _) in std::env::vars() {
        if key.starts_with("READMIT_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(["--roles", "etl", "--log-format", "json"])
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == "agent serving"
            {
                let _ = tx.send(v["fields"]["grpc"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the agent never logged its address");
    (child, format!("http://{addr}"))
}

fn clean_rows(tables: &[v1::TableCount]) -> Vec<(String, i64)> {
    tables
        .iter()
        .filter(|t| t.database == "clean")
        .map(|t| (t.table.clone(), t.rows))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_no_running_run_and_old_clean_data() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    // The preprocessing steps with a pause before the save, where the agent is killed.
    std::fs::write(
        dags.join("slow_preprocess.toml"),
        r#"
name = "slow_preprocess"
[[tasks]]
id = "load_splits"
kind = "load_splits"
[[tasks]]
id = "clean_splits"
kind = "clean_splits"
depends_on = ["load_splits"]
[[tasks]]
id = "select_features"
kind = "select_features"
depends_on = ["clean_splits"]
[[tasks]]
id = "pause"
kind = "shell"
depends_on = ["select_features"]
params = { command = "sleep 60" }
[[tasks]]
id = "save_processed"
kind = "save_processed"
depends_on = ["pause"]
"#,
    )
    .unwrap();

    let (mut agent, url) = start(dir.path());
    let client = Client::connect(&url, None).await.unwrap();
    let mut etl = client.etl();
    let synth = etl
        .synthesize_dataset(v1::SynthesizeDatasetRequest {
            rows: 4000,
            seed: 3,
            path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    etl.ingest(v1::IngestRequest {
        path: synth.path.clone(),
        split: v1::SplitKind::Original as i32,
        replace: false,
    })
    .await
    .unwrap();
    let append = |id: &str| v1::AppendBatchRequest {
        batch_size: 1000,
        request_id: id.into(),
    };
    let first = etl
        .append_batch(append("batch-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.train_rows, 1000);

    let run = support::trigger(&client, "slow_preprocess", &[]).await;
    let running = support::wait_for_run(
        &client,
        &run.run_id,
        |r| {
            r.tasks
                .iter()
                .any(|t| t.task_id == "pause" && t.state == v1::RunState::Running as i32)
        },
        120,
    )
    .await;
    assert_eq!(running.state, v1::RunState::Running as i32);

    // kill -9: no shutdown code runs.
    agent.kill().unwrap();
    agent.wait().unwrap();

    let (mut agent, url) = start(dir.path());
    let client = Client::connect(&url, None).await.unwrap();
    let mut etl = client.etl();
    let after = support::dag_run(&client, &run.run_id).await;
    assert_eq!(after.state, v1::RunState::Failed as i32, "{after:#?}");
    assert!(after.error.contains("agent stopped"), "{}", after.error);
    let status = etl
        .get_data_status(v1::GetDataStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        clean_rows(&status.tables),
        [],
        "CleanData must still be the old (empty) one"
    );
    assert_eq!(status.train_rows, 1000);

    // The client never saw the reply to batch-1 (say): retrying it appends nothing.
    let retried = etl
        .append_batch(append("batch-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(retried.replayed);
    assert_eq!(retried.train_rows, 1000);

    let rerun = support::trigger(&client, "preprocess_incremental", &[]).await;
    let done = support::wait_for_run(&client, &rerun.run_id, support::run_finished, 120).await;
    assert_eq!(done.state, v1::RunState::Succeeded as i32, "{done:#?}");
    let status = etl
        .get_data_status(v1::GetDataStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let clean = clean_rows(&status.tables);
    assert_eq!(clean[0], ("diabetes_train_processed".to_owned(), 1000));
    assert_eq!(clean.len(), 3);

    // A kill during the save itself (here it lands mid-save: the old version survives; on a
    // faster machine it may land just after): CleanData is the old version or the new one,
    // each whole, never a mix.
    etl.append_batch(append("batch-2")).await.unwrap();
    let run = support::trigger(&client, "preprocess_incremental", &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let run = support::dag_run(&client, &run.run_id).await;
        let saving = run
            .tasks
            .iter()
            .any(|t| t.task_id == "save_processed" && t.state == v1::RunState::Running as i32);
        if saving || support::run_finished(&run) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run:#?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    agent.kill().unwrap();
    agent.wait().unwrap();
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", dir.path().join("clean.db").display());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let version_rows: i64 = sqlx::query_scalar("SELECT train_rows FROM clean_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let table_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM diabetes_train_processed")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!([1000, 2000].contains(&version_rows), "{version_rows}");
    assert_eq!(
        table_rows, version_rows,
        "the version and its rows disagree"
    );
}
