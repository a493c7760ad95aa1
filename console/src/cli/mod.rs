//! The command line: global connection flags and one module per subcommand group.

mod agents;
#[cfg(feature = "embedded")]
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::OutputFormat;

/// Drive readmit's agents: data and DAGs, experiments and models, serving and load tests.
#[derive(Debug, Parser)]
#[command(name = "readmit", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
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
    /// How to print results.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each agent's roles, version, host, uptime, CPU and memory.
    Agents,
    /// Run the whole system locally: one agent with every role, until Ctrl-C.
    #[cfg(feature = "embedded")]
    Up(up::UpArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agents => agents::run(&cli.global).await,
        #[cfg(feature = "embedded")]
        Command::Up(args) => up::run(&cli.global, &args).await,
    }
}
