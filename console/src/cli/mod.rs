//! The command line: global connection flags and one module per subcommand group.

mod agents;
mod certs;
mod dags;
mod data;
mod loadtest;
mod models;
mod runs;
mod tui;
#[cfg(feature = "embedded")]
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::OutputFormat;

/// Drive readmit's agents: data and DAGs, experiments and models, serving and load tests.
#[derive(Debug, Parser)]
#[command(name = "readmit", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Without one, the TUI opens (as `readmit tui`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Agent gRPC URL; repeat for several agents.
    #[arg(
        long = "agent",
        global = true,
        env = "READMIT_AGENT",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    pub agents: Vec<String>,
    /// Bearer token for agents started with one.
    #[arg(long, global = true, env = "READMIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) the agents' certificates are verified with, for https:// agent
    /// URLs (an agent URL without a scheme is then https://) [default: the public web roots]
    #[arg(long, global = true, env = "READMIT_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for agents that require mutual TLS (with --tls-key).
    #[arg(long, global = true, env = "READMIT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, global = true, env = "READMIT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// How to print results.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each agent's roles, version, host, uptime, CPU and memory.
    Agents,
    /// DAGs and their runs: list, trigger (and wait), runs, logs (and follow), pause, cancel.
    #[command(subcommand)]
    Dags(dags::DagsCommand),
    /// RawData and CleanData: ingest a CSV, status, append a batch, fetch the UCI file, synthesize records.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Tracked runs: list with MLflow filters, compare side by side.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// The model registry: list, versions, promote, archive, alias.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Certificates for TLS between the agents and the console.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Load tests on an inference agent's engine: run, capacity search, list, show, watch, stop.
    #[command(subcommand)]
    Loadtest(loadtest::LoadTestCommand),
    /// The operations console: a terminal UI over every agent (also `readmit` alone).
    Tui(tui::TuiArgs),
    /// Measure one TUI frame (update and draw) with 10,000 runs loaded; prints JSON.
    #[command(name = "bench-tui", hide = true)]
    BenchTui {
        /// Frames measured on each screen.
        #[arg(long, default_value_t = 200)]
        frames: usize,
    },
    /// Run the whole system locally: one agent with every role, until Ctrl-C.
    #[cfg(feature = "embedded")]
    Up(Box<up::UpArgs>),
}

impl Global {
    /// A connection to the first agent named: the one whose role a command needs.
    pub async fn client(&self) -> anyhow::Result<readmit_proto::Client> {
        let url = self
            .agents
            .first()
            .map_or("http://127.0.0.1:50051", String::as_str);
        Ok(self.connect(url).await?)
    }

    /// A connection to the agent at `url`, with the token and TLS options given.
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<readmit_proto::Client, readmit_proto::ClientError> {
        let tls = readmit_proto::ClientTls {
            ca_cert: self.ca_cert.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        };
        readmit_proto::Client::connect_with(url, self.token.as_deref(), &tls).await
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Some(command) = cli.command else {
        return tui::run(&cli.global, &tui::TuiArgs::from_env()).await;
    };
    match command {
        Command::Tui(args) => tui::run(&cli.global, &args).await,
        Command::BenchTui { frames } => {
            crate::output::print_json(&crate::tui::bench::run(frames.max(1))?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agents => agents::run(&cli.global).await,
        Command::Dags(command) => dags::run(&cli.global, &command).await,
        Command::Data(command) => data::run(&cli.global, &command).await,
        Command::Runs(command) => runs::run(&cli.global, &command).await,
        Command::Models(command) => models::run(&cli.global, &command).await,
        Command::Certs(command) => certs::run(&command),
        Command::Loadtest(command) => loadtest::run(&cli.global, &command).await,
        #[cfg(feature = "embedded")]
        Command::Up(args) => up::run(&cli.global, &args).await,
    }
}
