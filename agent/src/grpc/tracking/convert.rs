//! Converting between the tracking domain's entities and `v1` messages, naming the field
//! when a request value does not fit.

use std::collections::HashMap;

use readmit_proto::v1;
use tonic::Status;

use super::status;
use crate::tracking::Compared;
use crate::tracking::entities as m;
use crate::tracking::registry::Watched;

pub(super) fn lifecycle(l: m::Lifecycle) -> i32 {
    match l {
        m::Lifecycle::Active => v1::LifecycleStage::Active as i32,
        m::Lifecycle::Deleted => v1::LifecycleStage::Deleted as i32,
    }
}

pub(super) fn view(v: i32) -> Result<m::ViewType, Status> {
    match v1::ViewType::try_from(v) {
        Ok(v1::ViewType::Unspecified | v1::ViewType::ActiveOnly) => Ok(m::ViewType::ActiveOnly),
        Ok(v1::ViewType::DeletedOnly) => Ok(m::ViewType::DeletedOnly),
        Ok(v1::ViewType::All) => Ok(m::ViewType::All),
        Err(_) => Err(Status::invalid_argument(format!(
            "view: {v} is not a view type"
        ))),
    }
}

pub(super) fn run_status_out(s: m::RunStatus) -> i32 {
    (match s {
        m::RunStatus::Running => v1::RunStatus::Running,
        m::RunStatus::Scheduled => v1::RunStatus::Scheduled,
        m::RunStatus::Finished => v1::RunStatus::Finished,
        m::RunStatus::Failed => v1::RunStatus::Failed,
        m::RunStatus::Killed => v1::RunStatus::Killed,
    }) as i32
}

pub(super) fn run_status_in(s: i32) -> Result<Option<m::RunStatus>, Status> {
    Ok(match v1::RunStatus::try_from(s) {
        Ok(v1::RunStatus::Unspecified) => None,
        Ok(v1::RunStatus::Running) => Some(m::RunStatus::Running),
        Ok(v1::RunStatus::Scheduled) => Some(m::RunStatus::Scheduled),
        Ok(v1::RunStatus::Finished) => Some(m::RunStatus::Finished),
        Ok(v1::RunStatus::Failed) => Some(m::RunStatus::Failed),
        Ok(v1::RunStatus::Killed) => Some(m::RunStatus::Killed),
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "status: {s} is not a run status"
            )));
        }
    })
}

pub(super) fn stage_out(s: m::Stage) -> i32 {
    (match s {
        m::Stage::None => v1::Stage::None,
        m::Stage::Staging => v1::Stage::Staging,
        m::Stage::Production => v1::Stage::Production,
        m::Stage::Archived => v1::Stage::Archived,
    }) as i32
}

pub(super) fn stage_in(s: i32) -> Result<m::Stage, Status> {
    match v1::Stage::try_from(s) {
        Ok(v1::Stage::None) => Ok(m::Stage::None),
        Ok(v1::Stage::Staging) => Ok(m::Stage::Staging),
        Ok(v1::Stage::Production) => Ok(m::Stage::Production),
        Ok(v1::Stage::Archived) => Ok(m::Stage::Archived),
        Ok(v1::Stage::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "stage: {s} is not None, Staging, Production or Archived"
        ))),
    }
}

pub(super) fn tags_in(tags: HashMap<String, String>) -> Vec<m::Tag> {
    let mut tags: Vec<m::Tag> = tags
        .into_iter()
        .map(|(key, value)| m::Tag { key, value })
        .collect();
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    tags
}

pub(super) fn tags_out(tags: Vec<m::Tag>) -> HashMap<String, String> {
    tags.into_iter().map(|t| (t.key, t.value)).collect()
}

pub(super) fn experiment_id(text: &str) -> Result<i64, Status> {
    m::parse_experiment_id(text).map_err(status)
}

pub(super) fn experiment_out(e: m::Experiment) -> v1::Experiment {
    v1::Experiment {
        experiment_id: e.experiment_id.to_string(),
        name: e.name,
        artifact_location: e.artifact_location,
        lifecycle_stage: lifecycle(e.lifecycle_stage),
        creation_time_ms: e.creation_time,
        last_update_time_ms: e.last_update_time,
        tags: tags_out(e.tags),
    }
}

