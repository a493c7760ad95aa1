//! The tracking role: experiments, runs, artifacts and the model registry, served over gRPC
//! and as MLflow's REST API.

pub mod artifacts;
pub mod logged_models;
pub mod model;
pub mod registry;
pub mod search;
pub mod store;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use artifacts::{ArtifactEntry, ArtifactError, ArtifactKey, ArtifactStore, Scope};
pub use model::TrackingError;
use model::{Lifecycle, Result};
pub use store::{RunQuery, TrackingStore};

/// The tracking role's state: metadata in SQL, files in the artifact store.
#[derive(Clone, Debug)]
pub struct Tracking {
    pub store: TrackingStore,
    pub artifacts: ArtifactStore,
}

impl Tracking {
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
