//! Typed tracking operations on [`Client`]: experiments found or made by name, runs created,
//! logged in batches within MLflow's limits, terminated, and small artifacts uploaded and read
//! back as bytes — what roles logging their own runs (the load-test engine) need.

use std::collections::HashMap;

use crate::client::Client;
use crate::registry::CallError;
use crate::v1;

/// MLflow's limits on one `LogBatch`.
const BATCH_METRICS: usize = 1000;
const BATCH_PARAMS: usize = 100;

/// One metric value at a step.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub timestamp_ms: i64,
    pub step: i64,
}

/// How a run ended, as MLflow's terminal statuses name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    Finished,
    Failed,
    Killed,
}

fn status(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> CallError {
    move |status| CallError::Status {
        what: what.into(),
        status,
    }
}

impl Client {
    /// The id of the experiment `name`, creating it when it does not exist yet.
    pub async fn experiment_id_or_create(&self, name: &str) -> Result<String, CallError> {
        if let Some(id) = self.experiment_id(name).await? {
            return Ok(id);
        }
        match self
            .tracking()
            .create_experiment(v1::CreateExperimentRequest {
                name: name.to_owned(),
                ..Default::default()
            })
            .await
        {
            Ok(e) => Ok(e.into_inner().experiment_id),
            // Created by someone else in between.
            Err(s) if s.code() == tonic::Code::AlreadyExists => self
                .experiment_id(name)
                .await?
                .ok_or_else(|| CallError::Protocol {
                    what: format!("experiment {name}"),
                    reason: "it exists, yet cannot be found".into(),
                }),
            Err(s) => Err(status(format!("creating experiment {name}"))(s)),
        }
    }

    /// The id of the experiment `name`; `None` when there is none.
    pub async fn experiment_id(&self, name: &str) -> Result<Option<String>, CallError> {
        match self
            .tracking()
            .get_experiment(v1::GetExperimentRequest {
                key: Some(v1::get_experiment_request::Key::Name(name.to_owned())),
            })
            .await
        {
            Ok(e) => Ok(Some(e.into_inner().experiment_id)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(status(format!("experiment {name}"))(s)),
        }
    }

    /// A new running run; its id.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: HashMap<String, String>,
    ) -> Result<String, CallError> {
        let run = self
            .tracking()
            .create_run(v1::CreateRunRequest {
                experiment_id: experiment_id.to_owned(),
                run_name: run_name.to_owned(),
                user_id: "readmit-agent".into(),
                start_time_ms,
                tags,
            })
            .await
            .map_err(status(format!(
                "creating a run in experiment {experiment_id}"
            )))?
            .into_inner();
        run.info
            .map(|i| i.run_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| CallError::Protocol {
                what: "creating a run".into(),
                reason: "the reply has no run id".into(),
            })
    }

    /// Logs params and metrics, in as many batches as MLflow's limits need.
    pub async fn log_all(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[MetricPoint],
    ) -> Result<(), CallError> {
        let mut tracking = self.tracking();
        let what = format!("logging to run {run_id}");
        for chunk in params.chunks(BATCH_PARAMS) {
            tracking
                .log_batch(v1::LogBatchRequest {
                    run_id: run_id.to_owned(),
                    params: chunk
                        .iter()
                        .map(|(key, value)| v1::Param {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    ..Default::default()
                })
                .await
                .map_err(status(what.clone()))?;
        }
        for chunk in metrics.chunks(BATCH_METRICS) {
            tracking
                .log_batch(v1::LogBatchRequest {
                    run_id: run_id.to_owned(),
                    metrics: chunk
                        .iter()
                        .map(|m| v1::Metric {
                            key: m.key.clone(),
                            value: m.value,
                            timestamp_ms: m.timestamp_ms,
                            step: m.step,
                        })
                        .collect(),
                    ..Default::default()
                })
                .await
                .map_err(status(what.clone()))?;
        }
        Ok(())
    }

    /// Ends a run with `end` at `end_time_ms`.
    pub async fn set_terminated(
        &self,
        run_id: &str,
        end: RunEnd,
        end_time_ms: i64,
    ) -> Result<(), CallError> {
        let status_ = match end {
            RunEnd::Finished => v1::RunStatus::Finished,
            RunEnd::Failed => v1::RunStatus::Failed,
            RunEnd::Killed => v1::RunStatus::Killed,
        };
        self.tracking()
            .update_run(v1::UpdateRunRequest {
                run_id: run_id.to_owned(),
                status: status_ as i32,
                end_time_ms,
                run_name: String::new(),
            })
            .await
            .map_err(status(format!("ending run {run_id}")))?;
        Ok(())
    }

    /// Uploads `bytes` as the run artifact `path`.
    pub async fn upload_bytes(
        &self,
        run_id: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), CallError> {
        self.upload_chunks(run_id, path, bytes).await.map(|_| ())
    }

    /// A run artifact's bytes, refusing more than `max_bytes`.
    pub async fn download_bytes(
        &self,
        run_id: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<Vec<u8>, CallError> {
        let what = format!("run {run_id} artifact {path}");
        let mut chunks = self
            .tracking()
            .download_artifact(v1::DownloadArtifactRequest {
                run_id: run_id.into(),
                path: path.into(),
            })
            .await
            .map_err(status(what.clone()))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = chunks.message().await.map_err(status(what.clone()))? {
            if let Some(v1::artifact_chunk::Chunk::Data(data)) = chunk.chunk {
                if out.len() + data.len() > max_bytes {
                    return Err(CallError::Protocol {
                        what,
                        reason: format!("over the {max_bytes}-byte limit of this download"),
                    });
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    /// Runs of one experiment matching an MLflow filter, newest first, at most `max`.
    pub async fn runs_where(
        &self,
        experiment_id: &str,
        filter: &str,
        max: u32,
    ) -> Result<Vec<v1::Run>, CallError> {
        Ok(self
            .tracking()
            .search_runs(v1::SearchRunsRequest {
                experiment_ids: vec![experiment_id.to_owned()],
                filter: filter.to_owned(),
                order_by: vec!["attributes.start_time DESC".into()],
                max_results: max,
                ..Default::default()
            })
            .await
            .map_err(status(format!("runs of experiment {experiment_id}")))?
            .into_inner()
            .runs)
    }
}
