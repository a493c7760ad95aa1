//! The `Agent` service: who this agent is and a stream of how it is doing.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use readmit_proto::v1;
use tokio_stream::wrappers::IntervalStream;
use tonic::{Request, Response, Status};

use crate::state::Shared;
use crate::status::Sample;

const DEFAULT_INTERVAL_MS: u32 = 1_000;
const MIN_INTERVAL_MS: u32 = 100;
const MAX_INTERVAL_MS: u32 = 3_600_000;

pub struct AgentService {
    shared: Arc<Shared>,
}

impl AgentService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn status(&self) -> v1::AgentStatus {
        status_message(&self.shared, &self.shared.latest_sample())
    }
}

fn status_message(shared: &Shared, sample: &Sample) -> v1::AgentStatus {
    v1::AgentStatus {
        timestamp_ms: sample.timestamp_ms,
        uptime_s: shared.uptime_s(),
        cpu_percent: sample.cpu_percent,
        memory_used_bytes: sample.memory_used_bytes,
        memory_total_bytes: sample.memory_total_bytes,
        process_cpu_percent: sample.process_cpu_percent,
        process_rss_bytes: sample.process_rss_bytes,
        ready: shared.is_ready(),
        gauges: role_gauges(shared),
    }
}

/// What each role reports about its own work.
fn role_gauges(shared: &Shared) -> Vec<v1::RoleGauge> {
    let mut gauges = Vec::new();
    if let Some(etl) = &shared.roles.etl {
        gauges.push(v1::RoleGauge {
            role: "etl".into(),
            name: "active_runs".into(),
            value: etl.runner.active_runs() as f64,
            unit: "runs".into(),
        });
        for (database, table) in [
            ("raw", "train_pool"),
            ("raw", "train_data"),
            ("clean", "diabetes_train_processed"),
        ] {
            if let Some(rows) = etl.data.metrics().table_rows(database, table) {
                gauges.push(v1::RoleGauge {
                    role: "etl".into(),
                    name: format!("{table}_rows"),
                    value: rows as f64,
                    unit: "rows".into(),
                });
            }
        }
    }
    gauges
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<v1::AgentStatus, Status>> + Send>>;

#[tonic::async_trait]
impl v1::agent_server::Agent for AgentService {
    async fn get_info(
        &self,
        _request: Request<v1::GetInfoRequest>,
    ) -> Result<Response<v1::AgentInfo>, Status> {
        let s = &self.shared;
        Ok(Response::new(v1::AgentInfo {
            roles: s
                .settings
                .roles
                .iter()
                .map(|r| r.name().to_owned())
                .collect(),
            version: crate::VERSION.to_owned(),
            host: s.host.host.clone(),
            started_at_ms: s.started_at_ms,
            uptime_s: s.uptime_s(),
            grpc_addr: s.grpc_addr.to_string(),
            http_addr: s.http_addr.to_string(),
            os: s.host.os.clone(),
            cpus: s.host.cpus,
            auth_required: s.guard.required(),
            pid: std::process::id(),
        }))
    }

    async fn get_status(
        &self,
        _request: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::AgentStatus>, Status> {
        Ok(Response::new(self.status()))
    }

    type WatchStatusStream = StatusStream;

    async fn watch_status(
        &self,
        request: Request<v1::WatchStatusRequest>,
    ) -> Result<Response<StatusStream>, Status> {
        let interval_ms = match request.into_inner().interval_ms {
            0 => DEFAULT_INTERVAL_MS,
            ms @ MIN_INTERVAL_MS..=MAX_INTERVAL_MS => ms,
            ms => {
                return Err(Status::invalid_argument(format!(
                    "interval_ms: {ms} is outside {MIN_INTERVAL_MS}..={MAX_INTERVAL_MS}"
                )));
            }
        };
        let shared = Arc::clone(&self.shared);
        let shutdown = shared.shutdown.clone().cancelled_owned();
        let ticks = IntervalStream::new(tokio::time::interval(Duration::from_millis(u64::from(
            interval_ms,
        ))));
        // Streams end when the agent shuts down, so graceful shutdown never waits on a watcher.
        let stream = ticks
            .map(move |_| Ok(status_message(&shared, &shared.latest_sample())))
            .take_until(shutdown);
        Ok(Response::new(Box::pin(stream)))
    }
}
