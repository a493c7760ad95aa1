//! `readmit-agent bench tracking`: the tracking role against a real `mlflow server` on the same
//! disk, over raw HTTP with the same requests, printed as one JSON object.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::RunningAgent;
use crate::settings::RawSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct TrackingBenchArgs {
    /// Where both servers keep their files (a directory on the disk under test).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The Python that has `mlflow`; without it only readmit is measured.
    #[arg(long, env = "READMIT_PYTHON")]
    pub python: Option<PathBuf>,
    /// Skip the MLflow comparison.
    #[arg(long)]
    pub no_mlflow: bool,
    /// Seconds per throughput phase.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Runs to search over.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Concurrent clients in the concurrent log-metric phase.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
}

struct Target {
    base: String,
    http: reqwest::Client,
}

impl Target {
    fn api(&self, path: &str) -> String {
        format!("{}/api/2.0/mlflow/{path}", self.base)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.post_text(path, body.to_string()).await
    }

    async fn post_text(&self, path: &str, body: String) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.api(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Runs `body` repeatedly for `seconds` and returns (calls, elapsed seconds).
async fn for_duration<F, Fut>(seconds: f64, mut body: F) -> anyhow::Result<(u64, f64)>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed().as_secs_f64() < seconds {
        body(calls).await?;
        calls += 1;
    }
    Ok((calls, start.elapsed().as_secs_f64()))
}

async fn measure(target: &Target, args: &TrackingBenchArgs) -> anyhow::Result<Value> {
    let name = format!("bench-{}", crate::now_ms());
    let exp = create_experiment(target, &name).await?;
    let run_id = create_run(target, &exp, "bench").await?;
    let log_metric = log_metric_one_client(target, &run_id, args.seconds).await?;
    let log_metric_concurrent = log_metric_many_clients(target, &exp, args).await?;
    let batch_metrics = log_batch(target, &run_id, args.seconds).await?;
    let (search_ms, found) = search_runs(target, &format!("{name}-search"), args.runs).await?;
    let upload_mb_s = upload_artifacts(target, &exp, &run_id).await?;
    Ok(json!({
        "log_metric_calls_per_s": round(log_metric),
        "log_metric_concurrent_calls_per_s": round(log_metric_concurrent),
        "concurrent_clients": args.clients,
        "log_batch_metrics_per_s": round(batch_metrics),
        "search_runs": args.runs,
        "search_results": found,
        "search_ms_median": round(search_ms),
        "upload_10mb_mb_per_s": round(upload_mb_s),
    }))
}

async fn create_experiment(target: &Target, name: &str) -> anyhow::Result<String> {
    Ok(target
        .post("experiments/create", &json!({"name": name}))
        .await?["experiment_id"]
        .as_str()
        .context("experiment id")?
        .to_owned())
}

async fn create_run(target: &Target, experiment_id: &str, name: &str) -> anyhow::Result<String> {
    let run = target
        .post(
            "runs/create",
            &json!({"experiment_id": experiment_id, "run_name": name, "start_time": crate::now_ms()}),
        )
        .await?;
    Ok(run["run"]["info"]["run_id"]
        .as_str()
        .context("run id")?
        .to_owned())
}

/// One client, one call at a time: what a training loop logging a metric per step does.
/// Calls a second.
async fn log_metric_one_client(target: &Target, run_id: &str, seconds: f64) -> anyhow::Result<f64> {
    let (calls, secs) = for_duration(seconds, |i| {
        let body = json!({"run_id": run_id, "key": "loss", "value": 1.0 / (i as f64 + 1.0), "timestamp": crate::now_ms(), "step": i});
        async move { target.post("runs/log-metric", &body).await.map(drop) }
    })
    .await?;
    Ok(calls as f64 / secs)
}

/// Several clients at once, each on its own run: calls a second, all together.
async fn log_metric_many_clients(
    target: &Target,
    experiment_id: &str,
    args: &TrackingBenchArgs,
) -> anyhow::Result<f64> {
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let id = create_run(target, experiment_id, &format!("c{c}")).await?;
        let t = Target {
            base: target.base.clone(),
            http: target.http.clone(),
        };
        let seconds = args.seconds;
        tasks.push(tokio::spawn(async move {
            for_duration(seconds, |i| {
                let body = json!({"run_id": id, "key": "loss", "value": 0.5, "timestamp": crate::now_ms(), "step": i});
                let t = &t;
                async move { t.post("runs/log-metric", &body).await.map(drop) }
            })
            .await
        }));
    }
    let mut total = 0;
    let mut longest: f64 = 0.0;
    for task in tasks {
        let (calls, secs) = task.await??;
        total += calls;
        longest = longest.max(secs);
    }
    Ok(total as f64 / longest)
}

/// log-batch with 1,000 metrics a call: metrics a second.
async fn log_batch(target: &Target, run_id: &str, seconds: f64) -> anyhow::Result<f64> {
    let (calls, secs) = for_duration(seconds, |i| {
        // Written as text: building 1,000 JSON values per call would measure the client.
        let ts = crate::now_ms();
        let mut body = format!("{{\"run_id\":\"{run_id}\",\"metrics\":[");
        for k in 0..1000u64 {
            let sep = if k == 0 { "" } else { "," };
            let step = i * 1000 + k;
            let _ = write!(
                body,
                "{sep}{{\"key\":\"m{}\",\"value\":{k}.5,\"timestamp\":{ts},\"step\":{step}}}",
                k % 10
            );
        }
        body.push_str("]}");
        async move { target.post_text("runs/log-batch", body).await.map(drop) }
    })
    .await?;
    Ok(calls as f64 * 1000.0 / secs)
}

