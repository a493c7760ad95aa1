//! MLflow's proxied artifact API (`/api/2.0/mlflow-artifacts/artifacts/...`): uploads stream
//! into the artifact store, downloads stream out, and every path is checked before use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use super::api_error::{ApiError, ApiResult};
use super::wire::Params;
use crate::tracking::Tracking;
use crate::tracking::artifacts::{ArtifactError, ArtifactKey};

const PREFIX: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// Every route of the artifact API: (method, path pattern, handler).
fn table() -> Vec<(Method, String, MethodRouter<Tracking>)> {
    let file = format!("{PREFIX}/{{*path}}");
    vec![
        (Method::GET, PREFIX.to_owned(), on(MethodFilter::GET, list)),
        (Method::GET, file.clone(), on(MethodFilter::GET, download)),
        (Method::PUT, file.clone(), on(MethodFilter::PUT, upload)),
        (Method::DELETE, file, on(MethodFilter::DELETE, delete)),
    ]
}

pub fn router<S: Clone + Send + Sync + 'static>(tracking: Tracking) -> Router<S> {
    table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(&path, handler)
        })
        .with_state(tracking)
}

/// Every route `router` serves, as (method, path pattern).
#[cfg(test)]
pub(super) fn routes() -> Vec<(Method, String)> {
    table()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The artifact path from the raw URL. Separators and dots that arrive percent-encoded are
/// refused before decoding, so `%2e%2e%2f` cannot become `../`.
fn key_from_uri(request: &Request) -> Result<ArtifactKey, ApiError> {
    let raw = request.uri().path();
    let encoded = raw
        .strip_prefix(PREFIX)
        .unwrap_or(raw)
        .trim_start_matches('/');
    let lower = encoded.to_ascii_lowercase();
    for sneaky in ["%2f", "%5c", "%2e", "%00"] {
        if lower.contains(sneaky) {
            return Err(ArtifactError::InvalidPath {
                path: encoded.to_owned(),
                reason: format!("percent-encoded {sneaky} is not allowed in artifact paths"),
            }
            .into());
        }
    }
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| ArtifactError::InvalidPath {
            path: encoded.to_owned(),
            reason: "it is not UTF-8".into(),
        })?;
    // Encoded twice, a separator would survive our one decoding and be decoded again by
    // whatever reads the name later.
    let decoded_lower = decoded.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%00"]
        .iter()
        .any(|s| decoded_lower.contains(s))
    {
        return Err(ArtifactError::InvalidPath {
            path: encoded.to_owned(),
            reason: "percent-encoded separators are not allowed, even encoded twice".into(),
        }
        .into());
    }
    Ok(ArtifactKey::parse(&decoded)?)
}

/// 413, naming the limit and the setting that raises it.
fn too_large(key: &ArtifactKey, max: u64) -> Response {
    super::error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RESOURCE_LIMIT_EXCEEDED",
        &format!(
            "artifact {:?} is larger than max_artifact_bytes ({max} bytes); raise that setting \
             to allow it",
            key.path
        ),
    )
}

async fn upload(State(t): State<Tracking>, request: Request) -> ApiResult<Response> {
    let key = key_from_uri(&request)?;
    let max = request
        .extensions()
        .get::<super::ArtifactLimit>()
        .map_or(crate::settings::DEFAULT_MAX_ARTIFACT_BYTES, |l| l.0);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Ok(too_large(&key, max));
    }
    // A chunked body has no length up front: count as it streams, and stop the upload (the
    // store abandons it whole) at the first byte past the limit.
    let over = Arc::new(AtomicBool::new(false));
    let mut total = 0u64;
    let flag = Arc::clone(&over);
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(|e| e.to_string())
        .map(move |chunk| {
            let chunk = chunk?;
            total += chunk.len() as u64;
            if total > max {
                flag.store(true, Ordering::Relaxed);
                return Err(format!("larger than max_artifact_bytes ({max} bytes)"));
            }
            Ok(chunk)
        });
    match t.upload(&key, body).await {
        Ok(_) => Ok(Json(json!({})).into_response()),
        Err(_) if over.load(Ordering::Relaxed) => Ok(too_large(&key, max)),
        Err(e) => Err(e.into()),
    }
}

async fn download(State(t): State<Tracking>, request: Request) -> ApiResult<Response> {
    let key = key_from_uri(&request)?;
    let (size, stream) = t.download(&key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn delete(State(t): State<Tracking>, request: Request) -> ApiResult<Response> {
    let key = key_from_uri(&request)?;
    t.delete(&key).await?;
    Ok(Json(json!({})).into_response())
}

#[derive(Deserialize)]
struct ListRequest {
    #[serde(default)]
    path: Option<String>,
}

async fn list(State(t): State<Tracking>, Params(r): Params<ListRequest>) -> ApiResult<Response> {
    let Some(path) = r.path.filter(|p| !p.is_empty()) else {
        // The root holds experiments, not one run's files: there is nothing to list safely.
        return Ok((StatusCode::OK, Json(json!({}))).into_response());
    };
    let key = ArtifactKey::parse(&path)?;
    let entries = t.list(&key).await?;
    let files: Vec<_> = entries
        .into_iter()
        .map(|e| {
            // MLflow lists base names relative to the directory asked for.
            let name = e.path.rsplit('/').next().unwrap_or(&e.path).to_owned();
            match e.size {
                Some(size) if !e.is_dir => {
                    json!({"path": name, "is_dir": false, "file_size": size})
                }
                _ => json!({"path": name, "is_dir": true}),
            }
        })
        .collect();
    Ok(Json(json!({ "files": files })).into_response())
}
