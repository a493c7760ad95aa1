//! `readmit dags`: list DAGs, trigger and follow runs, read logs, pause and cancel — what an
//! Airflow user does in its UI, from the terminal.

use std::collections::HashMap;
use std::process::ExitCode;

use futures_util::StreamExt;
use readmit_proto::v1;
use serde_json::{Value, json};

use super::Global;
use crate::fleet::Role;
use crate::output::{self, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum DagsCommand {
    /// Every DAG with its schedule, next run and whether it is paused; refused DAG files too.
    List,
    /// Start a run; with --wait, follow it and exit non-zero if it fails.
    Trigger {
        dag: String,
        /// A run parameter, repeatable: --param batch_size=15000
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[arg(long)]
        wait: bool,
    },
    /// Recent runs, of one DAG or of all.
    Runs {
        dag: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A run's log lines; with --follow, new lines as they come until the run ends.
    Logs {
        run: String,
        #[arg(long)]
        task: Option<String>,
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop scheduling a DAG.
    Pause { dag: String },
    /// Resume scheduling a DAG.
    Unpause { dag: String },
    /// Cancel a queued or running run.
    Cancel { run: String },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

pub fn state_name(state: i32) -> &'static str {
    match v1::RunState::try_from(state) {
        Ok(v1::RunState::Queued) => "queued",
        Ok(v1::RunState::Running) => "running",
        Ok(v1::RunState::Succeeded) => "succeeded",
        Ok(v1::RunState::Failed) => "failed",
        Ok(v1::RunState::Cancelled) => "cancelled",
        Ok(v1::RunState::UpForRetry) => "up_for_retry",
        Ok(v1::RunState::UpstreamFailed) => "upstream_failed",
        Ok(v1::RunState::Skipped) => "skipped",
        _ => "unknown",
    }
}

fn finished(state: i32) -> bool {
    matches!(
        v1::RunState::try_from(state),
        Ok(v1::RunState::Succeeded | v1::RunState::Failed | v1::RunState::Cancelled)
    )
}

fn run_json(r: &v1::DagRun) -> Value {
    json!({
        "run_id": r.run_id,
        "dag": r.dag,
        "state": state_name(r.state),
        "trigger": r.trigger,
        "params": r.params,
        "queued_at_ms": r.queued_at_ms,
        "duration_s": r.duration_s,
        "error": r.error,
        "tasks": r.tasks.iter().map(|t| json!({
            "task_id": t.task_id,
            "kind": t.kind,
            "state": state_name(t.state),
            "attempt": t.attempt,
            "max_attempts": t.max_attempts,
            "duration_s": t.duration_s,
            "error": t.error,
        })).collect::<Vec<_>>(),
    })
}

fn print_run(global: &Global, run: &v1::DagRun) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&run_json(run));
    }
    println!(
        "{}  {}  {}  {}",
        run.run_id,
        state_name(run.state),
        output::duration(run.duration_s),
        run.error
    );
    let mut table = output::table(["TASK", "KIND", "STATE", "ATTEMPT", "DURATION", "ERROR"]);
    for t in &run.tasks {
        table.add_row([
            t.task_id.clone(),
            t.kind.clone(),
            state_name(t.state).to_owned(),
            format!("{}/{}", t.attempt, t.max_attempts),
            format!("{:.2}s", t.duration_s),
            t.error.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn time_of(ms: i64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

pub type EtlClient = v1::etl_client::EtlClient<readmit_proto::Svc>;

/// Follows a run to its end, printing its events when `print` is set and moving `bar` (tasks
/// done of the run's tasks, the running ones as its message); returns the run as it ended.
pub async fn follow(
    etl: &mut EtlClient,
    run: v1::DagRun,
    print: bool,
    bar: &indicatif::ProgressBar,
) -> Result<v1::DagRun, tonic::Status> {
    let get = |run_id: String| v1::GetDagRunRequest { run_id };
    let mut events = etl
        .watch_runs(v1::WatchRunsRequest {
            run_id: run.run_id.clone(),
        })
        .await?
        .into_inner();
    // The run may have ended before the watch began: check once after subscribing.
    let mut current = etl.get_dag_run(get(run.run_id.clone())).await?.into_inner();
    let mut tasks: Vec<(String, i32)> = current
        .tasks
        .iter()
        .map(|t| (t.task_id.clone(), t.state))
        .collect();
    bar.set_length(tasks.len() as u64);
    show_tasks(bar, &tasks);
    while !finished(current.state) {
        match events.next().await {
            Some(Ok(e)) => {
                if print {
                    bar.suspend(|| print_event(&e));
                }
                if let Some(v1::run_event::Event::State(s)) = &e.event
                    && let Some(t) = tasks.iter_mut().find(|(id, _)| *id == s.task_id)
                {
                    t.1 = s.state;
                    show_tasks(bar, &tasks);
                }
                if matches!(&e.event, Some(v1::run_event::Event::State(s)) if s.task_id.is_empty() && finished(s.state))
                {
                    current = etl.get_dag_run(get(run.run_id.clone())).await?.into_inner();
                }
            }
            Some(Err(s)) => return Err(s),
            None => {
                current = etl.get_dag_run(get(run.run_id.clone())).await?.into_inner();
                break;
            }
        }
    }
    Ok(current)
}

/// Tasks past running as the bar's position; those running as its message.
fn show_tasks(bar: &indicatif::ProgressBar, tasks: &[(String, i32)]) {
    let done = tasks
        .iter()
        .filter(|(_, state)| {
            !matches!(
                v1::RunState::try_from(*state),
                Ok(v1::RunState::Queued | v1::RunState::Running | v1::RunState::UpForRetry)
                    | Err(_)
            )
        })
        .count();
    bar.set_position(done as u64);
    let running: Vec<&str> = tasks
        .iter()
        .filter(|(_, state)| *state == v1::RunState::Running as i32)
        .map(|(id, _)| id.as_str())
        .collect();
    bar.set_message(running.join(", "));
}

pub async fn run(global: &Global, command: &DagsCommand) -> anyhow::Result<ExitCode> {
    let client = global.client(Role::Etl).await?;
    let mut etl = client.etl();
    let call = |s: tonic::Status| anyhow::anyhow!(output::status_error(client.url(), &s));
    match command {
        DagsCommand::List => {
            let reply = etl
                .list_dags(v1::ListDagsRequest {})
                .await
                .map_err(call)?
                .into_inner();
            if global.output == OutputFormat::Json {
                let dags: Vec<Value> = reply
                    .dags
                    .iter()
                    .map(|d| json!({"name": d.name, "schedule": d.schedule, "paused": d.paused, "next_run_at_ms": d.next_run_at_ms,
                                    "tasks": d.tasks.iter().map(|t| &t.id).collect::<Vec<_>>(), "source": d.source}))
                    .collect();
                let errors: Vec<Value> = reply
                    .errors
                    .iter()
                    .map(|e| json!({"file": e.file, "line": e.line, "reason": e.reason}))
                    .collect();
                output::print_json(&json!({"dags": dags, "errors": errors}))?;
            } else {
                let mut table =
                    output::table(["DAG", "SCHEDULE", "PAUSED", "NEXT RUN (UTC)", "TASKS"]);
                for d in &reply.dags {
                    table.add_row([
                        d.name.clone(),
                        if d.schedule.is_empty() {
                            "manual".into()
                        } else {
                            d.schedule.clone()
                        },
                        if d.paused { "yes" } else { "no" }.to_owned(),
                        if d.next_run_at_ms > 0 {
                            time_of(d.next_run_at_ms)
                        } else {
                            "-".into()
                        },
                        d.tasks
                            .iter()
                            .map(|t| t.id.as_str())
                            .collect::<Vec<_>>()
                            .join(" → "),
                    ]);
                }
                println!("{table}");
                for e in &reply.errors {
                    eprintln!("refused: {}:{}: {}", e.file, e.line, e.reason);
                }
            }
        }
        DagsCommand::Trigger { dag, params, wait } => {
            let params: HashMap<String, String> = params.iter().cloned().collect();
            let run = etl
                .trigger_dag(v1::TriggerDagRequest {
                    dag: dag.clone(),
                    params,
                })
                .await
                .map_err(call)?
                .into_inner();
            if !wait {
                print_run(global, &run)?;
                return Ok(ExitCode::SUCCESS);
            }
            let bar = crate::progress::steps(crate::progress::shown(global.output), 0, dag);
            let current = follow(&mut etl, run, global.output == OutputFormat::Table, &bar)
                .await
                .map_err(call)?;
            bar.finish_and_clear();
            print_run(global, &current)?;
            let ok = v1::RunState::try_from(current.state) == Ok(v1::RunState::Succeeded);
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        DagsCommand::Runs { dag, limit } => {
            let runs = etl
                .list_dag_runs(v1::ListDagRunsRequest {
                    dag: dag.clone().unwrap_or_default(),
                    limit: *limit,
                })
                .await
                .map_err(call)?
                .into_inner()
                .runs;
            if global.output == OutputFormat::Json {
                output::print_json(&runs.iter().map(run_json).collect::<Vec<_>>())?;
            } else {
                let mut table = output::table([
                    "RUN",
                    "DAG",
                    "STATE",
                    "TRIGGER",
                    "QUEUED (UTC)",
                    "DURATION",
                    "TASKS OK",
                ]);
                for r in &runs {
                    let ok = r
                        .tasks
                        .iter()
                        .filter(|t| t.state == v1::RunState::Succeeded as i32)
                        .count();
                    table.add_row([
                        r.run_id.clone(),
                        r.dag.clone(),
                        state_name(r.state).to_owned(),
                        r.trigger.clone(),
                        time_of(r.queued_at_ms),
                        format!("{:.2}s", r.duration_s),
                        format!("{ok}/{}", r.tasks.len()),
                    ]);
                }
                println!("{table}");
            }
        }
        DagsCommand::Logs { run, task, follow } => {
            let task_id = task.clone().unwrap_or_default();
            let mut events = if *follow {
                Some(
                    etl.watch_runs(v1::WatchRunsRequest {
                        run_id: run.clone(),
                    })
                    .await
                    .map_err(call)?
                    .into_inner(),
                )
            } else {
                None
            };
            let lines = etl
                .get_run_logs(v1::GetRunLogsRequest {
                    run_id: run.clone(),
                    task_id: task_id.clone(),
                    after_seq: 0,
                })
                .await
                .map_err(call)?
                .into_inner()
                .lines;
            let mut last = 0;
            for l in &lines {
                print_line(global, l);
                last = l.seq;
            }
            let done = etl
                .get_dag_run(v1::GetDagRunRequest {
                    run_id: run.clone(),
                })
                .await
                .map_err(call)?
                .into_inner();
            if let (Some(events), false) = (events.as_mut(), finished(done.state)) {
                while let Some(e) = events.next().await {
                    match e.map_err(call)?.event {
                        Some(v1::run_event::Event::Log(l))
                            if l.seq > last && (task_id.is_empty() || l.task_id == task_id) =>
                        {
                            last = l.seq;
                            print_line(global, &l);
                        }
                        Some(v1::run_event::Event::State(s))
                            if s.task_id.is_empty() && finished(s.state) =>
                        {
                            break;
                        }
                        _ => {}
                    }
                }
            }
        }
        DagsCommand::Pause { dag } | DagsCommand::Unpause { dag } => {
            let paused = matches!(command, DagsCommand::Pause { .. });
            let d = etl
                .set_dag_paused(v1::SetDagPausedRequest {
                    dag: dag.clone(),
                    paused,
                })
                .await
                .map_err(call)?
                .into_inner();
            if global.output == OutputFormat::Json {
                output::print_json(&json!({"dag": d.name, "paused": d.paused}))?;
            } else {
                println!("{}: {}", d.name, if d.paused { "paused" } else { "active" });
            }
        }
        DagsCommand::Cancel { run } => {
            let r = etl
                .cancel_dag_run(v1::CancelDagRunRequest {
                    run_id: run.clone(),
                })
                .await
                .map_err(call)?
                .into_inner();
            print_run(global, &r)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_line(global: &Global, l: &v1::LogLine) {
    if global.output == OutputFormat::Json {
        println!(
            "{}",
            json!({"seq": l.seq, "timestamp_ms": l.timestamp_ms, "task_id": l.task_id, "attempt": l.attempt, "level": l.level, "message": l.message})
        );
    } else {
        println!(
            "{} {:<5} {}#{} {}",
            time_of(l.timestamp_ms),
            l.level,
            l.task_id,
            l.attempt,
            l.message
        );
    }
}

fn print_event(e: &v1::RunEvent) {
    match &e.event {
        Some(v1::run_event::Event::State(s)) if s.task_id.is_empty() => {
            println!("{} run {}", time_of(e.timestamp_ms), state_name(s.state));
        }
        Some(v1::run_event::Event::State(s)) => {
            let error = if s.error.is_empty() {
                String::new()
            } else {
                format!(": {}", s.error)
            };
            println!(
                "{} {} {}{error}",
                time_of(e.timestamp_ms),
                s.task_id,
                state_name(s.state)
            );
        }
        Some(v1::run_event::Event::Log(l)) => println!(
            "{} {:<5} {}#{} {}",
            time_of(l.timestamp_ms),
            l.level,
            l.task_id,
            l.attempt,
            l.message
        ),
        None => {}
    }
}
