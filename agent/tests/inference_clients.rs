//! Standard inference clients from Python against a real agent, unchanged:
//! `tests/inference/clients.py` drives tritonclient over HTTP (binary and JSON tensors) and
//! gRPC, and MLflow's scoring protocol over plain HTTP, comparing every probability with the
//! bundle's own.

mod support;

use std::process::Command;

use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use readmit_ml::bundle::LoadedBundle;
use readmit_proto::Client;
use support::bundles::{self, Kind, MODEL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_and_mlflow_scoring_clients_work_unchanged() {
    let Some(python) = support::python_with(&[
        "tritonclient.http",
        "tritonclient.grpc",
        "requests",
        "numpy",
    ]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings::loopback(dir.path(), &[Role::Tracking, Role::Inference])
        .validate()
        .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    let bundle = dir.path().join("bundle");
    bundles::write(&bundle, Kind::Boosting(40));
    let version = bundles::publish(&client, &bundle).await.version;
    bundles::promote(&client, version).await;
    bundles::wait_served(&client, version, 30).await;

    let records = bundles::records(16, 31);
    let expected = LoadedBundle::load(&bundle)
        .unwrap()
        .predict_records(&records)
        .unwrap();
    let cases = dir.path().join("cases.json");
    std::fs::write(
        &cases,
        serde_json::json!({
            "records": records.iter().map(bundles::json).collect::<Vec<_>>(),
            "expected": expected,
        })
        .to_string(),
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inference/clients.py");
    let (http, grpc) = (agent.http_addr.to_string(), agent.grpc_addr.to_string());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &http, &grpc, MODEL])
            .arg(&cases)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("clients complete"),
        "the clients failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    agent.stop().await.unwrap();
}
