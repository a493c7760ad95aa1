//! What changes the TUI's state: `Action`s (input, the clock, agents' answers) and what the
//! state asks of the agents in return (`Request`s, run by the backend on tasks).

use std::collections::BTreeMap;

use crossterm::event::{KeyEvent, MouseEvent};
use readmit_proto::v1;

use super::prom::Scrape;

/// Every change of state arrives as one of these, through one channel, into `App::update`.
#[derive(Debug)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// The clock: drives polls and "seconds ago" figures. Milliseconds since the Unix epoch.
    Tick(i64),
    /// An agent answered `GetInfo` (again): it is up.
    AgentUp {
        slot: usize,
        info: v1::AgentInfo,
    },
    AgentStatus {
        slot: usize,
        status: v1::AgentStatus,
    },
    AgentDown {
        slot: usize,
        reason: String,
    },
    /// One scrape of an agent's `/metrics`, taken at `at_ms`.
    Metrics {
        slot: usize,
        at_ms: i64,
        scrape: Result<Scrape, String>,
    },
    Served {
        slot: usize,
        served: Result<readmit_proto::ServedInfo, String>,
    },
    DataStatus(Result<readmit_proto::DataState, String>),
    Dags(Result<readmit_proto::DagList, String>),
    DagRuns {
        dag: String,
        runs: Result<Vec<readmit_proto::DagRunInfo>, String>,
    },
    DagRun(Result<readmit_proto::DagRunInfo, String>),
    RunEvent(readmit_proto::RunEvent),
    RunLogs {
        run_id: String,
        lines: Result<Vec<readmit_proto::LogEntry>, String>,
    },
    Experiments(Result<Vec<v1::Experiment>, String>),
    Runs {
        experiment_id: String,
        filter: String,
        runs: Result<Vec<v1::Run>, String>,
    },
    Compare(Result<v1::RunComparison, String>),
    History {
        run_id: String,
        key: String,
        points: Result<Vec<v1::Metric>, String>,
    },
    Models(Result<Vec<v1::RegisteredModel>, String>),
    Versions {
        name: String,
        versions: Result<Vec<v1::ModelVersion>, String>,
    },
    RegistryEvent(v1::RegistryEvent),
    Signature(Result<v1::ModelSignature, String>),
    Example(Result<Vec<BTreeMap<String, String>>, String>),
    Prediction(Result<v1::PredictReply, String>),
    LoadTests(Result<Vec<v1::LoadTestSummary>, String>),
    LoadTestStarted(Result<v1::LoadTestSummary, String>),
    LoadSample(v1::LoadTestSample),
    LoadTestEnded(Result<v1::LoadTestSummary, String>),
    /// A command that changes something finished: a line for the status bar.
    Done {
        what: String,
        outcome: Result<String, String>,
    },
}

/// What the state asks the agents for; the backend routes each to an agent with the role.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Every agent's `/metrics`.
    Scrape,
    /// What every inference agent serves.
    Served,
    DataStatus,
    AppendBatch,
    Ingest {
        path: String,
    },
    ListDags,
    DagRuns {
        dag: String,
    },
    Trigger {
        dag: String,
        params: BTreeMap<String, String>,
    },
    Pause {
        dag: String,
        paused: bool,
    },
    Cancel {
        run_id: String,
    },
    RunLogs {
        run_id: String,
    },
    Experiments,
    SearchRuns {
        experiment_id: String,
        filter: String,
    },
    Compare {
        run_ids: Vec<String>,
    },
    History {
        run_id: String,
        key: String,
    },
    Models,
    Versions {
        name: String,
    },
    Transition {
        name: String,
        version: i64,
        stage: v1::Stage,
    },
    Signature,
    /// The first records of the test split (`Etl.GetTestRecords`).
    Example,
    Predict {
        fields: BTreeMap<String, v1::FieldValue>,
    },
    LoadTests,
    StartLoadTest(Box<v1::LoadTestSpec>),
    StopLoadTest {
        id: String,
    },
}

impl Request {
    /// The role of the agent that serves this request.
    pub fn role(&self) -> &'static str {
        match self {
            Request::DataStatus
            | Request::AppendBatch
            | Request::Ingest { .. }
            | Request::ListDags
            | Request::DagRuns { .. }
            | Request::Trigger { .. }
            | Request::Pause { .. }
            | Request::Cancel { .. }
            | Request::RunLogs { .. }
            | Request::Example => "etl",
            Request::Experiments
            | Request::SearchRuns { .. }
            | Request::Compare { .. }
            | Request::History { .. }
            | Request::Models
            | Request::Versions { .. }
            | Request::Transition { .. } => "tracking",
            Request::Scrape => "",
            Request::Served
            | Request::Signature
            | Request::Predict { .. }
            | Request::LoadTests
            | Request::StartLoadTest(_)
            | Request::StopLoadTest { .. } => "inference",
        }
    }
}
