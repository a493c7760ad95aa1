//! `readmit up`: the whole system on this machine in one process — an agent with every role,
//! SQLite files and a local artifact directory under the data dir — running its main job
//! (ingest, every batch appended, preprocessing, training and promotion), waiting until the
//! Production model is served, then handing over to the console (or, `--headless`, printing
//! one JSON summary) while it serves until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use readmit_agent::settings::{self, LogFormat};
use readmit_agent::{RunningAgent, SettingsFlags};
use tracing_subscriber::EnvFilter;

use readmit_proto::Client;

use super::Global;
use crate::fleet::{Fleet, Role};

mod summary;

/// The registered model the main job promotes.
const MODEL: &str = "best_diabetes_readmission_model";
/// The DAGs of the main job, in order.
const DAGS: [&str; 2] = ["preprocess_incremental", "train_and_register"];

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The data set to ingest (CSV, plain or gzip) [default: the UCI file, downloaded and
    /// cached, or synthetic records when it cannot be downloaded]
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic")]
    pub data: Option<PathBuf>,
    /// Ingest synthetic records with the real schema instead of the UCI file.
    #[arg(long)]
    pub synthetic: bool,
    /// Rows of synthetic records (with --synthetic, or when the real file is neither given
    /// nor downloadable).
    #[arg(long, default_value_t = 101_766)]
    pub synthetic_rows: u64,
    /// Train only these candidates, comma separated (train_and_register's `models`
    /// parameter, e.g. LR_C_0.1,GBM_300_d5) [default: every candidate]
    #[arg(long, value_name = "LIST")]
    pub models: Option<String>,
    /// Only serve: skip the main job.
    #[arg(long)]
    pub serve_only: bool,
    /// Print one JSON summary on stdout once the Production model is served (data, DAG runs,
    /// tracked runs, the model, an example prediction, the endpoints), then keep serving.
    #[arg(long)]
    pub headless: bool,
    /// With --headless: exit after the summary, stopping the stack.
    #[arg(long, requires = "headless")]
    pub once: bool,
    #[command(flatten)]
    pub agent: SettingsFlags,
}

/// Where the main job's messages go: stdout for people, stderr when stdout carries the JSON
/// summary; above the progress bar, if one is drawn.
struct Say {
    headless: bool,
    bar: indicatif::ProgressBar,
}

impl Say {
    fn line(&self, text: &str) {
        self.bar.suspend(|| {
            if self.headless {
                eprintln!("{text}");
            } else {
                println!("{text}");
            }
        });
    }

