//! Run and model artifacts through `object_store`: a local directory by default, S3 or MinIO by
//! `s3://bucket/prefix`. Every key is validated so that no path, however spelled, can leave
//! the run or model it belongs to.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// Parts are this big on S3 (its minimum is 5 MiB); local files are written as they stream.
const PART_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("artifact {path:?} does not exist")]
    NotFound { path: String },
    #[error("artifact root {root:?}: {reason}")]
    Config { root: String, reason: String },
    #[error("artifact store: {0}")]
    Store(object_store::Error),
    #[error("artifact upload of {path:?} broke off: {reason}")]
    Upload { path: String, reason: String },
    #[error("artifact {path:?}: {reason}")]
    Io { path: String, reason: String },
}

impl ArtifactError {
    fn from_store(error: object_store::Error, path: &str) -> Self {
        match error {
            object_store::Error::NotFound { .. } => Self::NotFound {
                path: path.to_owned(),
            },
            other => Self::Store(other),
        }
    }
}

/// Where an artifact belongs: a run's or a logged model's artifact directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Run {
        experiment_id: i64,
        run_id: String,
    },
    Model {
        experiment_id: i64,
        model_id: String,
    },
}

/// A validated artifact location: its scope and its path inside that scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactKey {
    pub scope: Scope,
    /// Relative to the scope's artifact directory; empty for the directory itself.
    pub path: String,
}

