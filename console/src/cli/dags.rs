//! `readmit dags`: list DAGs, trigger and follow runs, read logs, pause and cancel — what an
//! Airflow user does in its UI, from the terminal.

use std::collections::BTreeMap;
use std::process::ExitCode;

use futures_util::StreamExt;
use readmit_proto::{
    CallError, Client, DagList, DagRunInfo, LogEntry, RunChange, RunEvent, RunState, TaskRun,
};
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

pub async fn run(global: &Global, command: &DagsCommand) -> anyhow::Result<ExitCode> {
    let client = global.client(Role::Etl).await?;
    let failed = |e: CallError| anyhow::anyhow!(output::call_error(client.url(), &e));
    match command {
        DagsCommand::List => print_dags(global, &client.list_dags().await.map_err(failed)?)?,
        DagsCommand::Trigger { dag, params, wait } => {
            let params: BTreeMap<String, String> = params.iter().cloned().collect();
            let run = if *wait {
                trigger_and_watch(global, &client, dag, &params)
                    .await
                    .map_err(failed)?
            } else {
                client.trigger_dag(dag, &params).await.map_err(failed)?
            };
            print_run(global, &run)?;
            if *wait && run.state != RunState::Succeeded {
                return Ok(ExitCode::FAILURE);
            }
        }
        DagsCommand::Runs { dag, limit } => {
            let runs = client
                .dag_runs(dag.as_deref(), *limit)
                .await
                .map_err(failed)?;
            print_runs(global, &runs)?;
        }
        DagsCommand::Logs { run, task, follow } => {
            print_logs(global, &client, run, task.as_deref(), *follow)
                .await
                .map_err(failed)?;
        }
        DagsCommand::Pause { dag } | DagsCommand::Unpause { dag } => {
            let paused = matches!(command, DagsCommand::Pause { .. });
            let d = client.set_dag_paused(dag, paused).await.map_err(failed)?;
            if global.output == OutputFormat::Json {
                output::print_json(&json!({"dag": d.name, "paused": d.paused}))?;
            } else {
                println!("{}: {}", d.name, if d.paused { "paused" } else { "active" });
            }
        }
        DagsCommand::Cancel { run } => {
            print_run(global, &client.cancel_dag_run(run).await.map_err(failed)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Triggers `dag` and follows the run to its end: a progress bar of its tasks on stderr, and
/// in table mode each event as it comes.
async fn trigger_and_watch(
    global: &Global,
    client: &Client,
    dag: &str,
    params: &BTreeMap<String, String>,
) -> Result<DagRunInfo, CallError> {
    let bar = crate::progress::steps(crate::progress::shown(global.output), 0, dag);
    let print = global.output == OutputFormat::Table;
    let run = client
        .trigger_and_follow(dag, params, |event, run| {
            if print {
                bar.suspend(|| print_event(event));
            }
            show_tasks(&bar, &run.tasks);
        })
        .await;
    bar.finish_and_clear();
    run
}

/// Tasks past running as the bar's position; those running as its message.
fn show_tasks(bar: &indicatif::ProgressBar, tasks: &[TaskRun]) {
    bar.set_length(tasks.len() as u64);
    bar.set_position(tasks.iter().filter(|t| !t.state.is_open()).count() as u64);
    let running: Vec<&str> = tasks
        .iter()
        .filter(|t| t.state == RunState::Running)
        .map(|t| t.task_id.as_str())
        .collect();
    bar.set_message(running.join(", "));
}

/// A run's log lines so far; with `follow`, the new ones as they come until the run ends.
async fn print_logs(
    global: &Global,
    client: &Client,
    run: &str,
    task: Option<&str>,
    follow: bool,
) -> Result<(), CallError> {
    // Watching starts before the lines so far are read: nothing falls between the two.
    let events = if follow {
        Some(client.watch_runs(Some(run)).await?)
    } else {
        None
    };
    let mut last = 0;
    for l in client.run_logs(run, task, 0).await? {
        print_line(global, &l);
        last = l.seq;
    }
    let Some(events) = events else { return Ok(()) };
    if client.dag_run(run).await?.state.is_terminal() {
        return Ok(());
    }
    let mut events = std::pin::pin!(events);
    while let Some(e) = events.next().await {
        let e = e?;
        if e.run_state().is_some_and(RunState::is_terminal) {
            break;
        }
        if let RunChange::Log(l) = e.change
            && l.seq > last
            && task.is_none_or(|t| l.task_id == t)
        {
            last = l.seq;
            print_line(global, &l);
        }
    }
    Ok(())
}

fn print_dags(global: &Global, list: &DagList) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        let dags: Vec<Value> = list
            .dags
            .iter()
            .map(|d| {
                json!({"name": d.name, "schedule": d.schedule, "paused": d.paused,
                       "next_run_at_ms": d.next_run_at_ms,
                       "tasks": d.tasks.iter().map(|t| &t.id).collect::<Vec<_>>(),
                       "source": d.source})
            })
            .collect();
        let errors: Vec<Value> = list
            .errors
            .iter()
            .map(|e| json!({"file": e.file, "line": e.line, "reason": e.reason}))
            .collect();
        return output::print_json(&json!({"dags": dags, "errors": errors}));
    }
    let mut table = output::table(["DAG", "SCHEDULE", "PAUSED", "NEXT RUN (UTC)", "TASKS"]);
    for d in &list.dags {
        let tasks: Vec<&str> = d.tasks.iter().map(|t| t.id.as_str()).collect();
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
            tasks.join(" → "),
        ]);
    }
    println!("{table}");
    for e in &list.errors {
        eprintln!("refused: {}:{}: {}", e.file, e.line, e.reason);
    }
    Ok(())
}

