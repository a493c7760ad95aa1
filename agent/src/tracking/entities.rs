//! The tracking domain's entities (as MLflow names them): experiments, runs and what they log,
//! registered models and versions, with MLflow's rules for names, keys and sizes. Transport
//! layers convert these to and from the wire.

/// MLflow's limits, so a client that worked against MLflow gets the same answers here.
pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
pub const MAX_TAG_VALUE_LEN: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LEN: usize = 500;
pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;
pub const MAX_BATCH_TOTAL: usize = 1000;
pub const DEFAULT_EXPERIMENT_ID: i64 = 0;
pub const DEFAULT_EXPERIMENT_NAME: &str = "Default";

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{what} {id} already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("tracking store: {0}")]
    Db(#[from] sqlx::Error),
    /// The store failed on a path that does not go through sqlx (SQLite's rusqlite readers and
    /// writer).
    #[error("tracking store: {0}")]
    Store(String),
    #[error(transparent)]
    Setup(#[from] crate::db::DbError),
    #[error(transparent)]
    Artifact(#[from] super::artifacts::ArtifactError),
}

pub type Result<T, E = TrackingError> = std::result::Result<T, E>;

impl TrackingError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<crate::db::WriteError> for TrackingError {
    fn from(e: crate::db::WriteError) -> Self {
        match e {
            crate::db::WriteError::Sql(e) => TrackingError::Db(e),
            other => TrackingError::Store(other.to_string()),
        }
    }
}

impl From<rusqlite::Error> for TrackingError {
    fn from(e: rusqlite::Error) -> Self {
        crate::db::WriteError::from(e).into()
    }
}

impl From<crate::text_enum::UnknownValue> for TrackingError {
    fn from(e: crate::text_enum::UnknownValue) -> Self {
        TrackingError::invalid(e.kind, e.to_string())
    }
}

crate::text_enum!(
    /// Whether an experiment or run is live or in the trash (restorable).
    Lifecycle { Active = "active", Deleted = "deleted" }
);

crate::text_enum!(
    RunStatus {
        Running = "RUNNING",
        Scheduled = "SCHEDULED",
        Finished = "FINISHED",
        Failed = "FAILED",
        Killed = "KILLED",
    }
);

crate::text_enum!(
    /// Which lifecycle stages a listing or search includes.
    ViewType { ActiveOnly = "ACTIVE_ONLY", DeletedOnly = "DELETED_ONLY", All = "ALL" }
);

impl ViewType {
    /// The lifecycle stages this view includes.
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            ViewType::ActiveOnly => &["active"],
            ViewType::DeletedOnly => &["deleted"],
            ViewType::All => &["active", "deleted"],
        }
    }
}

crate::text_enum!(
    /// A model version's stage in the registry.
    Stage { None = "None", Staging = "Staging", Production = "Production", Archived = "Archived" }
);

crate::text_enum!(
    /// What happened in the registry, as `WatchRegistry` reports it.
    RegistryEventKind {
        VersionCreated = "VERSION_CREATED",
        StageChanged = "STAGE_CHANGED",
        AliasSet = "ALIAS_SET",
        AliasDeleted = "ALIAS_DELETED",
        VersionDeleted = "VERSION_DELETED",
        ModelDeleted = "MODEL_DELETED",
    }
);

#[derive(Clone, Debug, PartialEq)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub description: String,
    /// The newest version in each stage.
    pub latest_versions: Vec<ModelVersion>,
    /// `(alias, version)`.
    pub aliases: Vec<(String, i64)>,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub description: String,
    pub user_id: String,
    pub stage: Stage,
    pub source: String,
    pub run_id: Option<String>,
    pub model_id: Option<String>,
    pub status: String,
    pub aliases: Vec<String>,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, Default)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub model_id: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RegistryEvent {
    pub seq: i64,
    pub timestamp: i64,
    pub kind: RegistryEventKind,
    pub name: String,
    pub version: i64,
    pub from_stage: Option<Stage>,
    pub alias: Option<String>,
}

crate::text_enum!(
    LoggedModelStatus {
        Pending = "LOGGED_MODEL_PENDING",
        Ready = "LOGGED_MODEL_READY",
        UploadFailed = "LOGGED_MODEL_UPLOAD_FAILED",
    }
);

/// An MLflow 3 logged model: files under its own artifact directory, made by a run.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedModel {
    pub model_id: String,
    pub experiment_id: i64,
    pub name: String,
    pub artifact_location: String,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub status: LoggedModelStatus,
    pub lifecycle_stage: Lifecycle,
    pub tags: Vec<Tag>,
    pub params: Vec<Param>,
}

#[derive(Clone, Debug, Default)]
pub struct NewLoggedModel {
    pub experiment_id: i64,
    pub name: Option<String>,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub tags: Vec<Tag>,
    pub params: Vec<Param>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn pair(&self) -> (&str, &str) {
        (&self.key, &self.value)
    }
}

