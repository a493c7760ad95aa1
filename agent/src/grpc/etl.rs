//! The `Etl` gRPC service: DAGs, runs, logs and the live event stream over the DAG runner.
//! Handlers convert and delegate; the runner holds the logic.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use readmit_proto::v1;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::etl::Etl;
use crate::etl::data::{DataService, IngestReport, TableCount};
use crate::etl::raw::DEFAULT_BATCH_SIZE;
use crate::etl::runner::{DagStatus, Runner};
use crate::etl::runs::{DagRun, EtlError, LogLine, RunEventKind, RunState, TaskInstance};
use readmit_ml::split::SplitMethod;

pub struct EtlService {
    runner: Runner,
    data: DataService,
    shutdown: CancellationToken,
}

/// The one mapping from ETL errors to gRPC status codes.
pub fn status(error: EtlError) -> Status {
    let message = error.to_string();
    match error {
        EtlError::NotFound { .. } => Status::not_found(message),
        EtlError::Conflict(reason) => Status::failed_precondition(reason),
        EtlError::Invalid { .. } => Status::invalid_argument(message),
        EtlError::Data(_) => Status::invalid_argument(message),
        EtlError::Unavailable(_) => Status::unavailable(message),
        EtlError::TooLarge { .. } => Status::resource_exhausted(message),
        EtlError::Db(_)
        | EtlError::Store(_)
        | EtlError::Setup(_)
        | EtlError::Corrupt(_)
        | EtlError::Io { .. }
        | EtlError::Ml(_) => {
            tracing::error!(error = %message, "ETL call failed");
            Status::internal(message)
        }
    }
}

fn state_out(s: RunState) -> i32 {
    (match s {
        RunState::Queued => v1::RunState::Queued,
        RunState::Running => v1::RunState::Running,
        RunState::Succeeded => v1::RunState::Succeeded,
        RunState::Failed => v1::RunState::Failed,
        RunState::Cancelled => v1::RunState::Cancelled,
        RunState::UpForRetry => v1::RunState::UpForRetry,
        RunState::UpstreamFailed => v1::RunState::UpstreamFailed,
        RunState::Skipped => v1::RunState::Skipped,
    }) as i32
}

fn seconds(start: Option<i64>, end: Option<i64>) -> f64 {
    match (start, end) {
        (Some(s), Some(e)) => (e - s) as f64 / 1000.0,
        (Some(s), None) => (crate::now_ms() - s) as f64 / 1000.0,
        _ => 0.0,
    }
}

fn task_out(t: TaskInstance) -> v1::TaskInstance {
    v1::TaskInstance {
        duration_s: seconds(t.started_at, t.ended_at),
        task_id: t.task_id,
        kind: t.kind,
        state: state_out(t.state),
        attempt: t.attempt,
        max_attempts: t.max_attempts,
        started_at_ms: t.started_at.unwrap_or_default(),
        ended_at_ms: t.ended_at.unwrap_or_default(),
        error: t.error.unwrap_or_default(),
    }
}

fn run_out(r: DagRun) -> v1::DagRun {
    v1::DagRun {
        duration_s: seconds(r.started_at, r.ended_at),
        run_id: r.run_id,
        dag: r.dag,
        state: state_out(r.state),
        trigger: r.trigger,
        params: r.params.into_iter().collect(),
        queued_at_ms: r.queued_at,
        started_at_ms: r.started_at.unwrap_or_default(),
        ended_at_ms: r.ended_at.unwrap_or_default(),
        tasks: r.tasks.into_iter().map(task_out).collect(),
        error: r.error.unwrap_or_default(),
    }
}

fn dag_out(d: DagStatus) -> v1::Dag {
    v1::Dag {
        name: d.def.name,
        description: d.def.description,
        schedule: d.def.schedule.unwrap_or_default(),
        paused: d.paused,
        max_active_runs: d.def.max_active_runs,
        // The wire shows each declared parameter's default; a required one shows empty.
        params: d
            .def
            .params
            .into_iter()
            .map(|(name, p)| (name, p.default.unwrap_or_default()))
            .collect(),
        tasks: d
            .def
            .tasks
            .into_iter()
            .map(|t| v1::TaskSpec {
                id: t.id,
                kind: t.kind,
                depends_on: t.depends_on,
                retries: t.retries,
                retry_delay_ms: t.retry_delay.as_millis() as u64,
                timeout_ms: t.timeout.map_or(0, |d| d.as_millis() as u64),
                params: t.params.into_iter().collect(),
            })
            .collect(),
        source: d
            .def
            .source
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        next_run_at_ms: d.next_run_at.unwrap_or_default(),
    }
}

