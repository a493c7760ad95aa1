//! The tracking store's rules, the same suite on SQLite, MariaDB and PostgreSQL.

mod support;

use readmit_agent::db::Db;
use readmit_agent::tracking::entities::*;
use readmit_agent::tracking::registry::RegistrySearch;
use readmit_agent::tracking::{ExperimentQuery, RunQuery, TrackingError, TrackingStore};
use support::Backend;

fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp,
        step,
    }
}

fn param(key: &str, value: &str) -> Param {
    Param {
        key: key.into(),
        value: value.into(),
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag {
        key: key.into(),
        value: value.into(),
    }
}

async fn suite(backend: Backend) {
    let Some(test_db) = support::fresh(backend).await else {
        return;
    };
    let store = TrackingStore::open(Db::connect(&test_db.url).await.unwrap())
        .await
        .unwrap();
    // Opening again applies nothing twice and keeps one Default experiment.
    let store_again = TrackingStore::open(Db::connect(&test_db.url).await.unwrap())
        .await
        .unwrap();
    let default = store_again.get_experiment(0).await.unwrap();
    assert_eq!(default.name, "Default");
    assert_eq!(default.artifact_location, "mlflow-artifacts:/0");

    experiments(&store).await;
    runs_and_batches(&store).await;
    search(&store).await;
    logged_models_and_registry(&store).await;
    registry_search(&store).await;
    registry_watch(&store).await;
    test_db.cleanup().await;
}

async fn experiments(store: &TrackingStore) {
    let id = store
        .create_experiment("diabetes_readmission_training", None, &[tag("team", "ml")])
        .await
        .unwrap();
    assert!(id > 0);
    let e = store
        .get_experiment_by_name("diabetes_readmission_training")
        .await
        .unwrap();
    assert_eq!(e.experiment_id, id);
    assert_eq!(e.artifact_location, format!("mlflow-artifacts:/{id}"));
    assert_eq!(e.tags, vec![tag("team", "ml")]);
    assert_eq!(e.lifecycle_stage, Lifecycle::Active);

    let dup = store
        .create_experiment("diabetes_readmission_training", None, &[])
        .await;
    assert!(
        matches!(dup, Err(TrackingError::AlreadyExists { .. })),
        "{dup:?}"
    );
    // Names are case-sensitive on every backend, as in MLflow on SQLite and PostgreSQL.
    let upper = store
        .create_experiment("DIABETES_readmission_training", None, &[])
        .await
        .unwrap();
    assert_ne!(upper, id);
    assert!(matches!(
        store.create_experiment("  ", None, &[]).await,
        Err(TrackingError::Invalid { .. })
    ));
    assert!(matches!(
        store.get_experiment(987_654).await,
        Err(TrackingError::NotFound { .. })
    ));

    store.rename_experiment(upper, "renamed").await.unwrap();
    assert_eq!(store.get_experiment(upper).await.unwrap().name, "renamed");
    assert!(matches!(
        store
            .rename_experiment(upper, "diabetes_readmission_training")
            .await,
        Err(TrackingError::AlreadyExists { .. })
    ));
    store
        .set_experiment_tag(upper, &tag("k", "v"))
        .await
        .unwrap();

    let page = |max_results, page_token: Option<&str>| ExperimentQuery {
        max_results,
        page_token: page_token.map(str::to_owned),
        ..ExperimentQuery::default()
    };
    let (all, next) = store.search_experiments(&page(2, None)).await.unwrap();
    assert_eq!(all.len(), 2);
    let token = next.expect("a third experiment is on the next page");
    let (rest, next) = store
        .search_experiments(&page(2, Some(&token)))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert!(next.is_none());
    assert!(
        store
            .search_experiments(&page(2, Some("bogus")))
            .await
            .is_err()
    );

    // MLflow's experiment filters: names, tags, times; ordered as asked.
    let filtered = |filter: &str, order_by: &[&str]| ExperimentQuery {
        filter: filter.to_owned(),
        order_by: order_by.iter().map(|o| (*o).to_owned()).collect(),
        ..ExperimentQuery::default()
    };
    let names = |found: Vec<Experiment>| found.into_iter().map(|e| e.name).collect::<Vec<_>>();
    let (found, _) = store
        .search_experiments(&filtered("name LIKE 'diabetes%'", &[]))
        .await
        .unwrap();
    assert_eq!(names(found), ["diabetes_readmission_training"]);
    let (found, _) = store
        .search_experiments(&filtered("name ILIKE 'DIABETES%'", &[]))
        .await
        .unwrap();
    assert_eq!(names(found), ["diabetes_readmission_training"]);
    let (found, _) = store
        .search_experiments(&filtered("tags.team = 'ml'", &[]))
        .await
        .unwrap();
    assert_eq!(names(found), ["diabetes_readmission_training"]);
    let (found, _) = store
        .search_experiments(&filtered("creation_time > 0", &["name ASC"]))
        .await
        .unwrap();
    assert_eq!(
        names(found),
        ["Default", "diabetes_readmission_training", "renamed"]
    );
    let err = store
        .search_experiments(&filtered("params.C = '1'", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("params"), "{err}");
}

async fn runs_and_batches(store: &TrackingStore) {
    let exp = store.create_experiment("runs", None, &[]).await.unwrap();
    let run = store
        .create_run(NewRun {
            experiment_id: exp,
            run_name: Some("LR_C_0.01".into()),
            user_id: Some("airflow".into()),
            start_time: Some(1_000),
            tags: vec![tag("mlflow.source.name", "dag")],
        })
        .await
        .unwrap();
    let id = run.info.run_id.clone();
    assert_eq!(id.len(), 32);
    assert_eq!(
        run.info.artifact_uri,
        format!("mlflow-artifacts:/{exp}/{id}/artifacts")
    );
    assert_eq!(run.info.status, RunStatus::Running);
    assert!(run.tags.contains(&tag("mlflow.runName", "LR_C_0.01")));

    let batch = Batch {
        metrics: vec![
            metric("val_roc_auc", 0.61, 10, 0),
            metric("val_roc_auc", 0.64, 20, 1),
            metric("val_roc_auc", 0.60, 30, 0), // later in time, but an earlier step
            metric("loss", f64::NAN, 5, 0),
            metric("big", f64::INFINITY, 5, 0),
        ],
        params: vec![param("C", "0.01"), param("penalty", "l2")],
        tags: vec![tag("stage", "a"), tag("stage", "b")],
    };
    store.log_batch(&id, &batch).await.unwrap();
    // Logging the same batch again duplicates nothing and changes nothing.
    store.log_batch(&id, &batch).await.unwrap();

    let got = store.get_run(&id).await.unwrap();
    let latest = |k: &str| got.metrics.iter().find(|m| m.key == k).cloned().unwrap();
    assert_eq!(latest("val_roc_auc").value, 0.64, "the highest step wins");
    assert!(latest("loss").value.is_nan());
    assert_eq!(latest("big").value, f64::MAX);
    assert_eq!(got.params, vec![param("C", "0.01"), param("penalty", "l2")]);
    assert!(
        got.tags.contains(&tag("stage", "b")),
        "the last value of a key wins"
    );

    // A value for an earlier step arriving later does not become the latest.
    let late = Batch {
        metrics: vec![metric("val_roc_auc", 0.5, 40, 0)],
        ..Batch::default()
    };
    store.log_batch(&id, &late).await.unwrap();
    let latest_now = store.get_run(&id).await.unwrap();
    let auc = latest_now
        .metrics
        .iter()
        .find(|m| m.key == "val_roc_auc")
        .unwrap();
    assert_eq!((auc.value, auc.step), (0.64, 1));
    let newer = Batch {
        metrics: vec![metric("loss", 0.25, 5, 0)],
        ..Batch::default()
    };
    store.log_batch(&id, &newer).await.unwrap();
    let loss = store
        .get_run(&id)
        .await
        .unwrap()
        .metrics
        .into_iter()
        .find(|m| m.key == "loss")
        .unwrap();
    assert_eq!(
        loss.value, 0.25,
        "a number beats NaN at the same step and time"
    );

    let history = store.metric_history(&id, "val_roc_auc").await.unwrap();
    let steps: Vec<(i64, f64)> = history.iter().map(|m| (m.step, m.value)).collect();
    assert_eq!(steps, vec![(0, 0.61), (0, 0.60), (0, 0.5), (1, 0.64)]);

    let change = Batch {
        params: vec![param("C", "1")],
        ..Batch::default()
    };
    let err = store.log_batch(&id, &change).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("changing param values is not allowed"),
        "{err}"
    );

    // A failing batch writes nothing: the metric in it is not there afterwards.
    let half_bad = Batch {
        metrics: vec![metric("never", 1.0, 1, 0)],
        params: vec![param("C", "2")],
        ..Batch::default()
    };
    assert!(store.log_batch(&id, &half_bad).await.is_err());
    assert!(store.metric_history(&id, "never").await.unwrap().is_empty());

    let info = store
        .update_run(
            &id,
            RunUpdate {
                status: Some(RunStatus::Finished),
                end_time: Some(2_000),
                run_name: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (info.status, info.end_time),
        (RunStatus::Finished, Some(2_000))
    );
    let info = store
        .update_run(
            &id,
            RunUpdate {
                run_name: Some("renamed".into()),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.run_name, "renamed");
    assert!(
        store
            .get_run(&id)
            .await
            .unwrap()
            .tags
            .contains(&tag("mlflow.runName", "renamed"))
    );

    store.delete_tag(&id, "stage").await.unwrap();
    assert!(matches!(
        store.delete_tag(&id, "stage").await,
        Err(TrackingError::NotFound { .. })
    ));

    store
        .set_run_lifecycle(&id, Lifecycle::Deleted)
        .await
        .unwrap();
    let err = store
        .log_batch(
            &id,
            &Batch {
                tags: vec![tag("x", "y")],
                ..Batch::default()
            },
        )
        .await;
    assert!(
        matches!(err, Err(TrackingError::InvalidState(_))),
        "{err:?}"
    );
    store
        .set_run_lifecycle(&id, Lifecycle::Active)
        .await
        .unwrap();
    assert!(matches!(
        store.get_run("0123").await,
        Err(TrackingError::NotFound { .. })
    ));

    // Deleting the experiment sends its runs to the trash; restoring brings them back.
    store
        .set_experiment_lifecycle(exp, Lifecycle::Deleted)
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&id).await.unwrap().info.lifecycle_stage,
        Lifecycle::Deleted
    );
    assert!(
        store
            .create_run(NewRun {
                experiment_id: exp,
                ..NewRun::default()
            })
            .await
            .is_err()
    );
    store
        .set_experiment_lifecycle(exp, Lifecycle::Active)
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&id).await.unwrap().info.lifecycle_stage,
        Lifecycle::Active
    );
    assert!(
        store
            .set_experiment_lifecycle(0, Lifecycle::Deleted)
            .await
            .is_err()
    );
}

