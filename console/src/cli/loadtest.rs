//! `readmit loadtest`: run a load test or a capacity search on an inference agent's engine and
//! follow it live, list, show, watch and stop tests. A broken threshold exits with 99 (as k6
//! does), so a pipeline can gate on it.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt as _;
use readmit_proto::v1;
use serde_json::{Value, json};

use super::Global;
use crate::fleet::Role;
use crate::output::{self, OutputFormat};

/// The exit code of a test whose thresholds did not hold (k6's).
const THRESHOLD_FAILED: u8 = 99;

#[derive(Debug, clap::Subcommand)]
pub enum LoadTestCommand {
    /// Run a test: closed loop (--users) or open loop (--rate), and follow it to its end.
    Run(Box<RunArgs>),
    /// Find the most users (or the highest rate) held within an objective.
    Capacity(Box<CapacityArgs>),
    /// Running, recent and kept tests, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        max: u32,
    },
    /// One test's summary (and, for a search, every step).
    Show { id: String },
    /// Follow a running test's progress until it ends.
    Watch { id: String },
    /// Stop a running test and show its summary.
    Stop { id: String },
}

#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// What to send: predict, invocations, oip or grpc.
    #[arg(long, default_value = "predict")]
    pub target: String,
    /// The inference agent to load [default: the --agent's own HTTP (or, for grpc, gRPC)
    /// listener].
    #[arg(long)]
    pub url: Option<String>,
    /// The gRPC URL of the inference agent serving --url, when that is not the engine's own
    /// agent: the engine asks it who it is and loads only the listeners it reports [default:
    /// the inference agent among the console's agents whose listener --url names].
    #[arg(long, value_name = "URL")]
    pub target_agent: Option<String>,
    /// Records per invocations request.
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// The OIP model name [default: the served model's].
    #[arg(long)]
    pub model: Option<String>,
    /// A request not answered in this time counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Wait between a user's requests, as MIN..MAX (e.g. 1s..3s) or one duration.
    #[arg(long, default_value = "0s")]
    pub think: String,
    /// Open-loop connections [default: 64].
    #[arg(long, default_value_t = 0)]
    pub connections: u32,
    /// A name for the kept run.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Start the test and print its id without following it.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Closed loop: concurrent simulated users.
    #[arg(long, conflicts_with = "rate")]
    pub users: Option<u32>,
    /// Closed loop: users started per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    pub spawn_rate: f64,
    /// Open loop: requests per second due, whatever the server does.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop ramp stages RATE:DURATION (e.g. 500:30s), the rate moving linearly to each.
    #[arg(long = "stage", value_delimiter = ',')]
    pub stages: Vec<String>,
    /// How long to run.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Closed loop: stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Thresholds, comma separated: p95<100ms, p(99.9)<1s, max<2s, errors<1%, rps>=500.
    #[arg(long = "threshold", alias = "thresholds", value_delimiter = ',')]
    pub thresholds: Vec<String>,
    /// Stop the test as soon as a threshold breaks.
    #[arg(long)]
    pub abort_on_fail: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The objective, e.g. "p95<100ms,errors<1%".
    #[arg(long, required = true, value_delimiter = ',')]
    pub slo: Vec<String>,
    /// Step users up to this many (closed loop).
    #[arg(long, conflicts_with = "max_rate")]
    pub max_users: Option<u32>,
    /// Step the rate up to this many requests/s instead (open loop).
    #[arg(long)]
    pub max_rate: Option<u32>,
    /// The first step's users or rate.
    #[arg(long, default_value_t = 1)]
    pub start: u32,
    /// Users or rate added per step [default: a tenth of the range].
    #[arg(long, default_value_t = 0)]
    pub step: u32,
    /// How long each step holds at least (its first third settles); up to twice that while
    /// its throughput is not yet steady.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub step_duration: Duration,
    /// Bisection steps between the last good and the first bad level.
    #[arg(long, default_value_t = 3)]
    pub refine: u32,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `1s..3s`, `500ms`, or `0`.
