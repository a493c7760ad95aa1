//! MLflow 3's logged-model endpoints: create, get, finalize, delete, tag, log params,
//! search, and a run's outputs.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::json::*;
use crate::http::api_error::ApiResult;
use crate::http::wire::{Params, i64_lenient, strings_lenient, u32_lenient};
use crate::tracking::TrackingStore;
use crate::tracking::entities as m;
use crate::tracking::logged_models::LoggedModelQuery;

#[derive(Deserialize)]
pub(super) struct CreateLoggedModel {
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

pub(super) async fn create_logged_model(
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
pub(super) struct GetLoggedModel {
    #[serde(default)]
    allow_deleted: Option<String>,
}

pub(super) async fn get_logged_model(
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
pub(super) struct FinalizeLoggedModel {
    status: String,
}

pub(super) async fn finalize_logged_model(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
    Params(r): Params<FinalizeLoggedModel>,
) -> ApiResult {
    let model = s
        .finalize_logged_model(&model_id, r.status.parse()?)
        .await?;
    Ok(Json(json!({ "model": logged_model_json(model) })))
}

pub(super) async fn delete_logged_model(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
) -> ApiResult {
    s.delete_logged_model(&model_id).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct LoggedModelTags {
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(super) async fn set_logged_model_tags(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
    Params(r): Params<LoggedModelTags>,
) -> ApiResult {
    s.set_logged_model_tags(&model_id, &tags_in(r.tags)).await?;
    ok()
}

pub(super) async fn delete_logged_model_tag(
    State(s): State<TrackingStore>,
    Path((model_id, key)): Path<(String, String)>,
) -> ApiResult {
    s.delete_logged_model_tag(&model_id, &key).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct LoggedModelParams {
    #[serde(default)]
    params: Vec<KeyValue>,
}

pub(super) async fn log_logged_model_params(
    State(s): State<TrackingStore>,
    Path(model_id): Path<String>,
    Params(r): Params<LoggedModelParams>,
) -> ApiResult {
    s.log_logged_model_params(&model_id, &params_in(r.params))
        .await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct OrderByJson {
    field_name: String,
    #[serde(default = "yes")]
    ascending: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub(super) struct SearchLoggedModels {
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

pub(super) async fn search_logged_models(
    State(s): State<TrackingStore>,
    Params(r): Params<SearchLoggedModels>,
) -> ApiResult {
    let query = LoggedModelQuery {
        experiment_ids: m::parse_experiment_ids(&r.experiment_ids)?,
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
pub(super) struct ModelOutput {
    model_id: String,
    #[serde(default, deserialize_with = "i64_lenient")]
    step: i64,
}

#[derive(Deserialize)]
pub(super) struct LogOutputs {
    run_id: String,
    #[serde(default)]
    models: Vec<ModelOutput>,
}

pub(super) async fn log_outputs(
    State(s): State<TrackingStore>,
    Params(r): Params<LogOutputs>,
) -> ApiResult {
    let models: Vec<(String, i64)> = r.models.into_iter().map(|o| (o.model_id, o.step)).collect();
    s.log_outputs(&r.run_id, &models).await?;
    ok()
}
