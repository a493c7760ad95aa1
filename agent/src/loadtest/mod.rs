//! The load-test engine of the inference role: simulated users (closed loop) or an arrival
//! rate (open loop, coordinated omission corrected) against any allowed inference endpoint,
//! figures from HDR histograms a second at a time, k6-like thresholds, capacity search, and
//! every finished test kept as a run of the `load_tests` experiment in tracking.
//!
//! `spec` checks what is asked against `safety`'s ceilings and allowlist; `engine` runs tests
//! on its own runtime and threads, a few at a time; `phase` drives one stretch of load with
//! `closed` or `open` over `targets`' real clients and `payloads`' real records; `stats`
//! measures, `thresholds` judges, `capacity` searches, `keep` logs to tracking.

pub mod capacity;
pub mod closed;
pub mod engine;
mod keep;
pub mod open;
pub mod payloads;
mod phase;
pub mod safety;
pub mod spec;
pub mod stats;
pub mod targets;
pub mod thresholds;

pub use engine::{EngineConfig, LoadTests, State, Summary};
pub use safety::Limits;
pub use spec::{Spec, SpecInput};
pub use targets::TargetTls;

/// The load-test engine of an inference agent: its ceilings and allowlist from the settings,
/// payloads from this agent's ETL role when it runs one, finished tests kept in tracking.
pub fn start(
    settings: &crate::settings::Settings,
    listeners: crate::roles::Listeners,
    etl: Option<crate::etl::Etl>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> LoadTests {
    let tracking_url = settings.tracking_target(listeners.grpc);
    LoadTests::new(EngineConfig {
        limits: Limits::from_settings(settings, vec![listeners.grpc, listeners.http]),
        etl,
        tracking_tls: settings.client_tls(&tracking_url),
        tracking_url,
        token: settings.token.clone(),
        target_tls: TargetTls {
            ca: settings.tls_ca.clone(),
            identity: settings.tls.clone(),
        },
        shutdown: shutdown.clone(),
    })
}

/// Why a load-test call failed. Mapped to gRPC status in `grpc/loadtest.rs::status`.
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{field}: {value} is over the ceiling of {limit} (setting `{setting}`)")]
    OverLimit {
        field: &'static str,
        value: f64,
        limit: f64,
        setting: &'static str,
    },
    #[error("target {target:?} refused: {reason}")]
    NotAllowed { target: String, reason: String },
    #[error(
        "{running} load tests are running, the most at once (setting `loadtest_max_concurrent`)"
    )]
    Busy { running: usize },
    #[error("no load test {id:?}")]
    NotFound { id: String },
    #[error("{reason}")]
    Unavailable { reason: String },
    #[error("load-test engine: {reason}")]
    Internal { reason: String },
}
