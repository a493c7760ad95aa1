//! `readmit-agent bench loadgen`: the load-test engine against `wrk`, each sending to the same
//! bare axum handler (the serving bench's floor) for the same time over the same number of
//! connections, the generators pinned to the first core and the server to the second. Prints
//! `{"engine": {"rps", "p50_ms", …}, "wrk": {…}}` and how the engine compares: its request
//! rate as a share of wrk's, and the p50 latency it adds over wrk's.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::serve::{free_addr, pin_self, round, spawn_pinned, wait_http};
use crate::loadtest::spec::{ClosedInput, SpecInput};
use crate::loadtest::{EngineConfig, Limits, LoadTests, TargetTls};

#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenBenchArgs {
    /// Seconds of load for each generator.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Connections (the engine's users, wrk's -c).
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    /// The wrk binary (Debian package `wrk`).
    #[arg(long, default_value = "wrk")]
    pub wrk: String,
}

/// A record as `/predict` clients send it: the body both generators post.
fn record_body() -> anyhow::Result<String> {
    let record = crate::loadtest::payloads::synthetic(1, 1)
        .pop()
        .context("the generator gave no record")?;
    Ok(serde_json::to_string(&record)?)
}

/// The engine's closed loop against `url`: its figures as JSON.
async fn engine(url: &str, args: &LoadgenBenchArgs) -> anyhow::Result<Value> {
    let limits = Limits {
        max_users: args.connections.max(1),
        max_rate: 1e6,
        max_duration: Duration::from_secs(3600),
        max_concurrent: 1,
        allow: Vec::new(),
        own: Vec::new(),
    };
    let engine = LoadTests::new(EngineConfig {
        limits,
        etl: None,
        tracking_url: String::new(),
        tracking_tls: readmit_proto::ClientTls::default(),
        token: None,
        target_tls: TargetTls::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
    });
    let spec = |seconds: f64| SpecInput {
        target_url: url.to_owned(),
        closed: Some(ClosedInput {
            users: args.connections,
            ..ClosedInput::default()
        }),
        duration_ms: (seconds * 1000.0) as u64,
        ..SpecInput::default()
    };
    let mut summary = None;
    // A short warm-up first: connections, caches, the allocator.
    for seconds in [0.5, args.seconds] {
        let started = engine.start(spec(seconds)).await?;
        let mut rx = engine.watch(&started.id)?;
        summary = Some(
            rx.wait_for(|s| s.state.is_done())
                .await
                .map_err(|_| anyhow::anyhow!("the engine's test vanished"))?
                .clone(),
        );
    }
    let s = summary.context("no test ran")?;
    let l = &s.total.latency;
    Ok(json!({
        "requests": s.total.requests,
        "errors": s.total.failures,
        "rps": round(s.total.rps),
        "p50_ms": l.p50_ms,
        "p90_ms": l.p90_ms,
        "p99_ms": l.p99_ms,
        "max_ms": l.max_ms,
    }))
}

/// wrk's latency figure (`123.45us`, `1.20ms`, `2.00s`) in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (n, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    n.parse::<f64>().ok().map(|v| v * scale)
}

/// Reads wrk's `--latency` report.
fn parse_wrk(out: &str) -> anyhow::Result<Value> {
    let mut figures = serde_json::Map::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rps] => {
                figures.insert("rps".into(), json!(rps.parse::<f64>().ok().map(round)));
            }
            [q @ ("50%" | "90%" | "99%"), value] => {
                let key = format!("p{}_ms", q.trim_end_matches('%'));
                figures.insert(key, json!(wrk_ms(value).map(round)));
            }
            [n, "requests", "in", ..] => {
                figures.insert("requests".into(), json!(n.parse::<u64>().ok()));
            }
            _ => {}
        }
    }
    if !figures.contains_key("rps") {
        bail!("wrk's output has no Requests/sec line:\n{out}");
    }
    Ok(Value::Object(figures))
}

/// wrk against `url` from core 0, posting the body.
async fn wrk(url: &str, args: &LoadgenBenchArgs, dir: &Path) -> anyhow::Result<Value> {
    let body = dir.join("body.json");
    std::fs::write(&body, record_body()?)?;
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "local f = io.open({:?}, \"r\")\nwrk.method = \"POST\"\nwrk.body = f:read(\"*a\")\n\
             f:close()\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            body.display().to_string()
        ),
    )?;
    let run = |seconds: f64| {
        let mut command = std::process::Command::new("taskset");
        command.args(["-c", "0", &args.wrk]);
        command
            .arg("-t1")
            .arg(format!("-c{}", args.connections))
            .arg(format!("-d{}s", seconds.ceil().max(1.0)))
            .arg("--latency")
            .arg("-s")
            .arg(&script)
            .arg(format!("{url}/predict"));
        command
    };
    let warm = run(1.0).output();
    if warm.is_err() {
        bail!(
            "cannot run {} under taskset: install the Debian package wrk (.ci/services does)",
            args.wrk
        );
    }
    let out = tokio::task::spawn_blocking({
        let mut command = run(args.seconds);
        move || command.output()
    })
    .await??;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

pub async fn loadgen(args: LoadgenBenchArgs) -> anyhow::Result<Value> {
    let scratch = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let client_pinned = pin_self(0);
    let addr = free_addr()?;
    let (floor, server_pinned) = spawn_pinned(
        1,
        &[
            "bench".into(),
            "serve-floor".into(),
            "--http-addr".into(),
            addr.to_string(),
        ],
        &scratch.path().join("floor.log"),
    )?;
    wait_http(addr, "/predict").await?;
    let url = format!("http://{addr}");
    let engine = engine(&url, &args).await?;
    let wrk = wrk(&url, &args, scratch.path()).await?;
    drop(floor);
    let ratio = engine["rps"]
        .as_f64()
        .zip(wrk["rps"].as_f64())
        .map(|(e, w)| round(e / w));
    let added_us = engine["p50_ms"]
        .as_f64()
        .zip(wrk["p50_ms"].as_f64())
        .map(|(e, w)| round((e - w) * 1000.0));
    Ok(json!({
        "machine": {"cores": cores, "generators_pinned_core_0": client_pinned, "server_pinned_core_1": server_pinned},
        "seconds": args.seconds,
        "connections": args.connections,
        "engine": engine,
        "wrk": wrk,
        "targets": {
            "engine_rps_vs_wrk": ratio,
            "engine_rps_vs_wrk_target": 0.8,
            "engine_p50_added_us": added_us,
            "engine_p50_added_us_target": 50.0,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_parse() {
        let out = "Running 5s test @ http://127.0.0.1:1/predict\n  1 threads and 16 connections\n  \
                   Latency Distribution\n     50%  310.00us\n     75%  400.00us\n     90%    1.20ms\n     \
                   99%    2.50ms\n  123456 requests in 5.00s, 12.00MB read\nRequests/sec:  24691.20\n";
        let v = parse_wrk(out).unwrap();
        assert_eq!(v["rps"], 24691.2);
        assert_eq!(v["p50_ms"], 0.31);
        assert_eq!(v["p99_ms"], 2.5);
        assert_eq!(v["requests"], 123456);
        assert!(parse_wrk("nothing").is_err());
    }
}
