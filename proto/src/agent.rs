//! Typed `readmit.v1.Agent` operations on [`Client`]: what an agent says of itself (who it is,
//! how it is doing), in plain types.

use crate::client::Client;
use crate::registry::CallError;
use crate::v1;

/// Who an agent is (`Agent.GetInfo`): its roles, version, host and listeners.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentFacts {
    /// Lower case: `etl`, `tracking`, `inference`.
    pub roles: Vec<String>,
    pub version: String,
    pub host: String,
    /// Unix time in milliseconds when the process started serving.
    pub started_at_ms: i64,
    pub uptime_s: f64,
    /// The addresses the listeners are bound to.
    pub grpc_addr: String,
    pub http_addr: String,
    pub os: String,
    pub cpus: u32,
    /// Whether calls need a bearer token.
    pub auth_required: bool,
    pub pid: u32,
}

/// A number a role reports about its own work, such as rows ingested or active runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleGauge {
    pub role: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// How an agent is doing (`Agent.GetStatus`): readiness, host and process load, role gauges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentVitals {
    pub timestamp_ms: i64,
    pub uptime_s: f64,
    /// Host-wide CPU use, 0..100.
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// This process's CPU use (100 = one full core).
    pub process_cpu_percent: f32,
    pub process_rss_bytes: u64,
    /// Every role is ready to serve (as HTTP `/readyz` answers).
    pub ready: bool,
    pub gauges: Vec<RoleGauge>,
}

impl From<v1::AgentInfo> for AgentFacts {
    fn from(i: v1::AgentInfo) -> Self {
        Self {
            roles: i.roles,
            version: i.version,
            host: i.host,
            started_at_ms: i.started_at_ms,
            uptime_s: i.uptime_s,
            grpc_addr: i.grpc_addr,
            http_addr: i.http_addr,
            os: i.os,
            cpus: i.cpus,
            auth_required: i.auth_required,
            pid: i.pid,
        }
    }
}

impl From<v1::AgentStatus> for AgentVitals {
    fn from(s: v1::AgentStatus) -> Self {
        Self {
            timestamp_ms: s.timestamp_ms,
            uptime_s: s.uptime_s,
            cpu_percent: s.cpu_percent,
            memory_used_bytes: s.memory_used_bytes,
            memory_total_bytes: s.memory_total_bytes,
            process_cpu_percent: s.process_cpu_percent,
            process_rss_bytes: s.process_rss_bytes,
            ready: s.ready,
            gauges: s
                .gauges
                .into_iter()
                .map(|g| RoleGauge {
                    role: g.role,
                    name: g.name,
                    value: g.value,
                    unit: g.unit,
                })
                .collect(),
        }
    }
}

impl Client {
    /// What the agent says of itself (`Agent.GetInfo`): roles, version, listeners.
    pub async fn agent_info(&self) -> Result<AgentFacts, CallError> {
        let info = self
            .agent()
            .get_info(v1::GetInfoRequest {})
            .await
            .map_err(CallError::status("GetInfo"))?;
        Ok(info.into_inner().into())
    }

    /// How the agent is doing now (`Agent.GetStatus`).
    pub async fn agent_status(&self) -> Result<AgentVitals, CallError> {
        let status = self
            .agent()
            .get_status(v1::GetStatusRequest {})
            .await
            .map_err(CallError::status("GetStatus"))?;
        Ok(status.into_inner().into())
    }
}
