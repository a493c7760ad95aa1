//! `readmit runs` and `readmit models` against a real agent running the tracking role.

use std::process::Command;

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use readmit_proto::{Client, v1};

async fn readmit(url: String, args: &[&str]) -> (bool, serde_json::Value, String) {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_readmit"))
            .env_remove("READMIT_TOKEN")
            .args(["--agent", &url, "--output", "json"])
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_and_models_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings::loopback(dir.path(), &[readmit_agent::Role::Tracking])
        .validate()
        .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let url = agent.grpc_url();
    let client = Client::connect(&url, None).await.unwrap();
    let mut t = client.tracking();
    let exp = t
        .create_experiment(v1::CreateExperimentRequest {
            name: "diabetes_readmission_training".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    for (name, c, auc) in [("LR_C_0.01", "0.01", 0.641), ("RF_depth10", "-", 0.647)] {
        let run = t
            .create_run(v1::CreateRunRequest {
                experiment_id: exp.experiment_id.clone(),
                run_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let id = run.info.unwrap().run_id;
        t.log_batch(v1::LogBatchRequest {
            run_id: id.clone(),
            metrics: vec![v1::Metric {
                key: "val_roc_auc".into(),
                value: auc,
                timestamp_ms: 1,
                step: 0,
            }],
            params: vec![
                v1::Param {
                    key: "C".into(),
                    value: c.into(),
                },
                v1::Param {
                    key: "seed".into(),
                    value: "42".into(),
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap();
        ids.push(id);
    }

    let (ok, runs, err) = readmit(
        url.clone(),
        &["runs", "list", "--order-by", "metrics.val_roc_auc DESC"],
    )
    .await;
    assert!(ok, "{err}");
    let names: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["RF_depth10", "LR_C_0.01"]);
    let (ok, runs, _) = readmit(
        url.clone(),
        &[
            "runs",
            "list",
            "--experiment",
            "diabetes_readmission_training",
            "--filter",
            "params.C = '0.01'",
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let (ok, _, err) = readmit(url.clone(), &["runs", "list", "--experiment", "nope"]).await;
    assert!(
        !ok && err.contains("NotFound") && err.contains("nope"),
        "{err}"
    );

    let (ok, cmp, _) = readmit(url.clone(), &["runs", "compare", &ids[0], &ids[1]]).await;
    assert!(ok);
    let params = cmp["params"].as_array().unwrap();
    let c = params.iter().find(|p| p["key"] == "C").unwrap();
    assert_eq!(c["differs"], true);
    let seed = params.iter().find(|p| p["key"] == "seed").unwrap();
    assert_eq!(seed["differs"], false);

    let name = "best_diabetes_readmission_model";
    t.create_registered_model(v1::CreateRegisteredModelRequest {
        name: name.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for id in &ids {
        t.create_model_version(v1::CreateModelVersionRequest {
            name: name.into(),
            source: format!("runs:/{id}/model"),
            run_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let (ok, _, err) = readmit(url.clone(), &["models", "promote", name, "1"]).await;
    assert!(ok, "{err}");
    let (ok, changed, _) = readmit(url.clone(), &["models", "promote", name, "2"]).await;
    assert!(ok);
    let stages: Vec<(i64, &str)> = changed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["stage"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stages,
        [(2, "Production"), (1, "Archived")],
        "promotion archives the previous version"
    );
    let (ok, _, _) = readmit(url.clone(), &["models", "alias", name, "champion", "2"]).await;
    assert!(ok);
    let (ok, models, _) = readmit(url.clone(), &["models", "list"]).await;
    assert!(ok);
    assert_eq!(models[0]["aliases"][0]["alias"], "champion");
    let (ok, versions, _) = readmit(url.clone(), &["models", "versions", name]).await;
    assert!(ok);
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let (ok, _, _) = readmit(url.clone(), &["models", "archive", name, "2"]).await;
    assert!(ok);
    let (ok, _, err) = readmit(
        url.clone(),
        &["models", "promote", name, "1", "--stage", "Live"],
    )
    .await;
    assert!(!ok && err.contains("--stage"), "{err}");
    agent.stop().await.unwrap();
}
