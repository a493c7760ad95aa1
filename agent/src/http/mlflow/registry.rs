//! MLflow's model-registry endpoints: registered models, versions, stages, tags and aliases.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::*;
use crate::http::api_error::ApiResult;
use crate::http::wire::{Params, i64_lenient, opt_i64_lenient, strings_lenient, u32_lenient};
use crate::tracking::TrackingStore;
use crate::tracking::entities::{self as m, TrackingError};
use crate::tracking::registry::RegistrySearch;

#[derive(Deserialize)]
pub(super) struct CreateRegisteredModel {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub(super) async fn create_registered_model(
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
pub(super) struct ModelName {
    name: String,
}

pub(super) async fn get_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<ModelName>,
) -> ApiResult {
    Ok(Json(
        json!({ "registered_model": registered_model_json(s.get_registered_model(&r.name).await?) }),
    ))
}

#[derive(Deserialize)]
pub(super) struct RenameModel {
    name: String,
    new_name: String,
}

pub(super) async fn rename_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<RenameModel>,
) -> ApiResult {
    let model = s.rename_registered_model(&r.name, &r.new_name).await?;
    Ok(Json(
        json!({ "registered_model": registered_model_json(model) }),
    ))
}

#[derive(Deserialize)]
pub(super) struct Describe {
    name: String,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    version: Option<i64>,
    #[serde(default)]
    description: String,
}

pub(super) async fn update_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    let model = s.update_registered_model(&r.name, &r.description).await?;
    Ok(Json(
        json!({ "registered_model": registered_model_json(model) }),
    ))
}

pub(super) async fn delete_registered_model(
    State(s): State<TrackingStore>,
    Params(r): Params<ModelName>,
) -> ApiResult {
    s.delete_registered_model(&r.name).await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct RegistrySearchRequest {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, deserialize_with = "strings_lenient")]
    order_by: Vec<String>,
    #[serde(default, deserialize_with = "u32_lenient")]
    max_results: u32,
    #[serde(default)]
    page_token: Option<String>,
}

impl From<RegistrySearchRequest> for RegistrySearch {
    fn from(r: RegistrySearchRequest) -> Self {
        Self {
            filter: r.filter.unwrap_or_default(),
            order_by: r.order_by,
            max_results: r.max_results,
            page_token: r.page_token,
        }
    }
}

pub(super) async fn search_registered_models(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistrySearchRequest>,
) -> ApiResult {
    let (found, next) = s.search_registered_models(&r.into()).await?;
    Ok(paged(
        "registered_models",
        found.into_iter().map(registered_model_json).collect(),
        next,
    ))
}

#[derive(Deserialize)]
pub(super) struct LatestVersions {
    name: String,
    #[serde(default, deserialize_with = "strings_lenient")]
    stages: Vec<String>,
}

pub(super) async fn latest_versions(
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
pub(super) struct RegistryTag {
    name: String,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    version: Option<i64>,
    key: String,
    #[serde(default)]
    value: String,
}

pub(super) async fn set_registered_model_tag(
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

pub(super) async fn delete_registered_model_tag(
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

pub(super) async fn set_model_version_tag(
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

pub(super) async fn delete_model_version_tag(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistryTag>,
) -> ApiResult {
    s.delete_model_version_tag(&r.name, required_version(r.version)?, &r.key)
        .await?;
    ok()
}

#[derive(Deserialize)]
pub(super) struct Alias {
    name: String,
    alias: String,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    version: Option<i64>,
}

pub(super) async fn set_alias(
    State(s): State<TrackingStore>,
    Params(r): Params<Alias>,
) -> ApiResult {
    s.set_alias(&r.name, &r.alias, required_version(r.version)?)
        .await?;
    ok()
}

pub(super) async fn delete_alias(
    State(s): State<TrackingStore>,
    Params(r): Params<Alias>,
) -> ApiResult {
    s.delete_alias(&r.name, &r.alias).await?;
    ok()
}

pub(super) async fn get_by_alias(
    State(s): State<TrackingStore>,
    Params(r): Params<Alias>,
) -> ApiResult {
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
pub(super) struct CreateModelVersion {
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

pub(super) async fn create_model_version(
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

pub(super) async fn get_model_version(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    let v = s
        .get_model_version(&r.name, required_version(r.version)?)
        .await?;
    Ok(Json(json!({ "model_version": model_version_json(v) })))
}

pub(super) async fn update_model_version(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    let v = s
        .update_model_version(&r.name, required_version(r.version)?, &r.description)
        .await?;
    Ok(Json(json!({ "model_version": model_version_json(v) })))
}

pub(super) async fn delete_model_version(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    s.delete_model_version(&r.name, required_version(r.version)?)
        .await?;
    ok()
}

pub(super) async fn search_model_versions(
    State(s): State<TrackingStore>,
    Params(r): Params<RegistrySearchRequest>,
) -> ApiResult {
    let (found, next) = s.search_model_versions(&r.into()).await?;
    Ok(paged(
        "model_versions",
        found.into_iter().map(model_version_json).collect(),
        next,
    ))
}

pub(super) async fn download_uri(
    State(s): State<TrackingStore>,
    Params(r): Params<Describe>,
) -> ApiResult {
    let uri = s
        .download_uri(&r.name, required_version(r.version)?)
        .await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}

#[derive(Deserialize)]
pub(super) struct TransitionStage {
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

pub(super) async fn transition_stage(
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