impl ArtifactKey {
    /// Parses a path below the artifact root as MLflow's proxied URIs spell it:
    /// `<experiment>/<run>/artifacts[/<path>]` or `<experiment>/models/<model>/artifacts[/<path>]`.
    pub fn parse(full: &str) -> Result<Self, ArtifactError> {
        let bad = |reason: &str| ArtifactError::InvalidPath {
            path: full.to_owned(),
            reason: reason.into(),
        };
        let segments = safe_segments(full)?;
        let experiment_id: i64 = segments
            .first()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("it must start with an experiment id"))?;
        let (scope, rest) = match segments.get(1..) {
            Some(["models", model_id, "artifacts", rest @ ..]) if is_id(model_id) => (
                Scope::Model {
                    experiment_id,
                    model_id: (*model_id).to_owned(),
                },
                rest,
            ),
            Some([run_id, "artifacts", rest @ ..]) if is_id(run_id) => (
                Scope::Run {
                    experiment_id,
                    run_id: (*run_id).to_owned(),
                },
                rest,
            ),
            _ => {
                return Err(bad(
                    "expected <experiment>/<run>/artifacts/… or <experiment>/models/<model>/artifacts/…",
                ));
            }
        };
        Ok(Self {
            scope,
            path: rest.join("/"),
        })
    }

    /// A key inside a scope; `path` is checked like any other.
    pub fn new(scope: Scope, path: &str) -> Result<Self, ArtifactError> {
        let path = if path.trim_matches('/').is_empty() {
            String::new()
        } else {
            safe_segments(path)?.join("/")
        };
        Ok(Self { scope, path })
    }

    /// The scope's directory below the root.
    pub fn scope_dir(&self) -> String {
        match &self.scope {
            Scope::Run {
                experiment_id,
                run_id,
            } => format!("{experiment_id}/{run_id}/artifacts"),
            Scope::Model {
                experiment_id,
                model_id,
            } => {
                format!("{experiment_id}/models/{model_id}/artifacts")
            }
        }
    }

    fn object_path(&self) -> ObjectPath {
        // Every segment was checked by `safe_segments`, so parsing cannot fail; `from` would
        // percent-encode instead of refusing, which is the safe fallback anyway.
        let full = if self.path.is_empty() {
            self.scope_dir()
        } else {
            format!("{}/{}", self.scope_dir(), self.path)
        };
        ObjectPath::parse(&full).unwrap_or_else(|_| ObjectPath::from(full.as_str()))
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Splits a relative path into segments, refusing anything that could name a file outside:
/// `..`, `.`, empty segments, absolute paths, backslashes, drive letters, control characters.
pub fn safe_segments(path: &str) -> Result<Vec<&str>, ArtifactError> {
    let bad = |reason: &str| ArtifactError::InvalidPath {
        path: path.to_owned(),
        reason: reason.into(),
    };
    if path.is_empty() {
        return Err(bad("it is empty"));
    }
    if path.starts_with('/') || path.starts_with('~') {
        return Err(bad("it must be relative"));
    }
    if path.contains('\\') {
        return Err(bad("backslashes are not allowed"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(bad("drive letters are not allowed"));
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    for s in &segments {
        match *s {
            "" => return Err(bad("empty path segments (//) are not allowed")),
            "." | ".." => return Err(bad("'.' and '..' are not allowed")),
            _ => {}
        }
    }
    Ok(segments)
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// Relative to the scope's artifact directory.
    pub path: String,
    pub is_dir: bool,
    pub size: Option<u64>,
}

/// Where an S3-protocol server is and how to sign for it; `from_env` reads the usual variables.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl S3Settings {
    pub fn from_env() -> Self {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .filter(|v| !v.is_empty())
        };
        Self {
            endpoint: var(&[
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT",
                "MLFLOW_S3_ENDPOINT_URL",
            ]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: var(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY"]),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    root: String,
    /// The directory, for a local store: emptied directories are removed there, since a
    /// file system, unlike S3, keeps them.
    local_dir: Option<std::path::PathBuf>,
}

impl ArtifactStore {
    /// Opens the root: empty for `<data_dir>/artifacts`, a local path or `file://` URL, or
    /// `s3://bucket[/prefix]` with endpoint and credentials from the usual `AWS_*` variables.
    pub fn open(root: &str, data_dir: &Path) -> Result<Self, ArtifactError> {
        Self::open_with(root, data_dir, &S3Settings::from_env())
    }

    /// As [`ArtifactStore::open`], with the S3 endpoint and credentials given.
    pub fn open_with(root: &str, data_dir: &Path, s3: &S3Settings) -> Result<Self, ArtifactError> {
        let config = |reason: String| ArtifactError::Config {
            root: root.to_owned(),
            reason,
        };
        if let Some(rest) = root.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(config("no bucket named".into()));
            }
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()));
            if let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
            }
            if let Some(endpoint) = &s3.endpoint {
                // MinIO and other self-hosted servers answer on a path, often without TLS.
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            let s3 = builder.build().map_err(|e| config(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
                "" => Arc::new(s3),
                p => Arc::new(PrefixStore::new(s3, p)),
            };
            return Ok(Self {
                store,
                root: root.trim_end_matches('/').to_owned(),
                local_dir: None,
            });
        }
        let dir = match root.strip_prefix("file://").unwrap_or(root) {
            "" => data_dir.join("artifacts"),
            path => Path::new(path).to_owned(),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| config(format!("cannot create {}: {e}", dir.display())))?;
        let local = LocalFileSystem::new_with_prefix(&dir).map_err(|e| config(e.to_string()))?;
        Ok(Self {
            store: Arc::new(local),
            root: dir.display().to_string(),
            local_dir: Some(dir),
        })
    }

    /// Where artifacts are kept, for messages.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Streams `body` into the artifact; it appears whole or not at all. Returns its size.
    pub async fn put<S, E>(&self, key: &ArtifactKey, body: S) -> Result<u64, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        if key.path.is_empty() {
            return Err(ArtifactError::InvalidPath {
                path: key.scope_dir(),
                reason: "an upload needs a file name".into(),
            });
        }
        let location = key.object_path();
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| ArtifactError::from_store(e, &key.path))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let reason = e.to_string();
                    // Nothing half-written stays behind: the upload is abandoned whole.
                    let _ = writer.abort().await;
                    return Err(ArtifactError::Upload {
                        path: key.path.clone(),
                        reason,
                    });
                }
            };
            size += chunk.len() as u64;
            writer
                .wait_for_capacity(4)
                .await
                .map_err(ArtifactError::Store)?;
            writer.put(chunk);
        }
        writer.finish().await.map_err(ArtifactError::Store)?;
        Ok(size)
    }

    /// The artifact's size and its bytes as a stream.
    pub async fn get(
        &self,
        key: &ArtifactKey,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, ArtifactError>>), ArtifactError> {
        let result = self
            .store
            .get(&key.object_path())
            .await
            .map_err(|e| ArtifactError::from_store(e, &key.path))?;
        let size = result.meta.size;
        let stream = result.into_stream().map_err(ArtifactError::Store).boxed();
        Ok((size, stream))
    }

    /// The entries directly inside a directory of a scope (not recursive), sorted by path.
    pub async fn list(&self, key: &ArtifactKey) -> Result<Vec<ArtifactEntry>, ArtifactError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&key.object_path()))
            .await
            .map_err(|e| ArtifactError::from_store(e, &key.path))?;
        let base = key.scope_dir();
        let relative = |p: &ObjectPath| {
            let p = p.as_ref();
            p.strip_prefix(&base)
                .unwrap_or(p)
                .trim_start_matches('/')
                .to_owned()
        };
        let mut entries: Vec<ArtifactEntry> = listing
            .common_prefixes
            .iter()
            .map(|p| ArtifactEntry {
                path: relative(p),
                is_dir: true,
                size: None,
            })
            .chain(listing.objects.iter().map(|o| ArtifactEntry {
                path: relative(&o.location),
                is_dir: false,
                size: Some(o.size),
            }))
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Deletes one file, or everything under a directory.
    pub async fn delete(&self, key: &ArtifactKey) -> Result<(), ArtifactError> {
        let location = key.object_path();
        let under: Vec<ObjectPath> = self
            .store
            .list(Some(&location))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(ArtifactError::Store)?;
        if under.is_empty() {
            return self
                .store
                .delete(&location)
                .await
                .map_err(|e| ArtifactError::from_store(e, &key.path));
        }
        for path in under {
            self.store
                .delete(&path)
                .await
                .map_err(ArtifactError::Store)?;
        }
        if let Some(dir) = &self.local_dir {
            // The key's segments were validated, so this stays inside the root.
            let emptied = dir.join(location.as_ref());
            if let Err(e) = tokio::fs::remove_dir_all(&emptied).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(ArtifactError::Io {
                    path: key.path.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_name_their_scope() {
        let k = ArtifactKey::parse(&format!("3/{RUN}/artifacts/model/MLmodel")).unwrap();
        assert_eq!(
            k.scope,
            Scope::Run {
                experiment_id: 3,
                run_id: RUN.into()
            }
        );
        assert_eq!(k.path, "model/MLmodel");
        let k = ArtifactKey::parse("3/models/m-abc/artifacts/model.onnx").unwrap();
        assert_eq!(
            k.scope,
            Scope::Model {
                experiment_id: 3,
                model_id: "m-abc".into()
            }
        );
        let root = ArtifactKey::parse(&format!("3/{RUN}/artifacts")).unwrap();
        assert_eq!(root.path, "");
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        for bad in [
            format!("3/{RUN}/artifacts/../../../etc/passwd"),
            format!("3/{RUN}/artifacts/a/../../x"),
            format!("3/{RUN}/artifacts/./x"),
            format!("3/{RUN}/artifacts//x"),
            format!("3/{RUN}/artifacts/a\\..\\..\\x"),
            format!("/3/{RUN}/artifacts/x"),
            format!("3/{RUN}/notartifacts/x"),
            format!("3/../{RUN}/artifacts/x"),
            "../../etc/passwd".to_owned(),
            "C:/windows/x".to_owned(),
            "3/x\u{0}y/artifacts/z".to_owned(),
            "x/{RUN}/artifacts/y".to_owned(),
        ] {
            assert!(ArtifactKey::parse(&bad).is_err(), "{bad:?} was accepted");
        }
        let scope = Scope::Run {
            experiment_id: 1,
            run_id: RUN.into(),
        };
        assert!(ArtifactKey::new(scope.clone(), "../x").is_err());
        assert!(ArtifactKey::new(scope, "/etc/passwd").is_err());
    }
}
