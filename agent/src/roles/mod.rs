//! The roles an agent can run, and starting the ones the settings name. Each role starts
//! itself (`tracking::start`, `etl::start`, `inference::start`, `loadtest::start`) and hands
//! back its handle; the transports serve each handle present (the lists in `grpc::serve` and
//! `http::router`), so the chassis only composes.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::etl::Etl;
use crate::inference::Inference;
use crate::loadtest::LoadTests;
use crate::settings::Settings;
use crate::tracking::Tracking;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// RawData and CleanData in SQL, and the DAG runner.
    Etl,
    /// Experiments, runs, artifacts, the model registry and the MLflow REST API.
    Tracking,
    /// Predictions over HTTP and gRPC with the Production model, and the load-test engine.
    Inference,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Etl, Role::Tracking, Role::Inference];

    pub fn name(self) -> &'static str {
        match self {
            Role::Etl => "etl",
            Role::Tracking => "tracking",
            Role::Inference => "inference",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: expected etl, tracking or inference")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownRole(s.trim().to_owned()))
    }
}

/// The roles one agent runs, each `None` when the settings leave it out.
#[derive(Clone, Default)]
pub struct Roles {
    pub tracking: Option<Tracking>,
    pub etl: Option<Etl>,
    pub inference: Option<Inference>,
    /// The load-test engine, part of the inference role.
    pub loadtest: Option<LoadTests>,
}

/// Why a role could not start; each names what it could not open.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the tracking store: {0}")]
    Tracking(#[from] crate::tracking::TrackingError),
    #[error(transparent)]
    Artifacts(#[from] crate::tracking::artifacts::ArtifactError),
    #[error("cannot start the DAG runner: {0}")]
    Etl(#[from] crate::etl::runs::EtlError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Where this agent listens, for roles that call it back (the ETL and inference roles reach
/// the tracking role over gRPC, as between machines) or must know its own listeners.
#[derive(Clone, Copy, Debug)]
pub struct Listeners {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Roles {
    /// Starts the roles `settings` names, tracking first (the others log to it).
    pub async fn start(
        settings: &Settings,
        listeners: Listeners,
        registry: &prometheus::Registry,
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        let runs = |role| settings.roles.contains(&role);
        let tracking = if runs(Role::Tracking) {
            Some(crate::tracking::start(settings).await?)
        } else {
            None
        };
        let etl = if runs(Role::Etl) {
            Some(crate::etl::start(settings, listeners, shutdown, registry).await?)
        } else {
            None
        };
        let (inference, loadtest) = if runs(Role::Inference) {
            (
                Some(crate::inference::start(
                    settings, listeners, registry, shutdown,
                )?),
                Some(crate::loadtest::start(
                    settings,
                    listeners,
                    etl.clone(),
                    shutdown,
                )),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            tracking,
            etl,
            inference,
            loadtest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_named() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>().unwrap(), role);
        }
        assert_eq!(" ETL ".parse::<Role>().unwrap(), Role::Etl);
        let err = "billing".parse::<Role>().unwrap_err().to_string();
        assert!(err.contains("\"billing\""), "{err}");
    }
}
