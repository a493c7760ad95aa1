//! What the inference role follows in the registry, written as MLflow's model URIs:
//! `models:/NAME/STAGE`, `models:/NAME@ALIAS` or `models:/NAME/VERSION`.

use std::fmt;
use std::str::FromStr;

/// The registry stages a target may name, as MLflow spells them.
pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// Which version of one registered model to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelTarget {
    pub name: String,
    pub pick: Pick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The newest version in this stage (one of [`STAGES`]).
    Stage(String),
    /// The version an alias points at.
    Alias(String),
    /// Exactly this version.
    Version(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model {uri:?}: {reason}; expected models:/NAME/STAGE (None, Staging, Production, \
     Archived), models:/NAME@ALIAS or models:/NAME/VERSION"
)]
pub struct TargetError {
    uri: String,
    reason: &'static str,
}

impl FromStr for ModelTarget {
    type Err = TargetError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let bad = |reason| TargetError {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri
            .trim()
            .strip_prefix("models:/")
            .ok_or_else(|| bad("it does not start with models:/"))?;
        let (name, pick) = if let Some((name, alias)) = rest.split_once('@') {
            if !is_word(alias) {
                return Err(bad("the alias must be letters, digits, `_` or `-`"));
            }
            (name, Pick::Alias(alias.to_owned()))
        } else {
            let (name, last) = rest
                .rsplit_once('/')
                .ok_or_else(|| bad("it names no stage, alias or version"))?;
            let pick = if let Ok(version) = last.parse::<i64>() {
                if version < 1 {
                    return Err(bad("versions start at 1"));
                }
                Pick::Version(version)
            } else {
                let stage = STAGES
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(last))
                    .ok_or_else(|| bad("the stage is not one of the registry's"))?;
                Pick::Stage((*stage).to_owned())
            };
            (name, pick)
        };
        if !is_model_name(name) {
            return Err(bad(
                "the model name must be 1-256 letters, digits, `_`, `-` or `.` (not `..`)",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            pick,
        })
    }
}

impl fmt::Display for ModelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pick {
            Pick::Stage(stage) => write!(f, "models:/{}/{stage}", self.name),
            Pick::Alias(alias) => write!(f, "models:/{}@{alias}", self.name),
            Pick::Version(v) => write!(f, "models:/{}/{v}", self.name),
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A registered model name that is also safe as one directory name of the bundle cache.
pub fn is_model_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_print_back() {
        for uri in [
            "models:/best_diabetes_readmission_model/Production",
            "models:/m@champion",
            "models:/m.v2/7",
        ] {
            assert_eq!(uri.parse::<ModelTarget>().unwrap().to_string(), uri);
        }
        let t: ModelTarget = "models:/m/production".parse().unwrap();
        assert_eq!(t.pick, Pick::Stage("Production".into()));
    }

    #[test]
    fn bad_uris_say_why() {
        for (uri, why) in [
            ("runs:/abc/model", "models:/"),
            ("models:/m", "no stage"),
            ("models:/m/Live", "stage"),
            ("models:/m/0", "start at 1"),
            ("models:/../x/Production", "model name"),
            ("models:/m@", "alias"),
            ("models:/a/b/Production", "model name"),
        ] {
            let err = uri.parse::<ModelTarget>().unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(uri), "{uri}: {err}");
        }
    }
}
