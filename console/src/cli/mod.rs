//! The command line: global connection flags and one module per subcommand group.

mod agents;
pub(crate) mod certs;
mod dags;
mod data;
mod docs;
mod loadtest;
mod models;
mod predict;
mod runs;
mod tui;
#[cfg(feature = "embedded")]
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::fleet::{Fleet, Role, Routed};
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
    /// Agent gRPC URL, or the name of an agent in the config file; repeat (or separate with
    /// commas) for several agents. Each operation goes to the agent that runs its role
    /// [default: every agent of the config file, else http://127.0.0.1:50051]
    #[arg(
        long = "agent",
        global = true,
        env = "READMIT_AGENT",
        value_delimiter = ','
    )]
    pub agents: Vec<String>,
    /// Console config file naming agents with their own URL, token and TLS files
    /// [default: $XDG_CONFIG_HOME/readmit/console.toml, when it exists]
    #[arg(
        long,
        global = true,
        env = "READMIT_CONSOLE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
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
    /// The model registry: list, versions, promote, archive, alias; what inference agents serve.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Score one encounter on an inference agent: JSON, --field pairs or a test-split record.
    Predict(predict::PredictArgs),
    /// Print a shell completion script, e.g. `readmit completions bash > /etc/bash_completion.d/readmit`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `readmit man | man -l -`; or a subcommand's.
    Man {
        /// A subcommand whose page to print, e.g. `dags`.
        subcommand: Option<String>,
    },
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
    /// Run the whole system locally: one agent with every role, its main job, then the TUI on a
    /// terminal (else serving until Ctrl-C); --headless prints a JSON summary of it all.
    #[cfg(feature = "embedded")]
    Up(Box<up::UpArgs>),
}

impl Global {
    /// Where the agents come from, as the flags and environment say.
    pub fn sources(&self) -> crate::fleet::Sources {
        crate::fleet::Sources {
            agents: self.agents.clone(),
            config: self.config.clone(),
            token: self.token.clone(),
            tls: readmit_proto::ClientTls {
                ca_cert: self.ca_cert.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            },
        }
    }

    /// Every agent named, connected and asked for its roles.
    pub async fn fleet(&self) -> anyhow::Result<Fleet> {
        Ok(Fleet::connect(self.sources().resolve()?).await)
    }

    /// A connection to an agent that runs `role`, with a clear error when none does.
    pub async fn client(&self, role: Role) -> anyhow::Result<Routed> {
        Ok(self.fleet().await?.client(role).await?)
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
        Command::Predict(args) => predict::run(&cli.global, &args).await,
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { subcommand } => docs::man(subcommand.as_deref()),
        Command::Certs(command) => certs::run(&command),
        Command::Loadtest(command) => loadtest::run(&cli.global, &command).await,
        #[cfg(feature = "embedded")]
        Command::Up(args) => up::run(&cli.global, &args).await,
    }
}
