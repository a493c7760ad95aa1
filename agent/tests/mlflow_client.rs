//! The real `mlflow` Python client (3.x) against a real agent: `tests/mlflow/scenario.py`.

mod support;

use std::process::Command;

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;

#[tokio::test(flavor = "multi_thread")]
async fn the_mlflow_client_works_unchanged() {
    let Some(python) = support::python_with(&["mlflow", "onnx", "onnxruntime"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings::loopback(dir.path(), &[readmit_agent::Role::Tracking])
        .validate()
        .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let url = agent.http_url();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mlflow/scenario.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(url)
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("scenario complete"),
        "the scenario failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    agent.stop().await.unwrap();
}
