//! The whole data path in one agent with the ETL and tracking roles: synthetic records
//! ingested, every batch appended, CleanData made, then `train_and_register` logging each
//! candidate as a run over gRPC and promoting the best to Production, archiving the previous
//! version on the next run. MLflow's own client then loads the Production model from the agent
//! and scores like readmit does.

mod support;

use std::path::{Path, PathBuf};

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use readmit_ml::bundle::LoadedBundle;
use readmit_proto::{Client, v1};

async fn run_dag(client: &Client, dag: &str, params: &[(&str, &str)]) -> v1::DagRun {
    let run = support::trigger(client, dag, params).await;
    let run = support::wait_for_run(client, &run.run_id, support::run_finished, 300).await;
    assert_eq!(run.state, v1::RunState::Succeeded as i32, "{dag}: {run:#?}");
    run
}

fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

async fn versions(client: &Client) -> Vec<(i64, i32, String)> {
    let mut v: Vec<(i64, i32, String)> = client
        .tracking()
        .list_model_versions(v1::ListModelVersionsRequest {
            name: "best_diabetes_readmission_model".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions
        .into_iter()
        .map(|v| (v.version, v.stage, v.run_id))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_and_register_logs_runs_and_promotes_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings::loopback(
        dir.path(),
        &[readmit_agent::Role::Etl, readmit_agent::Role::Tracking],
    )
    .validate()
    .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    let mut etl = client.etl();

    let synth = etl
        .synthesize_dataset(v1::SynthesizeDatasetRequest {
            rows: 6000,
            seed: 11,
            path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    run_dag(&client, "ingest_raw", &[("path", &synth.path)]).await;
    run_dag(
        &client,
        "append_batch",
        &[("batch_size", "1000"), ("until_exhausted", "true")],
    )
    .await;
    run_dag(&client, "preprocess_incremental", &[]).await;

    // Training is exercised in a debug build: two quick candidates of different families.
    let first = run_dag(
        &client,
        "train_and_register",
        &[("models", "LR_C_0.1,GBM_300_d5")],
    )
    .await;
    let mut t = client.tracking();
    let experiment = t
        .get_experiment(v1::GetExperimentRequest {
            key: Some(v1::get_experiment_request::Key::Name(
                "diabetes_readmission_training".into(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    let runs = t
        .search_runs(v1::SearchRunsRequest {
            experiment_ids: vec![experiment.experiment_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 2);
    let mut best = (String::new(), f64::MIN);
    for run in &runs {
        let info = run.info.as_ref().unwrap();
        let data = run.data.as_ref().unwrap();
        assert!(["LR_C_0.1", "GBM_300_d5"].contains(&info.run_name.as_str()));
        assert_eq!(info.status, v1::RunStatus::Finished as i32);
        // A run spans its model's fit, export and upload, not only the logging after it.
        assert!(
            info.end_time_ms - info.start_time_ms >= 20,
            "{}: {} ms",
            info.run_name,
            info.end_time_ms - info.start_time_ms
        );
        let metric = |k: &str| {
            data.metrics
                .iter()
                .find(|m| m.key == k)
                .unwrap_or_else(|| panic!("{} has no {k}", info.run_name))
                .value
        };
        for k in [
            "val_accuracy",
            "val_roc_auc",
            "test_accuracy",
            "test_roc_auc",
            "val_pr_auc",
            "val_log_loss",
            "val_brier",
            "val_f1",
        ] {
            assert!(metric(k).is_finite(), "{k}");
        }
        // The synthetic records carry a signal the models must find.
        assert!(metric("val_roc_auc") > 0.6, "{}", metric("val_roc_auc"));
        if metric("val_roc_auc") > best.1 {
            best = (info.run_id.clone(), metric("val_roc_auc"));
        }
        assert!(
            data.params
                .iter()
                .any(|p| p.key == "dataset_sha256" && p.value == synth.sha256)
        );
        let files = t
            .list_artifacts(v1::ListArtifactsRequest {
                run_id: info.run_id.clone(),
                path: "model".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
        assert!(names.contains(&"model/MLmodel"), "{names:?}");
        assert!(names.contains(&"model/model.onnx"), "{names:?}");
    }
    assert_eq!(
        versions(&client).await,
        [(1, v1::Stage::Production as i32, best.0.clone())]
    );

    // A second training run: its best becomes version 2 in Production, version 1 is archived.
    run_dag(&client, "train_and_register", &[("models", "LR_C_0.01")]).await;
    let after = versions(&client).await;
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].1, v1::Stage::Archived as i32);
    assert_eq!(after[1].1, v1::Stage::Production as i32);

    // MLflow's client loads the Production model from the agent and scores as readmit does.
    if let Some(python) = support::python_with(&["mlflow", "onnx", "onnxruntime"]) {
        let production = &after[1].2;
        let run = t
            .get_run(v1::RunRef {
                run_id: production.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let name = run.info.unwrap().run_name;
        let second = t
            .search_runs(v1::SearchRunsRequest {
                experiment_ids: vec![experiment.experiment_id.clone()],
                filter: format!("attributes.run_name = '{name}'"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .runs;
        assert_eq!(second.len(), 1);
        let dag_run = second[0]
            .data
            .as_ref()
            .unwrap()
            .tags
            .get("readmit.dag_run_id")
            .cloned()
            .unwrap();
        assert_ne!(dag_run, first.run_id);
        let bundle_dir = dir
            .path()
            .join("runs")
            .join(&dag_run)
            .join("models")
            .join(&name);
        let bundle = LoadedBundle::load(&bundle_dir).unwrap();
        let frame = readmit_ml::data::read_csv(Path::new(&synth.path)).unwrap();
        let records = readmit_ml::data::records(&frame, 0..200).unwrap();
        let x = bundle.pipeline().transform(records.as_slice()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let features = scratch.path().join("features.f32");
        write_f32(&features, &x.data);
        let expected = scratch.path().join("expected.f32");
        write_f32(&expected, &bundle.predict_records(&records).unwrap());
        let manifest = scratch.path().join("manifest.json");
        let body = serde_json::json!({
            "tolerance": 1e-5,
            "features": features,
            "rows": x.n_rows,
            "cols": x.n_cols,
            "cases": [{
                "name": name,
                "bundle": "models:/best_diabetes_readmission_model/Production",
                "model_uuid": bundle.info().model_uuid,
                "expected": expected,
            }],
        });
        std::fs::write(&manifest, body.to_string()).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ml/tests/bundle_pyfunc.py");
        let out = std::process::Command::new(python)
            .arg(script)
            .arg(&manifest)
            .env("MLFLOW_TRACKING_URI", agent.http_url())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "MLflow could not load the Production model:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    agent.stop().await.unwrap();
}
