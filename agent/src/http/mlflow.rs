//! MLflow's tracking REST API (`/api/2.0/mlflow/...`) over the tracking store, so the real
//! `mlflow` client works against an agent unchanged. Handlers parse, delegate and render in
//! MLflow's JSON: snake_case, int64 as numbers, unset fields omitted.

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::wire::{
    Params, f64_lenient, i64_lenient, opt_i64_lenient, strings_lenient, u32_lenient,
};
use crate::tracking::artifacts::ArtifactError;
use crate::tracking::entities::{self as m, Lifecycle, TrackingError, ViewType};
use crate::tracking::logged_models::LoggedModelQuery;
use crate::tracking::{ExperimentQuery, RunQuery, Tracking, TrackingStore};

impl axum::extract::FromRef<Tracking> for TrackingStore {
    fn from_ref(tracking: &Tracking) -> Self {
        tracking.store.clone()
    }
}

/// The API under both prefixes MLflow serves: `/api/2.0/mlflow` (clients) and
/// `/ajax-api/2.0/mlflow` (its web UI).
pub fn router<S: Clone + Send + Sync + 'static>(tracking: Tracking) -> Router<S> {
    let api = Router::new()
        .route("/experiments/create", post(create_experiment))
        .route("/experiments/get", get(get_experiment))
        .route("/experiments/get-by-name", get(get_experiment_by_name))
        .route(
            "/experiments/search",
            get(search_experiments).post(search_experiments),
        )
        .route("/experiments/delete", post(delete_experiment))
        .route("/experiments/restore", post(restore_experiment))
        .route("/experiments/update", post(update_experiment))
        .route("/experiments/set-experiment-tag", post(set_experiment_tag))
        .route("/runs/create", post(create_run))
        .route("/runs/get", get(get_run))
        .route("/runs/update", post(update_run))
        .route("/runs/delete", post(delete_run))
        .route("/runs/restore", post(restore_run))
        .route("/runs/log-metric", post(log_metric))
        .route("/runs/log-parameter", post(log_param))
        .route("/runs/set-tag", post(set_tag))
        .route("/runs/delete-tag", post(delete_tag))
        .route("/runs/log-batch", post(log_batch))
        .route("/runs/search", get(search_runs).post(search_runs))
        .route("/metrics/get-history", get(metric_history))
        .route("/runs/outputs", post(log_outputs))
        .route("/logged-models", post(create_logged_model))
        .route("/logged-models/search", post(search_logged_models))
        .route(
            "/logged-models/{model_id}",
            get(get_logged_model)
                .patch(finalize_logged_model)
                .delete(delete_logged_model),
        )
        .route(
            "/logged-models/{model_id}/tags",
            patch(set_logged_model_tags),
        )
        .route(
            "/logged-models/{model_id}/tags/{key}",
            delete(delete_logged_model_tag),
        )
        .route(
            "/logged-models/{model_id}/params",
            post(log_logged_model_params),
        )
        .route("/registered-models/create", post(create_registered_model))
        .route("/registered-models/get", get(get_registered_model))
        .route("/registered-models/rename", post(rename_registered_model))
        .route("/registered-models/update", patch(update_registered_model))
        .route("/registered-models/delete", delete(delete_registered_model))
        .route("/registered-models/search", get(search_registered_models))
        .route(
            "/registered-models/get-latest-versions",
            get(latest_versions).post(latest_versions),
        )
        .route("/registered-models/set-tag", post(set_registered_model_tag))
        .route(
            "/registered-models/delete-tag",
            delete(delete_registered_model_tag),
        )
        .route(
            "/registered-models/alias",
            get(get_by_alias).post(set_alias).delete(delete_alias),
        )
        .route("/model-versions/create", post(create_model_version))
        .route("/model-versions/get", get(get_model_version))
        .route("/model-versions/update", patch(update_model_version))
        .route("/model-versions/delete", delete(delete_model_version))
        .route("/model-versions/search", get(search_model_versions))
        .route("/model-versions/get-download-uri", get(download_uri))
        .route("/model-versions/transition-stage", post(transition_stage))
        .route("/model-versions/set-tag", post(set_model_version_tag))
        .route(
            "/model-versions/delete-tag",
            delete(delete_model_version_tag),
        )
        .with_state(tracking.clone());
    Router::new()
        .nest("/api/2.0/mlflow", api.clone())
        .nest("/ajax-api/2.0/mlflow", api)
        .merge(super::artifacts::router(tracking))
}