    /// The pipeline moves on to step `name`: the bar counts the steps done.
    fn step(&self, name: &str) {
        if !self.bar.message().is_empty() {
            self.bar.inc(1);
        }
        self.bar.set_message(name.to_owned());
    }
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
    // With the TUI to come, the stack logs to the TUI's log file, never to its screen.
    let tui = !args.headless && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let writer = if tui {
        let path = crate::tui::default_log_file();
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(
            crate::tui::open_log(&path)?,
        ))
    } else {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr)
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!tui)
        .with_writer(writer);
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
    let shown = Global {
        agents: vec![agent.grpc_url()],
        config: None,
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
    let fleet = Arc::new(shown.fleet().await?);
    let bars = !args.headless && crate::progress::shown(global.output);
    let mut say = Say {
        headless: args.headless,
        bar: indicatif::ProgressBar::hidden(),
    };
    say.line(&format!(
        "readmit is up: gRPC {}  HTTP {}",
        agent.grpc_url(),
        agent.http_url()
    ));
    say.line(&format!("  metrics  {}/metrics", agent.http_url()));
    say.line(&format!(
        "  console  readmit --agent {} agents",
        agent.grpc_url()
    ));
    if !args.headless {
        // Proof that the console reaches the stack as any other console would.
        super::agents::run(&shown).await?;
    }
    say.bar = crate::progress::steps(bars, 5, "readmit up");
    let mut job = Job::default();
    let result = if args.serve_only {
        Ok(())
    } else {
        main_job(&fleet, args, &say, &mut job).await
    };
    say.bar.finish_and_clear();
    if args.headless {
        // The summary is the contract of --headless: a job that failed exits non-zero.
        if let Err(e) = result {
            agent.stop().await?;
            return Err(e.context("the main job stopped"));
        }
        let summary = summary::build(&fleet, &job, &agent).await?;
        crate::output::print_json(&summary)?;
        if args.once {
            agent.stop().await?;
            return Ok(ExitCode::SUCCESS);
        }
        stop_signal().await?;
    } else {
        if let Err(e) = result {
            eprintln!("The main job stopped: {e:#}");
            eprintln!("The agent still serves; see `readmit dags runs` and `readmit data status`.");
        }
        attend(&fleet, tui).await?;
    }
    eprintln!("Stopping…");
    agent.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// The operator's console on the running stack: the TUI when this is a terminal (quitting it
/// stops the stack), else serving until Ctrl-C or SIGTERM.
async fn attend(fleet: &Arc<Fleet>, tui: bool) -> anyhow::Result<()> {
    if tui {
        let keymap = crate::tui::load_keymap(None)?;
        return crate::tui::run(fleet.clone(), keymap).await;
    }
    let _following = fleet.follow();
    println!("Serving until Ctrl-C (or SIGTERM).");
    stop_signal().await
}

/// What the main job did, for the summary.
#[derive(Debug, Default)]
pub struct Job {
    /// The DAG runs this job ran, or (when nothing needed doing) the last run of each.
    pub dag_runs: Vec<readmit_proto::DagRunInfo>,
    /// Whether this job ingested the data set (false when RawData already held it).
    pub ingested: bool,
    /// Batches appended by this job.
    pub appended: u32,
    /// The Production version the inference role serves.
    pub production: Option<i64>,
}

/// What the original system did by hand and by Airflow: the data set into RawData, every batch
/// appended, CleanData made, the candidates trained and logged, the best in Production. On a
/// data dir that already did it all, nothing runs again.
async fn main_job(fleet: &Fleet, args: &UpArgs, say: &Say, job: &mut Job) -> anyhow::Result<()> {
    let etl_agent = fleet.client(Role::Etl).await?;
    say.step("ingest");
    let status = etl_agent.data_status().await?;
    match status.dataset_sha256 {
        None => {
            let path = data_file(&etl_agent, args, say).await?;
            let reply = etl_agent
                .ingest(
                    &path.display().to_string(),
                    readmit_proto::SplitKind::Original,
                    false,
                )
                .await?;
            job.ingested = true;
            say.line(&format!("ingest: {}", reply.message));
        }
        Some(sha256) => say.line(&format!(
            "ingest: RawData already holds a data set (sha256 {sha256})"
        )),
    }
    say.step("append");
    loop {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let r = etl_agent.append_batch(0, &request_id).await?;
        if r.appended > 0 {
            job.appended += 1;
        }
        say.line(&format!("append: {}", r.message));
        if r.exhausted || r.pool_remaining == 0 {
            break;
        }
    }
    let tracking = fleet.client(Role::Tracking).await?;
    let production = |versions: &[readmit_proto::VersionInfo]| {
        versions
            .iter()
            .filter(|v| v.stage == "Production")
            .map(|v| v.version)
            .max()
    };
    let existing = production(&tracking.model_versions(MODEL).await?);
    if existing.is_some() && job.appended == 0 {
        say.line("pipeline: nothing new since the last run; the Production model stands");
        for dag in DAGS {
            say.step(dag);
            let last = etl_agent.dag_runs(Some(dag), 1).await?;
            job.dag_runs.extend(last);
        }
    } else {
        for dag in DAGS {
            say.step(dag);
            say.line(&format!("{dag}: running"));
            let mut params = std::collections::BTreeMap::new();
            if let (Some(models), "train_and_register") = (&args.models, dag) {
                params.insert("models".to_owned(), models.clone());
            }
            let run = etl_agent
                .trigger_and_follow(dag, &params, |_, _| {})
                .await?;
            job.dag_runs.push(run.clone());
            if run.state != readmit_proto::RunState::Succeeded {
                anyhow::bail!("{dag} {}: {}", run.state.name(), run.error);
            }
            say.line(&format!("{dag}: succeeded in {:.1} s", run.duration_s));
        }
    }
    say.step("serving");
    let Some(version) = production(&tracking.model_versions(MODEL).await?) else {
        anyhow::bail!("train_and_register put no version of {MODEL} in Production");
    };
    say.line(&format!(
        "model: {MODEL} version {version} is in Production"
    ));
    wait_served(fleet, version, say).await?;
    job.production = Some(version);
    Ok(())
}

/// The file to ingest: the one given, synthetic records, or the UCI file (downloaded and
/// cached, or synthetic records when it cannot be downloaded).
async fn data_file(etl: &Client, args: &UpArgs, say: &Say) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.data {
        return std::fs::canonicalize(path).with_context(|| format!("--data {}", path.display()));
    }
    if !args.synthetic {
        match etl.fetch_dataset(None, false).await {
            Ok(f) => {
                let how = if f.cached { "cached" } else { "downloaded" };
                say.line(&format!("data: the UCI file, {how} at {}", f.path));
                return Ok(PathBuf::from(f.path));
            }
            Err(e) => say.line(&format!("data: the UCI file cannot be downloaded ({e})")),
        }
    }
    let s = etl
        .synthesize_dataset(args.synthetic_rows, 42, None)
        .await?;
    say.line(&format!(
        "data: {} synthetic records with the real schema at {}",
        s.rows, s.path
    ));
    Ok(PathBuf::from(s.path))
}

/// Waits until an inference agent serves `version` (it follows the registry on its own).
async fn wait_served(fleet: &Fleet, version: i64, say: &Say) -> anyhow::Result<()> {
    if !fleet.snapshot().iter().any(|a| a.has(Role::Inference)) {
        // Started without the inference role: nothing to wait for.
        return Ok(());
    }
    let inference = fleet.client(Role::Inference).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let served = inference.served_model().await?;
        if served.loaded && served.version == version {
            say.line(&format!(
                "serving: version {version} answers POST /predict, /invocations and /v2/models/{}/infer",
                served.name
            ));
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