pub(super) fn metric_out(x: m::Metric) -> v1::Metric {
    v1::Metric {
        key: x.key,
        value: x.value,
        timestamp_ms: x.timestamp,
        step: x.step,
    }
}

pub(super) fn run_out(r: m::Run) -> v1::Run {
    let i = r.info;
    v1::Run {
        info: Some(v1::RunInfo {
            run_id: i.run_id,
            run_name: i.run_name,
            experiment_id: i.experiment_id.to_string(),
            user_id: i.user_id,
            status: run_status_out(i.status),
            start_time_ms: i.start_time,
            end_time_ms: i.end_time.unwrap_or_default(),
            artifact_uri: i.artifact_uri,
            lifecycle_stage: lifecycle(i.lifecycle_stage),
        }),
        data: Some(v1::RunData {
            metrics: r.metrics.into_iter().map(metric_out).collect(),
            params: r
                .params
                .into_iter()
                .map(|p| v1::Param {
                    key: p.key,
                    value: p.value,
                })
                .collect(),
            tags: tags_out(r.tags),
        }),
    }
}

pub(super) fn version_out(v: m::ModelVersion) -> v1::ModelVersion {
    v1::ModelVersion {
        name: v.name,
        version: v.version,
        creation_time_ms: v.creation_time,
        last_updated_time_ms: v.last_updated_time,
        stage: stage_out(v.stage),
        description: v.description,
        source: v.source,
        run_id: v.run_id.unwrap_or_default(),
        status: v.status,
        aliases: v.aliases,
        tags: tags_out(v.tags),
    }
}

pub(super) fn registered_out(r: m::RegisteredModel) -> v1::RegisteredModel {
    v1::RegisteredModel {
        name: r.name,
        creation_time_ms: r.creation_time,
        last_updated_time_ms: r.last_updated_time,
        description: r.description,
        latest_versions: r.latest_versions.into_iter().map(version_out).collect(),
        aliases: r
            .aliases
            .into_iter()
            .map(|(alias, version)| v1::ModelAlias { alias, version })
            .collect(),
        tags: tags_out(r.tags),
    }
}

pub(super) fn event_kind_out(kind: m::RegistryEventKind) -> v1::RegistryEventKind {
    match kind {
        m::RegistryEventKind::VersionCreated => v1::RegistryEventKind::VersionCreated,
        m::RegistryEventKind::StageChanged => v1::RegistryEventKind::StageChanged,
        m::RegistryEventKind::AliasSet => v1::RegistryEventKind::AliasSet,
        m::RegistryEventKind::AliasDeleted => v1::RegistryEventKind::AliasDeleted,
        m::RegistryEventKind::VersionDeleted => v1::RegistryEventKind::VersionDeleted,
        m::RegistryEventKind::ModelDeleted => v1::RegistryEventKind::ModelDeleted,
    }
}

pub(super) fn watched_out(w: Watched) -> v1::RegistryEvent {
    match w {
        Watched::Current { timestamp, version } => v1::RegistryEvent {
            timestamp_ms: timestamp,
            kind: v1::RegistryEventKind::Current as i32,
            version: Some(version_out(version)),
            previous_stage: 0,
            alias: String::new(),
        },
        Watched::Changed { event, version } => v1::RegistryEvent {
            timestamp_ms: event.timestamp,
            kind: event_kind_out(event.kind) as i32,
            // A version that is gone still names itself.
            version: Some(version.map_or_else(
                || v1::ModelVersion {
                    name: event.name,
                    version: event.version,
                    ..Default::default()
                },
                version_out,
            )),
            previous_stage: event.from_stage.map_or(0, stage_out),
            alias: event.alias.unwrap_or_default(),
        },
    }
}

pub(super) fn compared_out(c: Compared) -> v1::ComparedValue {
    v1::ComparedValue {
        key: c.key,
        present: c.values.iter().map(Option::is_some).collect(),
        values: c
            .values
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        differs: c.differs,
    }
}

pub(super) fn non_empty<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        Err(Status::invalid_argument(format!("{field}: required")))
    } else {
        Ok(value)
    }
}
