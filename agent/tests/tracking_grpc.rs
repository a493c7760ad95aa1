//! The Tracking gRPC service end to end through `proto::Client`, on SQLite, MariaDB and
//! PostgreSQL.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use readmit_proto::{Client, v1};
use support::Backend;
use tonic::Code;

async fn start(backend: Backend) -> Option<(RunningAgent, support::TestDb, tempfile::TempDir)> {
    let db = support::fresh(backend).await?;
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings {
        tracking_db: db.url.clone(),
        ..RawSettings::loopback(dir.path(), &[readmit_agent::Role::Tracking])
    }
    .validate()
    .unwrap();
    Some((RunningAgent::start(settings).await.unwrap(), db, dir))
}

fn metric(key: &str, value: f64, step: i64) -> v1::Metric {
    v1::Metric {
        key: key.into(),
        value,
        timestamp_ms: 1_000 + step,
        step,
    }
}

async fn suite(backend: Backend) {
    let Some((agent, db, _dir)) = start(backend).await else {
        return;
    };
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    let mut t = client.tracking();

    let exp = t
        .create_experiment(v1::CreateExperimentRequest {
            name: "grpc".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let dup = t
        .create_experiment(v1::CreateExperimentRequest {
            name: "grpc".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);

    let mut run_ids = Vec::new();
    for (name, c, auc) in [("LR_C_0.01", "0.01", 0.641), ("LR_C_1", "1", 0.639)] {
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
            metrics: vec![
                metric("val_roc_auc", auc, 0),
                metric("loss", 0.5, 0),
                metric("loss", 0.4, 1),
            ],
            params: vec![
                v1::Param {
                    key: "C".into(),
                    value: c.into(),
                },
                v1::Param {
                    key: "penalty".into(),
                    value: "l2".into(),
                },
            ],
            tags: HashMap::from([("family".to_owned(), "lr".to_owned())]),
        })
        .await
        .unwrap();
        run_ids.push(id);
    }

    let found = t
        .search_runs(v1::SearchRunsRequest {
            experiment_ids: vec![exp.experiment_id.clone()],
            filter: "params.penalty = 'l2'".into(),
            order_by: vec!["metrics.val_roc_auc DESC".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = found
        .runs
        .iter()
        .map(|r| r.info.as_ref().unwrap().run_name.clone())
        .collect();
    assert_eq!(names, ["LR_C_0.01", "LR_C_1"]);
    let bad = t
        .search_runs(v1::SearchRunsRequest {
            experiment_ids: vec![exp.experiment_id.clone()],
            filter: "metrics.x > 'y'".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("filter"), "{}", bad.message());

    let history = t
        .get_metric_history(v1::GetMetricHistoryRequest {
            run_id: run_ids[0].clone(),
            metric_key: "loss".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        history.metrics.iter().map(|m| m.step).collect::<Vec<_>>(),
        [0, 1]
    );

    let cmp = t
        .compare_runs(v1::CompareRunsRequest {
            run_ids: run_ids.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let c = cmp.params.iter().find(|p| p.key == "C").unwrap();
    assert_eq!(
        (c.values.clone(), c.differs),
        (vec!["0.01".to_owned(), "1".to_owned()], true)
    );
    let penalty = cmp.params.iter().find(|p| p.key == "penalty").unwrap();
    assert!(!penalty.differs);
    assert!(
        cmp.metrics
            .iter()
            .any(|m| m.key == "val_roc_auc" && m.differs)
    );

    // Artifacts stream in and out in chunks.
    let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    let mut messages = vec![v1::ArtifactChunk {
        chunk: Some(v1::artifact_chunk::Chunk::Header(v1::ArtifactHeader {
            run_id: run_ids[0].clone(),
            path: "model/model.onnx".into(),
            size: data.len() as i64,
        })),
    }];
    messages.extend(data.chunks(1 << 20).map(|c| v1::ArtifactChunk {
        chunk: Some(v1::artifact_chunk::Chunk::Data(c.to_vec())),
    }));
    let uploaded = t
        .upload_artifact(futures_util::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(uploaded.size, data.len() as i64);
    let mut down = t
        .download_artifact(v1::DownloadArtifactRequest {
            run_id: run_ids[0].clone(),
            path: "model/model.onnx".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(msg) = down.next().await {
        if let Some(v1::artifact_chunk::Chunk::Data(d)) = msg.unwrap().chunk {
            got.extend(d);
        }
    }
    assert!(got == data, "byte-equal download");
    let listed = t
        .list_artifacts(v1::ListArtifactsRequest {
            run_id: run_ids[0].clone(),
            path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.is_dir))
            .collect::<Vec<_>>(),
        [("model", true)]
    );
    for evil in ["../../etc/passwd", "/etc/passwd", "a/../../b", "a\\..\\b"] {
        let err = t
            .download_artifact(v1::DownloadArtifactRequest {
                run_id: run_ids[0].clone(),
                path: evil.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{evil}: {}",
            err.message()
        );
    }
    let missing = t
        .get_run(v1::RunRef {
            run_id: "f".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // The registry, and a watcher that sees what happens to it.
    let name = "best_diabetes_readmission_model".to_owned();
    t.create_registered_model(v1::CreateRegisteredModelRequest {
        name: name.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let v1_ = t
        .create_model_version(v1::CreateModelVersionRequest {
            name: name.clone(),
            source: format!("runs:/{}/model", run_ids[1]),
            run_id: run_ids[1].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    t.transition_model_version_stage(v1::TransitionStageRequest {
        name: name.clone(),
        version: v1_.version,
        stage: v1::Stage::Production as i32,
        archive_existing: true,
    })
    .await
    .unwrap();
    let mut watch = t
        .watch_registry(v1::WatchRegistryRequest {
            name: name.clone(),
            include_current: true,
        })
        .await
        .unwrap()
        .into_inner();
    let current = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(current.kind, v1::RegistryEventKind::Current as i32);
    assert_eq!(
        current.version.as_ref().unwrap().stage,
        v1::Stage::Production as i32
    );

    let v2 = t
        .create_model_version(v1::CreateModelVersionRequest {
            name: name.clone(),
            source: format!("runs:/{}/model", run_ids[0]),
            run_id: run_ids[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let moved = t
        .transition_model_version_stage(v1::TransitionStageRequest {
            name: name.clone(),
            version: v2.version,
            stage: v1::Stage::Production as i32,
            archive_existing: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        moved.archived.iter().map(|v| v.version).collect::<Vec<_>>(),
        [v1_.version]
    );

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a registry event")
            .unwrap()
            .unwrap();
        seen.push((e.kind, e.version.unwrap().version));
    }
    assert_eq!(
        seen,
        [
            (v1::RegistryEventKind::VersionCreated as i32, 2),
            (v1::RegistryEventKind::StageChanged as i32, 1),
            (v1::RegistryEventKind::StageChanged as i32, 2),
        ]
    );

    t.set_model_alias(v1::SetModelAliasRequest {
        name: name.clone(),
        alias: "champion".into(),
        version: 2,
    })
    .await
    .unwrap();
    let by_alias = t
        .get_model_version_by_alias(v1::GetModelVersionByAliasRequest {
            name: name.clone(),
            alias: "champion".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_alias.version, 2);
    let versions = t
        .list_model_versions(v1::ListModelVersionsRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.versions.len(), 2);

    drop(watch);
    agent.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tracking_over_grpc_on_sqlite() {
    suite(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tracking_over_grpc_on_mariadb() {
    suite(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tracking_over_grpc_on_postgres() {
    suite(Backend::Postgres).await;
}