/// Search over `runs` runs: a filter on a metric and a param, ordered by the metric. The
/// median of 20 searches in ms, and how many runs each found.
async fn search_runs(target: &Target, name: &str, runs: usize) -> anyhow::Result<(f64, usize)> {
    let search_exp = create_experiment(target, name).await?;
    for i in 0..runs {
        let id = create_run(target, &search_exp, &format!("r{i}")).await?;
        let family = if i % 2 == 0 { "lr" } else { "rf" };
        let auc = 0.6 + (i as f64 * 7.0 % 100.0) / 1000.0;
        target
            .post(
                "runs/log-batch",
                &json!({"run_id": id,
                        "metrics": [{"key": "val_roc_auc", "value": auc, "timestamp": 1, "step": 0},
                                    {"key": "val_pr_auc", "value": auc / 3.0, "timestamp": 1, "step": 0}],
                        "params": [{"key": "family", "value": family}, {"key": "C", "value": "1"}]}),
            )
            .await?;
    }
    let search = json!({"experiment_ids": [search_exp], "filter": "metrics.val_roc_auc > 0.61 and params.family = 'lr'",
                        "order_by": ["metrics.val_roc_auc DESC"], "max_results": 100});
    let mut latencies = Vec::new();
    let mut found = 0;
    for _ in 0..20 {
        let start = Instant::now();
        let reply = target.post("runs/search", &search).await?;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        found = reply["runs"].as_array().map_or(0, Vec::len);
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies[latencies.len() / 2], found))
}

/// 10 MB artifacts through the proxied artifact API: MB a second.
async fn upload_artifacts(
    target: &Target,
    experiment_id: &str,
    run_id: &str,
) -> anyhow::Result<f64> {
    let blob: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let start = Instant::now();
    let uploads = 10;
    for i in 0..uploads {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/blob{i}.bin",
            target.base
        );
        let response = target.http.put(url).body(blob.clone()).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "upload: {}",
            response.status()
        );
    }
    Ok((uploads * blob.len()) as f64 / 1e6 / start.elapsed().as_secs_f64())
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

struct MlflowServer {
    child: Child,
    base: String,
}

impl Drop for MlflowServer {
    /// `mlflow server` starts uvicorn and job consumers as children: stop its whole process
    /// group, or they outlive the bench.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let stopped = Command::new("kill")
            .args(["-TERM", "--", &group])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

async fn start_mlflow(python: &Path, dir: &Path) -> anyhow::Result<MlflowServer> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mlflow = python.with_file_name("mlflow");
    let child = Command::new(&mlflow)
        .process_group(0)
        .args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("mlflow-artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", mlflow.display()))?;
    let server = MlflowServer {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if http
            .get(format!("{}/health", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!(
        "mlflow server did not answer on {} within 120 s",
        server.base
    )
}

pub async fn tracking(args: TrackingBenchArgs) -> anyhow::Result<Value> {
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let settings = RawSettings {
        log_level: "warn".into(),
        ..RawSettings::loopback(&scratch.path().join("readmit"), &[crate::Role::Tracking])
    }
    .validate()?;
    let agent = RunningAgent::start(settings).await?;
    let readmit = measure(
        &Target {
            base: agent.http_url(),
            http: reqwest::Client::new(),
        },
        &args,
    )
    .await?;
    agent.stop().await?;

    let mut out = json!({
        "disk": scratch.path().display().to_string(),
        "durability": "SQLite WAL, synchronous=NORMAL: a committed write survives a crash of the agent",
        "readmit": readmit,
    });
    let python = args.python.clone().filter(|_| !args.no_mlflow);
    if let Some(python) = python {
        let dir = scratch.path().join("mlflow");
        std::fs::create_dir_all(&dir)?;
        let server = start_mlflow(&python, &dir).await?;
        let mlflow = measure(
            &Target {
                base: server.base.clone(),
                http: reqwest::Client::new(),
            },
            &args,
        )
        .await?;
        drop(server);
        let ratio = |key: &str| {
            round(
                out["readmit"][key].as_f64().unwrap_or(0.0)
                    / mlflow[key].as_f64().unwrap_or(f64::NAN),
            )
        };
        out["x_over_mlflow"] = json!({
            "log_metric": ratio("log_metric_calls_per_s"),
            "log_metric_concurrent": ratio("log_metric_concurrent_calls_per_s"),
            "log_batch": ratio("log_batch_metrics_per_s"),
            "search_speedup": round(mlflow["search_ms_median"].as_f64().unwrap_or(0.0) / out["readmit"]["search_ms_median"].as_f64().unwrap_or(f64::NAN)),
            "upload": ratio("upload_10mb_mb_per_s"),
        });
        out["mlflow"] = mlflow;
    }
    Ok(out)
}
