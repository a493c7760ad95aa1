//! `readmit-agent bench etl`: the ETL role's data path on the given databases — ingest the
//! file, append every batch, run the whole `preprocess_incremental` DAG — timed end to end.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::etl::data_tasks::parse_split;
use crate::etl::raw::DEFAULT_BATCH_SIZE;
use crate::etl::runs::RunState;
use crate::settings::RawSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct EtlBenchArgs {
    /// The CSV (plain or gzip), e.g. ../shared/data/diabetic_data.csv.gz.
    #[arg(long)]
    pub data: PathBuf,
    /// RawData database URL [default: SQLite in a scratch directory]. Its data set is replaced.
    #[arg(long)]
    pub raw_db: Option<String>,
    /// CleanData database URL [default: SQLite in a scratch directory]. Replaced.
    #[arg(long)]
    pub clean_db: Option<String>,
    /// original or grouped.
    #[arg(long, default_value = "original")]
    pub split: String,
    /// Rows per appended batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: u32,
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub async fn etl(args: EtlBenchArgs) -> anyhow::Result<Value> {
    let split = parse_split(&args.split).map_err(anyhow::Error::msg)?;
    let scratch = tempfile::tempdir()?;
    // The agent ingests by path only from its import directory: the file's own.
    let data = std::path::absolute(&args.data)?;
    let import_dir = data
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let settings = RawSettings {
        import_dir,
        raw_db: args.raw_db.clone().unwrap_or_default(),
        clean_db: args.clean_db.clone().unwrap_or_default(),
        ..RawSettings::loopback(scratch.path(), &[crate::Role::Etl])
    }
    .validate()?;
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    // No tracking role here: the address only matters to the training DAG, not run by this.
    let own = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let etl = crate::etl::start(
        &settings,
        crate::roles::Listeners {
            grpc: own,
            http: own,
        },
        &shutdown,
        &registry,
    )
    .await?;

    // A fresh ingest every time, even when the databases hold this file already.
    etl.data.raw().clear().await?;
    let start = Instant::now();
    let ingest = etl
        .data
        .ingest_file(&data.display().to_string(), split, true)
        .await
        .with_context(|| format!("ingesting {}", args.data.display()))?;
    let ingest_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut batches = 0u32;
    loop {
        let request = uuid::Uuid::new_v4().simple().to_string();
        let appended = etl.data.append_batch(args.batch_size, &request).await?;
        if appended.exhausted {
            break;
        }
        batches += 1;
    }
    let append_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let run = etl
        .runner
        .trigger("preprocess_incremental", Default::default())
        .await?;
    let run = etl.runner.wait(&run.run_id).await?;
    let preprocess_s = start.elapsed().as_secs_f64();
    if run.state != RunState::Succeeded {
        bail!(
            "preprocess_incremental ended {}: {}",
            run.state,
            run.error.unwrap_or_default()
        );
    }
    let tasks: serde_json::Map<String, Value> = run
        .tasks
        .iter()
        .map(|t| {
            let s = match (t.started_at, t.ended_at) {
                (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
                _ => 0.0,
            };
            (t.task_id.clone(), json!(round(s)))
        })
        .collect();
    let tables: serde_json::Map<String, Value> = etl
        .data
        .counts()
        .await?
        .into_iter()
        .map(|t| (t.table.to_owned(), json!(t.rows)))
        .collect();
    shutdown.cancel();
    Ok(json!({
        "data": args.data.display().to_string(),
        "raw_db": etl.data.raw().db().url(),
        "clean_db": etl.data.clean().db().url(),
        "split": args.split,
        "changed": ingest.changed,
        "ingest_s": round(ingest_s),
        "ingest_read_validate_split_s": round(ingest.read_s),
        "ingest_write_s": round(ingest.duration_s - ingest.read_s),
        "append_batch_s": round(append_s),
        "batches": batches,
        "append_batch_s_per_batch": round(append_s / f64::from(batches.max(1))),
        "preprocess_dag_s": round(preprocess_s),
        "preprocess_tasks_s": tasks,
        "rows": tables,
    }))
}
