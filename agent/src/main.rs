//! `readmit-agent`: parses the command line, sets up logging and serves until SIGTERM or Ctrl-C.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use readmit_agent::settings::{self, LogFormat};
use readmit_agent::{Settings, SettingsFlags};
use tracing_subscriber::EnvFilter;

/// Serving allocates a few hundred small blocks a request (JSON, records, tensors); mimalloc's
/// thread-local free lists answer them in a fraction of glibc's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs readmit's roles: etl (data and DAGs), tracking (experiments, registry, MLflow API) and
/// inference (predictions, load tests).
#[derive(Debug, Parser)]
#[command(
    name = "readmit-agent",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: SettingsFlags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configured roles (what the agent does when no subcommand is given).
    Serve(Box<SettingsFlags>),
    /// Measure a role and print one JSON object.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The tracking role against a real `mlflow server` on the same disk.
    Tracking(readmit_agent::bench::TrackingBenchArgs),
    /// The ETL role's data path: ingest, every batch appended, the preprocessing DAG.
    Etl(readmit_agent::bench::EtlBenchArgs),
    /// The inference role under load, beside a bare JSON handler (the floor).
    Serve(readmit_agent::bench::ServeBenchArgs),
    /// The load-test engine against wrk, both sending to the floor.
    Loadgen(readmit_agent::bench::LoadgenBenchArgs),
    /// The floor's server, which `bench serve` and `bench loadgen` start themselves.
    #[command(hide = true)]
    ServeFloor(readmit_agent::bench::FloorArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let flags = match cli.command {
        Some(Command::Serve(flags)) => *flags,
        Some(Command::Bench(bench)) => return run_bench(bench),
        None => cli.serve,
    };
    let settings = flags
        .load(settings::process_env())
        .context("invalid settings")?;
    init_logging(&settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(settings))
}

fn run_bench(bench: BenchCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        match bench {
            BenchCommand::Tracking(args) => readmit_agent::bench::tracking(args).await,
            BenchCommand::Etl(args) => readmit_agent::bench::etl(args).await,
            BenchCommand::Serve(args) => readmit_agent::bench::serve(args).await,
            BenchCommand::Loadgen(args) => readmit_agent::bench::loadgen(args).await,
            BenchCommand::ServeFloor(args) => {
                readmit_agent::bench::floor(args).await?;
                Ok(serde_json::Value::Null)
            }
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let (grpc, http) = readmit_agent::bind(&settings).await?;
    readmit_agent::serve(settings, grpc, http, shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGTERM (what Kubernetes and systemd send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.log_level).with_context(|| {
        format!(
            "setting `log_level`: {:?} is not a log filter",
            settings.log_level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