fn parse_think(text: &str) -> anyhow::Result<(u64, u64)> {
    let one = |t: &str| -> anyhow::Result<u64> {
        let t = t.trim();
        if t == "0" {
            return Ok(0);
        }
        Ok(ms(
            humantime::parse_duration(t).map_err(|e| anyhow::anyhow!("--think: {t:?}: {e}"))?
        ))
    };
    match text.split_once("..") {
        Some((a, b)) => Ok((one(a)?, one(b)?)),
        None => {
            let v = one(text)?;
            Ok((v, v))
        }
    }
}

fn parse_stage(text: &str) -> anyhow::Result<v1::RateStage> {
    let (rate, duration) = text
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--stage {text:?}: write RATE:DURATION, e.g. 500:30s"))?;
    Ok(v1::RateStage {
        rate: rate
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--stage {text:?}: {rate:?} is not a rate"))?,
        duration_ms: ms(humantime::parse_duration(duration.trim())
            .map_err(|e| anyhow::anyhow!("--stage {text:?}: {e}"))?),
    })
}

fn target_kind(text: &str) -> anyhow::Result<v1::TargetKind> {
    Ok(match text {
        "predict" => v1::TargetKind::Predict,
        "invocations" => v1::TargetKind::Invocations,
        "oip" | "oip_infer" => v1::TargetKind::OipInfer,
        "grpc" | "grpc_predict" => v1::TargetKind::GrpcPredict,
        _ => anyhow::bail!("--target: {text:?} is not predict, invocations, oip or grpc"),
    })
}

/// `host:port` of a URL (`http://h:1/x` → `("h", 1)`), `None` without a port.
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((
        host.trim_matches(['[', ']']).to_ascii_lowercase(),
        port.parse().ok()?,
    ))
}

/// The gRPC URL of an inference agent this console knows whose listener `url` names: the
/// engine, on another agent, asks it to vouch for that listener (`target.agent`).
fn known_agent_for(url: &str, agents: &[crate::fleet::AgentState]) -> Option<String> {
    let (host, port) = host_port(url)?;
    agents
        .iter()
        .filter(|a| a.has(Role::Inference))
        .find(|a| {
            let listens = [&a.grpc_addr, &a.http_addr]
                .into_iter()
                .filter_map(|addr| addr.rsplit_once(':')?.1.parse::<u16>().ok())
                .any(|p| p == port);
            listens && host_port(&a.url).is_some_and(|(h, _)| h == host)
        })
        .map(|a| a.url.clone())
}

