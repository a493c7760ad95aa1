//! Every gRPC method the agent knows, with the token scope it needs. The table is checked
//! against the compiled descriptor set, so a new method cannot go unclassified; a path that is
//! not in it needs `admin` and is one metric label, `other`.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use crate::auth::Scope;

/// Methods that change nothing: a `read` token may call them.
const READ: &[&str] = &[
    "Agent/GetInfo",
    "Agent/GetStatus",
    "Agent/WatchStatus",
    "Etl/GetDataStatus",
    "Etl/ListDags",
    "Etl/ListDagRuns",
    "Etl/GetDagRun",
    "Etl/GetRunLogs",
    "Etl/WatchRuns",
    "Etl/GetTestRecords",
    "Tracking/GetExperiment",
    "Tracking/ListExperiments",
    "Tracking/GetRun",
    "Tracking/GetMetricHistory",
    "Tracking/SearchRuns",
    "Tracking/CompareRuns",
    "Tracking/DownloadArtifact",
    "Tracking/ListArtifacts",
    "Tracking/GetRegisteredModel",
    "Tracking/ListRegisteredModels",
    "Tracking/GetModelVersion",
    "Tracking/ListModelVersions",
    "Tracking/GetModelVersionByAlias",
    "Tracking/WatchRegistry",
    "Inference/Predict",
    "Inference/GetServedModel",
    "Inference/GetSignature",
    "LoadTest/GetLoadTest",
    "LoadTest/ListLoadTests",
    "LoadTest/WatchLoadTest",
    // The Open Inference Protocol: health, metadata and predictions.
    "inference.GRPCInferenceService/ServerLive",
    "inference.GRPCInferenceService/ServerReady",
    "inference.GRPCInferenceService/ModelReady",
    "inference.GRPCInferenceService/ServerMetadata",
    "inference.GRPCInferenceService/ModelMetadata",
    "inference.GRPCInferenceService/ModelInfer",
];

/// Methods that change state: only an `admin` token may call them.
const ADMIN: &[&str] = &[
    "Etl/Ingest",
    "Etl/IngestUpload",
    "Etl/AppendBatch",
    "Etl/FetchDataset",
    "Etl/SynthesizeDataset",
    "Etl/SetDagPaused",
    "Etl/TriggerDag",
    "Etl/CancelDagRun",
    "Tracking/CreateExperiment",
    "Tracking/DeleteExperiment",
    "Tracking/RestoreExperiment",
    "Tracking/CreateRun",
    "Tracking/UpdateRun",
    "Tracking/DeleteRun",
    "Tracking/RestoreRun",
    "Tracking/LogBatch",
    "Tracking/UploadArtifact",
    "Tracking/CreateRegisteredModel",
    "Tracking/CreateModelVersion",
    "Tracking/TransitionModelVersionStage",
    "Tracking/SetModelAlias",
    "Tracking/DeleteModelAlias",
    "Inference/ReloadModel",
    "LoadTest/StartLoadTest",
    "LoadTest/StopLoadTest",
];

/// gRPC's own services on the listener: probes and schema discovery, reads all.
const STANDARD: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

const PACKAGE: &str = "readmit.v1";

/// Method paths (`/readmit.v1.Etl/TriggerDag`) to the scope each needs.
#[derive(Clone, Debug)]
pub struct MethodTable {
    methods: Arc<HashMap<String, Scope>>,
}

/// A method's short name: `Etl/TriggerDag` for `readmit.v1`, the package-qualified
/// `inference.GRPCInferenceService/ModelInfer` for the others.
fn short(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    path.strip_prefix(PACKAGE)
        .and_then(|p| p.strip_prefix('.'))
        .unwrap_or(path)
}

/// Every method path in the compiled descriptor set (`readmit.v1` and the Open Inference
/// Protocol).
pub fn described() -> Vec<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(readmit_proto::FILE_DESCRIPTOR_SET) else {
        // The set is compiled in by our own build: it always decodes, and a test says so.
        return Vec::new();
    };
    let mut paths = Vec::new();
    for file in set.file {
        let package = file.package().to_owned();
        for service in file.service {
            for method in &service.method {
                paths.push(format!("/{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    paths
}

impl MethodTable {
    /// The table for the descriptor set's methods and gRPC's standard services.
    pub fn new() -> Self {
        let mut methods = HashMap::new();
        for path in described() {
            // A method the lists above do not name needs admin: nothing opens by omission.
            let short = short(&path);
            let scope = if READ.contains(&short) {
                Scope::Read
            } else {
                if !ADMIN.contains(&short) {
                    tracing::warn!(method = %path, "gRPC method not classified; it needs admin");
                }
                Scope::Admin
            };
            methods.insert(path, scope);
        }
        for path in STANDARD {
            methods.insert((*path).to_owned(), Scope::Read);
        }
        Self {
            methods: Arc::new(methods),
        }
    }

    /// The scope a call to `path` needs: admin for anything unknown.
    pub fn scope(&self, path: &str) -> Scope {
        self.methods.get(path).copied().unwrap_or(Scope::Admin)
    }

    /// The metric label for `path`: the path itself when it is a known method, else `other`,
    /// so a client probing random paths cannot add series.
    pub fn label(&self, path: &str) -> String {
        if self.methods.contains_key(path) {
            path.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

impl Default for MethodTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_described_method_is_classified_once() {
        let described = described();
        assert!(described.len() > 40, "{described:?}");
        for path in &described {
            let short = short(path);
            let listed = READ.contains(&short) as u8 + ADMIN.contains(&short) as u8;
            assert_eq!(
                listed, 1,
                "{path}: name it in exactly one of READ and ADMIN in grpc/methods.rs"
            );
        }
        for short in READ.iter().chain(ADMIN) {
            assert!(
                described.iter().any(|p| super::short(p) == *short),
                "{short} is listed but is no method of the descriptor set"
            );
        }
    }

    #[test]
    fn mutations_need_admin_and_unknown_paths_too() {
        let t = MethodTable::new();
        assert_eq!(t.scope("/readmit.v1.Etl/TriggerDag"), Scope::Admin);
        assert_eq!(t.scope("/readmit.v1.Etl/ListDags"), Scope::Read);
        assert_eq!(t.scope("/readmit.v1.Etl/NotYetWritten"), Scope::Admin);
        assert_eq!(t.scope("/grpc.health.v1.Health/Check"), Scope::Read);
        assert_eq!(t.label("/readmit.v1.Etl/NotYetWritten"), "other");
        assert_eq!(
            t.label("/readmit.v1.Etl/ListDags"),
            "/readmit.v1.Etl/ListDags"
        );
    }
}
