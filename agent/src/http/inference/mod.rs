//! The inference role's HTTP API: readmit's own `/predict` and `/model-info`, MLflow's scoring
//! protocol (`scoring`) and KServe's Open Inference Protocol v2 (`oip`). Handlers read the body
//! within the configured limit, parse it through `inference::input`, and call
//! `Inference::predict`; each protocol renders results and errors in its own shape.

mod oip;
mod scoring;

use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;

use crate::inference::input::{self, json_kind};
use crate::inference::{Endpoint, Inference, InferenceError, Place, Prediction, Scored, Served};

pub fn router<S: Clone + Send + Sync + 'static>(inference: Inference) -> Router<S> {
    Router::new()
        .route("/predict", post(predict))
        .route("/model-info", get(model_info))
        .merge(scoring::router())
        .merge(oip::router())
        .with_state(inference)
}

/// The status each kind of error answers with, for every inference protocol.
fn status_of(e: &InferenceError) -> StatusCode {
    match e {
        InferenceError::NotReady { .. } | InferenceError::Reload { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        InferenceError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        InferenceError::Malformed { .. } | InferenceError::Empty => StatusCode::BAD_REQUEST,
        InferenceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        InferenceError::UnknownModel { .. } => StatusCode::NOT_FOUND,
        InferenceError::Unsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        InferenceError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body, refused past `limit` bytes without reading further.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, InferenceError> {
    let too_large = || InferenceError::TooLarge {
        what: "request body",
        limit: limit as u64,
        unit: "bytes",
        setting: "inference_max_body_bytes",
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` fails on the limit or on a broken connection; tell them apart.
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            InferenceError::malformed(format!("cannot read the request body: {e}"))
        }
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value, InferenceError> {
    serde_json::from_slice(bytes)
        .map_err(|e| InferenceError::malformed(format!("the body is not valid JSON: {e}")))
}

/// Runs a handler's work and counts it under `endpoint`, whatever the outcome.
async fn observed<F>(
    inference: &Inference,
    endpoint: Endpoint,
    work: F,
) -> Result<Response, InferenceError>
where
    F: Future<Output = Result<Response, InferenceError>>,
{
    let started = Instant::now();
    let result = work.await;
    inference.observe(
        endpoint,
        result.as_ref().err(),
        started.elapsed().as_secs_f64(),
    );
    result
}

#[derive(Serialize)]
struct ContributionJson<'a> {
    field: &'a str,
    value: &'a str,
    reference: &'a str,
    effect: f64,
}

#[derive(Serialize)]
struct PredictionJson<'a> {
    probability: f32,
    readmitted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Vec<ContributionJson<'a>>>,
}

#[derive(Serialize)]
struct ModelJson<'a> {
    model_name: &'a str,
    model_version: i64,
    threshold: f32,
}

fn prediction_json(s: &Scored, explained: bool) -> PredictionJson<'_> {
    PredictionJson {
        probability: s.probability,
        readmitted: s.readmitted,
        explanation: explained.then(|| {
            s.contributions
                .iter()
                .map(|c| ContributionJson {
                    field: c.field,
                    value: &c.value,
                    reference: &c.reference,
                    effect: c.effect,
                })
                .collect()
        }),
    }
}

/// `explain=K` from the query string; nothing else is accepted there.
fn explain_of(query: Option<&str>) -> Result<usize, InferenceError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| InferenceError::malformed(format!("the query string: {e}")))?;
    let mut explain = 0;
    for (key, value) in pairs {
        if key != "explain" {
            return Err(InferenceError::invalid(
                Place::field(key),
                "unknown query parameter; the only one is explain=K",
            ));
        }
        explain = value.trim().parse().map_err(|_| {
            InferenceError::invalid(
                Place::field("explain"),
                format!("{value:?} is not a whole number of fields"),
            )
        })?;
    }
    Ok(explain)
}

/// `POST /predict`: one record (a JSON object of raw fields) or a list of them.
async fn predict(
    State(inference): State<Inference>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work = async {
        let explain = explain_of(query.as_deref())?;
        let bytes = read_body(&headers, body, inference.config().max_body_bytes).await?;
        let value = parse_json(&bytes)?;
        let (records, single) = match &value {
            Value::Array(items) => (
                input::records_from_json(items, inference.config().max_records)?,
                false,
            ),
            Value::Object(_) => (vec![input::record_from_json(None, &value)?], true),
            other => {
                return Err(InferenceError::malformed(format!(
                    "the body must be a JSON object (one record) or an array of them, not {}",
                    json_kind(other)
                )));
            }
        };
        let Prediction { served, scored } = inference.predict(records, explain).await?;
        let model = ModelJson {
            model_name: &served.meta.name,
            model_version: served.meta.version,
            threshold: served.threshold(),
        };
        let explained = explain > 0;
        let body = if single {
            #[derive(Serialize)]
            struct One<'a> {
                #[serde(flatten)]
                prediction: PredictionJson<'a>,
                #[serde(flatten)]
                model: ModelJson<'a>,
            }
            serde_json::to_vec(&One {
                prediction: prediction_json(&scored[0], explained),
                model,
            })
        } else {
            #[derive(Serialize)]
            struct Many<'a> {
                predictions: Vec<PredictionJson<'a>>,
                #[serde(flatten)]
                model: ModelJson<'a>,
            }
            serde_json::to_vec(&Many {
                predictions: scored
                    .iter()
                    .map(|s| prediction_json(s, explained))
                    .collect(),
                model,
            })
        };
        Ok(json_bytes(body))
    };
    observed(&inference, Endpoint::Predict, work)
        .await
        .unwrap_or_else(|e| readmit_error(&e))
}

fn json_bytes(body: Result<Vec<u8>, serde_json::Error>) -> Response {
    match body {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => readmit_error(&InferenceError::Internal {
            reason: format!("cannot render the reply: {e}"),
        }),
    }
}

/// readmit's own error body: the message, its kind, and where the bad value was.
fn readmit_error(e: &InferenceError) -> Response {
    let mut body = serde_json::json!({"error": e.to_string(), "kind": e.kind()});
    if let Some(place) = e.place() {
        if let Some(record) = place.record {
            body["record"] = record.into();
        }
        if let Some(field) = &place.field {
            body["field"] = field.clone().into();
        }
    }
    (status_of(e), axum::Json(body)).into_response()
}

#[derive(Serialize)]
struct FieldJson<'a> {
    name: &'a str,
    /// `categorical`, `integer` or `icd9`.
    #[serde(rename = "type")]
    kind: &'a str,
    required: bool,
    /// Whether the model reads the field; others are accepted and change nothing.
    used: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<i64>,
    /// Every level accepted; with `open`, other levels are accepted too.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    allowed_values: &'a [String],
    open: bool,
    /// Levels frequent enough in training to have their own feature.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    training_levels: &'a [String],
    missing_allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    typical: Option<&'a readmit_ml::record::FieldValue>,
}

fn fields_json(served: &Served) -> Vec<FieldJson<'_>> {
    let reference = served.bundle.reference();
    served
        .bundle
        .input_signature()
        .columns
        .iter()
        .map(|c| FieldJson {
            name: &c.spec.name,
            kind: &c.spec.kind,
            required: input::is_required(c),
            used: c.used,
            min: c.spec.min,
            max: c.spec.max,
            allowed_values: &c.spec.levels,
            open: c.spec.open,
            training_levels: &c.training_levels,
            missing_allowed: c.spec.missing_allowed,
            typical: reference
                .field(&c.spec.name)
                .and_then(|f| f.typical.as_ref()),
        })
        .collect()
}

/// `GET /model-info`: what serves, and the input signature forms are built from.
async fn model_info(State(inference): State<Inference>) -> Response {
    let status = inference.status();
    let Some(served) = status.served else {
        return readmit_error(&InferenceError::NotReady {
            following: status.following,
            reason: status.last_error,
        });
    };
    let info = served.bundle.info();
    let body = serde_json::json!({
        "name": served.meta.name,
        "version": served.meta.version,
        "stage": served.meta.stage,
        "run_id": served.meta.run_id,
        "source": served.meta.source,
        "loaded_at": crate::format_ms(served.meta.loaded_at_ms),
        "following": status.following,
        "last_error": status.last_error,
        "run_name": info.name,
        "family": info.family,
        "created": info.created,
        "threshold": info.threshold,
        "metrics": served.metrics(),
        "params": info.params,
        "inputs": fields_json(&served),
        "explain_max": crate::inference::MAX_EXPLAIN,
        "limits": {
            "max_records": inference.config().max_records,
            "max_body_bytes": inference.config().max_body_bytes,
        },
    });
    axum::Json(body).into_response()
}