/// The target the engine loads: the given URL, else the agent's own listener; the agent that
/// vouches for it, given or found among the agents this console knows.
async fn target(
    client: &readmit_proto::Client,
    args: &TargetArgs,
    known: &[crate::fleet::AgentState],
) -> anyhow::Result<v1::LoadTarget> {
    let kind = target_kind(&args.target)?;
    let url = match &args.url {
        Some(url) => url.clone(),
        None if kind == v1::TargetKind::GrpcPredict => client.url().to_owned(),
        None => {
            let info = client
                .agent()
                .get_info(v1::GetInfoRequest {})
                .await
                .map_err(|s| anyhow::anyhow!(output::status_error(client.url(), &s)))?
                .into_inner();
            // The HTTP listener is secured as the gRPC one is.
            let scheme = if client.url().starts_with("https://") {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", info.http_addr)
        }
    };
    Ok(v1::LoadTarget {
        url,
        kind: kind as i32,
        batch: args.batch,
        model: args.model.clone().unwrap_or_default(),
        timeout_ms: ms(args.timeout),
        agent: args
            .target_agent
            .clone()
            .or_else(|| args.url.as_deref().and_then(|u| known_agent_for(u, known)))
            .unwrap_or_default(),
    })
}

fn closed_loop(args: &TargetArgs, users: u32, spawn_rate: f64) -> anyhow::Result<v1::ClosedLoop> {
    let (think_min_ms, think_max_ms) = parse_think(&args.think)?;
    Ok(v1::ClosedLoop {
        users,
        spawn_rate,
        think_min_ms,
        think_max_ms,
    })
}

pub async fn run(global: &Global, command: &LoadTestCommand) -> anyhow::Result<ExitCode> {
    let fleet = global.fleet().await?;
    let known = fleet.snapshot();
    let client = fleet.client(Role::Inference).await?;
    let call = |s: tonic::Status| anyhow::anyhow!(output::status_error(client.url(), &s));
    let mut lt = client.load_test();
    let (spec, target_args) = match command {
        LoadTestCommand::Run(args) => {
            let load = match (args.users, args.rate, args.stages.is_empty()) {
                (Some(users), None, true) => v1::load_test_spec::Load::Closed(closed_loop(
                    &args.target,
                    users,
                    args.spawn_rate,
                )?),
                (None, rate, _) if rate.is_some() || !args.stages.is_empty() => {
                    v1::load_test_spec::Load::Open(v1::OpenLoop {
                        start_rate: rate.unwrap_or(0.0),
                        stages: args
                            .stages
                            .iter()
                            .map(|s| parse_stage(s))
                            .collect::<anyhow::Result<_>>()?,
                        connections: args.target.connections,
                    })
                }
                (Some(_), _, false) => anyhow::bail!("--stage is for an open loop (--rate)"),
                _ => anyhow::bail!("give --users (closed loop) or --rate (open loop)"),
            };
            let spec = v1::LoadTestSpec {
                name: args.target.name.clone(),
                target: Some(target(&client, &args.target, &known).await?),
                load: Some(load),
                duration_ms: args.duration.map_or(0, ms),
                max_requests: args.requests.unwrap_or(0),
                thresholds: args.thresholds.clone(),
                abort_on_fail: args.abort_on_fail,
                capacity: None,
            };
            (spec, &args.target)
        }
        LoadTestCommand::Capacity(args) => {
            let (load, max) = match (args.max_users, args.max_rate) {
                (_, Some(rate)) => (
                    v1::load_test_spec::Load::Open(v1::OpenLoop {
                        start_rate: 0.0,
                        stages: Vec::new(),
                        connections: args.target.connections,
                    }),
                    rate,
                ),
                (users, None) => (
                    v1::load_test_spec::Load::Closed(closed_loop(&args.target, 0, 0.0)?),
                    users.unwrap_or(100),
                ),
            };
            let spec = v1::LoadTestSpec {
                name: args.target.name.clone(),
                target: Some(target(&client, &args.target, &known).await?),
                load: Some(load),
                thresholds: args.slo.clone(),
                capacity: Some(v1::CapacitySearch {
                    start: args.start,
                    step: args.step,
                    max,
                    step_duration_ms: ms(args.step_duration),
                    refine: args.refine,
                }),
                ..Default::default()
            };
            (spec, &args.target)
        }
        LoadTestCommand::List { max } => {
            let tests = lt
                .list_load_tests(v1::ListLoadTestsRequest { max: *max })
                .await
                .map_err(call)?
                .into_inner()
                .tests;
            match global.output {
                OutputFormat::Json => {
                    output::print_json(&tests.iter().map(summary_json).collect::<Vec<_>>())?
                }
                OutputFormat::Table => print_list(&tests),
            }
            return Ok(ExitCode::SUCCESS);
        }
        LoadTestCommand::Show { id }
        | LoadTestCommand::Watch { id }
        | LoadTestCommand::Stop { id } => {
            let test = v1::LoadTestRef {
                test_id: id.clone(),
            };
            let s = match command {
                LoadTestCommand::Stop { .. } => lt.stop_load_test(test).await,
                LoadTestCommand::Watch { .. } => {
                    follow(&mut lt, id, global.output, &call).await?;
                    lt.get_load_test(test).await
                }
                _ => lt.get_load_test(test).await,
            }
            .map_err(call)?
            .into_inner();
            return finish(global.output, &s);
        }
    };
    let started = lt.start_load_test(spec).await.map_err(call)?.into_inner();
    let id = started.test_id.clone();
    if target_args.detach {
        match global.output {
            OutputFormat::Json => output::print_json(&json!({ "test_id": id }))?,
            OutputFormat::Table => println!("{id}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "load test {id} started against {}",
        started
            .spec
            .as_ref()
            .and_then(|s| s.target.as_ref())
            .map_or("", |t| t.url.as_str())
    );
    follow(&mut lt, &id, global.output, &call).await?;
    // A test leaves `running` only once it has been kept, so this is the final summary.
    let mut summary = started;
    for _ in 0..600 {
        summary = lt
            .get_load_test(v1::LoadTestRef {
                test_id: id.clone(),
            })
            .await
            .map_err(call)?
            .into_inner();
        if summary.state != v1::LoadTestState::Running as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finish(global.output, &summary)
}

/// Prints a progress line a second (on stderr, so `--output json` stays clean) until the end.
async fn follow(
    lt: &mut v1::load_test_client::LoadTestClient<readmit_proto::Svc>,
    id: &str,
    format: OutputFormat,
    call: &impl Fn(tonic::Status) -> anyhow::Error,
) -> anyhow::Result<()> {
    let mut stream = lt
        .watch_load_test(v1::LoadTestRef {
            test_id: id.to_owned(),
        })
        .await
        .map_err(call)?
        .into_inner();
    let tty = format == OutputFormat::Table;
    let mut shown: Option<f64> = None;
    while let Some(sample) = stream.next().await {
        let s = sample.map_err(call)?;
        // The agent sends the last second again with the test's end state: shown already.
        if shown == Some(s.elapsed_s) {
            continue;
        }
        shown = Some(s.elapsed_s);
        let i = s.interval.clone().unwrap_or_default();
        let t = s.total_latency.unwrap_or_default();
        let errors: Vec<String> = i
            .errors
            .iter()
            .map(|e| format!("{}={}", e.kind, e.count))
            .collect();
        let step = if s.step > 0 {
            format!("step {} ({:.0}) ", s.step, s.target_rate)
        } else {
            String::new()
        };
        let line = format!(
            "{:>6.1}s {step}users {:>4}  {:>8.1} req/s  p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms  requests {}  failures {}{}",
            s.elapsed_s,
            s.users,
            i.rps,
            t.p50_ms,
            t.p95_ms,
            t.p99_ms,
            s.total_requests,
            s.total_failures,
            if errors.is_empty() {
                String::new()
            } else {
                format!("  [{}]", errors.join(" "))
            },
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }
    if tty {
        eprintln!();
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match v1::LoadTestState::try_from(state) {
        Ok(v1::LoadTestState::Running) => "running",
        Ok(v1::LoadTestState::Finished) => "finished",
        Ok(v1::LoadTestState::Stopped) => "stopped",
        Ok(v1::LoadTestState::Failed) => "failed",
        Ok(v1::LoadTestState::Aborted) => "aborted",
        _ => "unknown",
    }
}

/// Prints the summary and picks the exit code: 99 when a threshold did not hold.
fn finish(format: OutputFormat, s: &v1::LoadTestSummary) -> anyhow::Result<ExitCode> {
    match format {
        OutputFormat::Json => output::print_json(&summary_json(s))?,
        OutputFormat::Table => print_summary(s),
    }
    if s.state == v1::LoadTestState::Failed as i32 {
        return Ok(ExitCode::FAILURE);
    }
    let broken = s.state == v1::LoadTestState::Aborted as i32
        || (!s.thresholds.is_empty() && !s.passed)
        || (s.capacity.is_some() && !s.passed);
    Ok(if broken {
        ExitCode::from(THRESHOLD_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn latency_json(l: Option<&v1::Latency>) -> Value {
    let l = l.copied().unwrap_or_default();
    json!({
        "mean_ms": l.mean_ms, "p50_ms": l.p50_ms, "p90_ms": l.p90_ms, "p95_ms": l.p95_ms,
        "p99_ms": l.p99_ms, "p999_ms": l.p999_ms, "max_ms": l.max_ms,
    })
}

fn figures_json(f: Option<&v1::Figures>) -> Value {
    let f = f.cloned().unwrap_or_default();
    let mut v = json!({
        "requests": f.requests,
        "failures": f.failures,
        "late": f.late,
        "missed": f.missed,
        "seconds": f.seconds,
        "rps": f.rps,
        "error_rate": f.error_rate,
        "latency": latency_json(f.latency.as_ref()),
        "errors": f.errors.iter().map(|e| (e.kind.clone(), json!(e.count))).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(service) = &f.service {
        v["service"] = latency_json(Some(service));
    }
    v
}

pub fn summary_json(s: &v1::LoadTestSummary) -> Value {
    let total = s.total.clone().unwrap_or_default();
    let l = total.latency.unwrap_or_default();
    let mut v = json!({
        "test_id": s.test_id,
        "state": state_name(s.state),
        "target": s.spec.as_ref().and_then(|sp| sp.target.as_ref()).map(|t| t.url.clone()),
        "started_at_ms": s.started_at_ms,
        "ended_at_ms": s.ended_at_ms,
        "requests": total.requests,
        "failures": total.failures,
        "rps": total.rps,
        "p50_ms": l.p50_ms,
        "p90_ms": l.p90_ms,
        "p95_ms": l.p95_ms,
        "p99_ms": l.p99_ms,
        "p999_ms": l.p999_ms,
        "max_ms": l.max_ms,
        "total": figures_json(s.total.as_ref()),
        "thresholds": s.thresholds.iter().map(|t| json!({
            "threshold": t.threshold, "passed": t.passed, "observed": t.observed,
        })).collect::<Vec<_>>(),
        "passed": s.passed,
        "payload": s.payload,
        "run_id": s.run_id,
        "error": s.error,
    });
    if let Some(c) = &s.capacity {
        v["capacity"] = json!({
            "dimension": c.dimension, "max_level": c.max_level, "rps": c.rps,
            "first_bad": c.first_bad, "reached_max": c.reached_max,
        });
        if c.dimension == "users" {
            v["max_users"] = json!(c.max_level);
        } else {
            v["max_rate"] = json!(c.max_level);
        }
        v["steps"] = s
            .steps
            .iter()
            .map(|st| {
                json!({
                    "index": st.index,
                    "level": st.level,
                    "passed": st.passed,
                    "figures": figures_json(st.figures.as_ref()),
                    "thresholds": st.thresholds.iter().map(|t| json!({
                        "threshold": t.threshold, "passed": t.passed, "observed": t.observed,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    v
}

fn print_summary(s: &v1::LoadTestSummary) {
    let total = s.total.clone().unwrap_or_default();
    let l = total.latency.unwrap_or_default();
    println!(
        "test {}  {}  payload {}",
        s.test_id,
        state_name(s.state),
        s.payload
    );
    if !s.run_id.is_empty() {
        println!("kept as run {} of experiment load_tests", s.run_id);
    }
    if !s.error.is_empty() {
        println!("note: {}", s.error);
    }
    let mut t = output::table([
        "requests", "failures", "req/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "p99.9 ms",
        "max ms",
    ]);
    t.add_row(vec![
        total.requests.to_string(),
        total.failures.to_string(),
        format!("{:.1}", total.rps),
        format!("{:.2}", l.p50_ms),
        format!("{:.2}", l.p90_ms),
        format!("{:.2}", l.p95_ms),
        format!("{:.2}", l.p99_ms),
        format!("{:.2}", l.p999_ms),
        format!("{:.2}", l.max_ms),
    ]);
    println!("{t}");
    if let Some(service) = &total.service {
        println!(
            "service time (uncorrected): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms; late {}  missed {}",
            service.p50_ms, service.p99_ms, service.max_ms, total.late, total.missed
        );
    }
    if !total.errors.is_empty() {
        let errors: Vec<String> = total
            .errors
            .iter()
            .map(|e| format!("{} {}", e.kind, e.count))
            .collect();
        println!("errors: {}", errors.join(", "));
    }
    for v in &s.thresholds {
        println!(
            "{} {}  (observed {:.3})",
            if v.passed { "✓" } else { "✗" },
            v.threshold,
            v.observed
        );
    }
    if let Some(c) = &s.capacity {
        let mut t = output::table([
            "step",
            c.dimension.as_str(),
            "req/s",
            "p95 ms",
            "p99 ms",
            "errors %",
            "held",
        ]);
        for st in &s.steps {
            let f = st.figures.clone().unwrap_or_default();
            let l = f.latency.unwrap_or_default();
            t.add_row(vec![
                st.index.to_string(),
                st.level.to_string(),
                format!("{:.1}", f.rps),
                format!("{:.2}", l.p95_ms),
                format!("{:.2}", l.p99_ms),
                format!("{:.2}", f.error_rate * 100.0),
                if st.passed { "yes" } else { "no" }.to_owned(),
            ]);
        }
        println!("{t}");
        println!(
            "capacity: {} {} held within the objective at {:.1} req/s{}",
            c.max_level,
            c.dimension,
            c.rps,
            if c.reached_max {
                " (the search's maximum: try a higher one)"
            } else {
                ""
            }
        );
    }
}

fn print_list(tests: &[v1::LoadTestSummary]) {
    let mut t = output::table([
        "id", "state", "started", "target", "requests", "req/s", "p95 ms", "passed", "run",
    ]);
    for s in tests {
        let total = s.total.clone().unwrap_or_default();
        let l = total.latency.unwrap_or_default();
        t.add_row(vec![
            s.test_id.clone(),
            state_name(s.state).to_owned(),
            utc(s.started_at_ms),
            s.spec
                .as_ref()
                .and_then(|sp| sp.target.as_ref())
                .map(|t| t.url.clone())
                .unwrap_or_default(),
            total.requests.to_string(),
            format!("{:.1}", total.rps),
            format!("{:.2}", l.p95_ms),
            if s.passed { "yes" } else { "no" }.to_owned(),
            s.run_id.clone(),
        ]);
    }
    println!("{t}");
}

fn utc(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::AgentState;

    fn agent(url: &str, roles: &[&str], grpc: &str, http: &str) -> AgentState {
        AgentState {
            name: url.into(),
            url: url.into(),
            up: true,
            reason: String::new(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            version: "0.1.0".into(),
            host: "h".into(),
            os: "linux".into(),
            cpus: 2,
            pid: 1,
            grpc_addr: grpc.into(),
            http_addr: http.into(),
            started_at_ms: 0,
            uptime_s: 1.0,
            auth_required: true,
        }
    }

    #[test]
    fn a_url_on_a_known_inference_agents_listener_names_that_agent() {
        let known = [
            agent(
                "https://etl-1:50051",
                &["etl"],
                "0.0.0.0:50051",
                "0.0.0.0:8080",
            ),
            agent(
                "https://inference-1:50051",
                &["inference"],
                "0.0.0.0:50051",
                "0.0.0.0:8080",
            ),
        ];
        let found = |url: &str| known_agent_for(url, &known);
        assert_eq!(
            found("https://inference-1:8080").as_deref(),
            Some("https://inference-1:50051")
        );
        assert_eq!(
            found("INFERENCE-1:50051").as_deref(),
            Some("https://inference-1:50051")
        );
        // Another port of the host, another host, or an agent without the role: none.
        assert_eq!(found("https://inference-1:9000"), None);
        assert_eq!(found("https://etl-1:8080"), None);
        assert_eq!(found("https://elsewhere:8080"), None);
        assert_eq!(found("no-port"), None);
    }
}
