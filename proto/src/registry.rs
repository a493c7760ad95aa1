//! Typed registry and artifact operations on [`Client`]: what the inference role, the console
//! and the tests ask of a tracking agent, without building protobuf requests themselves.

use std::path::{Component, Path, PathBuf};

use futures_util::{Stream, StreamExt};

use crate::client::Client;
use crate::v1;

/// Why a typed call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent answered with an error status.
    #[error("{what}: {}", .status.message())]
    Status {
        what: String,
        #[source]
        status: tonic::Status,
    },
    /// A local file could not be written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The agent sent something a well-behaved agent never sends.
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
}

impl CallError {
    /// The gRPC code, when the agent answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CallError::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    pub(crate) fn status(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> Self {
        move |status| CallError::Status {
            what: what.into(),
            status,
        }
    }
}

/// What a new model version is made from.
#[derive(Clone, Debug, Default)]
pub struct NewVersion {
    /// `runs:/<run_id>/<path>`.
    pub source: String,
    pub run_id: String,
    pub description: String,
    pub tags: std::collections::HashMap<String, String>,
}

/// A registry stage, as MLflow names them.
pub fn stage_name(stage: i32) -> &'static str {
    match v1::Stage::try_from(stage).unwrap_or(v1::Stage::Unspecified) {
        v1::Stage::None | v1::Stage::Unspecified => "None",
        v1::Stage::Staging => "Staging",
        v1::Stage::Production => "Production",
        v1::Stage::Archived => "Archived",
    }
}

/// One registered model version, in plain types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    pub name: String,
    pub version: i64,
    /// `None`, `Staging`, `Production` or `Archived`.
    pub stage: String,
    pub run_id: String,
    pub source: String,
    pub aliases: Vec<String>,
    pub description: String,
    pub creation_time_ms: i64,
    pub last_updated_time_ms: i64,
}

impl From<v1::ModelVersion> for VersionInfo {
    fn from(v: v1::ModelVersion) -> Self {
        Self {
            stage: stage_name(v.stage).to_owned(),
            name: v.name,
            version: v.version,
            run_id: v.run_id,
            source: v.source,
            aliases: v.aliases,
            description: v.description,
            creation_time_ms: v.creation_time_ms,
            last_updated_time_ms: v.last_updated_time_ms,
        }
    }
}

/// A registered model: its newest version in each stage and its aliases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    pub description: String,
    pub latest_versions: Vec<VersionInfo>,
    /// (alias, version).
    pub aliases: Vec<(String, i64)>,
    pub last_updated_time_ms: i64,
}

impl From<v1::RegisteredModel> for ModelInfo {
    fn from(m: v1::RegisteredModel) -> Self {
        Self {
            name: m.name,
            description: m.description,
            latest_versions: m
                .latest_versions
                .into_iter()
                .map(VersionInfo::from)
                .collect(),
            aliases: m
                .aliases
                .into_iter()
                .map(|a| (a.alias, a.version))
                .collect(),
            last_updated_time_ms: m.last_updated_time_ms,
        }
    }
}

/// One change in the registry, as `WatchRegistry` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryChange {
    pub name: String,
    pub version: i64,
    pub timestamp_ms: i64,
}

/// Whether a status means "there is no such thing" (MLflow answers a missing alias with
/// `INVALID_PARAMETER_VALUE`, hence InvalidArgument too).
fn is_absent(e: &CallError) -> bool {
    matches!(
        e.code(),
        Some(tonic::Code::NotFound | tonic::Code::InvalidArgument)
    )
}

impl Client {
    /// Every registered model.
    pub async fn registered_models(&self) -> Result<Vec<ModelInfo>, CallError> {
        let models = self
            .tracking()
            .list_registered_models(v1::ListRegisteredModelsRequest {})
            .await
            .map_err(CallError::status("registered models"))?
            .into_inner()
            .models;
        Ok(models.into_iter().map(ModelInfo::from).collect())
    }

