//! The registry part of the store suite: logged models, registered models and versions,
//! aliases and stages, MLflow's registry search grammar, and the registry's watch stream.

use readmit_agent::tracking::entities::*;
use readmit_agent::tracking::registry::RegistrySearch;
use readmit_agent::tracking::{TrackingError, TrackingStore};

use super::{param, tag};

pub(crate) async fn logged_models_and_registry(store: &TrackingStore) {
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
pub(crate) async fn registry_search(store: &TrackingStore) {
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
pub(crate) async fn registry_watch(store: &TrackingStore) {
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