/// A tracking error as MLflow reports it.
pub struct ApiError(TrackingError);

impl<E: Into<TrackingError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            TrackingError::NotFound { .. } => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            TrackingError::AlreadyExists { .. } => {
                (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS")
            }
            TrackingError::Invalid { .. } | TrackingError::InvalidState(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
            }
            TrackingError::Artifact(e) => match e {
                ArtifactError::InvalidPath { .. } | ArtifactError::Upload { .. } => {
                    (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
                }
                ArtifactError::NotFound { .. } => {
                    (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")
                }
                ArtifactError::Config { .. }
                | ArtifactError::Store(_)
                | ArtifactError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
            },
            TrackingError::Db(_) | TrackingError::Store(_) | TrackingError::Setup(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "tracking request failed");
        }
        super::error_response(status, code, &self.0.to_string())
    }
}

pub type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// A page of a listing, with MLflow's `next_page_token` when there is more.
fn paged(key: &str, items: Vec<Value>, next: Option<String>) -> Json<Value> {
    let mut page = serde_json::Map::new();
    page.insert(key.to_owned(), Value::Array(items));
    if let Some(token) = next {
        page.insert("next_page_token".into(), json!(token));
    }
    Json(Value::Object(page))
}

fn ok() -> ApiResult {
    Ok(Json(json!({})))
}

// ---- JSON shapes ------------------------------------------------------------------------

#[derive(Debug, Deserialize, Serialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct MetricJson {
    pub key: String,
    #[serde(deserialize_with = "f64_lenient", serialize_with = "f64_mlflow")]
    pub value: f64,
    #[serde(deserialize_with = "i64_lenient")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "i64_lenient")]
    pub step: i64,
}

/// Non-finite doubles travel as protobuf JSON spells them.
fn f64_mlflow<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*v)
    }
}

impl From<m::Metric> for MetricJson {
    fn from(x: m::Metric) -> Self {
        Self {
            key: x.key,
            value: x.value,
            timestamp: x.timestamp,
            step: x.step,
        }
    }
}

impl From<MetricJson> for m::Metric {
    fn from(x: MetricJson) -> Self {
        Self {
            key: x.key,
            value: x.value,
            timestamp: x.timestamp,
            step: x.step,
        }
    }
}

fn tags_out(tags: Vec<m::Tag>) -> Vec<KeyValue> {
    tags.into_iter()
        .map(|t| KeyValue {
            key: t.key,
            value: t.value,
        })
        .collect()
}

fn tags_in(tags: Vec<KeyValue>) -> Vec<m::Tag> {
    tags.into_iter()
        .map(|t| m::Tag {
            key: t.key,
            value: t.value,
        })
        .collect()
}

fn experiment_json(e: m::Experiment) -> Value {
    let mut v = json!({
        "experiment_id": e.experiment_id.to_string(),
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage.as_str(),
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
    });
    if !e.tags.is_empty() {
        v["tags"] = json!(tags_out(e.tags));
    }
    v
}

fn run_info_json(i: &m::RunInfo) -> Value {
    let mut v = json!({
        "run_uuid": i.run_id,
        "run_id": i.run_id,
        "experiment_id": i.experiment_id.to_string(),
        "run_name": i.run_name,
        "user_id": i.user_id,
        "status": i.status.as_str(),
        "start_time": i.start_time,
        "artifact_uri": i.artifact_uri,
        "lifecycle_stage": i.lifecycle_stage.as_str(),
    });
    if let Some(end) = i.end_time {
        v["end_time"] = json!(end);
    }
    v
}

pub fn run_json(r: m::Run) -> Value {
    let mut data = serde_json::Map::new();
    if !r.metrics.is_empty() {
        data.insert(
            "metrics".into(),
            json!(
                r.metrics
                    .into_iter()
                    .map(MetricJson::from)
                    .collect::<Vec<_>>()
            ),
        );
    }
    if !r.params.is_empty() {
        let params: Vec<KeyValue> = r
            .params
            .into_iter()
            .map(|p| KeyValue {
                key: p.key,
                value: p.value,
            })
            .collect();
        data.insert("params".into(), json!(params));
    }
    if !r.tags.is_empty() {
        data.insert("tags".into(), json!(tags_out(r.tags)));
    }
    json!({ "info": run_info_json(&r.info), "data": data, "inputs": {}, "outputs": {} })
}

