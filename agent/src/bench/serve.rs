//! `readmit-agent bench serve`: the inference role under closed-loop load, against a floor.
//!
//! The bench starts this binary twice as servers pinned to the second core: once as a bare
//! axum handler that only parses the same JSON (the floor: what HTTP and JSON cost here), once
//! as an agent with every role, which runs the real pipeline on the given file (ingest, every
//! batch, `preprocess_incremental`, `train_and_register` with `GBM_300_d5`) and serves the
//! promoted model. The load runs on the first core: N connections each sending its next
//! request when the last one is answered, for each interface and connection count. It reports
//! requests/s, latency percentiles from an HDR histogram and the server's CPU per request
//! (from `/proc/<pid>/stat`), as one JSON object.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use readmit_proto::{Client, v1};
use serde_json::{Value, json};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeBenchArgs {
    /// The CSV (plain or gzip) to train the served model on, e.g.
    /// ../shared/data/diabetic_data.csv.gz.
    #[arg(long)]
    pub data: PathBuf,
    /// Seconds of load per interface and connection count.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Connection counts to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub connections: Vec<usize>,
    /// The candidate to train and serve.
    #[arg(long, default_value = "GBM_300_d5")]
    pub model: String,
}

/// `readmit-agent bench serve-floor`: the floor's server, started by `bench serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    #[arg(long)]
    pub http_addr: SocketAddr,
}

const MODEL: &str = "best_diabetes_readmission_model";

