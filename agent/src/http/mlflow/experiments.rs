//! MLflow's experiment endpoints: create, get (by id or name), search, delete and restore,
//! rename and tag.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::json::*;
use crate::http::api_error::ApiResult;
use crate::http::wire::{Params, strings_lenient, u32_lenient};
use crate::tracking::entities::{self as m, Lifecycle};
use crate::tracking::{ExperimentQuery, TrackingStore};

#[derive(Deserialize)]
pub(super) struct CreateExperiment {
    name: String,
    #[serde(default)]
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(super) async fn create_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<CreateExperiment>,
) -> ApiResult {
    let id = s
        .create_experiment(&r.name, r.artifact_location.as_deref(), &tags_in(r.tags))
        .await?;
    Ok(Json(json!({ "experiment_id": id.to_string() })))
}

#[derive(Deserialize)]
pub(super) struct ExperimentId {
    experiment_id: String,
}

pub(super) async fn get_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentId>,
) -> ApiResult {
    let e = s
        .get_experiment(m::parse_experiment_id(&r.experiment_id)?)
        .await?;
    Ok(Json(json!({ "experiment": experiment_json(e) })))
}

#[derive(Deserialize)]
pub(super) struct ExperimentName {
    experiment_name: String,
}

pub(super) async fn get_experiment_by_name(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentName>,
) -> ApiResult {
    let e = s.get_experiment_by_name(&r.experiment_name).await?;
    Ok(Json(json!({ "experiment": experiment_json(e) })))
}

#[derive(Deserialize)]
pub(super) struct SearchExperiments {
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

pub(super) async fn search_experiments(
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

pub(super) async fn delete_experiment(
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

pub(super) async fn restore_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<ExperimentId>,
) -> ApiResult {
    s.set_experiment_lifecycle(m::parse_experiment_id(&r.experiment_id)?, Lifecycle::Active)
        .await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct UpdateExperiment {
    experiment_id: String,
    new_name: String,
}

pub(super) async fn update_experiment(
    State(s): State<TrackingStore>,
    Params(r): Params<UpdateExperiment>,
) -> ApiResult {
    s.rename_experiment(m::parse_experiment_id(&r.experiment_id)?, &r.new_name)
        .await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct ExperimentTag {
    experiment_id: String,
    key: String,
    value: String,
}

pub(super) async fn set_experiment_tag(
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