impl Param {
    pub fn pair(&self) -> (&str, &str) {
        (&self.key, &self.value)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub experiment_id: i64,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: Lifecycle,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub run_id: String,
    pub run_name: String,
    pub experiment_id: i64,
    pub user_id: String,
    pub status: RunStatus,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: Lifecycle,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub info: RunInfo,
    /// The latest value of each metric.
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

/// What a new run starts with.
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    pub experiment_id: i64,
    pub run_name: Option<String>,
    pub user_id: Option<String>,
    pub start_time: Option<i64>,
    pub tags: Vec<Tag>,
}

/// Changes to a run's info; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

/// Metrics, params and tags logged to one run in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

impl Batch {
    /// MLflow's batch limits and key rules, checked before anything is written.
    pub fn check(&self) -> Result<()> {
        let total = self.metrics.len() + self.params.len() + self.tags.len();
        for (field, n, max) in [
            ("metrics", self.metrics.len(), MAX_BATCH_METRICS),
            ("params", self.params.len(), MAX_BATCH_PARAMS),
            ("tags", self.tags.len(), MAX_BATCH_TAGS),
            ("metrics, params and tags together", total, MAX_BATCH_TOTAL),
        ] {
            if n > max {
                return Err(TrackingError::invalid(
                    field,
                    format!("a batch may hold at most {max}, this one has {n}"),
                ));
            }
        }
        for m in &self.metrics {
            check_key("metric", &m.key)?;
        }
        for p in &self.params {
            check_key("param", &p.key)?;
            check_len("param", &p.key, &p.value, MAX_PARAM_VALUE_LEN)?;
        }
        let mut seen = std::collections::HashMap::new();
        for p in &self.params {
            if let Some(previous) = seen.insert(p.key.as_str(), p.value.as_str())
                && previous != p.value
            {
                return Err(TrackingError::invalid(
                    format!("params[{}]", p.key),
                    "the batch gives this param two different values",
                ));
            }
        }
        for t in &self.tags {
            check_key("tag", &t.key)?;
            check_len("tag", &t.key, &t.value, MAX_TAG_VALUE_LEN)?;
        }
        Ok(())
    }
}

/// MLflow's rule for metric, param and tag keys: letters, digits, `_ - . / space`, no `..`
/// path tricks, at most 250 characters.
pub fn check_key(kind: &str, key: &str) -> Result<()> {
    let field = || format!("{kind} key");
    if key.is_empty() {
        return Err(TrackingError::invalid(field(), "it is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TrackingError::invalid(
            field(),
            format!(
                "{:?}… is {} characters, the limit is {MAX_KEY_LEN}",
                &key[..32],
                key.len()
            ),
        ));
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':');
    if let Some(bad) = key.chars().find(|c| !allowed(*c)) {
        return Err(TrackingError::invalid(
            field(),
            format!("{key:?} contains {bad:?}; use letters, digits, _ - . / : and spaces"),
        ));
    }
    if key.starts_with('/') || key.split('/').any(|part| part == "..") {
        return Err(TrackingError::invalid(
            field(),
            format!("{key:?} is not a relative path"),
        ));
    }
    Ok(())
}

fn check_len(kind: &str, key: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(TrackingError::invalid(
            format!("{kind} {key:?}"),
            format!(
                "the value is {} characters, the limit is {max}",
                value.chars().count()
            ),
        ));
    }
    Ok(())
}

pub fn check_experiment_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(TrackingError::invalid(
            "name",
            "an experiment needs a non-empty name",
        ));
    }
    if name.len() > MAX_EXPERIMENT_NAME_LEN {
        return Err(TrackingError::invalid(
            "name",
            format!(
                "{} characters, the limit is {MAX_EXPERIMENT_NAME_LEN}",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Parses an experiment id as MLflow sends it: a decimal string.
pub fn parse_experiment_id(text: &str) -> Result<i64> {
    text.trim().parse().map_err(|_| {
        TrackingError::invalid("experiment_id", format!("{text:?} is not an experiment id"))
    })
}

/// Parses the experiment ids a search is scoped to.
pub fn parse_experiment_ids(texts: &[String]) -> Result<Vec<i64>> {
    texts.iter().map(|t| parse_experiment_id(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        for ok in ["val_roc_auc", "loss/train", "a.b-c d", "mlflow.runName"] {
            check_key("metric", ok).unwrap();
        }
        for bad in [
            "",
            "a\\b",
            "../x",
            "/abs",
            "x/../y",
            "semi;colon",
            &"k".repeat(251),
        ] {
            assert!(check_key("metric", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batches_respect_limits_and_consistent_params() {
        let metric = |i: usize| Metric {
            key: format!("m{i}"),
            value: 1.0,
            timestamp: 1,
            step: 0,
        };
        let ok = Batch {
            metrics: (0..1000).map(metric).collect(),
            ..Batch::default()
        };
        ok.check().unwrap();
        let too_many = Batch {
            metrics: (0..1001).map(metric).collect(),
            ..Batch::default()
        };
        assert!(
            too_many
                .check()
                .unwrap_err()
                .to_string()
                .contains("at most 1000")
        );
        let p = |v: &str| Param {
            key: "C".into(),
            value: v.into(),
        };
        let conflicting = Batch {
            params: vec![p("1"), p("2")],
            ..Batch::default()
        };
        assert!(conflicting.check().is_err());
        let repeated = Batch {
            params: vec![p("1"), p("1")],
            ..Batch::default()
        };
        repeated.check().unwrap();
    }

    #[test]
    fn text_enums_parse_case_insensitively_and_name_the_choices() {
        assert_eq!(
            "finished".parse::<RunStatus>().unwrap(),
            RunStatus::Finished
        );
        let err = "DONE".parse::<RunStatus>().unwrap_err().to_string();
        assert!(err.contains("RUNNING") && err.contains("DONE"), "{err}");
    }
}
