//! MLflow's run endpoints: create, get, update, delete and restore, log metrics, params,
//! tags and batches, search, and metric history.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::json::*;
use crate::http::api_error::ApiResult;
use crate::http::wire::{Params, opt_i64_lenient, strings_lenient, u32_lenient};
use crate::tracking::entities::{self as m, Lifecycle, TrackingError};
use crate::tracking::{RunQuery, TrackingStore};

/// MLflow accepts a run's id as `run_id` or, from older clients, `run_uuid`.
#[derive(Deserialize)]
pub(super) struct RunRef {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
}

impl RunRef {
    fn id(&self) -> Result<&str, TrackingError> {
        self.run_id
            .as_deref()
            .or(self.run_uuid.as_deref())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                TrackingError::invalid("run_id", "missing value for required parameter 'run_id'")
            })
    }
}

#[derive(Deserialize)]
pub(super) struct CreateRun {
    #[serde(default)]
    experiment_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    run_name: Option<String>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(super) async fn create_run(
    State(s): State<TrackingStore>,
    Params(r): Params<CreateRun>,
) -> ApiResult {
    let experiment_id = match r.experiment_id.as_deref() {
        Some(id) if !id.is_empty() => m::parse_experiment_id(id)?,
        _ => m::DEFAULT_EXPERIMENT_ID,
    };
    let run = s
        .create_run(m::NewRun {
            experiment_id,
            run_name: r.run_name,
            user_id: r.user_id,
            start_time: Some(r.start_time.unwrap_or(0)),
            tags: tags_in(r.tags),
        })
        .await?;
    Ok(Json(json!({ "run": run_json(run) })))
}

pub(super) async fn get_run(
    State(s): State<TrackingStore>,
    Params(r): Params<RunRef>,
) -> ApiResult {
    Ok(Json(json!({ "run": run_json(s.get_run(r.id()?).await?) })))
}

#[derive(Deserialize)]
pub(super) struct UpdateRun {
    #[serde(flatten)]
    run: RunRef,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    end_time: Option<i64>,
    #[serde(default)]
    run_name: Option<String>,
}

pub(super) async fn update_run(
    State(s): State<TrackingStore>,
    Params(r): Params<UpdateRun>,
) -> ApiResult {
    let status = r
        .status
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(str::parse)
        .transpose()?;
    let info = s
        .update_run(
            r.run.id()?,
            m::RunUpdate {
                status,
                end_time: r.end_time,
                run_name: r.run_name,
            },
        )
        .await?;
    Ok(Json(json!({ "run_info": run_info_json(&info) })))
}

pub(super) async fn delete_run(
    State(s): State<TrackingStore>,
    Params(r): Params<RunRef>,
) -> ApiResult {
    s.set_run_lifecycle(r.id()?, Lifecycle::Deleted).await?;
    ok()
}

pub(super) async fn restore_run(
    State(s): State<TrackingStore>,
    Params(r): Params<RunRef>,
) -> ApiResult {
    s.set_run_lifecycle(r.id()?, Lifecycle::Active).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct LogMetric {
    #[serde(flatten)]
    run: RunRef,
    #[serde(flatten)]
    metric: MetricJson,
}

pub(super) async fn log_metric(
    State(s): State<TrackingStore>,
    Params(r): Params<LogMetric>,
) -> ApiResult {
    let batch = m::Batch {
        metrics: vec![r.metric.into()],
        ..m::Batch::default()
    };
    s.log_batch(r.run.id()?, &batch).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct LogKeyValue {
    #[serde(flatten)]
    run: RunRef,
    key: String,
    value: String,
}

pub(super) async fn log_param(
    State(s): State<TrackingStore>,
    Params(r): Params<LogKeyValue>,
) -> ApiResult {
    let batch = m::Batch {
        params: vec![m::Param {
            key: r.key,
            value: r.value,
        }],
        ..m::Batch::default()
    };
    s.log_batch(r.run.id()?, &batch).await?;
    ok()
}

pub(super) async fn set_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<LogKeyValue>,
) -> ApiResult {
    let batch = m::Batch {
        tags: vec![m::Tag {
            key: r.key,
            value: r.value,
        }],
        ..m::Batch::default()
    };
    s.log_batch(r.run.id()?, &batch).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct DeleteTag {
    run_id: String,
    key: String,
}

pub(super) async fn delete_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<DeleteTag>,
) -> ApiResult {
    s.delete_tag(&r.run_id, &r.key).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct LogBatch {
    run_id: String,
    #[serde(default)]
    metrics: Vec<MetricJson>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(super) async fn log_batch(
    State(s): State<TrackingStore>,
    Params(r): Params<LogBatch>,
) -> ApiResult {
    let batch = m::Batch {
        metrics: r.metrics.into_iter().map(Into::into).collect(),
        params: r
            .params
            .into_iter()
            .map(|p| m::Param {
                key: p.key,
                value: p.value,
            })
            .collect(),
        tags: tags_in(r.tags),
    };
    s.log_batch(&r.run_id, &batch).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct SearchRuns {
    #[serde(default, deserialize_with = "strings_lenient")]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    run_view_type: Option<String>,
    #[serde(default, deserialize_with = "u32_lenient")]
    max_results: u32,
    #[serde(default, deserialize_with = "strings_lenient")]
    order_by: Vec<String>,
    #[serde(default)]
    page_token: Option<String>,
}

pub(super) async fn search_runs(
    State(s): State<TrackingStore>,
    Params(r): Params<SearchRuns>,
) -> ApiResult {
    let query = RunQuery {
        experiment_ids: m::parse_experiment_ids(&r.experiment_ids)?,
        filter: r.filter.unwrap_or_default(),
        order_by: r.order_by,
        view: view_type(r.run_view_type.as_deref())?,
        max_results: r.max_results,
        page_token: r.page_token,
    };
    let (runs, next) = s.search_runs(&query).await?;
    // MLflow leaves `runs` out when nothing matched.
    let Json(mut page) = paged("runs", runs.into_iter().map(run_json).collect(), next);
    if page["runs"].as_array().is_some_and(Vec::is_empty) {
        page.as_object_mut().map(|p| p.remove("runs"));
    }
    Ok(Json(page))
}

#[derive(Deserialize)]
pub(super) struct MetricHistoryRequest {
    #[serde(flatten)]
    run: RunRef,
    metric_key: String,
}

pub(super) async fn metric_history(
    State(s): State<TrackingStore>,
    Params(r): Params<MetricHistoryRequest>,
) -> ApiResult {
    let metrics = s.metric_history(r.run.id()?, &r.metric_key).await?;
    Ok(Json(
        json!({ "metrics": metrics.into_iter().map(MetricJson::from).collect::<Vec<_>>() }),
    ))
}
