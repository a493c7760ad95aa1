//! The `Tracking` gRPC service: converts messages to the tracking domain's types and back,
//! naming the field when a request is malformed. No logic lives here.

mod convert;

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use readmit_proto::v1;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::tracking::artifacts::ArtifactError;
use crate::tracking::entities::{self as m, TrackingError};
use crate::tracking::registry;
use crate::tracking::{ExperimentQuery, RunQuery, Tracking};
use convert::*;

/// Chunks of artifact downloads.
const CHUNK_BYTES: usize = 1024 * 1024;

pub struct TrackingService {
    tracking: Tracking,
    shutdown: CancellationToken,
}

impl TrackingService {
    pub fn new(tracking: Tracking, shutdown: CancellationToken) -> Self {
        Self { tracking, shutdown }
    }
}

/// The one mapping from tracking errors to gRPC status codes.
pub fn status(error: TrackingError) -> Status {
    let message = error.to_string();
    match error {
        TrackingError::NotFound { .. } => Status::not_found(message),
        TrackingError::AlreadyExists { .. } => Status::already_exists(message),
        TrackingError::Invalid { .. } => Status::invalid_argument(message),
        TrackingError::InvalidState(_) => Status::failed_precondition(message),
        TrackingError::Artifact(e) => match e {
            ArtifactError::InvalidPath { .. } => Status::invalid_argument(message),
            ArtifactError::NotFound { .. } => Status::not_found(message),
            ArtifactError::Upload { .. } => Status::aborted(message),
            ArtifactError::Config { .. } | ArtifactError::Store(_) | ArtifactError::Io { .. } => {
                Status::internal(message)
            }
        },
        TrackingError::Db(_) | TrackingError::Store(_) | TrackingError::Setup(_) => {
            tracing::error!(error = %message, "tracking call failed");
            Status::internal(message)
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<v1::ArtifactChunk, Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<v1::RegistryEvent, Status>> + Send>>;

#[tonic::async_trait]
impl v1::tracking_server::Tracking for TrackingService {
    async fn create_experiment(
        &self,
        r: Request<v1::CreateExperimentRequest>,
    ) -> Reply<v1::Experiment> {
        let r = r.into_inner();
        let store = &self.tracking.store;
        let location = Some(r.artifact_location.as_str()).filter(|l| !l.is_empty());
        let id = store
            .create_experiment(&r.name, location, &tags_in(r.tags))
            .await
            .map_err(status)?;
        Ok(Response::new(experiment_out(
            store.get_experiment(id).await.map_err(status)?,
        )))
    }

    async fn get_experiment(&self, r: Request<v1::GetExperimentRequest>) -> Reply<v1::Experiment> {
        let store = &self.tracking.store;
        let e = match r.into_inner().key {
            Some(v1::get_experiment_request::Key::ExperimentId(id)) => {
                store.get_experiment(experiment_id(&id)?).await
            }
            Some(v1::get_experiment_request::Key::Name(name)) => {
                store.get_experiment_by_name(&name).await
            }
            None => return Err(Status::invalid_argument("key: give experiment_id or name")),
        };
        Ok(Response::new(experiment_out(e.map_err(status)?)))
    }

    async fn list_experiments(
        &self,
        r: Request<v1::ListExperimentsRequest>,
    ) -> Reply<v1::ListExperimentsReply> {
        let view = view(r.into_inner().view)?;
        let mut experiments = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let query = ExperimentQuery {
                view,
                page_token: token.clone(),
                ..ExperimentQuery::default()
            };
            let (page, next) = self
                .tracking
                .store
                .search_experiments(&query)
                .await
                .map_err(status)?;
            experiments.extend(page.into_iter().map(experiment_out));
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(Response::new(v1::ListExperimentsReply { experiments }))
    }

    async fn delete_experiment(&self, r: Request<v1::ExperimentRef>) -> Reply<v1::Experiment> {
        let id = experiment_id(&r.into_inner().experiment_id)?;
        let store = &self.tracking.store;
        store
            .set_experiment_lifecycle(id, m::Lifecycle::Deleted)
            .await
            .map_err(status)?;
        Ok(Response::new(experiment_out(
            store.get_experiment(id).await.map_err(status)?,
        )))
    }

    async fn restore_experiment(&self, r: Request<v1::ExperimentRef>) -> Reply<v1::Experiment> {
        let id = experiment_id(&r.into_inner().experiment_id)?;
        let store = &self.tracking.store;
        store
            .set_experiment_lifecycle(id, m::Lifecycle::Active)
            .await
            .map_err(status)?;
        Ok(Response::new(experiment_out(
            store.get_experiment(id).await.map_err(status)?,
        )))
    }

    async fn create_run(&self, r: Request<v1::CreateRunRequest>) -> Reply<v1::Run> {
        let r = r.into_inner();
        let new = m::NewRun {
            experiment_id: if r.experiment_id.is_empty() {
                m::DEFAULT_EXPERIMENT_ID
            } else {
                experiment_id(&r.experiment_id)?
            },
            run_name: Some(r.run_name).filter(|n| !n.is_empty()),
            user_id: Some(r.user_id).filter(|u| !u.is_empty()),
            start_time: Some(r.start_time_ms).filter(|t| *t > 0),
            tags: tags_in(r.tags),
        };
        Ok(Response::new(run_out(
            self.tracking.store.create_run(new).await.map_err(status)?,
        )))
    }

    async fn get_run(&self, r: Request<v1::RunRef>) -> Reply<v1::Run> {
        let id = r.into_inner().run_id;
        Ok(Response::new(run_out(
            self.tracking
                .store
                .get_run(non_empty("run_id", &id)?)
                .await
                .map_err(status)?,
        )))
    }

    async fn update_run(&self, r: Request<v1::UpdateRunRequest>) -> Reply<v1::Run> {
        let r = r.into_inner();
        let update = m::RunUpdate {
            status: run_status_in(r.status)?,
            end_time: Some(r.end_time_ms).filter(|t| *t > 0),
            run_name: Some(r.run_name).filter(|n| !n.is_empty()),
        };
        let store = &self.tracking.store;
        store
            .update_run(non_empty("run_id", &r.run_id)?, update)
            .await
            .map_err(status)?;
        Ok(Response::new(run_out(
            store.get_run(&r.run_id).await.map_err(status)?,
        )))
    }

    async fn delete_run(&self, r: Request<v1::RunRef>) -> Reply<v1::Run> {
        let id = r.into_inner().run_id;
        let store = &self.tracking.store;
        store
            .set_run_lifecycle(non_empty("run_id", &id)?, m::Lifecycle::Deleted)
            .await
            .map_err(status)?;
        Ok(Response::new(run_out(
            store.get_run(&id).await.map_err(status)?,
        )))
    }

    async fn restore_run(&self, r: Request<v1::RunRef>) -> Reply<v1::Run> {
        let id = r.into_inner().run_id;
        let store = &self.tracking.store;
        store
            .set_run_lifecycle(non_empty("run_id", &id)?, m::Lifecycle::Active)
            .await
            .map_err(status)?;
        Ok(Response::new(run_out(
            store.get_run(&id).await.map_err(status)?,
        )))
    }

    async fn log_batch(&self, r: Request<v1::LogBatchRequest>) -> Reply<v1::LogBatchReply> {
        let r = r.into_inner();
        let batch = m::Batch {
            metrics: r
                .metrics
                .into_iter()
                .map(|x| m::Metric {
                    key: x.key,
                    value: x.value,
                    timestamp: x.timestamp_ms,
                    step: x.step,
                })
                .collect(),
            params: r
                .params
                .into_iter()
                .map(|p| m::Param {
                    key: p.key,
                    value: p.value,
                })
                .collect(),
            tags: tags_in(r.tags),
        };
        self.tracking
            .store
            .log_batch(non_empty("run_id", &r.run_id)?, &batch)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::LogBatchReply {}))
    }

    async fn get_metric_history(
        &self,
        r: Request<v1::GetMetricHistoryRequest>,
    ) -> Reply<v1::MetricHistory> {
        let r = r.into_inner();
        let metrics = self
            .tracking
            .store
            .metric_history(
                non_empty("run_id", &r.run_id)?,
                non_empty("metric_key", &r.metric_key)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(v1::MetricHistory {
            metrics: metrics.into_iter().map(metric_out).collect(),
        }))
    }

    async fn search_runs(&self, r: Request<v1::SearchRunsRequest>) -> Reply<v1::SearchRunsReply> {
        let r = r.into_inner();
        let query = RunQuery {
            experiment_ids: m::parse_experiment_ids(&r.experiment_ids).map_err(status)?,
            filter: r.filter,
            order_by: r.order_by,
            view: view(r.view)?,
            max_results: r.max_results,
            page_token: Some(r.page_token).filter(|t| !t.is_empty()),
        };
        let (runs, next) = self
            .tracking
            .store
            .search_runs(&query)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::SearchRunsReply {
            runs: runs.into_iter().map(run_out).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn compare_runs(&self, r: Request<v1::CompareRunsRequest>) -> Reply<v1::RunComparison> {
        let c = self
            .tracking
            .compare_runs(&r.into_inner().run_ids)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::RunComparison {
            runs: c.runs.into_iter().map(run_out).collect(),
            params: c.params.into_iter().map(compared_out).collect(),
            metrics: c.metrics.into_iter().map(compared_out).collect(),
            tags: c.tags.into_iter().map(compared_out).collect(),
        }))
    }

    async fn upload_artifact(
        &self,
        r: Request<Streaming<v1::ArtifactChunk>>,
    ) -> Reply<v1::ArtifactFile> {
        let mut chunks = r.into_inner();
        let header = match chunks.message().await? {
            Some(v1::ArtifactChunk {
                chunk: Some(v1::artifact_chunk::Chunk::Header(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be the header (run_id, path)",
                ));
            }
        };
        let key = self
            .tracking
            .run_key(non_empty("run_id", &header.run_id)?, &header.path)
            .await
            .map_err(status)?;
        let body = chunks.map(|chunk| match chunk {
            Ok(v1::ArtifactChunk {
                chunk: Some(v1::artifact_chunk::Chunk::Data(data)),
            }) => Ok(Bytes::from(data)),
            Ok(_) => Err("after the header, every message must carry data".to_owned()),
            Err(status) => Err(status.message().to_owned()),
        });
        let size = self.tracking.upload(&key, body).await.map_err(status)?;
        if header.size > 0 && size != header.size as u64 {
            return Err(Status::data_loss(format!(
                "the header said {} bytes, {size} arrived",
                header.size
            )));
        }
        Ok(Response::new(v1::ArtifactFile {
            path: key.path,
            is_dir: false,
            size: size as i64,
        }))
    }

    type DownloadArtifactStream = ChunkStream;

    async fn download_artifact(
        &self,
        r: Request<v1::DownloadArtifactRequest>,
    ) -> Reply<ChunkStream> {
        let r = r.into_inner();
        let key = self
            .tracking
            .run_key(non_empty("run_id", &r.run_id)?, non_empty("path", &r.path)?)
            .await
            .map_err(status)?;
        let (size, body) = self.tracking.download(&key).await.map_err(status)?;
        let header = v1::ArtifactChunk {
            chunk: Some(v1::artifact_chunk::Chunk::Header(v1::ArtifactHeader {
                run_id: r.run_id,
                path: key.path,
                size: size as i64,
            })),
        };
        // Store chunks can be large; re-cut them so no message exceeds the limit.
        let data = body.flat_map(|chunk| {
            let messages: Vec<Result<v1::ArtifactChunk, Status>> = match chunk {
                Ok(bytes) => bytes
                    .chunks(CHUNK_BYTES)
                    .map(|c| {
                        Ok(v1::ArtifactChunk {
                            chunk: Some(v1::artifact_chunk::Chunk::Data(c.to_vec())),
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(status(e.into()))],
            };
            futures_util::stream::iter(messages)
        });
        Ok(Response::new(Box::pin(
            futures_util::stream::once(async { Ok(header) }).chain(data),
        )))
    }

    async fn list_artifacts(
        &self,
        r: Request<v1::ListArtifactsRequest>,
    ) -> Reply<v1::ListArtifactsReply> {
        let r = r.into_inner();
        let key = self
            .tracking
            .run_key(non_empty("run_id", &r.run_id)?, &r.path)
            .await
            .map_err(status)?;
        let files = self.tracking.list(&key).await.map_err(status)?;
        Ok(Response::new(v1::ListArtifactsReply {
            root_uri: format!("mlflow-artifacts:/{}", key.scope_dir()),
            files: files
                .into_iter()
                .map(|f| v1::ArtifactFile {
                    path: f.path,
                    is_dir: f.is_dir,
                    size: f.size.map_or(0, |s| s as i64),
                })
                .collect(),
        }))
    }

    async fn create_registered_model(
        &self,
        r: Request<v1::CreateRegisteredModelRequest>,
    ) -> Reply<v1::RegisteredModel> {
        let r = r.into_inner();
        let model = self
            .tracking
            .store
            .create_registered_model(&r.name, &r.description, &tags_in(r.tags))
            .await
            .map_err(status)?;
        Ok(Response::new(registered_out(model)))
    }

    async fn get_registered_model(
        &self,
        r: Request<v1::GetRegisteredModelRequest>,
    ) -> Reply<v1::RegisteredModel> {
        let name = r.into_inner().name;
        Ok(Response::new(registered_out(
            self.tracking
                .store
                .get_registered_model(&name)
                .await
                .map_err(status)?,
        )))
    }

    async fn list_registered_models(
        &self,
        _r: Request<v1::ListRegisteredModelsRequest>,
    ) -> Reply<v1::ListRegisteredModelsReply> {
        let mut models = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self
                .tracking
                .store
                .search_registered_models(&registry::RegistrySearch {
                    max_results: 1000,
                    page_token: token.clone(),
                    ..registry::RegistrySearch::default()
                })
                .await
                .map_err(status)?;
            models.extend(page.into_iter().map(registered_out));
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(Response::new(v1::ListRegisteredModelsReply { models }))
    }

    async fn create_model_version(
        &self,
        r: Request<v1::CreateModelVersionRequest>,
    ) -> Reply<v1::ModelVersion> {
        let r = r.into_inner();
        let v = self
            .tracking
            .store
            .create_model_version(m::NewModelVersion {
                name: r.name,
                source: r.source,
                run_id: Some(r.run_id).filter(|id| !id.is_empty()),
                model_id: None,
                description: Some(r.description).filter(|d| !d.is_empty()),
                tags: tags_in(r.tags),
            })
            .await
            .map_err(status)?;
        Ok(Response::new(version_out(v)))
    }

    async fn get_model_version(&self, r: Request<v1::ModelVersionRef>) -> Reply<v1::ModelVersion> {
        let r = r.into_inner();
        Ok(Response::new(version_out(
            self.tracking
                .store
                .get_model_version(&r.name, r.version)
                .await
                .map_err(status)?,
        )))
    }

    async fn list_model_versions(
        &self,
        r: Request<v1::ListModelVersionsRequest>,
    ) -> Reply<v1::ListModelVersionsReply> {
        let name = r.into_inner().name;
        let versions = self
            .tracking
            .store
            .model_versions(&name)
            .await
            .map_err(status)?;
        let versions = versions.into_iter().map(version_out).collect();
        Ok(Response::new(v1::ListModelVersionsReply { versions }))
    }

    async fn transition_model_version_stage(
        &self,
        r: Request<v1::TransitionStageRequest>,
    ) -> Reply<v1::TransitionStageReply> {
        let r = r.into_inner();
        let (version, archived) = self
            .tracking
            .store
            .transition_stage(&r.name, r.version, stage_in(r.stage)?, r.archive_existing)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::TransitionStageReply {
            version: Some(version_out(version)),
            archived: archived.into_iter().map(version_out).collect(),
        }))
    }

    async fn set_model_alias(
        &self,
        r: Request<v1::SetModelAliasRequest>,
    ) -> Reply<v1::RegisteredModel> {
        let r = r.into_inner();
        let store = &self.tracking.store;
        store
            .set_alias(&r.name, &r.alias, r.version)
            .await
            .map_err(status)?;
        Ok(Response::new(registered_out(
            store.get_registered_model(&r.name).await.map_err(status)?,
        )))
    }

    async fn delete_model_alias(
        &self,
        r: Request<v1::DeleteModelAliasRequest>,
    ) -> Reply<v1::RegisteredModel> {
        let r = r.into_inner();
        let store = &self.tracking.store;
        store
            .delete_alias(&r.name, &r.alias)
            .await
            .map_err(status)?;
        Ok(Response::new(registered_out(
            store.get_registered_model(&r.name).await.map_err(status)?,
        )))
    }

    async fn get_model_version_by_alias(
        &self,
        r: Request<v1::GetModelVersionByAliasRequest>,
    ) -> Reply<v1::ModelVersion> {
        let r = r.into_inner();
        Ok(Response::new(version_out(
            self.tracking
                .store
                .get_version_by_alias(&r.name, &r.alias)
                .await
                .map_err(status)?,
        )))
    }

    type WatchRegistryStream = EventStream;

    async fn watch_registry(&self, r: Request<v1::WatchRegistryRequest>) -> Reply<EventStream> {
        let r = r.into_inner();
        let what = registry::Watch {
            name: Some(r.name).filter(|n| !n.is_empty()),
            include_current: r.include_current,
        };
        let events = registry::watch(self.tracking.store.clone(), what, self.shutdown.clone())
            .await
            .map_err(status)?;
        Ok(Response::new(Box::pin(
            events.map(|e| e.map(watched_out).map_err(status)),
        )))
    }
}

/// The service, ready to hand to tonic.
pub fn server(
    tracking: Tracking,
    shutdown: CancellationToken,
) -> v1::tracking_server::TrackingServer<TrackingService> {
    v1::tracking_server::TrackingServer::new(TrackingService::new(tracking, shutdown))
        .max_decoding_message_size(64 * 1024 * 1024)
}
