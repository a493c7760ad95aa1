//! Typed inference operations on [`Client`]: what an inference agent serves, in plain types.

use std::collections::BTreeMap;

use crate::client::Client;
use crate::registry::CallError;
use crate::v1;

/// What an inference agent serves (`Inference.GetServedModel`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServedInfo {
    /// A model is loaded and answering.
    pub loaded: bool,
    pub name: String,
    pub version: i64,
    pub stage: String,
    pub run_id: String,
    pub source: String,
    pub loaded_at_ms: i64,
    /// The decision threshold on the probability.
    pub threshold: f64,
    /// The version's metrics at training time.
    pub metrics: BTreeMap<String, f64>,
    /// What the agent follows, as a model URI: `models:/NAME/STAGE`, `models:/NAME@ALIAS` or
    /// `models:/NAME/VERSION`.
    pub following: String,
    /// Why the last model offered was refused, or why the registry cannot be followed; empty
    /// when all is well.
    pub last_error: String,
}

impl Client {
    /// What the agent serves now.
    pub async fn served_model(&self) -> Result<ServedInfo, CallError> {
        let s = self
            .inference()
            .get_served_model(v1::GetServedModelRequest {})
            .await
            .map_err(CallError::status("the served model"))?
            .into_inner();
        Ok(ServedInfo {
            loaded: s.loaded,
            name: s.name,
            version: s.version,
            stage: s.stage,
            run_id: s.run_id,
            source: s.source,
            loaded_at_ms: s.loaded_at_ms,
            threshold: s.threshold,
            metrics: s.metrics.into_iter().collect(),
            following: s.following,
            last_error: s.last_error,
        })
    }
}
