//! `readmit up --headless`'s one JSON summary: what the stack holds and serves once the
//! Production model answers — data counts, the main job's DAG runs, the tracked runs with
//! their metrics, the Production model, one example prediction explained, and the endpoints.

use readmit_agent::RunningAgent;
use readmit_proto::v1;
use serde_json::{Value, json};

use super::{Job, MODEL};
use crate::cli::predict;
use crate::fleet::{Fleet, Role};
use crate::output;

/// The experiment `train_and_register` logs its candidates to.
const EXPERIMENT: &str = "diabetes_readmission_training";
/// Fields the example prediction explains.
const EXPLAIN: u32 = 5;

pub async fn build(fleet: &Fleet, job: &Job, agent: &RunningAgent) -> anyhow::Result<Value> {
    let etl = fleet.client(Role::Etl).await?;
    let status = etl
        .data_status()
        .await
        .map_err(|e| anyhow::anyhow!(output::call_error(etl.url(), &e)))?;
    let tracking = fleet.client(Role::Tracking).await?;
    let runs = match tracking.experiment_id(EXPERIMENT).await? {
        Some(id) => tracking.runs_where(&id, "", 1000).await?,
        None => Vec::new(),
    };
    let production = tracking
        .model_versions(MODEL)
        .await?
        .into_iter()
        .filter(|v| v.stage == "Production")
        .max_by_key(|v| v.version);
    let inference = fleet.client(Role::Inference).await?;
    let served = inference
        .served_model()
        .await
        .map_err(|e| anyhow::anyhow!(output::call_error(inference.url(), &e)))?;
    let record = predict::test_record(fleet, 0).await?;
    let record_json = record_json(&record);
    let prediction = predict::predict(&inference, record, EXPLAIN).await?;
    let http = agent.http_url();
    Ok(json!({
        "agent": {
            "grpc": agent.grpc_url(),
            "version": readmit_agent::VERSION,
            "roles": fleet.snapshot().first().map(|a| a.roles.clone()).unwrap_or_default(),
        },
        "data": {
            "dataset_sha256": status.dataset_sha256.unwrap_or_default(),
            "ingested_now": job.ingested,
            "batches_appended_now": job.appended,
            "batches_appended": status.batches_appended,
            "pool_rows": status.pool_rows,
            "train_rows": status.train_rows,
            "pool_remaining": status.pool_remaining,
            "tables": status.tables.iter().map(|t| json!({
                "database": t.database,
                "table": t.table,
                "rows": t.rows,
            })).collect::<Vec<_>>(),
        },
        "dag_runs": job.dag_runs.iter().map(|r| json!({
            "run_id": r.run_id,
            "dag": r.dag,
            "state": r.state.name(),
            "duration_s": r.duration_s,
            "tasks": r.tasks.iter().map(|t| json!({
                "task_id": t.task_id,
                "state": t.state.name(),
                "duration_s": t.duration_s,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "runs": runs.iter().map(crate::cli::runs::run_json).collect::<Vec<_>>(),
        "production_model": production.map(|v| json!({
            "name": v.name,
            "version": v.version,
            "run_id": v.run_id,
            "source": v.source,
            "aliases": v.aliases,
        })),
        "served": {
            "loaded": served.loaded,
            "name": served.name,
            "version": served.version,
            "stage": served.stage,
            "following": served.following,
            "threshold": served.threshold,
            "metrics": served.metrics,
        },
        "example_prediction": {
            "test_record": 0,
            "record": record_json,
            "model": prediction.model,
            "version": prediction.version,
            "probability": prediction.probability,
            "readmitted": prediction.readmitted,
            "threshold": prediction.threshold,
            "contributions": prediction.contributions,
        },
        "endpoints": {
            "grpc": agent.grpc_url(),
            "http": http,
            "predict": format!("{http}/predict"),
            "invocations": format!("{http}/invocations"),
            "open_inference": format!("{http}/v2/models/{}/infer", served.name),
            "model_info": format!("{http}/model-info"),
            "mlflow_api": format!("{http}/api/2.0/mlflow"),
            "metrics": format!("{http}/metrics"),
            "healthz": format!("{http}/healthz"),
            "readyz": format!("{http}/readyz"),
        },
    }))
}

/// A wire record as a JSON object, missing fields left out.
fn record_json(record: &v1::Record) -> Value {
    let mut fields: Vec<(&String, &v1::FieldValue)> = record.fields.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| {
                let value = match &v.kind {
                    Some(v1::field_value::Kind::Text(t)) => json!(t),
                    // Whole numbers as integers, as in the CSV.
                    Some(v1::field_value::Kind::Number(n))
                        if n.fract() == 0.0 && n.abs() < 9.0e15 =>
                    {
                        json!(*n as i64)
                    }
                    Some(v1::field_value::Kind::Number(n)) => json!(n),
                    None => return None,
                };
                Some((k.clone(), value))
            })
            .collect(),
    )
}
