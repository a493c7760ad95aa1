//! `readmit runs`: search and compare tracked runs, like MLflow's run table and compare view.

use std::process::ExitCode;

use readmit_proto::v1;
use serde_json::{Value, json};

use super::Global;
use crate::fleet::Role;
use crate::output::{self, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Runs of an experiment (or of every experiment), filtered and ordered as in MLflow.
    List {
        /// Experiment name; every active experiment when left out.
        #[arg(long)]
        experiment: Option<String>,
        /// MLflow filter, e.g. "metrics.val_roc_auc > 0.6 and params.C = '1'".
        #[arg(long, default_value = "")]
        filter: String,
        /// e.g. "metrics.val_roc_auc DESC"; repeat for ties.
        #[arg(long = "order-by")]
        order_by: Vec<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 100)]
        max: u32,
    },
    /// Params and metrics of several runs side by side, differences marked with *.
    Compare {
        /// Run ids (two or more).
        #[arg(required = true, num_args = 2..)]
        runs: Vec<String>,
    },
}

pub async fn run(global: &Global, command: &RunsCommand) -> anyhow::Result<ExitCode> {
    let client = global.client(Role::Tracking).await?;
    let mut tracking = client.tracking();
    let call = |s: tonic::Status| anyhow::anyhow!(output::status_error(client.url(), &s));
    match command {
        RunsCommand::List {
            experiment,
            filter,
            order_by,
            max,
        } => {
            let experiment_ids = match experiment {
                Some(name) => {
                    let request = v1::GetExperimentRequest {
                        key: Some(v1::get_experiment_request::Key::Name(name.clone())),
                    };
                    vec![
                        tracking
                            .get_experiment(request)
                            .await
                            .map_err(call)?
                            .into_inner()
                            .experiment_id,
                    ]
                }
                None => tracking
                    .list_experiments(v1::ListExperimentsRequest::default())
                    .await
                    .map_err(call)?
                    .into_inner()
                    .experiments
                    .into_iter()
                    .map(|e| e.experiment_id)
                    .collect(),
            };
            let reply = tracking
                .search_runs(v1::SearchRunsRequest {
                    experiment_ids,
                    filter: filter.clone(),
                    order_by: order_by.clone(),
                    max_results: *max,
                    ..Default::default()
                })
                .await
                .map_err(call)?
                .into_inner();
            match global.output {
                OutputFormat::Json => {
                    output::print_json(&reply.runs.iter().map(run_json).collect::<Vec<_>>())?
                }
                OutputFormat::Table => print_runs(&reply.runs, order_by),
            }
        }
        RunsCommand::Compare { runs } => {
            let cmp = tracking
                .compare_runs(v1::CompareRunsRequest {
                    run_ids: runs.clone(),
                })
                .await
                .map_err(call)?
                .into_inner();
            match global.output {
                OutputFormat::Json => output::print_json(&comparison_json(&cmp))?,
                OutputFormat::Table => print_comparison(&cmp),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_name(status: i32) -> &'static str {
    match v1::RunStatus::try_from(status) {
        Ok(v1::RunStatus::Running) => "RUNNING",
        Ok(v1::RunStatus::Scheduled) => "SCHEDULED",
        Ok(v1::RunStatus::Finished) => "FINISHED",
        Ok(v1::RunStatus::Failed) => "FAILED",
        Ok(v1::RunStatus::Killed) => "KILLED",
        _ => "UNKNOWN",
    }
}

pub fn run_json(run: &v1::Run) -> Value {
    let info = run.info.clone().unwrap_or_default();
    let data = run.data.clone().unwrap_or_default();
    let metrics: serde_json::Map<String, Value> = data
        .metrics
        .iter()
        .map(|m| (m.key.clone(), json!(m.value)))
        .collect();
    let params: serde_json::Map<String, Value> = data
        .params
        .iter()
        .map(|p| (p.key.clone(), json!(p.value)))
        .collect();
    json!({
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": status_name(info.status),
        "start_time_ms": info.start_time_ms,
        "end_time_ms": info.end_time_ms,
        "artifact_uri": info.artifact_uri,
        "metrics": metrics,
        "params": params,
        "tags": data.tags,
    })
}

fn print_runs(runs: &[v1::Run], order_by: &[String]) {
    // The metric being ordered by comes first, then the others, at most six columns.
    let mut keys: Vec<String> = order_by
        .iter()
        .filter_map(|o| {
            o.split_whitespace()
                .next()?
                .strip_prefix("metrics.")
                .map(str::to_owned)
        })
        .collect();
    let mut others: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.data
                .iter()
                .flat_map(|d| d.metrics.iter().map(|m| m.key.clone()))
        })
        .filter(|k| !keys.contains(k))
        .collect();
    others.sort();
    others.dedup();
    keys.extend(others);
    keys.truncate(6);
    let mut header = vec![
        "RUN ID".to_owned(),
        "NAME".to_owned(),
        "STATUS".to_owned(),
        "DURATION".to_owned(),
    ];
    header.extend(keys.iter().cloned());
    let mut table = output::table_dyn(header);
    for run in runs {
        let info = run.info.clone().unwrap_or_default();
        let data = run.data.clone().unwrap_or_default();
        let duration = if info.end_time_ms > 0 {
            output::duration((info.end_time_ms - info.start_time_ms) as f64 / 1000.0)
        } else {
            "-".to_owned()
        };
        let mut row = vec![
            info.run_id[..8.min(info.run_id.len())].to_owned(),
            info.run_name,
            status_name(info.status).to_owned(),
            duration,
        ];
        for key in &keys {
            row.push(
                data.metrics
                    .iter()
                    .find(|m| &m.key == key)
                    .map_or_else(|| "-".to_owned(), |m| format!("{:.4}", m.value)),
            );
        }
        table.add_row(row);
    }
    println!("{table}");
    println!("{} runs", runs.len());
}

fn comparison_json(cmp: &v1::RunComparison) -> Value {
    let rows = |values: &[v1::ComparedValue]| -> Vec<Value> {
        values
            .iter()
            .map(|v| {
                let cells: Vec<Value> = v
                    .values
                    .iter()
                    .zip(&v.present)
                    .map(|(value, present)| if *present { json!(value) } else { Value::Null })
                    .collect();
                json!({"key": v.key, "values": cells, "differs": v.differs})
            })
            .collect()
    };
    json!({
        "runs": cmp.runs.iter().map(run_json).collect::<Vec<_>>(),
        "params": rows(&cmp.params),
        "metrics": rows(&cmp.metrics),
    })
}

fn print_comparison(cmp: &v1::RunComparison) {
    let mut header = vec![String::new(), "KEY".to_owned()];
    header.extend(cmp.runs.iter().map(|r| {
        let info = r.info.clone().unwrap_or_default();
        format!(
            "{} ({})",
            info.run_name,
            &info.run_id[..8.min(info.run_id.len())]
        )
    }));
    let mut table = output::table_dyn(header);
    for (section, values) in [("params", &cmp.params), ("metrics", &cmp.metrics)] {
        for v in values {
            let mut row = vec![
                if v.differs {
                    "*".to_owned()
                } else {
                    String::new()
                },
                format!("{section}.{}", v.key),
            ];
            row.extend(v.values.iter().zip(&v.present).map(|(value, present)| {
                if !*present {
                    "-".to_owned()
                } else if section == "metrics" {
                    value
                        .parse::<f64>()
                        .map_or_else(|_| value.clone(), |f| format!("{f:.4}"))
                } else {
                    value.clone()
                }
            }));
            table.add_row(row);
        }
    }
    println!("{table}");
    let differing = cmp
        .params
        .iter()
        .chain(&cmp.metrics)
        .filter(|v| v.differs)
        .count();
    println!(
        "{differing} of {} values differ (*)",
        cmp.params.len() + cmp.metrics.len()
    );
}
