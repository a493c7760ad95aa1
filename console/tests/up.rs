//! `readmit up --headless` end to end, the real binary on a fresh data dir: the whole main job
//! on synthetic records and on the real UCI file, one JSON summary on stdout checked field by
//! field; run again on the same data dir it ingests nothing, runs nothing and keeps serving
//! until SIGTERM, then stops cleanly.

// `readmit up` is in the console only with the `embedded` feature (the default).
#![cfg(feature = "embedded")]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn real_data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/diabetic_data.csv.gz")
}

fn up(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_readmit"));
    cmd.env_remove("READMIT_AGENT")
        .env_remove("READMIT_TOKEN")
        .env_remove("READMIT_CONFIG")
        .env("READMIT_LOG_LEVEL", "warn")
        .args(["up", "--headless", "--grpc-addr", "127.0.0.1:0"])
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--models",
            "LR_C_0.1",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra);
    cmd
}

/// Runs `up … --once`; its summary and how long it took.
async fn once(data_dir: &Path, extra: &[&str]) -> (Value, Duration) {
    let mut cmd = up(data_dir, extra);
    cmd.arg("--once");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stdout is the summary and nothing else.
    let summary = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (summary, took)
}

/// What every summary holds, whatever the data.
fn check(s: &Value, rows: i64) {
    let tables = s["data"]["tables"].as_array().unwrap();
    let held: i64 = tables
        .iter()
        .filter(|t| t["database"] == "raw")
        .map(|t| t["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(
        held,
        rows + s["data"]["train_rows"].as_i64().unwrap(),
        "RawData holds every row once, and the pool's rows again in train: {s}"
    );
    assert_eq!(s["data"]["pool_remaining"], 0, "{s}");
    let dags: Vec<&str> = s["dag_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dag"].as_str().unwrap())
        .collect();
    assert_eq!(
        dags,
        ["preprocess_incremental", "train_and_register"],
        "{s}"
    );
    for run in s["dag_runs"].as_array().unwrap() {
        assert_eq!(run["state"], "succeeded", "{run}");
        assert!(run["duration_s"].as_f64().unwrap() > 0.0, "{run}");
        assert!(!run["tasks"].as_array().unwrap().is_empty(), "{run}");
    }
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one candidate trained: {s}");
    let auc = runs[0]["metrics"]["val_roc_auc"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&auc), "{auc}");
    let model = &s["production_model"];
    assert_eq!(model["name"], "best_diabetes_readmission_model");
    assert_eq!(model["version"], 1);
    assert_eq!(model["run_id"], runs[0]["run_id"]);
    assert_eq!(s["served"]["loaded"], true);
    assert_eq!(s["served"]["version"], 1);
    let p = &s["example_prediction"];
    assert!(
        (0.0..=1.0).contains(&p["probability"].as_f64().unwrap()),
        "{p}"
    );
    assert_eq!(
        p["readmitted"],
        p["probability"].as_f64().unwrap() >= p["threshold"].as_f64().unwrap()
    );
    assert_eq!(p["contributions"].as_array().unwrap().len(), 5, "{p}");
    assert!(p["record"]["age"].is_string(), "{p}");
    let http = s["endpoints"]["http"].as_str().unwrap();
    assert!(http.starts_with("http://127.0.0.1:"), "{s}");
    assert_eq!(s["endpoints"]["predict"], format!("{http}/predict"));
    assert!(
        s["endpoints"]["grpc"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn synthetic_data_end_to_end_then_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (first, took) = once(&data_dir, &["--synthetic", "--synthetic-rows", "5000"]).await;
    eprintln!("first up --headless --once: {took:?}");
    check(&first, 5000);
    assert_eq!(first["data"]["ingested_now"], true);
    assert!(first["data"]["batches_appended_now"].as_u64().unwrap() >= 1);

    // Again on the same data dir: nothing ingested or run twice, the same model served.
    let mut cmd = up(&data_dir, &["--synthetic", "--synthetic-rows", "5000"]);
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let text = tokio::task::spawn_blocking(move || {
        // The summary is pretty-printed: it ends with a lone closing brace.
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            text.push_str(&line);
            text.push('\n');
            if line == "}" {
                break;
            }
        }
        text
    })
    .await
    .unwrap();
    let opened = started.elapsed();
    eprintln!("second up --headless to its summary: {opened:?}");
    let again: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    check(&again, 5000);
    assert_eq!(again["data"]["ingested_now"], false);
    assert_eq!(again["data"]["batches_appended_now"], 0);
    assert_eq!(again["dag_runs"], first["dag_runs"], "no DAG ran again");
    assert!(
        opened < took,
        "opens faster than the first run: {opened:?} vs {took:?}"
    );

    // It keeps serving: the console predicts through its gRPC endpoint.
    let grpc = again["endpoints"]["grpc"].as_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_readmit"))
            .env_remove("READMIT_TOKEN")
            .args([
                "--agent",
                &grpc,
                "--output",
                "json",
                "predict",
                "--from-test",
                "1",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["version"], 1);
    // The summary's example record, sent back as a file and on stdin, scores the same.
    let record = dir.path().join("record.json");
    std::fs::write(&record, again["example_prediction"]["record"].to_string()).unwrap();
    let grpc = again["endpoints"]["grpc"].as_str().unwrap().to_owned();
    let file_arg = format!("@{}", record.display());
    let (from_file, from_stdin) = tokio::task::spawn_blocking(move || {
        let predict = |arg: &str| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_readmit"));
            cmd.env_remove("READMIT_TOKEN")
                .args(["--agent", &grpc, "--output", "json", "predict", arg]);
            cmd
        };
        let from_file = predict(&file_arg).output().unwrap();
        let mut child = predict("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let text = std::fs::read(&record).unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &text).unwrap();
        (from_file, child.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let expected = &again["example_prediction"]["probability"];
    for out in [from_file, from_stdin] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(&p["probability"], expected, "{p}");
    }

    // SIGTERM stops the stack cleanly.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_data_file_end_to_end() {
    let file = real_data();
    assert!(
        file.is_file(),
        "the UCI file is missing: {}",
        file.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = file.canonicalize().unwrap().display().to_string();
    let (s, took) = once(&dir.path().join("data"), &["--data", &data]).await;
    eprintln!("up --headless --once on the real file: {took:?}");
    check(&s, 101_766);
    let test = s["data"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "test_data")
        .unwrap()["rows"]
        .as_i64()
        .unwrap();
    assert_eq!(test, 20_354, "scikit-learn's test split of 101,766 rows");
    assert_eq!(
        s["data"]["batches_appended_now"], 5,
        "the original's five batches"
    );
}