async fn search(store: &TrackingStore) {
    let exp = store.create_experiment("search", None, &[]).await.unwrap();
    let names = [
        "LR_C_0.01",
        "LR_C_0.1",
        "LR_C_1",
        "RF_100",
        "RF_200",
        "RF_depth10",
    ];
    let aucs = [0.641, 0.640, 0.639, 0.645, 0.646, 0.647];
    let mut ids = Vec::new();
    for (i, (name, auc)) in names.iter().zip(aucs).enumerate() {
        let run = store
            .create_run(NewRun {
                experiment_id: exp,
                run_name: Some((*name).into()),
                start_time: Some(1_000 + i as i64),
                ..NewRun::default()
            })
            .await
            .unwrap();
        let family = if name.starts_with("LR") { "lr" } else { "rf" };
        store
            .log_batch(
                &run.info.run_id,
                &Batch {
                    metrics: vec![metric("val_roc_auc", auc, 1, 0)],
                    params: vec![param("family", family)],
                    ..Batch::default()
                },
            )
            .await
            .unwrap();
        ids.push(run.info.run_id);
    }
    let unscored = store
        .create_run(NewRun {
            experiment_id: exp,
            run_name: Some("unscored".into()),
            start_time: Some(5),
            ..NewRun::default()
        })
        .await
        .unwrap();

    let query = |filter: &str, order: &[&str]| RunQuery {
        experiment_ids: vec![exp],
        filter: filter.into(),
        order_by: order.iter().map(|s| (*s).to_owned()).collect(),
        ..RunQuery::default()
    };
    let names_of = |runs: &[Run]| {
        runs.iter()
            .map(|r| r.info.run_name.clone())
            .collect::<Vec<_>>()
    };

    let (runs, _) = store
        .search_runs(&query("", &["metrics.val_roc_auc DESC"]))
        .await
        .unwrap();
    assert_eq!(
        names_of(&runs),
        [
            "RF_depth10",
            "RF_200",
            "RF_100",
            "LR_C_0.01",
            "LR_C_0.1",
            "LR_C_1",
            "unscored"
        ],
        "runs without the metric come last"
    );
    let (runs, _) = store
        .search_runs(&query("", &["metrics.val_roc_auc ASC"]))
        .await
        .unwrap();
    assert_eq!(names_of(&runs).last().unwrap(), "unscored");
    let (runs, _) = store.search_runs(&query("", &[])).await.unwrap();
    assert_eq!(names_of(&runs)[0], "RF_depth10", "newest first by default");

    let (runs, _) = store
        .search_runs(&query(
            "metrics.val_roc_auc > 0.6405 and params.family = 'lr'",
            &["attributes.run_name"],
        ))
        .await
        .unwrap();
    assert_eq!(names_of(&runs), ["LR_C_0.01"]);
    let (runs, _) = store
        .search_runs(&query("tags.mlflow.runName LIKE 'RF%'", &[]))
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    let (runs, _) = store
        .search_runs(&query("attributes.run_name LIKE 'rf%'", &[]))
        .await
        .unwrap();
    assert!(runs.is_empty(), "LIKE is case-sensitive");
    let (runs, _) = store
        .search_runs(&query("attributes.run_name ILIKE 'rf%'", &[]))
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    let (runs, _) = store
        .search_runs(&query(
            &format!("attributes.run_id IN ('{}', '{}')", ids[0], ids[5]),
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    let (runs, _) = store
        .search_runs(&query("params.family != 'rf'", &[]))
        .await
        .unwrap();
    assert_eq!(runs.len(), 3, "runs without the param do not match !=");

    // Paging walks every run exactly once.
    let mut seen = Vec::new();
    let mut page = query("", &["metrics.val_roc_auc DESC"]);
    page.max_results = 3;
    loop {
        let (runs, next) = store.search_runs(&page).await.unwrap();
        seen.extend(names_of(&runs));
        match next {
            Some(t) => page.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0], "RF_depth10");

    store
        .set_run_lifecycle(&unscored.info.run_id, Lifecycle::Deleted)
        .await
        .unwrap();
    let (runs, _) = store.search_runs(&query("", &[])).await.unwrap();
    assert_eq!(runs.len(), 6);
    let mut deleted = query("", &[]);
    deleted.view = ViewType::DeletedOnly;
    assert_eq!(
        names_of(&store.search_runs(&deleted).await.unwrap().0),
        ["unscored"]
    );

    let err = store
        .search_runs(&query("metrics.val_roc_auc > 'x'", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, TrackingError::Invalid { .. }), "{err}");
}

async fn logged_models_and_registry(store: &TrackingStore) {
    use readmit_agent::tracking::logged_models::LoggedModelQuery;

    let exp = store
        .create_experiment("registry", None, &[])
        .await
        .unwrap();
    let run = store
        .create_run(NewRun {
            experiment_id: exp,
            ..NewRun::default()
        })
        .await
        .unwrap();
    let rid = run.info.run_id.clone();
    let model = store
        .create_logged_model(NewLoggedModel {
            experiment_id: exp,
            name: Some("model".into()),
            model_type: Some("onnx".into()),
            source_run_id: Some(rid.clone()),
            tags: vec![tag("flavor", "onnx")],
            params: vec![param("C", "0.01")],
        })
        .await
        .unwrap();
    assert_eq!(model.status, LoggedModelStatus::Pending);
    assert_eq!(
        model.artifact_location,
        format!(
            "mlflow-artifacts:/{exp}/models/{}/artifacts",
            model.model_id
        )
    );
    let ready = store
        .finalize_logged_model(&model.model_id, LoggedModelStatus::Ready)
        .await
        .unwrap();
    assert_eq!(ready.status, LoggedModelStatus::Ready);
    assert_eq!(ready.params, vec![param("C", "0.01")]);
    let err = store
        .log_logged_model_params(&model.model_id, &[param("C", "1")])
        .await;
    assert!(matches!(err, Err(TrackingError::Invalid { .. })), "{err:?}");
    let found = store
        .search_logged_models(&LoggedModelQuery {
            experiment_ids: vec![exp],
            filter: format!("name = 'model' AND source_run_id = '{rid}'"),
            ..LoggedModelQuery::default()
        })
        .await
        .unwrap()
        .0;
    assert_eq!(found.len(), 1);
    store
        .log_outputs(&rid, &[(model.model_id.clone(), 0)])
        .await
        .unwrap();

    let name = "best_diabetes_readmission_model";
    store.create_registered_model(name, "", &[]).await.unwrap();
    assert!(matches!(
        store.create_registered_model(name, "", &[]).await,
        Err(TrackingError::AlreadyExists { .. })
    ));
    let new_version = |source: String| NewModelVersion {
        name: name.into(),
        source,
        run_id: Some(rid.clone()),
        ..NewModelVersion::default()
    };
    let v1 = store
        .create_model_version(new_version(format!("runs:/{rid}/model")))
        .await
        .unwrap();
    let v2 = store
        .create_model_version(new_version(format!("runs:/{rid}/model")))
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v1.stage, Stage::None);

    store
        .transition_stage(name, 1, Stage::Production, true)
        .await
        .unwrap();
    let (moved, archived) = store
        .transition_stage(name, 2, Stage::Production, true)
        .await
        .unwrap();
    assert_eq!(moved.stage, Stage::Production);
    assert_eq!(
        archived
            .iter()
            .map(|v| (v.version, v.stage))
            .collect::<Vec<_>>(),
        [(1, Stage::Archived)]
    );
    let latest = store
        .latest_versions(name, &[Stage::Production])
        .await
        .unwrap();
    assert_eq!(latest.iter().map(|v| v.version).collect::<Vec<_>>(), [2]);

    store.set_alias(name, "champion", 2).await.unwrap();
    assert_eq!(
        store
            .get_version_by_alias(name, "champion")
            .await
            .unwrap()
            .version,
        2
    );
    assert!(
        store.set_alias(name, "latest", 1).await.is_err(),
        "reserved alias"
    );
    let registered = store.get_registered_model(name).await.unwrap();
    assert_eq!(registered.aliases, vec![("champion".to_owned(), 2)]);

    // MLflow 3 keeps a run's model under the logged model: the download URI says so.
    assert_eq!(
        store.download_uri(name, 2).await.unwrap(),
        model.artifact_location
    );

    let events = store.registry_events_after(0, 100).await.unwrap();
    let kinds: Vec<(RegistryEventKind, i64)> = events.iter().map(|e| (e.kind, e.version)).collect();
    assert_eq!(
        kinds,
        [
            (RegistryEventKind::VersionCreated, 1),
            (RegistryEventKind::VersionCreated, 2),
            (RegistryEventKind::StageChanged, 1),
            (RegistryEventKind::StageChanged, 1),
            (RegistryEventKind::StageChanged, 2),
            (RegistryEventKind::AliasSet, 2),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store
            .registry_events_after(events[3].seq, 100)
            .await
            .unwrap()
            .len(),
        2
    );

    store
        .rename_registered_model(name, "renamed")
        .await
        .unwrap();
    assert_eq!(
        store.get_model_version("renamed", 2).await.unwrap().stage,
        Stage::Production
    );
    assert!(matches!(
        store.get_registered_model(name).await,
        Err(TrackingError::NotFound { .. })
    ));
    let (found, _) = store
        .search_model_versions(&only("name = 'renamed'"))
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    store.delete_registered_model("renamed").await.unwrap();
    assert!(store.get_model_version("renamed", 1).await.is_err());
}

fn only(filter: &str) -> RegistrySearch {
    RegistrySearch {
        filter: filter.to_owned(),
        ..RegistrySearch::default()
    }
}

async fn versions(store: &TrackingStore, filter: &str, order: &[&str]) -> Vec<(String, i64)> {
    let order: Vec<String> = order.iter().map(|o| o.to_string()).collect();
    store
        .search_model_versions(&RegistrySearch {
            filter: filter.to_owned(),
            order_by: order,
            ..RegistrySearch::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .0
        .into_iter()
        .map(|v| (v.name, v.version))
        .collect()
}

async fn models(store: &TrackingStore, filter: &str, order: &[&str]) -> Vec<String> {
    let order: Vec<String> = order.iter().map(|o| o.to_string()).collect();
    store
        .search_registered_models(&RegistrySearch {
            filter: filter.to_owned(),
            order_by: order,
            ..RegistrySearch::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .0
        .into_iter()
        .map(|m| m.name)
        .collect()
}

/// MLflow's registry grammar: attributes, tags (backquoted keys too), IN, order_by, and
/// prompts left out unless asked for.
async fn registry_search(store: &TrackingStore) {
    let exp = store
        .create_experiment("registry search", None, &[])
        .await
        .unwrap();
    let mut run_ids = Vec::new();
    for _ in 0..2 {
        let run = store
            .create_run(NewRun {
                experiment_id: exp,
                ..NewRun::default()
            })
            .await
            .unwrap();
        run_ids.push(run.info.run_id);
    }
    for name in ["churn", "churn-eu", "readmit"] {
        store.create_registered_model(name, "", &[]).await.unwrap();
    }
    let prompt_tag = tag("mlflow.prompt.is_prompt", "true");
    store
        .create_registered_model("a-prompt", "", std::slice::from_ref(&prompt_tag))
        .await
        .unwrap();
    for (name, run) in [("churn", 0), ("churn", 1), ("churn", 1), ("readmit", 0)] {
        store
            .create_model_version(NewModelVersion {
                name: name.into(),
                source: format!("runs:/{}/model", run_ids[run]),
                run_id: Some(run_ids[run].clone()),
                ..NewModelVersion::default()
            })
            .await
            .unwrap();
    }
    store
        .set_model_version_tag("churn", 2, &tag("mlflow.note", "checked"))
        .await
        .unwrap();
    store
        .create_model_version(NewModelVersion {
            name: "a-prompt".into(),
            source: "prompt text".into(),
            tags: vec![prompt_tag],
            ..NewModelVersion::default()
        })
        .await
        .unwrap();

    let churn = |v: &[i64]| {
        v.iter()
            .map(|&v| ("churn".to_owned(), v))
            .collect::<Vec<_>>()
    };
    let readmit = vec![("readmit".to_owned(), 1)];
    let by_run = format!("name='churn' and run_id='{}'", run_ids[1]);
    assert_eq!(versions(store, &by_run, &[]).await, churn(&[3, 2]));
    assert_eq!(
        versions(store, &by_run, &["version_number ASC"]).await,
        churn(&[2, 3])
    );
    // What 3.x clients add to searches of their own.
    let with_prompt_clause = "name = 'churn' AND tags.`mlflow.prompt.is_prompt` != 'true'";
    assert_eq!(
        versions(store, with_prompt_clause, &[]).await,
        churn(&[3, 2, 1])
    );
    assert_eq!(
        versions(store, "tags.`mlflow.note` = 'checked'", &[]).await,
        churn(&[2])
    );
    assert_eq!(
        versions(store, "tag.`mlflow.note` != 'checked'", &[]).await,
        [],
        "a tag clause needs the tag"
    );
    assert_eq!(
        versions(
            store,
            "name IN ('churn', 'readmit') and version_number >= 2",
            &[]
        )
        .await,
        churn(&[3, 2])
    );
    assert_eq!(
        versions(
            store,
            "source_path LIKE 'runs:/%' and name ILIKE 'READ%'",
            &[]
        )
        .await,
        readmit
    );
    assert_eq!(
        versions(store, "name != 'churn'", &[]).await,
        readmit,
        "prompts are left out unless asked for"
    );
    assert_eq!(
        versions(store, "tags.`mlflow.prompt.is_prompt` = 'true'", &[]).await,
        [("a-prompt".to_owned(), 1)]
    );
    assert_eq!(
        versions(
            store,
            "name = 'churn'",
            &["name DESC", "version_number ASC"]
        )
        .await,
        churn(&[1, 2, 3])
    );

    assert_eq!(
        models(store, "tags.`mlflow.prompt.is_prompt` != 'true'", &[]).await,
        ["churn", "churn-eu", "readmit"]
    );
    assert_eq!(
        models(store, "name LIKE 'CHURN%'", &[]).await,
        Vec::<String>::new(),
        "LIKE is case-sensitive"
    );
    assert_eq!(
        models(store, "name ILIKE 'CHURN%'", &["name DESC"]).await,
        ["churn-eu", "churn"]
    );
    assert_eq!(
        models(store, "name IN ('readmit', 'a-prompt')", &[]).await,
        ["readmit"]
    );
    assert_eq!(
        models(store, "", &["last_updated_timestamp DESC"])
            .await
            .len(),
        3
    );

    for (filter, says) in [
        ("run_id = 'x'", "unknown attribute"),
        (
            "metrics.auc > 1",
            "registry searches filter on attributes and tags",
        ),
        ("tags.a IN ('x')", "takes =, !=, LIKE or ILIKE"),
        ("name IS NULL", "never NULL"),
    ] {
        let err = store
            .search_registered_models(&only(filter))
            .await
            .expect_err(filter)
            .to_string();
        assert!(err.contains(says), "{filter}: {err}");
    }
    for (filter, says) in [
        ("version_number = 1.5", "whole number"),
        ("source_path IN ('a')", "cannot be compared"),
        (
            "params.C = '1'",
            "registry searches filter on attributes and tags",
        ),
    ] {
        let err = store
            .search_model_versions(&only(filter))
            .await
            .expect_err(filter)
            .to_string();
        assert!(err.contains(says), "{filter}: {err}");
    }
    assert!(matches!(
        store
            .search_model_versions(&RegistrySearch {
                order_by: vec!["tags.x DESC".to_owned()],
                ..RegistrySearch::default()
            })
            .await,
        Err(TrackingError::Invalid { .. })
    ));
    for name in ["churn", "churn-eu", "readmit", "a-prompt"] {
        store.delete_registered_model(name).await.unwrap();
    }
}

/// `registry::watch`: the versions as they stand, then each change once, then the end at
/// shutdown.
async fn registry_watch(store: &TrackingStore) {
    use futures_util::StreamExt;
    use readmit_agent::tracking::registry::{self, Watch, Watched};
    use tokio_util::sync::CancellationToken;

    let next = |w: Watched| match w {
        Watched::Current { version, .. } => (None, version.version, Some(version.stage)),
        Watched::Changed { event, version } => {
            (Some(event.kind), event.version, version.map(|v| v.stage))
        }
    };
    let name = "watched";
    store.create_registered_model(name, "", &[]).await.unwrap();
    store
        .create_registered_model("other", "", &[])
        .await
        .unwrap();
    for model in [name, name, "other"] {
        store
            .create_model_version(NewModelVersion {
                name: model.into(),
                source: "s3://bucket/model".into(),
                ..NewModelVersion::default()
            })
            .await
            .unwrap();
    }
    store
        .transition_stage(name, 1, Stage::Production, true)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let what = Watch {
        name: Some(name.into()),
        include_current: true,
    };
    let mut watch = Box::pin(
        registry::watch(store.clone(), what, shutdown.clone())
            .await
            .unwrap(),
    );
    let mut take = async |n: usize| {
        let mut seen = Vec::new();
        for _ in 0..n {
            let item = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
                .await
                .expect("a watched item")
                .expect("the watch goes on")
                .unwrap();
            seen.push(next(item));
        }
        seen
    };
    assert_eq!(
        take(2).await,
        [
            (None, 1, Some(Stage::Production)),
            (None, 2, Some(Stage::None))
        ]
    );
    store
        .create_model_version(NewModelVersion {
            name: "other".into(),
            source: "s3://bucket/model".into(),
            ..NewModelVersion::default()
        })
        .await
        .unwrap();
    store
        .transition_stage(name, 2, Stage::Staging, false)
        .await
        .unwrap();
    store.delete_model_version(name, 1).await.unwrap();
    assert_eq!(
        take(2).await,
        [
            (
                Some(RegistryEventKind::StageChanged),
                2,
                Some(Stage::Staging)
            ),
            (Some(RegistryEventKind::VersionDeleted), 1, None),
        ],
        "only the watched model's changes, each once, none from before the watch"
    );
    shutdown.cancel();
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
            .await
            .expect("the watch ends at shutdown")
            .is_none()
    );
    for model in [name, "other"] {
        store.delete_registered_model(model).await.unwrap();
    }
}

#[tokio::test]
async fn store_on_sqlite() {
    suite(Backend::Sqlite).await;
}

#[tokio::test]
async fn store_on_mariadb() {
    suite(Backend::MariaDb).await;
}

#[tokio::test]
async fn store_on_postgres() {
    suite(Backend::Postgres).await;
}
