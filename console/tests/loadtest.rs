//! `readmit loadtest` against a real inference agent started in this process, whose role has
//! no model yet: every prediction is answered 503, so an error threshold must fail the CLI
//! (exit 99) while a latency-only threshold holds (exit 0).

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use serde_json::Value;

async fn start() -> RunningAgent {
    let dir = tempfile::tempdir().unwrap().keep();
    let settings = RawSettings::loopback(&dir, &[readmit_agent::Role::Inference])
        .validate()
        .unwrap();
    RunningAgent::start(settings).await.unwrap()
}

fn code(args: &[&str], url: &str) -> (i32, Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_readmit"))
        .env_remove("READMIT_TOKEN")
        .env_remove("READMIT_AGENT")
        .arg("--agent")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn thresholds_set_the_exit_code_and_json_carries_the_summary() {
    let agent = start().await;
    let url = agent.grpc_url();
    let run = |args: Vec<&'static str>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || code(&args, &url))
    };

    let (status, json, stderr) = run(vec![
        "--output",
        "json",
        "loadtest",
        "run",
        "--users",
        "2",
        "--think",
        "10ms..20ms",
        "--duration",
        "2s",
        "--threshold",
        "errors<1%",
    ])
    .await
    .unwrap();
    assert_eq!(status, 99, "{json} {stderr}");
    assert!(json["requests"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["failures"], json["requests"], "{json}");
    assert!(
        json["total"]["errors"]["http_503"].as_u64().unwrap() > 0,
        "{json}"
    );
    assert_eq!(json["passed"], false);
    for key in ["p50_ms", "p95_ms", "p99_ms", "max_ms"] {
        assert!(json[key].is_number(), "{key}: {json}");
    }

    let (status, json, stderr) = run(vec![
        "--output",
        "json",
        "loadtest",
        "run",
        "--rate",
        "50",
        "--duration",
        "2s",
        "--threshold",
        "p99<30s",
    ])
    .await
    .unwrap();
    assert_eq!(status, 0, "{json} {stderr}");
    assert!(json["requests"].as_u64().unwrap() >= 50, "{json}");
    assert!(json["total"]["service"]["p50_ms"].is_number(), "{json}");

    let (status, json, stderr) = run(vec![
        "--output",
        "json",
        "loadtest",
        "capacity",
        "--slo",
        "errors<1%",
        "--max-users",
        "3",
        "--step-duration",
        "1s",
    ])
    .await
    .unwrap();
    assert_eq!(status, 99, "no step held the objective: {json} {stderr}");
    assert_eq!(json["max_users"], 0, "{json}");
    assert!(!json["steps"].as_array().unwrap().is_empty(), "{json}");

    let (status, json, _) = run(vec!["--output", "json", "loadtest", "list"])
        .await
        .unwrap();
    assert_eq!(status, 0);
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    let (status, _, stderr) = run(vec!["loadtest", "run", "--rate", "10", "--users", "2"])
        .await
        .unwrap();
    assert_ne!(status, 0);
    assert!(
        stderr.contains("--users") || stderr.contains("--rate"),
        "{stderr}"
    );
    agent.stop().await.unwrap();
}
