//! The roles an agent can run. Each role brings its own gRPC service, HTTP routes and gauges
//! as its issue lands; the chassis serves whatever set it is given.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
