//! `readmit dags` against a real agent running the etl role with DAG files on disk.

mod common;

use common::readmit;

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;

#[tokio::test(flavor = "multi_thread")]
async fn dags_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("hello.toml"),
        r#"
name = "hello"
[params]
batch = { type = "int" }
[[tasks]]
id = "write"
kind = "shell"
params = { command = "echo rows=$READMIT_PARAM_BATCH > out.txt" }
[[tasks]]
id = "read"
kind = "shell"
depends_on = ["write"]
params = { command = "cat out.txt" }
"#,
    )
    .unwrap();
    std::fs::write(dags.join("fails.toml"), "name = \"fails\"\n[[tasks]]\nid = \"x\"\nkind = \"shell\"\nparams = { command = \"echo bad >&2; exit 2\" }\n").unwrap();
    std::fs::write(dags.join("sleepy.toml"), "name = \"sleepy\"\n[[tasks]]\nid = \"z\"\nkind = \"shell\"\nparams = { command = \"sleep 30\" }\n").unwrap();
    std::fs::write(
        dags.join("typo.toml"),
        "name = \"typo\"\n[[tasks]]\nid = \"x\"\nkind = \"shel\"\n",
    )
    .unwrap();
    let settings = RawSettings::loopback(dir.path(), &[readmit_agent::Role::Etl])
        .validate()
        .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let url = agent.grpc_url();

    let (ok, out, _) = readmit(&url, &["--output", "json", "dags", "list"]).await;
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    // The built-in DAGs beside the DAG directory's files, by name.
    assert_eq!(
        names,
        [
            "append_batch",
            "fails",
            "hello",
            "ingest_raw",
            "preprocess_incremental",
            "sleepy",
            "train_and_register"
        ]
    );
    assert!(
        list["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("typo.toml")
    );
    assert_eq!(list["errors"][0]["line"], 4);

    let (ok, out, err) = readmit(
        &url,
        &[
            "dags",
            "trigger",
            "hello",
            "--param",
            "batch=15000",
            "--wait",
        ],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("rows=15000") && out.contains("run succeeded"),
        "{out}"
    );

    let (ok, out, _) = readmit(&url, &["dags", "trigger", "fails", "--wait"]).await;
    assert!(!ok, "a failed run fails the command");
    assert!(
        out.contains("failed") && out.contains("exited with"),
        "{out}"
    );

    let (ok, out, _) = readmit(&url, &["--output", "json", "dags", "runs", "hello"]).await;
    assert!(ok);
    let runs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(runs[0]["state"], "succeeded");
    let (ok, out, _) = readmit(&url, &["dags", "logs", &run_id, "--task", "read"]).await;
    assert!(
        ok && out.contains("rows=15000") && !out.contains("write#"),
        "{out}"
    );

    let (ok, out, _) = readmit(&url, &["--output", "json", "dags", "trigger", "sleepy"]).await;
    assert!(ok);
    let sleepy: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sleepy_id = sleepy["run_id"].as_str().unwrap().to_owned();
    let (ok, _, err) = readmit(&url, &["dags", "trigger", "sleepy"]).await;
    assert!(!ok && err.contains("max_active_runs"), "{err}");
    // Following a running run's log ends when the run does (here: cancelled).
    let follow_args = ["dags", "logs", &sleepy_id, "--follow"];
    let follow = readmit(&url, &follow_args);
    let cancel = async {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        readmit(&url, &["--output", "json", "dags", "cancel", &sleepy_id]).await
    };
    let ((followed, _, follow_err), (ok, out, _)) = tokio::join!(follow, cancel);
    assert!(followed, "{follow_err}");
    assert!(ok, "{out}");
    let cancelled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cancelled["state"], "cancelled");

    let metrics = reqwest::get(format!("{}/metrics", agent.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "readmit_dag_runs_total{dag=\"hello\",state=\"succeeded\"} 1",
        "readmit_dag_runs_total{dag=\"fails\",state=\"failed\"} 1",
        "readmit_task_attempts_total{dag=\"hello\",state=\"succeeded\",task=\"read\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from /metrics"
        );
    }

    let (ok, out, _) = readmit(&url, &["dags", "pause", "hello"]).await;
    assert!(ok && out.contains("paused"), "{out}");
    let (ok, out, _) = readmit(&url, &["dags", "unpause", "hello"]).await;
    assert!(ok && out.contains("active"), "{out}");
    let (ok, _, err) = readmit(&url, &["dags", "trigger", "nope"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    let (ok, _, err) = readmit(&url, &["dags", "trigger", "hello", "--param", "novalue"]).await;
    assert!(!ok && err.contains("key=value"), "{err}");
    agent.stop().await.unwrap();
}
