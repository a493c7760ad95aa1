//! `readmit up`: the whole system on this machine in one process — an agent with every role,
//! SQLite files and a local artifact directory under the data dir — served until Ctrl-C.

use std::process::ExitCode;

use anyhow::Context as _;
use readmit_agent::settings::{self, LogFormat};
use readmit_agent::{RunningAgent, SettingsFlags};
use tracing_subscriber::EnvFilter;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub agent: SettingsFlags,
}

pub async fn run(global: &Global, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let settings = args
        .agent
        .load(settings::process_env())
        .context("invalid settings")?;
    let filter = EnvFilter::try_new(&settings.log_level).with_context(|| {
        format!(
            "setting `log_level`: {:?} is not a filter",
            settings.log_level
        )
    })?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create the data dir {}", settings.data_dir.display()))?;
    let token = settings.token.clone();
    let agent = RunningAgent::start(settings).await?;
    println!(
        "readmit is up: gRPC {}  HTTP {}",
        agent.grpc_url(),
        agent.http_url()
    );
    println!("  metrics  {}/metrics", agent.http_url());
    println!("  console  readmit --agent {} agents", agent.grpc_url());
    let shown = Global {
        agents: vec![agent.grpc_url()],
        token,
        output: global.output,
    };
    super::agents::run(&shown).await?;
    println!("Serving until Ctrl-C (or SIGTERM).");
    stop_signal().await?;
    println!("Stopping…");
    agent.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}
