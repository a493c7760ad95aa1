//! The DAG runner's domain types: runs, task instances, log lines and the events watchers see.

use std::collections::BTreeMap;

crate::text_enum!(
    /// The state of a run or of one task instance, as Airflow names them.
    RunState {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        UpForRetry = "up_for_retry",
        UpstreamFailed = "upstream_failed",
        Skipped = "skipped",
    }
);

impl RunState {
    /// A state nothing moves out of.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded
                | RunState::Failed
                | RunState::Cancelled
                | RunState::UpstreamFailed
                | RunState::Skipped
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("ETL store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("ETL store: {0}")]
    Store(String),
    #[error(transparent)]
    Setup(#[from] crate::db::DbError),
    #[error("ETL store holds a value it cannot read: {0}")]
    Corrupt(String),
    /// A data file that cannot be read or fails validation; names the file, line and column.
    #[error(transparent)]
    Data(#[from] readmit_ml::data::DataError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A request or file beyond one of the agent's size limits, named as its setting.
    #[error("{what} is larger than {limit} ({max} bytes); raise that setting to allow it")]
    TooLarge {
        what: String,
        limit: &'static str,
        max: u64,
    },
    /// A service this call needs (the network, another role) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Feature fitting, training or export failed on data that was valid to read.
    #[error("{0}")]
    Ml(String),
}

impl From<crate::db::WriteError> for EtlError {
    fn from(error: crate::db::WriteError) -> Self {
        use crate::db::WriteError;
        match error {
            WriteError::Sql(e) => EtlError::Db(e),
            WriteError::Conflict(message) => EtlError::Conflict(message),
            other @ (WriteError::Sqlite(_) | WriteError::Worker(_)) => {
                EtlError::Store(other.to_string())
            }
        }
    }
}

impl From<rusqlite::Error> for EtlError {
    fn from(error: rusqlite::Error) -> Self {
        crate::db::WriteError::from(error).into()
    }
}

impl EtlError {
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> EtlError + '_ {
        move |source| EtlError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<crate::text_enum::UnknownValue> for EtlError {
    fn from(e: crate::text_enum::UnknownValue) -> Self {
        EtlError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = EtlError> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq)]
pub struct TaskInstance {
    pub task_id: String,
    pub kind: String,
    pub state: RunState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DagRun {
    pub run_id: String,
    pub dag: String,
    pub state: RunState,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub params: BTreeMap<String, String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub error: Option<String>,
    /// In the DAG's dependency order.
    pub tasks: Vec<TaskInstance>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub seq: i64,
    pub timestamp: i64,
    pub task_id: String,
    pub attempt: u32,
    pub level: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RunEventKind {
    /// A run (`task_id` empty) or one of its tasks changed state.
    State {
        task_id: String,
        state: RunState,
        attempt: u32,
        error: Option<String>,
    },
    Log(LogLine),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunEvent {
    pub timestamp: i64,
    pub run_id: String,
    pub dag: String,
    pub kind: RunEventKind,
}