/// A server process started for the bench, killed when dropped.
pub(super) struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// CPU seconds the process has used (user + system).
    fn cpu_s(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields
            .get(11)
            .and_then(|u| u.parse::<f64>().ok())
            .zip(fields.get(12).and_then(|s| s.parse::<f64>().ok()))
            .map(|(u, s)| u + s)
            .context("cannot read the server's CPU time")?;
        Ok(ticks / clock_ticks())
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub(super) fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// This binary with `args`, pinned to `core` when taskset is there (whether it was is reported).
pub(super) fn spawn_pinned(
    core: usize,
    args: &[String],
    log: &Path,
) -> anyhow::Result<(Server, bool)> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(log)?;
    let pinned = Command::new("taskset").arg("--version").output().is_ok();
    let mut command = if pinned {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(core.to_string()).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let child = command
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start the server process")?;
    Ok((Server { child }, pinned))
}

/// Pins every thread of this process to `core`.
pub(super) fn pin_self(core: usize) -> bool {
    Command::new("taskset")
        .args([
            "-a",
            "-c",
            "-p",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The floor: POST /predict parses the body as JSON and answers a constant.
pub async fn floor(args: FloorArgs) -> anyhow::Result<()> {
    use axum::routing::post;
    async fn parse(body: Bytes) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => axum::Json(
                json!({"probability": 0.5, "fields": v.as_object().map_or(0, |o| o.len())}),
            )
            .into_response(),
            Err(e) => (http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, axum::Router::new().route("/predict", post(parse))).await?;
    Ok(())
}

pub(super) async fn wait_http(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success() || r.status().is_client_error())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server at {addr} did not come up")
}

/// Runs the real pipeline on the agent: data in, every batch, CleanData, the candidate trained
/// and promoted; returns once the inference role serves it.
async fn train_and_serve(client: &Client, data: &Path, model: &str) -> anyhow::Result<Value> {
    let mut etl = client.etl();
    etl.ingest(v1::IngestRequest {
        path: data.display().to_string(),
        split: v1::SplitKind::Original as i32,
        replace: true,
    })
    .await
    .context("ingest")?;
    loop {
        let r = etl
            .append_batch(v1::AppendBatchRequest {
                batch_size: 0,
                request_id: uuid::Uuid::new_v4().simple().to_string(),
            })
            .await?
            .into_inner();
        if r.exhausted || r.pool_remaining == 0 {
            break;
        }
    }
    for (dag, params) in [
        ("preprocess_incremental", vec![]),
        ("train_and_register", vec![("models", model)]),
    ] {
        let run = etl
            .trigger_dag(v1::TriggerDagRequest {
                dag: dag.into(),
                params: params
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            })
            .await?
            .into_inner();
        loop {
            let r = etl
                .get_dag_run(v1::GetDagRunRequest {
                    run_id: run.run_id.clone(),
                })
                .await?
                .into_inner();
            match v1::RunState::try_from(r.state) {
                Ok(v1::RunState::Succeeded) => break,
                Ok(v1::RunState::Queued | v1::RunState::Running) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => bail!("{dag} ended {}: {}", r.state, r.error),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let served = client
            .inference()
            .get_served_model(v1::GetServedModelRequest {})
            .await?
            .into_inner();
        if served.loaded {
            return Ok(json!({
                "name": served.name,
                "version": served.version,
                "run_id": served.run_id,
                "validation_roc_auc": served.metrics.get("validation_roc_auc"),
            }));
        }
        if Instant::now() > deadline {
            bail!("the model was not served: {}", served.last_error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one load phase measured.
struct Phase {
    requests: u64,
    errors: u64,
    elapsed_s: f64,
    histogram: hdrhistogram::Histogram<u64>,
}

impl Phase {
    fn json(&self, server_cpu_s: f64, records_per_request: usize) -> Value {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        #[allow(clippy::cast_precision_loss)]
        let requests = self.requests as f64;
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(requests / self.elapsed_s),
            "records_per_s": round(requests * records_per_request as f64 / self.elapsed_s),
            "p50_ms": round(ms(0.5)),
            "p99_ms": round(ms(0.99)),
            "max_ms": round(self.histogram.max() as f64 / 1000.0),
            "server_cpu_us_per_request": round(server_cpu_s * 1e6 / requests.max(1.0)),
        })
    }
}

pub(super) fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// How one connection sends a request.
#[derive(Clone)]
enum Target {
    Http {
        addr: SocketAddr,
        path: String,
        body: Bytes,
        content_type: &'static str,
    },
    Grpc {
        url: String,
        request: v1::PredictRequest,
    },
}

/// `connections` closed-loop connections for `seconds`.
async fn load(target: &Target, connections: usize, seconds: f64) -> anyhow::Result<Phase> {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let target = target.clone();
        tasks.push(tokio::spawn(async move { connection(target, until).await }));
    }
    let mut phase = Phase {
        requests: 0,
        errors: 0,
        elapsed_s: 0.0,
        histogram: crate::loadtest::stats::histogram(),
    };
    for task in tasks {
        let (ok, errors, histogram) = task.await??;
        phase.requests += ok;
        phase.errors += errors;
        phase.histogram.add(&histogram)?;
    }
    phase.elapsed_s = started.elapsed().as_secs_f64();
    Ok(phase)
}

type ConnResult = anyhow::Result<(u64, u64, hdrhistogram::Histogram<u64>)>;

/// One closed-loop connection, sending with the load-test engine's client.
async fn connection(target: Target, until: Instant) -> ConnResult {
    use crate::loadtest::payloads::Bodies;
    use crate::loadtest::targets::{Conn, Prepared, TargetTls};
    let mut histogram = crate::loadtest::stats::histogram();
    let (mut ok, mut errors) = (0u64, 0u64);
    let (url, bodies) = match target {
        Target::Http {
            addr,
            path,
            body,
            content_type,
        } => (
            format!("http://{addr}"),
            Bodies::Http {
                path,
                content_type,
                bodies: vec![body],
            },
        ),
        Target::Grpc { url, request } => (
            url,
            Bodies::Grpc {
                requests: vec![request],
            },
        ),
    };
    let prepared = Prepared::new(
        &url,
        bodies,
        Duration::from_secs(60),
        None,
        &TargetTls::default(),
    )?;
    let mut conn = Conn::new(prepared);
    while Instant::now() < until {
        let started = Instant::now();
        match conn.send(0).await {
            Ok(()) => {
                ok += 1;
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(us.max(1));
            }
            Err(crate::loadtest::stats::ErrorKind::Connect) => {
                bail!("cannot connect to {url}")
            }
            Err(_) => errors += 1,
        }
    }
    Ok((ok, errors, histogram))
}

/// One OIP REST request body for `records`: a tensor per input the model lists.
async fn oip_body(http_addr: SocketAddr, records: &[Value]) -> anyhow::Result<Bytes> {
    let metadata: Value = reqwest::get(format!("http://{http_addr}/v2/models/{MODEL}"))
        .await?
        .json()
        .await?;
    let inputs: Vec<(String, String)> = metadata["inputs"]
        .as_array()
        .context("model metadata without inputs")?
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["datatype"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    Ok(crate::loadtest::payloads::oip_body(&inputs, records))
}

pub async fn serve(args: ServeBenchArgs) -> anyhow::Result<Value> {
    // Canonical: the agent refuses `..` and symlinks in the paths it is given.
    let data = std::fs::canonicalize(&args.data)
        .with_context(|| format!("--data {}", args.data.display()))?;
    let scratch = tempfile::tempdir()?;
    // Before pinning, which narrows what this process sees.
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let client_pinned = pin_self(0);

    // The floor first, alone on the second core.
    let floor_addr = free_addr()?;
    let (floor_server, _) = spawn_pinned(
        1,
        &[
            "bench".into(),
            "serve-floor".into(),
            "--http-addr".into(),
            floor_addr.to_string(),
        ],
        &scratch.path().join("floor.log"),
    )?;
    wait_http(floor_addr, "/predict").await?;

    // The agent, training the model it will serve.
    let (grpc_addr, http_addr) = (free_addr()?, free_addr()?);
    let import_dir = data.parent().map(Path::to_owned).unwrap_or_default();
    let agent_args: Vec<String> = [
        "serve",
        "--data-dir",
        &scratch.path().join("agent").display().to_string(),
        "--grpc-addr",
        &grpc_addr.to_string(),
        "--http-addr",
        &http_addr.to_string(),
        "--import-dir",
        &import_dir.display().to_string(),
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let (agent, server_pinned) = spawn_pinned(1, &agent_args, &scratch.path().join("agent.log"))?;
    wait_http(http_addr, "/healthz").await?;
    let client = Client::connect(&format!("http://{grpc_addr}"), None).await?;
    let trained = Instant::now();
    let model = train_and_serve(&client, &data, &args.model).await?;
    let train_s = trained.elapsed().as_secs_f64();

    // Payloads: real test records, as clients send them.
    let test: Value = reqwest::get(format!("http://{http_addr}/model-info"))
        .await?
        .json()
        .await?;
    let example = fetch_test_records(&data, 100)?;
    let one = Bytes::from(example[0].to_string());
    let hundred = Bytes::from(json!({"dataframe_records": example}).to_string());
    let oip = oip_body(http_addr, &example[..1]).await?;
    let grpc_request = v1::PredictRequest {
        records: vec![crate::loadtest::payloads::grpc_record(&example[0])],
        explain: 0,
    };
    let http = |addr, path: &str, body: &Bytes| Target::Http {
        addr,
        path: path.to_owned(),
        body: body.clone(),
        content_type: "application/json",
    };
    let phases: Vec<(&str, Target, usize, Option<&Server>)> = vec![
        (
            "floor",
            http(floor_addr, "/predict", &one),
            1,
            Some(&floor_server),
        ),
        (
            "predict",
            http(http_addr, "/predict", &one),
            1,
            Some(&agent),
        ),
        (
            "predict_explain_5",
            http(http_addr, "/predict?explain=5", &one),
            1,
            Some(&agent),
        ),
        (
            "invocations_100",
            http(http_addr, "/invocations", &hundred),
            100,
            Some(&agent),
        ),
        (
            "oip_rest",
            http(http_addr, &format!("/v2/models/{MODEL}/infer"), &oip),
            1,
            Some(&agent),
        ),
        (
            "grpc_predict",
            Target::Grpc {
                url: format!("http://{grpc_addr}"),
                request: grpc_request,
            },
            1,
            Some(&agent),
        ),
    ];
    let mut report = serde_json::Map::new();
    for (name, target, records, server) in &phases {
        // A short warm-up: connections, caches, the allocator.
        load(target, 4, 0.3).await?;
        let mut by_connections = serde_json::Map::new();
        for &n in &args.connections {
            let before = server.map_or(Ok(0.0), Server::cpu_s)?;
            let phase = load(target, n, args.seconds).await?;
            let cpu = server.map_or(Ok(0.0), Server::cpu_s)? - before;
            by_connections.insert(n.to_string(), phase.json(cpu, *records));
        }
        report.insert((*name).to_owned(), Value::Object(by_connections));
    }
    let at16 = |k: &str, f: &str| {
        report
            .get(k)
            .and_then(|p| p.get("16"))
            .and_then(|p| p.get(f))
            .and_then(Value::as_f64)
    };
    let targets = json!({
        "predict_rps_vs_floor_at_16": at16("predict", "rps").zip(at16("floor", "rps")).map(|(p, f)| round(p / f)),
        "predict_p99_ms_at_16": at16("predict", "p99_ms"),
        "predict_server_cpu_us_at_16": at16("predict", "server_cpu_us_per_request"),
        "grpc_rps_vs_predict_at_16": at16("grpc_predict", "rps").zip(at16("predict", "rps")).map(|(g, p)| round(g / p)),
        "explain_5_cpu_vs_plain_at_16": at16("predict_explain_5", "server_cpu_us_per_request")
            .zip(at16("predict", "server_cpu_us_per_request"))
            .map(|(e, p)| round(e / p)),
    });
    drop(phases);
    drop(agent);
    drop(floor_server);
    Ok(json!({
        "machine": {"cores": cores, "client_pinned_core_0": client_pinned, "servers_pinned_core_1": server_pinned},
        "seconds_per_phase": args.seconds,
        "model": model,
        "model_inputs": test["inputs"].as_array().map_or(0, |i| i.iter().filter(|f| f["used"] == true).count()),
        "train_and_serve_s": round(train_s),
        "phases": Value::Object(report),
        "targets": targets,
    }))
}

/// The first `n` records of the file's test split, as JSON objects.
fn fetch_test_records(data: &Path, n: usize) -> anyhow::Result<Vec<Value>> {
    use readmit_ml::split::{ORIGINAL_SEED, SplitMethod};
    let frame = readmit_ml::data::read_csv(data)?;
    let splits = readmit_ml::data::split_frame(&frame, SplitMethod::Original, ORIGINAL_SEED)?;
    let records = readmit_ml::data::records(&splits.test, 0..n)?;
    records
        .iter()
        .map(|r| serde_json::to_value(r).map_err(anyhow::Error::from))
        .collect()
}