fn log_out(l: LogLine) -> v1::LogLine {
    v1::LogLine {
        seq: l.seq,
        timestamp_ms: l.timestamp,
        task_id: l.task_id,
        attempt: l.attempt,
        level: l.level,
        message: l.message,
    }
}

fn split_in(split: i32) -> Result<SplitMethod, Status> {
    match v1::SplitKind::try_from(split) {
        Ok(v1::SplitKind::Unspecified | v1::SplitKind::Original) => Ok(SplitMethod::Original),
        Ok(v1::SplitKind::Grouped) => Ok(SplitMethod::Grouped),
        Err(_) => Err(Status::invalid_argument(format!(
            "split: unknown value {split}"
        ))),
    }
}

fn split_out(split: SplitMethod) -> i32 {
    (match split {
        SplitMethod::Original => v1::SplitKind::Original,
        SplitMethod::Grouped => v1::SplitKind::Grouped,
    }) as i32
}

fn tables_out(tables: Vec<TableCount>) -> Vec<v1::TableCount> {
    tables
        .into_iter()
        .map(|t| {
            let (fingerprint, readmitted) = t.facts.map_or((String::new(), None), |f| {
                (f.fingerprint, Some(f.readmitted))
            });
            v1::TableCount {
                database: t.database.into(),
                table: t.table.into(),
                rows: t.rows,
                fingerprint,
                readmitted,
            }
        })
        .collect()
}

