//! MLflow's JSON shapes: the renderers of every entity (snake_case, int64 as numbers, unset
//! fields omitted) and the small request shapes several handlers share.

use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::api_error::ApiResult;
use crate::http::wire::{f64_lenient, i64_lenient};
use crate::tracking::entities::{self as m, TrackingError, ViewType};

/// A page of a listing, with MLflow's `next_page_token` when there is more.
pub(super) fn paged(key: &str, items: Vec<Value>, next: Option<String>) -> Json<Value> {
    let mut page = serde_json::Map::new();
    page.insert(key.to_owned(), Value::Array(items));
    if let Some(token) = next {
        page.insert("next_page_token".into(), json!(token));
    }
    Json(Value::Object(page))
}

pub(super) fn ok() -> ApiResult {
    Ok(Json(json!({})))
}

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
pub(super) fn f64_mlflow<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
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

pub(super) fn tags_out(tags: Vec<m::Tag>) -> Vec<KeyValue> {
    tags.into_iter()
        .map(|t| KeyValue {
            key: t.key,
            value: t.value,
        })
        .collect()
}

pub(super) fn tags_in(tags: Vec<KeyValue>) -> Vec<m::Tag> {
    tags.into_iter()
        .map(|t| m::Tag {
            key: t.key,
            value: t.value,
        })
        .collect()
}

pub(super) fn experiment_json(e: m::Experiment) -> Value {
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

pub(super) fn run_info_json(i: &m::RunInfo) -> Value {
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

pub(super) fn run_json(r: m::Run) -> Value {
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

pub(super) fn logged_model_json(m: m::LoggedModel) -> Value {
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

pub(super) fn params_in(params: Vec<KeyValue>) -> Vec<m::Param> {
    params
        .into_iter()
        .map(|p| m::Param {
            key: p.key,
            value: p.value,
        })
        .collect()
}

pub(super) fn model_version_json(v: m::ModelVersion) -> Value {
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

pub(super) fn registered_model_json(r: m::RegisteredModel) -> Value {
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

/// MLflow's `view_type`, active runs and experiments when it is not given.
pub(super) fn view_type(text: Option<&str>) -> Result<ViewType, TrackingError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(ViewType::ActiveOnly),
        Some(t) => Ok(t.parse()?),
    }
}
