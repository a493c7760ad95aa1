//! The one mapping from tracking errors to HTTP answers in MLflow's shape, shared by the
//! MLflow REST API and the artifact API.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::tracking::TrackingError;
use crate::tracking::artifacts::ArtifactError;

/// A tracking error as MLflow reports it.
pub struct ApiError(TrackingError);

impl<E: Into<TrackingError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            TrackingError::NotFound { .. } => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            TrackingError::AlreadyExists { .. } => {
                (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS")
            }
            TrackingError::Invalid { .. } | TrackingError::InvalidState(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
            }
            TrackingError::Artifact(e) => match e {
                ArtifactError::InvalidPath { .. } | ArtifactError::Upload { .. } => {
                    (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
                }
                ArtifactError::NotFound { .. } => {
                    (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")
                }
                ArtifactError::Config { .. }
                | ArtifactError::Store(_)
                | ArtifactError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
            },
            TrackingError::Db(_) | TrackingError::Store(_) | TrackingError::Setup(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "tracking request failed");
        }
        super::error_response(status, code, &self.0.to_string())
    }
}

pub type ApiResult<T = Json<Value>> = Result<T, ApiError>;