fn run_json(r: &DagRunInfo) -> Value {
    json!({
        "run_id": r.run_id,
        "dag": r.dag,
        "state": r.state.name(),
        "trigger": r.trigger,
        "params": r.params,
        "queued_at_ms": r.queued_at_ms,
        "duration_s": r.duration_s,
        "error": r.error,
        "tasks": r.tasks.iter().map(|t| json!({
            "task_id": t.task_id,
            "kind": t.kind,
            "state": t.state.name(),
            "attempt": t.attempt,
            "max_attempts": t.max_attempts,
            "duration_s": t.duration_s,
            "error": t.error,
        })).collect::<Vec<_>>(),
    })
}

fn print_run(global: &Global, run: &DagRunInfo) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&run_json(run));
    }
    println!(
        "{}  {}  {}  {}",
        run.run_id,
        run.state.name(),
        output::duration(run.duration_s),
        run.error
    );
    let mut table = output::table(["TASK", "KIND", "STATE", "ATTEMPT", "DURATION", "ERROR"]);
    for t in &run.tasks {
        table.add_row([
            t.task_id.clone(),
            t.kind.clone(),
            t.state.name().to_owned(),
            format!("{}/{}", t.attempt, t.max_attempts),
            format!("{:.2}s", t.duration_s),
            t.error.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn print_runs(global: &Global, runs: &[DagRunInfo]) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&runs.iter().map(run_json).collect::<Vec<_>>());
    }
    let mut table = output::table([
        "RUN",
        "DAG",
        "STATE",
        "TRIGGER",
        "QUEUED (UTC)",
        "DURATION",
        "TASKS OK",
    ]);
    for r in runs {
        let ok = r
            .tasks
            .iter()
            .filter(|t| t.state == RunState::Succeeded)
            .count();
        table.add_row([
            r.run_id.clone(),
            r.dag.clone(),
            r.state.name().to_owned(),
            r.trigger.clone(),
            time_of(r.queued_at_ms),
            format!("{:.2}s", r.duration_s),
            format!("{ok}/{}", r.tasks.len()),
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

fn print_line(global: &Global, l: &LogEntry) {
    if global.output == OutputFormat::Json {
        println!(
            "{}",
            json!({"seq": l.seq, "timestamp_ms": l.timestamp_ms, "task_id": l.task_id,
                   "attempt": l.attempt, "level": l.level, "message": l.message})
        );
    } else {
        println!("{}", log_text(l));
    }
}

fn log_text(l: &LogEntry) -> String {
    format!(
        "{} {:<5} {}#{} {}",
        time_of(l.timestamp_ms),
        l.level,
        l.task_id,
        l.attempt,
        l.message
    )
}

fn print_event(e: &RunEvent) {
    match &e.change {
        RunChange::State(s) if s.task_id.is_empty() => {
            println!("{} run {}", time_of(e.timestamp_ms), s.state.name());
        }
        RunChange::State(s) => {
            let error = if s.error.is_empty() {
                String::new()
            } else {
                format!(": {}", s.error)
            };
            println!(
                "{} {} {}{error}",
                time_of(e.timestamp_ms),
                s.task_id,
                s.state.name()
            );
        }
        RunChange::Log(l) => println!("{}", log_text(l)),
    }
}
