//! `readmit up`: the whole system on this machine in one process — an agent with every role,
//! SQLite files and a local artifact directory under the data dir — running its main job
//! (ingest, every batch appended, preprocessing, training and promotion), then served until
//! Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use readmit_agent::settings::{self, LogFormat};
use readmit_agent::{RunningAgent, SettingsFlags};
use tracing_subscriber::EnvFilter;

use readmit_proto::v1;

use super::Global;
use super::dags::{follow, state_name};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The data set to ingest (CSV, plain or gzip) [default: the UCI file, downloaded and
    /// cached, or synthetic records when it cannot be downloaded]
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Rows of synthetic records when the real file is neither given nor downloadable.
    #[arg(long, default_value_t = 101_766)]
    pub synthetic_rows: u64,
    /// Only serve: skip the main job.
    #[arg(long)]
    pub serve_only: bool,
    #[command(flatten)]
    pub agent: SettingsFlags,
}

pub async fn run(global: &Global, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let mut settings = args
        .agent
        .load(settings::process_env())
        .context("invalid settings")?;
    // The agent ingests by path only from its import directory: the operator's own file names
    // this one's.
    if let Some(dir) = args
        .data
        .as_ref()
        .and_then(|d| std::fs::canonicalize(d).ok())
        .and_then(|d| d.parent().map(PathBuf::from))
    {
        settings.import_dir = dir;
    }
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
    // Over TLS, the console's own calls trust the agent's CA and present its certificate.
    let (tls_ca, own_tls) = (settings.tls_ca.clone(), settings.tls.clone());
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
        ca_cert: global.ca_cert.clone().or(tls_ca),
        tls_cert: global
            .tls_cert
            .clone()
            .or_else(|| own_tls.as_ref().map(|t| t.cert.clone())),
        tls_key: global
            .tls_key
            .clone()
            .or_else(|| own_tls.as_ref().map(|t| t.key.clone())),
        ..global.clone()
    };
    super::agents::run(&shown).await?;
    if !args.serve_only {
        let client = shown.client().await?;
        if let Err(e) = main_job(&client, args).await {
            eprintln!("The main job stopped: {e:#}");
            eprintln!("The agent still serves; see `readmit dags runs` and `readmit data status`.");
        }
    }
    println!("Serving until Ctrl-C (or SIGTERM).");
    stop_signal().await?;
    println!("Stopping…");
    agent.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// What the original system did by hand and by Airflow: the data set into RawData, every batch
/// appended, CleanData made, the candidates trained and logged, the best in Production.
async fn main_job(client: &readmit_proto::Client, args: &UpArgs) -> anyhow::Result<()> {
    let mut etl = client.etl();
    let status = etl
        .get_data_status(v1::GetDataStatusRequest {})
        .await?
        .into_inner();
    if status.dataset_sha256.is_empty() {
        let path = match &args.data {
            Some(path) => {
                std::fs::canonicalize(path).with_context(|| format!("--data {}", path.display()))?
            }
            None => match etl.fetch_dataset(v1::FetchDatasetRequest::default()).await {
                Ok(f) => {
                    let how = if f.get_ref().cached {
                        "cached"
                    } else {
                        "downloaded"
                    };
                    println!("data: the UCI file, {how} at {}", f.get_ref().path);
                    PathBuf::from(f.into_inner().path)
                }
                Err(e) => {
                    println!("data: the UCI file cannot be downloaded ({})", e.message());
                    let s = etl
                        .synthesize_dataset(v1::SynthesizeDatasetRequest {
                            rows: args.synthetic_rows,
                            seed: 42,
                            path: String::new(),
                        })
                        .await?
                        .into_inner();
                    println!(
                        "data: {} synthetic records with the real schema at {}",
                        s.rows, s.path
                    );
                    PathBuf::from(s.path)
                }
            },
        };
        let reply = etl
            .ingest(v1::IngestRequest {
                path: path.display().to_string(),
                split: v1::SplitKind::Original as i32,
                replace: false,
            })
            .await?
            .into_inner();
        println!("ingest: {}", reply.message);
    } else {
        println!(
            "ingest: RawData already holds a data set (sha256 {})",
            status.dataset_sha256
        );
    }
    loop {
        let r = etl
            .append_batch(v1::AppendBatchRequest {
                batch_size: 0,
                request_id: uuid::Uuid::new_v4().simple().to_string(),
            })
            .await?
            .into_inner();
        println!("append: {}", r.message);
        if r.exhausted || r.pool_remaining == 0 {
            break;
        }
    }
    for dag in ["preprocess_incremental", "train_and_register"] {
        println!("{dag}: running");
        let run = etl
            .trigger_dag(v1::TriggerDagRequest {
                dag: dag.into(),
                params: Default::default(),
            })
            .await?
            .into_inner();
        let run = follow(&mut etl, run, true).await?;
        if v1::RunState::try_from(run.state) != Ok(v1::RunState::Succeeded) {
            anyhow::bail!("{dag} {}: {}", state_name(run.state), run.error);
        }
        println!("{dag}: succeeded in {:.1} s", run.duration_s);
    }
    let versions = client
        .tracking()
        .list_model_versions(v1::ListModelVersionsRequest {
            name: "best_diabetes_readmission_model".into(),
        })
        .await?
        .into_inner()
        .versions;
    if let Some(v) = versions
        .iter()
        .find(|v| v.stage == v1::Stage::Production as i32)
    {
        println!(
            "model: best_diabetes_readmission_model version {} is in Production ({})",
            v.version, v.description
        );
        wait_served(client, v.version).await?;
    }
    Ok(())
}

/// Waits until the inference role serves `version` (it follows the registry on its own).
async fn wait_served(client: &readmit_proto::Client, version: i64) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let served = match client
            .inference()
            .get_served_model(v1::GetServedModelRequest {})
            .await
        {
            Ok(reply) => reply.into_inner(),
            // Started without the inference role: nothing to wait for.
            Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(()),
            Err(status) => return Err(status.into()),
        };
        if served.loaded && served.version == version {
            println!(
                "serving: version {version} answers POST /predict, /invocations and /v2/models/{}/infer",
                served.name
            );
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the inference role did not load version {version} within 2 minutes: {}",
                served.last_error
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
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
