//! The tracking role: experiments, runs, artifacts and the model registry, served over gRPC
//! and as MLflow's REST API.

pub mod artifacts;
pub mod entities;
pub mod logged_models;
pub mod registry;
pub mod search;
pub mod store;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use artifacts::{ArtifactEntry, ArtifactError, ArtifactKey, ArtifactStore, Scope};
pub use entities::TrackingError;
use entities::{Lifecycle, Result};
pub use store::{ExperimentQuery, RunQuery, TrackingStore};

/// The tracking role's state: metadata in SQL, files in the artifact store.
#[derive(Clone, Debug)]
pub struct Tracking {
    pub store: TrackingStore,
    pub artifacts: ArtifactStore,
}

/// Opens the tracking store (migrating it) and the artifact store the settings name.
pub async fn start(
    settings: &crate::settings::Settings,
) -> std::result::Result<Tracking, crate::roles::StartError> {
    let db = crate::db::Db::connect(&settings.tracking_db).await?;
    tracing::info!(db = db.url(), "tracking store open");
    let store = TrackingStore::open(db).await?;
    let artifacts = ArtifactStore::open(&settings.artifact_root, &settings.data_dir)?;
    tracing::info!(root = artifacts.root(), "artifact store open");
    Ok(Tracking { store, artifacts })
}

/// One key's values across the runs being compared, in the order the runs were given.
#[derive(Clone, Debug, PartialEq)]
pub struct Compared {
    pub key: String,
    pub values: Vec<Option<String>>,
    pub differs: bool,
}

/// Runs side by side: every param, metric and tag any of them has.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub runs: Vec<entities::Run>,
    pub params: Vec<Compared>,
    pub metrics: Vec<Compared>,
    pub tags: Vec<Compared>,
}

fn compare<'a>(
    runs: &'a [entities::Run],
    pick: impl Fn(&'a entities::Run) -> Vec<(&'a str, String)>,
) -> Vec<Compared> {
    let per_run: Vec<std::collections::BTreeMap<&str, String>> =
        runs.iter().map(|r| pick(r).into_iter().collect()).collect();
    let keys: std::collections::BTreeSet<&str> =
        per_run.iter().flat_map(|m| m.keys().copied()).collect();
    keys.into_iter()
        .map(|key| {
            let values: Vec<Option<String>> = per_run.iter().map(|m| m.get(key).cloned()).collect();
            let differs = values.windows(2).any(|w| w[0] != w[1]);
            Compared {
                key: key.to_owned(),
                values,
                differs,
            }
        })
        .collect()
}

impl Tracking {
    /// Params, metrics and tags of several runs side by side, differences marked.
    pub async fn compare_runs(&self, run_ids: &[String]) -> Result<Comparison> {
        if run_ids.len() < 2 {
            return Err(TrackingError::invalid(
                "run_ids",
                "name at least two runs to compare",
            ));
        }
        let runs = self.store.load_runs(run_ids).await?;
        if let Some(missing) = run_ids
            .iter()
            .find(|id| !runs.iter().any(|r| &r.info.run_id == *id))
        {
            return Err(TrackingError::NotFound {
                what: "run",
                id: format!("with id={missing}"),
            });
        }
        Ok(Comparison {
            params: compare(&runs, |r| {
                r.params
                    .iter()
                    .map(|p| (p.key.as_str(), p.value.clone()))
                    .collect()
            }),
            metrics: compare(&runs, |r| {
                r.metrics
                    .iter()
                    .map(|m| (m.key.as_str(), m.value.to_string()))
                    .collect()
            }),
            tags: compare(&runs, |r| {
                r.tags
                    .iter()
                    .map(|t| (t.key.as_str(), t.value.clone()))
                    .collect()
            }),
            runs,
        })
    }

    /// The artifact key of `path` inside a run's artifact directory, which must be one this
    /// server proxies.
    pub async fn run_key(&self, run_id: &str, path: &str) -> Result<ArtifactKey> {
        let run = self.store.get_run(run_id).await?;
        let Some(below_root) = run.info.artifact_uri.strip_prefix("mlflow-artifacts:/") else {
            return Err(TrackingError::InvalidState(format!(
                "run {run_id} keeps its artifacts at {}, outside this server",
                run.info.artifact_uri
            )));
        };
        let root = ArtifactKey::parse(below_root.trim_start_matches('/'))?;
        Ok(ArtifactKey::new(root.scope, path)?)
    }

    /// Checks that the key's run exists and sits in the experiment the key names. With
    /// `for_write`, the run must also be active.
    async fn check_scope(&self, key: &ArtifactKey, for_write: bool) -> Result<()> {
        match &key.scope {
            Scope::Run {
                experiment_id,
                run_id,
            } => {
                let run = self.store.get_run(run_id).await?;
                if run.info.experiment_id != *experiment_id {
                    return Err(ArtifactError::InvalidPath {
                        path: key.scope_dir(),
                        reason: format!("run {run_id} is not in experiment {experiment_id}"),
                    }
                    .into());
                }
                if for_write && run.info.lifecycle_stage != Lifecycle::Active {
                    return Err(TrackingError::InvalidState(format!(
                        "the run {run_id} must be in the 'active' state to take artifacts"
                    )));
                }
                Ok(())
            }
            Scope::Model {
                experiment_id,
                model_id,
            } => {
                let model = self.store.get_logged_model(model_id, !for_write).await?;
                if model.experiment_id != *experiment_id {
                    return Err(ArtifactError::InvalidPath {
                        path: key.scope_dir(),
                        reason: format!("model {model_id} is not in experiment {experiment_id}"),
                    }
                    .into());
                }
                Ok(())
            }
        }
    }

    pub async fn upload<S, E>(&self, key: &ArtifactKey, body: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.check_scope(key, true).await?;
        Ok(self.artifacts.put(key, body).await?)
    }

    pub async fn download(
        &self,
        key: &ArtifactKey,
    ) -> Result<(
        u64,
        BoxStream<'static, std::result::Result<Bytes, ArtifactError>>,
    )> {
        self.check_scope(key, false).await?;
        Ok(self.artifacts.get(key).await?)
    }

    pub async fn list(&self, key: &ArtifactKey) -> Result<Vec<ArtifactEntry>> {
        self.check_scope(key, false).await?;
        Ok(self.artifacts.list(key).await?)
    }

    pub async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        self.check_scope(key, true).await?;
        Ok(self.artifacts.delete(key).await?)
    }
}