// ---- experiments ------------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateExperiment {
    name: String,
    #[serde(default)]
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<CreateExperiment>,
) -> ApiResult {
    let id = s
        .create_experiment(&r.name, r.artifact_location.as_deref(), &tags_in(r.tags))
        .await?;
    Ok(Json(json!({ "experiment_id": id.to_string() })))
}

#[derive(Deserialize)]
struct ExperimentId {
    experiment_id: String,
}

async fn get_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentId>,
) -> ApiResult {
    let e = s
        .get_experiment(m::parse_experiment_id(&r.experiment_id)?)
        .await?;
    Ok(Json(json!({ "experiment": experiment_json(e) })))
}

#[derive(Deserialize)]
struct ExperimentName {
    experiment_name: String,
}

async fn get_experiment_by_name(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentName>,
) -> ApiResult {
    let e = s.get_experiment_by_name(&r.experiment_name).await?;
    Ok(Json(json!({ "experiment": experiment_json(e) })))
}

fn view_type(text: Option<&str>) -> Result<ViewType, TrackingError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(ViewType::ActiveOnly),
        Some(t) => Ok(t.parse()?),
    }
}

#[derive(Deserialize)]
struct SearchExperiments {
    #[serde(default, deserialize_with = "u32_lenient")]
    max_results: u32,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "strings_lenient")]
    order_by: Vec<String>,
    #[serde(default)]
    view_type: Option<String>,
}

async fn search_experiments(
    State(s): State<TrackingStore>,
    Params(r): Params<SearchExperiments>,
) -> ApiResult {
    let query = ExperimentQuery {
        view: view_type(r.view_type.as_deref())?,
        filter: r.filter.unwrap_or_default(),
        order_by: r.order_by,
        max_results: r.max_results,
        page_token: r.page_token,
    };
    let (experiments, next) = s.search_experiments(&query).await?;
    Ok(paged(
        "experiments",
        experiments.into_iter().map(experiment_json).collect(),
        next,
    ))
}

async fn delete_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentId>,
) -> ApiResult {
    s.set_experiment_lifecycle(
        m::parse_experiment_id(&r.experiment_id)?,
        Lifecycle::Deleted,
    )
    .await?;
    ok()
}

async fn restore_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentId>,
) -> ApiResult {
    s.set_experiment_lifecycle(m::parse_experiment_id(&r.experiment_id)?, Lifecycle::Active)
        .await?;
    ok()
}

#[derive(Deserialize)]
struct UpdateExperiment {
    experiment_id: String,
    new_name: String,
}

async fn update_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<UpdateExperiment>,
) -> ApiResult {
    s.rename_experiment(m::parse_experiment_id(&r.experiment_id)?, &r.new_name)
        .await?;
    ok()
}

#[derive(Deserialize)]
struct ExperimentTag {
    experiment_id: String,
    key: String,
    value: String,
}

async fn set_experiment_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentTag>,
) -> ApiResult {
    let tag = m::Tag {
        key: r.key,
        value: r.value,
    };
    s.set_experiment_tag(m::parse_experiment_id(&r.experiment_id)?, &tag)
        .await?;
    ok()
}

// ---- runs -------------------------------------------------------------------------------