fn ingest_out(r: IngestReport) -> v1::IngestReply {
    v1::IngestReply {
        changed: r.changed,
        sha256: r.dataset.sha256,
        split: split_out(r.dataset.split),
        tables: tables_out(r.tables),
        duration_s: r.duration_s,
        message: r.message,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::RunEvent, Status>> + Send>>;
type Reply<T> = Result<Response<T>, Status>;

impl EtlService {
    pub fn new(etl: Etl, shutdown: CancellationToken) -> Self {
        Self {
            runner: etl.runner,
            data: etl.data,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl v1::etl_server::Etl for EtlService {
    async fn ingest(&self, r: Request<v1::IngestRequest>) -> Reply<v1::IngestReply> {
        let r = r.into_inner();
        if r.path.trim().is_empty() {
            return Err(Status::invalid_argument(
                "path: give the CSV's path on the agent",
            ));
        }
        let report = self
            .data
            .ingest_file(&r.path, split_in(r.split)?, r.replace)
            .await
            .map_err(status)?;
        Ok(Response::new(ingest_out(report)))
    }

    async fn ingest_upload(
        &self,
        r: Request<Streaming<v1::IngestChunk>>,
    ) -> Reply<v1::IngestReply> {
        let mut chunks = r.into_inner();
        let header = match chunks.message().await? {
            Some(v1::IngestChunk {
                chunk: Some(v1::ingest_chunk::Chunk::Header(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of an upload must be its header",
                ));
            }
        };
        let name = if header.file_name.trim().is_empty() {
            "<upload>".to_owned()
        } else {
            header.file_name.clone()
        };
        // The real file is 18 MB (3.3 MB gzipped); the bound is a setting, checked as each
        // chunk arrives so an oversized upload is refused before it fills memory.
        let max = self.data.max_ingest_bytes();
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            match chunk.chunk {
                Some(v1::ingest_chunk::Chunk::Data(data)) => {
                    if (bytes.len() + data.len()) as u64 > max {
                        return Err(status(EtlError::TooLarge {
                            what: format!("upload {name:?}"),
                            limit: "max_ingest_bytes",
                            max,
                        }));
                    }
                    bytes.extend_from_slice(&data);
                }
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "{name}: only data may follow the header"
                    )));
                }
            }
        }
        let report = self
            .data
            .ingest_bytes(bytes, &name, split_in(header.split)?, header.replace)
            .await
            .map_err(status)?;
        Ok(Response::new(ingest_out(report)))
    }

    async fn get_data_status(
        &self,
        _r: Request<v1::GetDataStatusRequest>,
    ) -> Reply<v1::DataStatus> {
        let s = self.data.status().await.map_err(status)?;
        let tables = tables_out(s.tables);
        Ok(Response::new(match s.dataset {
            None => v1::DataStatus {
                tables,
                batch_size: i64::from(DEFAULT_BATCH_SIZE),
                ..Default::default()
            },
            Some(d) => v1::DataStatus {
                dataset_sha256: d.sha256,
                split: split_out(d.split),
                ingested_at_ms: d.ingested_at,
                tables,
                pool_rows: d.pool_rows,
                train_rows: d.train_rows,
                pool_remaining: d.pool_rows - d.train_rows,
                batches_appended: d.batches,
                batch_size: i64::from(DEFAULT_BATCH_SIZE),
            },
        }))
    }

    async fn append_batch(
        &self,
        r: Request<v1::AppendBatchRequest>,
    ) -> Reply<v1::AppendBatchReply> {
        let r = r.into_inner();
        let size = if r.batch_size == 0 {
            DEFAULT_BATCH_SIZE
        } else {
            r.batch_size
        };
        let request_id = if r.request_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            r.request_id
        };
        let a = self
            .data
            .append_batch(size, &request_id)
            .await
            .map_err(status)?;
        let message = a.message();
        Ok(Response::new(v1::AppendBatchReply {
            appended: a.rows,
            train_rows: a.train_rows,
            pool_remaining: a.pool_remaining,
            exhausted: a.exhausted,
            batch_number: a.batch_number,
            message,
            replayed: a.replayed,
        }))
    }

    async fn fetch_dataset(
        &self,
        r: Request<v1::FetchDatasetRequest>,
    ) -> Reply<v1::FetchDatasetReply> {
        let r = r.into_inner();
        let url = Some(r.url.trim()).filter(|u| !u.is_empty());
        let f = self.data.fetch(url, r.force).await.map_err(status)?;
        Ok(Response::new(v1::FetchDatasetReply {
            path: f.path.display().to_string(),
            sha256: f.sha256,
            bytes: i64::try_from(f.bytes).unwrap_or(i64::MAX),
            cached: f.cached,
        }))
    }

    async fn synthesize_dataset(
        &self,
        r: Request<v1::SynthesizeDatasetRequest>,
    ) -> Reply<v1::SynthesizeDatasetReply> {
        let r = r.into_inner();
        const MAX_ROWS: u64 = 10_000_000;
        if r.rows > MAX_ROWS {
            return Err(Status::invalid_argument(format!(
                "rows: at most {MAX_ROWS}"
            )));
        }
        let path = Some(r.path.trim()).filter(|p| !p.is_empty());
        let rows = usize::try_from(r.rows).unwrap_or(usize::MAX);
        let (path, sha256) = self
            .data
            .synthesize(rows, r.seed, path)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::SynthesizeDatasetReply {
            path: path.display().to_string(),
            rows: r.rows,
            sha256,
        }))
    }

    async fn list_dags(&self, _r: Request<v1::ListDagsRequest>) -> Reply<v1::ListDagsReply> {
        let dags = self.runner.list_dags().await.map_err(status)?;
        Ok(Response::new(v1::ListDagsReply {
            dags: dags.into_iter().map(dag_out).collect(),
            errors: self
                .runner
                .load_errors()
                .iter()
                .map(|e| v1::DagLoadError {
                    file: e.file.clone(),
                    line: e.line,
                    reason: e.reason.clone(),
                })
                .collect(),
        }))
    }

    async fn set_dag_paused(&self, r: Request<v1::SetDagPausedRequest>) -> Reply<v1::Dag> {
        let r = r.into_inner();
        Ok(Response::new(dag_out(
            self.runner
                .set_paused(&r.dag, r.paused)
                .await
                .map_err(status)?,
        )))
    }

    async fn trigger_dag(&self, r: Request<v1::TriggerDagRequest>) -> Reply<v1::DagRun> {
        let r = r.into_inner();
        let params: BTreeMap<String, String> = r.params.into_iter().collect();
        Ok(Response::new(run_out(
            self.runner.trigger(&r.dag, params).await.map_err(status)?,
        )))
    }

    async fn list_dag_runs(
        &self,
        r: Request<v1::ListDagRunsRequest>,
    ) -> Reply<v1::ListDagRunsReply> {
        let r = r.into_inner();
        let dag = Some(r.dag.as_str()).filter(|d| !d.is_empty());
        let runs = self
            .runner
            .store()
            .list_runs(dag, r.limit)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::ListDagRunsReply {
            runs: runs.into_iter().map(run_out).collect(),
        }))
    }

    async fn get_dag_run(&self, r: Request<v1::GetDagRunRequest>) -> Reply<v1::DagRun> {
        let id = r.into_inner().run_id;
        Ok(Response::new(run_out(
            self.runner.store().get_run(&id).await.map_err(status)?,
        )))
    }

    async fn cancel_dag_run(&self, r: Request<v1::CancelDagRunRequest>) -> Reply<v1::DagRun> {
        let id = r.into_inner().run_id;
        Ok(Response::new(run_out(
            self.runner.cancel(&id).await.map_err(status)?,
        )))
    }

    async fn get_run_logs(&self, r: Request<v1::GetRunLogsRequest>) -> Reply<v1::GetRunLogsReply> {
        let r = r.into_inner();
        let task = Some(r.task_id.as_str()).filter(|t| !t.is_empty());
        let lines = self
            .runner
            .store()
            .logs(&r.run_id, task, r.after_seq)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::GetRunLogsReply {
            lines: lines.into_iter().map(log_out).collect(),
        }))
    }

    type WatchRunsStream = EventStream;

    async fn watch_runs(&self, r: Request<v1::WatchRunsRequest>) -> Reply<EventStream> {
        let only = Some(r.into_inner().run_id).filter(|id| !id.is_empty());
        if let Some(id) = &only {
            self.runner.store().get_run(id).await.map_err(status)?;
        }
        let events = self.runner.subscribe();
        let stream = futures_util::stream::unfold(events, |mut events| async move {
            match events.recv().await {
                Ok(e) => Some((Ok(e), events)),
                // A slow watcher misses events rather than slowing the runner; it is told.
                Err(RecvError::Lagged(n)) => Some((
                    Err(Status::resource_exhausted(format!(
                        "{n} events were dropped: read faster"
                    ))),
                    events,
                )),
                Err(RecvError::Closed) => None,
            }
        })
        .filter_map(move |item| {
            let only = only.clone();
            async move {
                match item {
                    Ok(e) if only.as_ref().is_some_and(|id| *id != e.run_id) => None,
                    Ok(e) => Some(Ok(v1::RunEvent {
                        timestamp_ms: e.timestamp,
                        run_id: e.run_id,
                        dag: e.dag,
                        event: Some(match e.kind {
                            RunEventKind::State {
                                task_id,
                                state,
                                attempt,
                                error,
                            } => v1::run_event::Event::State(v1::StateChange {
                                task_id,
                                state: state_out(state),
                                attempt,
                                error: error.unwrap_or_default(),
                            }),
                            RunEventKind::Log(line) => v1::run_event::Event::Log(log_out(line)),
                        }),
                    })),
                    Err(s) => Some(Err(s)),
                }
            }
        })
        .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_test_records(
        &self,
        r: Request<v1::GetTestRecordsRequest>,
    ) -> Reply<v1::GetTestRecordsReply> {
        const MAX: u32 = 1000;
        let r = r.into_inner();
        if r.limit > MAX {
            return Err(Status::invalid_argument(format!(
                "limit: at most {MAX} records a call, not {}",
                r.limit
            )));
        }
        let offset = usize::try_from(r.offset).unwrap_or(usize::MAX);
        let (records, total) = self
            .data
            .test_records(offset, r.limit.max(1) as usize)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::GetTestRecordsReply {
            records: records
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .map(|v| crate::loadtest::payloads::grpc_record(&v))
                .collect(),
            total: total as u64,
        }))
    }
}

pub fn server(etl: Etl, shutdown: CancellationToken) -> v1::etl_server::EtlServer<EtlService> {
    v1::etl_server::EtlServer::new(EtlService::new(etl, shutdown))
        .max_decoding_message_size(64 * 1024 * 1024)
}
