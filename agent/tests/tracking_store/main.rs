//! The tracking store's rules, the same suite on SQLite, MariaDB and PostgreSQL.

mod registry;
#[path = "../support/mod.rs"]
mod support;

use readmit_agent::db::Db;
use readmit_agent::tracking::entities::*;
use readmit_agent::tracking::{ExperimentQuery, RunQuery, TrackingError, TrackingStore};
use support::Backend;

pub(crate) fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp,
        step,
    }
}

pub(crate) fn param(key: &str, value: &str) -> Param {
    Param {
        key: key.into(),
        value: value.into(),
    }
}

pub(crate) fn tag(key: &str, value: &str) -> Tag {
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
    registry::logged_models_and_registry(&store).await;
    registry::registry_search(&store).await;
    registry::registry_watch(&store).await;
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