/// MLflow accepts a run's id as `run_id` or, from older clients, `run_uuid`.
#[derive(Deserialize)]
struct RunRef {
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
struct CreateRun {
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

async fn create_run(State(s): State<TrackingStore>, Params(r): Params<CreateRun>) -> ApiResult {
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

async fn get_run(State(s): State<TrackingStore>, Params(r): Params<RunRef>) -> ApiResult {
    Ok(Json(json!({ "run": run_json(s.get_run(r.id()?).await?) })))
}

#[derive(Deserialize)]
struct UpdateRun {
    #[serde(flatten)]
    run: RunRef,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    end_time: Option<i64>,
    #[serde(default)]
    run_name: Option<String>,
}

async fn update_run(State(s): State<TrackingStore>, Params(r): Params<UpdateRun>) -> ApiResult {
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

async fn delete_run(State(s): State<TrackingStore>, Params(r): Params<RunRef>) -> ApiResult {
    s.set_run_lifecycle(r.id()?, Lifecycle::Deleted).await?;
    ok()
}

async fn restore_run(State(s): State<TrackingStore>, Params(r): Params<RunRef>) -> ApiResult {
    s.set_run_lifecycle(r.id()?, Lifecycle::Active).await?;
    ok()
}

#[derive(Deserialize)]
struct LogMetric {
    #[serde(flatten)]
    run: RunRef,
    #[serde(flatten)]
    metric: MetricJson,
}

async fn log_metric(State(s): State<TrackingStore>, Params(r): Params<LogMetric>) -> ApiResult {
    let batch = m::Batch {
        metrics: vec![r.metric.into()],
        ..m::Batch::default()
    };
    s.log_batch(r.run.id()?, &batch).await?;
    ok()
}

#[derive(Deserialize)]
struct LogKeyValue {
    #[serde(flatten)]
    run: RunRef,
    key: String,
    value: String,
}

async fn log_param(State(s): State<TrackingStore>, Params(r): Params<LogKeyValue>) -> ApiResult {
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

async fn set_tag(State(s): State<TrackingStore>, Params(r): Params<LogKeyValue>) -> ApiResult {
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
struct DeleteTag {
    run_id: String,
    key: String,
}

async fn delete_tag(State(s): State<TrackingStore>, Params(r): Params<DeleteTag>) -> ApiResult {
    s.delete_tag(&r.run_id, &r.key).await?;
    ok()
}

#[derive(Deserialize)]
struct LogBatch {
    run_id: String,
    #[serde(default)]
    metrics: Vec<MetricJson>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn log_batch(State(s): State<TrackingStore>, Params(r): Params<LogBatch>) -> ApiResult {
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
struct SearchRuns {
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

async fn search_runs(State(s): State<TrackingStore>, Params(r): Params<SearchRuns>) -> ApiResult {
    let query = RunQuery {
        experiment_ids: r
            .experiment_ids
            .iter()
            .map(|id| m::parse_experiment_id(id))
            .collect::<Result<_, _>>()?,
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
struct MetricHistoryRequest {
    #[serde(flatten)]
    run: RunRef,
    metric_key: String,
}

async fn metric_history(
    State(s): State<TrackingStore>,
    Params(r): Params<MetricHistoryRequest>,
) -> ApiResult {
    let metrics = s.metric_history(r.run.id()?, &r.metric_key).await?;
    Ok(Json(
        json!({ "metrics": metrics.into_iter().map(MetricJson::from).collect::<Vec<_>>() }),
    ))
}

// ---- logged models (MLflow 3) -----------------------------------------------------------

fn logged_model_json(m: m::LoggedModel) -> Value {
    let mut info = json!({
        "model_id": m.model_id,
        "experiment_id": m.experiment_id.to_string(),
        "name": m.name,
        "creation_timestamp_ms": m.creation_time,
        "last_updated_timestamp_ms": m.last_updated_time,
        "artifact_uri": m.artifact_location,
        "status": m.status.as_str(),
    });
    if let Some(t) = m.model_type {
        info["model_type"] = json!(t);
    }
    if let Some(r) = m.source_run_id {
        info["source_run_id"] = json!(r);
    }
    if !m.tags.is_empty() {
        info["tags"] = json!(tags_out(m.tags));
    }
    let mut data = serde_json::Map::new();
    if !m.params.is_empty() {
        let params: Vec<KeyValue> = m
            .params
            .into_iter()
            .map(|p| KeyValue {
                key: p.key,
                value: p.value,
            })
            .collect();
        data.insert("params".into(), json!(params));
    }
    json!({ "info": info, "data": data })
}

fn params_in(params: Vec<KeyValue>) -> Vec<m::Param> {
    params
        .into_iter()
        .map(|p| m::Param {
            key: p.key,
            value: p.value,
        })
        .collect()
}

#[derive(Deserialize)]
struct CreateLoggedModel {
    experiment_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_logged_model(
    State(s): State<TrackingStore>,
    Params(r): Params<CreateLoggedModel>,
) -> ApiResult {
    let model = s
        .create_logged_model(m::NewLoggedModel {
            experiment_id: m::parse_experiment_id(&r.experiment_id)?,
            name: r.name,
            model_type: r.model_type,
            source_run_id: r.source_run_id,
            tags: tags_in(r.tags),
            params: params_in(r.params),
        })
        .await?;
    Ok(Json(json!({ "model": logged_model_json(model) })))
}

#[derive(Deserialize)]
struct GetLoggedModel {
    #[serde(default)]
    allow_deleted: Option<String>,
}

async fn get_logged_model(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
    Params(r): Params<GetLoggedModel>,
) -> ApiResult {
    let allow_deleted = r
        .allow_deleted
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let model = s.get_logged_model(&model_id, allow_deleted).await?;
    Ok(Json(json!({ "model": logged_model_json(model) })))
}

#[derive(Deserialize)]
struct FinalizeLoggedModel {
    status: String,
}

async fn finalize_logged_model(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
    Params(r): Params<FinalizeLoggedModel>,
) -> ApiResult {
    let model = s
        .finalize_logged_model(&model_id, r.status.parse()?)
        .await?;
    Ok(Json(json!({ "model": logged_model_json(model) })))
}

async fn delete_logged_model(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
) -> ApiResult {
    s.delete_logged_model(&model_id).await?;
    ok()
}

#[derive(Deserialize)]
struct LoggedModelTags {
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn set_logged_model_tags(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
    Params(r): Params<LoggedModelTags>,
) -> ApiResult {
    s.set_logged_model_tags(&model_id, &tags_in(r.tags)).await?;
    ok()
}

async fn delete_logged_model_tag(
    State(s): State<TrackingStore>,
    Path((model_id, key)): Path<(String, String)>,
) -> ApiResult {
    s.delete_logged_model_tag(&model_id, &key).await?;
    ok()
}

#[derive(Deserialize)]
struct LoggedModelParams {
    #[serde(default)]
    params: Vec<KeyValue>,
}

async fn log_logged_model_params(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
    Params(r): Params<LoggedModelParams>,
) -> ApiResult {
    s.log_logged_model_params(&model_id, &params_in(r.params))
        .await?;
    ok()
}

#[derive(Deserialize)]
struct OrderByJson {
    field_name: String,
    #[serde(default = "yes")]
    ascending: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct SearchLoggedModels {
    #[serde(default, deserialize_with = "strings_lenient")]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "u32_lenient")]
    max_results: u32,
    #[serde(default)]
    order_by: Vec<OrderByJson>,
    #[serde(default)]
    page_token: Option<String>,
}

async fn search_logged_models(
    State(s): State<TrackingStore>,
    Params(r): Params<SearchLoggedModels>,
) -> ApiResult {
    let query = LoggedModelQuery {
        experiment_ids: r
            .experiment_ids
            .iter()
            .map(|id| m::parse_experiment_id(id))
            .collect::<Result<_, _>>()?,
        filter: r.filter.unwrap_or_default(),
        order_by: r
            .order_by
            .into_iter()
            .map(|o| (o.field_name, o.ascending))
            .collect(),
        max_results: r.max_results,
        page_token: r.page_token,
    };
    let (models, next) = s.search_logged_models(&query).await?;
    Ok(paged(
        "models",
        models.into_iter().map(logged_model_json).collect(),
        next,
    ))
}

#[derive(Deserialize)]
struct ModelOutput {
    model_id: String,
    #[serde(default, deserialize_with = "i64_lenient")]
    step: i64,
}

#[derive(Deserialize)]
struct LogOutputs {
    run_id: String,
    #[serde(default)]
    models: Vec<ModelOutput>,
}

async fn log_outputs(State(s): State<TrackingStore>, Params(r): Params<LogOutputs>) -> ApiResult {
    let models: Vec<(String, i64)> = r.models.into_iter().map(|o| (o.model_id, o.step)).collect();
    s.log_outputs(&r.run_id, &models).await?;
    ok()
}

// ---- model registry ---------------------------------------------------------------------

fn model_version_json(v: m::ModelVersion) -> Value {
    let mut j = json!({
        "name": v.name,
        "version": v.version.to_string(),
        "creation_timestamp": v.creation_time,
        "last_updated_timestamp": v.last_updated_time,
        "current_stage": v.stage.as_str(),
        "description": v.description,
        "source": v.source,
        "status": v.status,
        "run_link": "",
    });
    if let Some(run_id) = v.run_id {
        j["run_id"] = json!(run_id);
    }
    if let Some(model_id) = v.model_id {
        j["model_id"] = json!(model_id);
    }
    if !v.user_id.is_empty() {
        j["user_id"] = json!(v.user_id);
    }
    if !v.aliases.is_empty() {
        j["aliases"] = json!(v.aliases);
    }
    if !v.tags.is_empty() {
        j["tags"] = json!(tags_out(v.tags));
    }
    j
}

fn registered_model_json(r: m::RegisteredModel) -> Value {
    let mut j = json!({
        "name": r.name,
        "creation_timestamp": r.creation_time,
        "last_updated_timestamp": r.last_updated_time,
    });
    if !r.description.is_empty() {
        j["description"] = json!(r.description);
    }
    if !r.latest_versions.is_empty() {
        j["latest_versions"] = json!(
            r.latest_versions
                .into_iter()
                .map(model_version_json)
                .collect::<Vec<_>>()
        );
    }
    if !r.aliases.is_empty() {
        let aliases: Vec<Value> = r
            .aliases
            .into_iter()
            .map(|(alias, v)| json!({"alias": alias, "version": v.to_string()}))
            .collect();
        j["aliases"] = json!(aliases);
    }
    if !r.tags.is_empty() {
        j["tags"] = json!(tags_out(r.tags));
    }
    j
}

#[derive(Deserialize)]
struct CreateRegisteredModel {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<CreateRegisteredModel>,
) -> ApiResult {
    let model = s
        .create_registered_model(
            &r.name,
            r.description.as_deref().unwrap_or_default(),
            &tags_in(r.tags),
        )
        .await?;
    Ok(Json(
        json!({ "registered_model": registered_model_json(model) }),
    ))
}

#[derive(Deserialize)]
struct ModelName {
    name: String,
}

async fn get_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<ModelName>,
) -> ApiResult {
    Ok(Json(
        json!({ "registered_model": registered_model_json(s.get_registered_model(&r.name).await?) }),
    ))
}

#[derive(Deserialize)]
struct RenameModel {
    name: String,
    new_name: String,
}

async fn rename_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<RenameModel>,
) -> ApiResult {
    let model = s.rename_registered_model(&r.name, &r.new_name).await?;
    Ok(Json(
        json!({ "registered_model": registered_model_json(model) }),
    ))
}

#[derive(Deserialize)]
struct Describe {
    name: String,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    version: Option<i64>,
    #[serde(default)]
    description: String,
}

async fn update_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    let model = s.update_registered_model(&r.name, &r.description).await?;
    Ok(Json(
        json!({ "registered_model": registered_model_json(model) }),
    ))
}

async fn delete_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<ModelName>,
) -> ApiResult {
    s.delete_registered_model(&r.name).await?;
    ok()
}

#[derive(Deserialize)]
struct RegistrySearch {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "strings_lenient")]
    order_by: Vec<String>,
    #[serde(default, deserialize_with = "u32_lenient")]
    max_results: u32,
    #[serde(default)]
    page_token: Option<String>,
}

async fn search_registered_models(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistrySearch>,
) -> ApiResult {
    let (models, next) = s
        .search_registered_models(
            r.filter.as_deref().unwrap_or_default(),
            &r.order_by,
            r.max_results,
            r.page_token.as_deref(),
        )
        .await?;
    Ok(paged(
        "registered_models",
        models.into_iter().map(registered_model_json).collect(),
        next,
    ))
}

#[derive(Deserialize)]
struct LatestVersions {
    name: String,
    #[serde(default, deserialize_with = "strings_lenient")]
    stages: Vec<String>,
}

async fn latest_versions(
    State(s): State<TrackingStore>,
    Params(r): Params<LatestVersions>,
) -> ApiResult {
    let stages: Vec<m::Stage> = r
        .stages
        .iter()
        .map(|st| st.parse())
        .collect::<Result<_, _>>()?;
    let versions = s.latest_versions(&r.name, &stages).await?;
    Ok(Json(
        json!({ "model_versions": versions.into_iter().map(model_version_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
struct RegistryTag {
    name: String,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    version: Option<i64>,
    key: String,
    #[serde(default)]
    value: String,
}

async fn set_registered_model_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistryTag>,
) -> ApiResult {
    s.set_registered_model_tag(
        &r.name,
        &m::Tag {
            key: r.key,
            value: r.value,
        },
    )
    .await?;
    ok()
}

async fn delete_registered_model_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistryTag>,
) -> ApiResult {
    s.delete_registered_model_tag(&r.name, &r.key).await?;
    ok()
}

fn required_version(v: Option<i64>) -> Result<i64, TrackingError> {
    v.filter(|v| *v > 0).ok_or_else(|| {
        TrackingError::invalid("version", "missing value for required parameter 'version'")
    })
}

async fn set_model_version_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistryTag>,
) -> ApiResult {
    s.set_model_version_tag(
        &r.name,
        required_version(r.version)?,
        &m::Tag {
            key: r.key,
            value: r.value,
        },
    )
    .await?;
    ok()
}

async fn delete_model_version_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistryTag>,
) -> ApiResult {
    s.delete_model_version_tag(&r.name, required_version(r.version)?, &r.key)
        .await?;
    ok()
}

#[derive(Deserialize)]
struct Alias {
    name: String,
    alias: String,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    version: Option<i64>,
}

async fn set_alias(State(s): State<TrackingStore>, Params(r): Params<Alias>) -> ApiResult {
    s.set_alias(&r.name, &r.alias, required_version(r.version)?)
        .await?;
    ok()
}

async fn delete_alias(State(s): State<TrackingStore>, Params(r): Params<Alias>) -> ApiResult {
    s.delete_alias(&r.name, &r.alias).await?;
    ok()
}

async fn get_by_alias(State(s): State<TrackingStore>, Params(r): Params<Alias>) -> ApiResult {
    // MLflow answers an alias that does not exist with INVALID_PARAMETER_VALUE, not
    // RESOURCE_DOES_NOT_EXIST, and its clients test for that code.
    let v = s
        .get_version_by_alias(&r.name, &r.alias)
        .await
        .map_err(|e| match e {
            TrackingError::NotFound { what: "alias", id } => {
                TrackingError::invalid("alias", format!("{id} does not exist"))
            }
            other => other,
        })?;
    Ok(Json(json!({ "model_version": model_version_json(v) })))
}

#[derive(Deserialize)]
struct CreateModelVersion {
    name: String,
    source: String,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_model_version(
    State(s): State<TrackingStore>,
    Params(r): Params<CreateModelVersion>,
) -> ApiResult {
    let v = s
        .create_model_version(m::NewModelVersion {
            name: r.name,
            source: r.source,
            run_id: r.run_id,
            model_id: r.model_id,
            description: r.description,
            tags: tags_in(r.tags),
        })
        .await?;
    Ok(Json(json!({ "model_version": model_version_json(v) })))
}

async fn get_model_version(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    let v = s
        .get_model_version(&r.name, required_version(r.version)?)
        .await?;
    Ok(Json(json!({ "model_version": model_version_json(v) })))
}

async fn update_model_version(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    let v = s
        .update_model_version(&r.name, required_version(r.version)?, &r.description)
        .await?;
    Ok(Json(json!({ "model_version": model_version_json(v) })))
}

async fn delete_model_version(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    s.delete_model_version(&r.name, required_version(r.version)?)
        .await?;
    ok()
}

async fn search_model_versions(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistrySearch>,
) -> ApiResult {
    let (versions, next) = s
        .search_model_versions(
            r.filter.as_deref().unwrap_or_default(),
            &r.order_by,
            r.max_results,
            r.page_token.as_deref(),
        )
        .await?;
    Ok(paged(
        "model_versions",
        versions.into_iter().map(model_version_json).collect(),
        next,
    ))
}

async fn download_uri(State(s): State<TrackingStore>, Params(r): Params<Describe>) -> ApiResult {
    let uri = s
        .download_uri(&r.name, required_version(r.version)?)
        .await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}

#[derive(Deserialize)]
struct TransitionStage {
    name: String,
    #[serde(deserialize_with = "i64_lenient")]
    version: i64,
    stage: String,
    #[serde(default, deserialize_with = "bool_lenient")]
    archive_existing_versions: bool,
}

/// Booleans as JSON booleans or, from query strings, `"true"` and `"false"`.
fn bool_lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "{other} is not true or false"
        ))),
    }
}

async fn transition_stage(
    State(s): State<TrackingStore>,
    Params(r): Params<TransitionStage>,
) -> ApiResult {
    let (v, _archived) = s
        .transition_stage(
            &r.name,
            r.version,
            r.stage.parse()?,
            r.archive_existing_versions,
        )
        .await?;
    Ok(Json(json!({ "model_version": model_version_json(v) })))
}
