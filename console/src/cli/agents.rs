//! `readmit agents`: every agent's info and latest status, side by side.

use std::process::ExitCode;
use std::time::Duration;

use readmit_proto::AgentVitals;
use serde::Serialize;

use super::Global;
use crate::fleet::AgentState;
use crate::output::{self, OutputFormat};

/// One agent as the command reports it: what it is and how it is doing, or why it did not
/// answer.
#[derive(Debug, Serialize)]
pub struct AgentView {
    /// The config file's name for the agent, or its URL.
    pub name: String,
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<InfoView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct InfoView {
    pub roles: Vec<String>,
    pub version: String,
    pub host: String,
    pub os: String,
    pub cpus: u32,
    pub pid: u32,
    pub grpc_addr: String,
    pub http_addr: String,
    pub started_at_ms: i64,
    pub auth_required: bool,
}

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub ready: bool,
    pub uptime_s: f64,
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub process_cpu_percent: f32,
    pub process_rss_bytes: u64,
    pub gauges: Vec<GaugeView>,
}

#[derive(Debug, Serialize)]
pub struct GaugeView {
    pub role: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
}

pub async fn run(global: &Global) -> anyhow::Result<ExitCode> {
    let fleet = global.fleet().await?;
    let views = futures_util::future::join_all(fleet.snapshot().into_iter().map(|state| {
        let client = fleet.client_of(&state.name);
        query(state, client)
    }))
    .await;
    match global.output {
        OutputFormat::Json => output::print_json(&views)?,
        OutputFormat::Table => print_table(&views),
    }
    let failed: Vec<&AgentView> = views.iter().filter(|v| v.error.is_some()).collect();
    for view in &failed {
        eprintln!("error: {}", view.error.as_deref().unwrap_or_default());
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One agent's view: what the fleet learned from `GetInfo`, and its status now.
async fn query(state: AgentState, client: Option<readmit_proto::Client>) -> AgentView {
    let mut view = AgentView {
        name: state.name.clone(),
        agent: state.url.clone(),
        info: None,
        status: None,
        error: None,
    };
    let Some(client) = client.filter(|_| state.up) else {
        view.error = Some(state.reason);
        return view;
    };
    view.info = Some(info_view(&state));
    match tokio::time::timeout(Duration::from_secs(10), client.agent_status()).await {
        Ok(Ok(status)) => view.status = Some(status_view(status)),
        Ok(Err(e)) => view.error = Some(output::call_error(client.url(), &e)),
        Err(_) => {
            view.error = Some(format!(
                "agent at {} did not answer within 10 s",
                client.url()
            ));
        }
    }
    view
}

fn info_view(s: &AgentState) -> InfoView {
    InfoView {
        roles: s.roles.clone(),
        version: s.version.clone(),
        host: s.host.clone(),
        os: s.os.clone(),
        cpus: s.cpus,
        pid: s.pid,
        grpc_addr: s.grpc_addr.clone(),
        http_addr: s.http_addr.clone(),
        started_at_ms: s.started_at_ms,
        auth_required: s.auth_required,
    }
}

fn status_view(s: AgentVitals) -> StatusView {
    StatusView {
        ready: s.ready,
        uptime_s: s.uptime_s,
        cpu_percent: s.cpu_percent,
        memory_used_bytes: s.memory_used_bytes,
        memory_total_bytes: s.memory_total_bytes,
        process_cpu_percent: s.process_cpu_percent,
        process_rss_bytes: s.process_rss_bytes,
        gauges: s
            .gauges
            .into_iter()
            .map(|g| GaugeView {
                role: g.role,
                name: g.name,
                value: g.value,
                unit: g.unit,
            })
            .collect(),
    }
}

fn print_table(views: &[AgentView]) {
    let mut table = output::table([
        "AGENT",
        "ROLES",
        "VERSION",
        "HOST",
        "UPTIME",
        "READY",
        "CPU",
        "AGENT CPU",
        "AGENT RSS",
        "HOST MEMORY",
        "AUTH",
    ]);
    for v in views {
        let (Some(info), Some(status)) = (&v.info, &v.status) else {
            table.add_row([v.agent.as_str(), "", "", "", "", "down"]);
            continue;
        };
        table.add_row([
            v.agent.clone(),
            info.roles.join(","),
            info.version.clone(),
            info.host.clone(),
            output::duration(status.uptime_s),
            if status.ready { "yes" } else { "no" }.to_owned(),
            format!("{:.0}%", status.cpu_percent),
            format!("{:.0}%", status.process_cpu_percent),
            output::bytes(status.process_rss_bytes),
            format!(
                "{} / {}",
                output::bytes(status.memory_used_bytes),
                output::bytes(status.memory_total_bytes)
            ),
            if info.auth_required { "token" } else { "none" }.to_owned(),
        ]);
    }
    println!("{table}");
    let down: Vec<&AgentView> = views.iter().filter(|v| v.status.is_none()).collect();
    if !down.is_empty() {
        let mut table = output::table(["AGENT", "DOWN BECAUSE"]);
        for v in down {
            table.add_row([v.agent.as_str(), v.error.as_deref().unwrap_or_default()]);
        }
        println!("{table}");
    }
    let gauges: Vec<(&str, &GaugeView)> = views
        .iter()
        .filter_map(|v| v.status.as_ref().map(|s| (v.agent.as_str(), s)))
        .flat_map(|(agent, s)| s.gauges.iter().map(move |g| (agent, g)))
        .collect();
    if !gauges.is_empty() {
        let mut table = output::table(["AGENT", "ROLE", "GAUGE", "VALUE"]);
        for (agent, g) in gauges {
            table.add_row([
                agent.to_owned(),
                g.role.clone(),
                g.name.clone(),
                format!("{} {}", g.value, g.unit).trim_end().to_owned(),
            ]);
        }
        println!("{table}");
    }
}