    /// Points `alias` of a model at `version`; returns the model as it now is.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
    ) -> Result<ModelInfo, CallError> {
        let model = self
            .tracking()
            .set_model_alias(v1::SetModelAliasRequest {
                name: name.into(),
                alias: alias.into(),
                version,
            })
            .await
            .map_err(CallError::status(format!("{name}@{alias}")))?;
        Ok(model.into_inner().into())
    }

    /// Removes `alias` of a model; returns the model as it now is.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<ModelInfo, CallError> {
        let model = self
            .tracking()
            .delete_model_alias(v1::DeleteModelAliasRequest {
                name: name.into(),
                alias: alias.into(),
            })
            .await
            .map_err(CallError::status(format!("{name}@{alias}")))?;
        Ok(model.into_inner().into())
    }

    /// Every version of a registered model; an error when the model does not exist.
    pub async fn model_versions_of(&self, name: &str) -> Result<Vec<VersionInfo>, CallError> {
        let versions = self
            .tracking()
            .list_model_versions(v1::ListModelVersionsRequest { name: name.into() })
            .await
            .map_err(CallError::status(format!("versions of {name}")))?
            .into_inner()
            .versions;
        Ok(versions.into_iter().map(VersionInfo::from).collect())
    }

    /// Every version of a registered model; empty when the model does not exist.
    pub async fn model_versions(&self, name: &str) -> Result<Vec<VersionInfo>, CallError> {
        match self.model_versions_of(name).await {
            Err(e) if is_absent(&e) => Ok(Vec::new()),
            other => other,
        }
    }

    /// One version; `None` when it does not exist.
    pub async fn model_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<VersionInfo>, CallError> {
        let reply = self
            .tracking()
            .get_model_version(v1::ModelVersionRef {
                name: name.into(),
                version,
            })
            .await
            .map_err(CallError::status(format!("{name} version {version}")));
        absent_is_none(reply.map(|r| VersionInfo::from(r.into_inner())))
    }

    /// The version an alias points at; `None` when the alias is not set.
    pub async fn version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<Option<VersionInfo>, CallError> {
        let reply = self
            .tracking()
            .get_model_version_by_alias(v1::GetModelVersionByAliasRequest {
                name: name.into(),
                alias: alias.into(),
            })
            .await
            .map_err(CallError::status(format!("{name}@{alias}")));
        absent_is_none(reply.map(|r| VersionInfo::from(r.into_inner())))
    }

    /// Registry changes of one model (every model for an empty name) from now on, until the
    /// agent ends the stream or the connection breaks.
    pub async fn watch_registry(
        &self,
        name: &str,
    ) -> Result<impl Stream<Item = Result<RegistryChange, CallError>> + Send + 'static, CallError>
    {
        let what = format!("registry changes of {name}");
        let stream = self
            .tracking()
            .watch_registry(v1::WatchRegistryRequest {
                name: name.into(),
                include_current: false,
            })
            .await
            .map_err(CallError::status(what.clone()))?
            .into_inner();
        Ok(stream.map(move |event| {
            let event = event.map_err(CallError::status(what.clone()))?;
            let version = event.version.unwrap_or_default();
            Ok(RegistryChange {
                name: version.name,
                version: version.version,
                timestamp_ms: event.timestamp_ms,
            })
        }))
    }

    /// Downloads every file under `path` of a run's artifacts into `dest` (created), keeping
    /// the layout, and returns the bytes written. Refuses more than `max_bytes` in all, and any
    /// listed path that would leave `dest`.
    pub async fn download_dir(
        &self,
        run_id: &str,
        path: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<u64, CallError> {
        let mut pending = vec![path.trim_matches('/').to_owned()];
        let mut files = Vec::new();
        while let Some(dir) = pending.pop() {
            let listed = self
                .tracking()
                .list_artifacts(v1::ListArtifactsRequest {
                    run_id: run_id.into(),
                    path: dir.clone(),
                })
                .await
                .map_err(CallError::status(format!(
                    "artifacts of run {run_id} under {dir:?}"
                )))?
                .into_inner();
            for file in listed.files {
                if file.is_dir {
                    pending.push(file.path);
                } else {
                    files.push(file.path);
                }
            }
        }
        let prefix = path.trim_matches('/');
        let mut total = 0u64;
        for file in files {
            let relative = file
                .strip_prefix(prefix)
                .map(|r| r.trim_start_matches('/'))
                .filter(|r| !r.is_empty())
                .ok_or_else(|| CallError::Protocol {
                    what: format!("artifacts of run {run_id}"),
                    reason: format!("listed {file:?}, which is not under {prefix:?}"),
                })?;
            let target = dest.join(safe_relative(relative).ok_or_else(|| CallError::Protocol {
                what: format!("artifacts of run {run_id}"),
                reason: format!("refusing the path {file:?}: it would leave the download"),
            })?);
            total += self
                .download_file(run_id, &file, &target, max_bytes.saturating_sub(total))
                .await?;
        }
        Ok(total)
    }

    async fn download_file(
        &self,
        run_id: &str,
        path: &str,
        target: &Path,
        max_bytes: u64,
    ) -> Result<u64, CallError> {
        use tokio::io::AsyncWriteExt as _;
        let what = format!("run {run_id} artifact {path}");
        let io = |source| CallError::Io {
            path: target.to_owned(),
            source,
        };
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let mut chunks = self
            .tracking()
            .download_artifact(v1::DownloadArtifactRequest {
                run_id: run_id.into(),
                path: path.into(),
            })
            .await
            .map_err(CallError::status(what.clone()))?
            .into_inner();
        let mut out = tokio::fs::File::create(target).await.map_err(io)?;
        let mut written = 0u64;
        while let Some(chunk) = chunks
            .message()
            .await
            .map_err(CallError::status(what.clone()))?
        {
            let Some(v1::artifact_chunk::Chunk::Data(data)) = chunk.chunk else {
                continue;
            };
            written += data.len() as u64;
            if written > max_bytes {
                return Err(CallError::Protocol {
                    what,
                    reason: format!("over the {max_bytes}-byte limit of this download"),
                });
            }
            out.write_all(&data).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        Ok(written)
    }
}

/// Bytes per upload message: well under the 4 MiB most gRPC servers accept by default.
const UPLOAD_CHUNK: usize = 1 << 20;

impl Client {
    /// Uploads one file as the run artifact `path`, streamed in chunks.
    pub async fn upload_file(
        &self,
        run_id: &str,
        path: &str,
        file: &Path,
    ) -> Result<u64, CallError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| CallError::Io {
                path: file.to_owned(),
                source,
            })?;
        self.upload_chunks(run_id, path, bytes).await
    }

    /// Uploads `bytes` as the run artifact `path`, streamed in chunks; the size sent.
    pub(crate) async fn upload_chunks(
        &self,
        run_id: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<u64, CallError> {
        let size = bytes.len() as u64;
        let mut chunks = vec![v1::ArtifactChunk {
            chunk: Some(v1::artifact_chunk::Chunk::Header(v1::ArtifactHeader {
                run_id: run_id.to_owned(),
                path: path.to_owned(),
                size: i64::try_from(size).unwrap_or(i64::MAX),
            })),
        }];
        chunks.extend(bytes.chunks(UPLOAD_CHUNK).map(|c| v1::ArtifactChunk {
            chunk: Some(v1::artifact_chunk::Chunk::Data(c.to_vec())),
        }));
        self.tracking()
            .upload_artifact(futures_util::stream::iter(chunks))
            .await
            .map_err(CallError::status(format!(
                "uploading {path} to run {run_id}"
            )))?;
        Ok(size)
    }

    /// Uploads every file under `dir` as run artifacts under `path`, keeping the layout;
    /// returns the bytes sent.
    pub async fn upload_dir(&self, run_id: &str, dir: &Path, path: &str) -> Result<u64, CallError> {
        let mut pending = vec![dir.to_owned()];
        let mut total = 0;
        while let Some(current) = pending.pop() {
            let io = |source| CallError::Io {
                path: current.clone(),
                source,
            };
            let mut entries = tokio::fs::read_dir(&current).await.map_err(io)?;
            while let Some(entry) = entries.next_entry().await.map_err(io)? {
                let file = entry.path();
                if entry.file_type().await.map_err(io)?.is_dir() {
                    pending.push(file);
                    continue;
                }
                let relative = file
                    .strip_prefix(dir)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .replace('\\', "/");
                let target = format!("{}/{relative}", path.trim_end_matches('/'));
                total += self.upload_file(run_id, &target, &file).await?;
            }
        }
        Ok(total)
    }

    /// Creates the registered model `name` with `description`, unless it exists already.
    pub async fn ensure_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(), CallError> {
        let created = self
            .tracking()
            .create_registered_model(v1::CreateRegisteredModelRequest {
                name: name.into(),
                description: description.into(),
                ..Default::default()
            })
            .await;
        match created {
            Err(status) if status.code() != tonic::Code::AlreadyExists => {
                Err(CallError::status(format!("registering {name}"))(status))
            }
            _ => Ok(()),
        }
    }

    /// Registers `version.source` (`runs:/<run_id>/<path>`) as a new version of `name`,
    /// creating the registered model when it does not exist yet.
    pub async fn register_version(
        &self,
        name: &str,
        version: NewVersion,
    ) -> Result<VersionInfo, CallError> {
        self.ensure_registered_model(name, "").await?;
        let version = self
            .tracking()
            .create_model_version(v1::CreateModelVersionRequest {
                name: name.into(),
                source: version.source,
                run_id: version.run_id,
                description: version.description,
                tags: version.tags,
            })
            .await
            .map_err(CallError::status(format!("a new version of {name}")))?
            .into_inner();
        Ok(version.into())
    }

    /// Moves a version to a stage (`None`, `Staging`, `Production`, `Archived`), archiving the
    /// versions in that stage when `archive_existing`; returns the version and those archived.
    pub async fn transition(
        &self,
        name: &str,
        version: i64,
        stage: &str,
        archive_existing: bool,
    ) -> Result<(VersionInfo, Vec<VersionInfo>), CallError> {
        let stage = match stage.to_ascii_lowercase().as_str() {
            "none" => v1::Stage::None,
            "staging" => v1::Stage::Staging,
            "production" => v1::Stage::Production,
            "archived" => v1::Stage::Archived,
            _ => {
                return Err(CallError::Protocol {
                    what: format!("{name} version {version}"),
                    reason: format!("{stage:?} is not None, Staging, Production or Archived"),
                });
            }
        };
        let reply = self
            .tracking()
            .transition_model_version_stage(v1::TransitionStageRequest {
                name: name.into(),
                version,
                stage: stage as i32,
                archive_existing,
            })
            .await
            .map_err(CallError::status(format!("{name} version {version}")))?
            .into_inner();
        let moved = reply
            .version
            .map(VersionInfo::from)
            .ok_or_else(|| CallError::Protocol {
                what: format!("{name} version {version}"),
                reason: "the transition answered no version".into(),
            })?;
        Ok((
            moved,
            reply.archived.into_iter().map(VersionInfo::from).collect(),
        ))
    }
}

fn absent_is_none<T>(result: Result<T, CallError>) -> Result<Option<T>, CallError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A relative path of plain segments only: no `..`, no root, no prefix, no backslash.
fn safe_relative(path: &str) -> Option<PathBuf> {
    if path.contains('\\') {
        return None;
    }
    let p = Path::new(path);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.is_empty()).then(|| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_written() {
        assert!(safe_relative("model.onnx").is_some());
        assert!(safe_relative("sub/file.json").is_some());
        for bad in ["../x", "/etc/passwd", "a/../../b", "a\\b", ""] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }
}
