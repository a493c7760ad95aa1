//! The inference role's HTTP API: readmit's own `/predict` and `/model-info`, MLflow's scoring
//! protocol (`scoring`) and KServe's Open Inference Protocol v2 (`oip`). Handlers read the body
//! within the configured limit, parse it through `inference::input`, and call
//! `Inference::predict`; each protocol renders results and errors in its own shape.

mod oip;
mod record;
mod scoring;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::BytesMut;
use http_body_util::BodyExt as _;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{OpenApi, PartialSchema as _, ToSchema as _};

use crate::inference::input::{self, json_kind};
use crate::inference::{Endpoint, Inference, InferenceError, Place, Prediction, Scored, Served};

/// The inference role's part of `/openapi.json`: every route [`router`] serves.
pub fn api() -> utoipa::openapi::OpenApi {
    let mut api = ReadmitApi::openapi();
    api.merge(scoring::Api::openapi());
    api.merge(oip::Api::openapi());
    api
}

#[derive(OpenApi)]
#[openapi(
    paths(predict, model_info),
    tags((name = "readmit", description = "readmit's own prediction API"))
)]
struct ReadmitApi;

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
async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Bytes, InferenceError> {
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
        drain(body, limit).await;
        return Err(too_large());
    }
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| InferenceError::malformed(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > limit {
                drain(body, limit).await;
                return Err(too_large());
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(read.freeze())
}

/// How long a refused body is read on, at most, before the connection is dropped.
const DRAIN_FOR: Duration = Duration::from_secs(2);

/// Reads and drops up to `limit` more bytes of a refused body (for at most [`DRAIN_FOR`]), so
/// a client still sending it reads the 413 rather than a reset connection; a body larger
/// still is cut off, as nginx's lingering close does.
async fn drain(mut body: Body, limit: usize) {
    let _ = tokio::time::timeout(DRAIN_FOR, async {
        let mut dropped = 0usize;
        while dropped <= limit {
            match body.frame().await {
                Some(Ok(frame)) => dropped += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
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

/// How one raw field moved a record's score.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Contribution)]
struct ContributionJson<'a> {
    field: &'a str,
    /// As sent, `?` when missing.
    value: &'a str,
    /// The typical training value the field was replaced by.
    reference: &'a str,
    /// The record's score minus its score with the field replaced.
    effect: f64,
}

/// One record's prediction.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Prediction)]
struct PredictionJson<'a> {
    /// P(readmitted within 30 days).
    probability: f32,
    /// Whether `probability` is at or above the model's threshold.
    readmitted: bool,
    /// With `?explain=K`: the K fields that moved the score most, largest effect first.
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Vec<ContributionJson<'a>>>,
}

/// The model that made the predictions.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PredictedBy)]
struct ModelJson<'a> {
    model_name: &'a str,
    model_version: i64,
    threshold: f32,
}

/// The reply to one record: its prediction and the model that made it.
#[derive(Serialize, utoipa::ToSchema)]
struct PredictReply<'a> {
    #[serde(flatten)]
    prediction: PredictionJson<'a>,
    #[serde(flatten)]
    model: ModelJson<'a>,
}

/// The reply to a list of records: one prediction per record, in order.
#[derive(Serialize, utoipa::ToSchema)]
struct PredictBatchReply<'a> {
    predictions: Vec<PredictionJson<'a>>,
    #[serde(flatten)]
    model: ModelJson<'a>,
}

/// readmit's error body: the message, its kind, and where the bad value was.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PredictError)]
struct ErrorJson<'a> {
    /// What was wrong; it names the field (and the record's index in a batch).
    error: String,
    /// `not_ready`, `invalid_input`, `malformed`, `empty`, `too_large`, `unknown_model`,
    /// `unsupported`, `reload` or `internal`.
    kind: &'a str,
    /// The bad record's index in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<usize>,
    /// The bad field.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// The body of `POST /predict`: one record, or a list of them.
struct PredictBody;

impl utoipa::PartialSchema for PredictBody {
    fn schema() -> RefOr<Schema> {
        let record = || Ref::from_schema_name(record::RawRecordSchema::name());
        OneOfBuilder::new()
            .item(record())
            .item(ArrayBuilder::new().items(record()).min_items(Some(1)))
            .description(Some("One record, or a non-empty list of them (a batch)."))
            .into()
    }
}

impl utoipa::ToSchema for PredictBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PredictBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        record_schemas(schemas);
    }
}

/// Registers `RawRecord` for the bodies that reference it.
fn record_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((
        record::RawRecordSchema::name().into_owned(),
        record::RawRecordSchema::schema(),
    ));
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
#[utoipa::path(
    post,
    path = "/predict",
    tag = "readmit",
    summary = "Score one encounter or a batch",
    params((
        "explain" = Option<usize>,
        Query,
        description = "Also return the K raw fields that moved each score most (at most 50)",
        maximum = 50
    )),
    request_body(content = PredictBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The prediction for one record, or one per record of a list",
            content((PredictReply = "application/json"), (PredictBatchReply = "application/json"))),
        (status = 400, description = "Malformed JSON, not a record or list, or an empty list",
            body = ErrorJson),
        (status = 413, description = "The body or the batch is over its limit (named)",
            body = ErrorJson),
        (status = 422, description = "A bad field: missing, unknown, wrong type or level",
            body = ErrorJson),
        (status = 503, description = "No model is loaded yet", body = ErrorJson),
    )
)]
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
        let Prediction { served, scored } = inference
            .predict(Endpoint::Predict, records, explain)
            .await?;
        let model = ModelJson {
            model_name: &served.meta.name,
            model_version: served.meta.version,
            threshold: served.threshold(),
        };
        let explained = explain > 0;
        let body = if single {
            serde_json::to_vec(&PredictReply {
                prediction: prediction_json(&scored[0], explained),
                model,
            })
        } else {
            serde_json::to_vec(&PredictBatchReply {
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
    let place = e.place();
    let body = ErrorJson {
        error: e.to_string(),
        kind: e.kind(),
        record: place.and_then(|p| p.record),
        field: place.and_then(|p| p.field.as_deref()),
    };
    (status_of(e), axum::Json(body)).into_response()
}

/// One input field of the model's signature, for building forms.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = InputField)]
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
    /// The typical training value (a level, or a whole number).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = typical_schema)]
    typical: Option<&'a readmit_ml::record::FieldValue>,
}

fn typical_schema() -> Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .build(),
    )
}

/// What serves, and the input signature forms are built from.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ModelInfo)]
struct ModelInfoJson<'a> {
    name: &'a str,
    version: i64,
    /// The stage the version was in when loaded.
    stage: &'a str,
    run_id: &'a str,
    source: &'a str,
    /// RFC 3339, UTC.
    loaded_at: String,
    /// The stage, alias or version the role follows.
    following: &'a str,
    /// Why the last bundle was refused, if one was.
    last_error: &'a str,
    run_name: &'a str,
    /// `logistic_regression`, `random_forest` or `gradient_boosting`.
    family: &'a str,
    /// When the bundle was written, RFC 3339 in UTC.
    created: &'a str,
    threshold: f32,
    /// `split.metric` (e.g. `test.roc_auc`) to its value.
    metrics: BTreeMap<String, f64>,
    /// The hyper-parameters, as logged for the run.
    params: &'a BTreeMap<String, String>,
    inputs: Vec<FieldJson<'a>>,
    /// The largest `explain` accepted.
    explain_max: usize,
    limits: LimitsJson,
}

/// The request limits, each configurable.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Limits)]
struct LimitsJson {
    max_records: usize,
    max_body_bytes: usize,
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
#[utoipa::path(
    get,
    path = "/model-info",
    tag = "readmit",
    summary = "The served model and its input signature",
    responses(
        (status = 200, body = ModelInfoJson),
        (status = 503, description = "No model is loaded yet", body = ErrorJson),
    )
)]
async fn model_info(State(inference): State<Inference>) -> Response {
    let status = inference.status();
    let Some(served) = status.served else {
        return readmit_error(&InferenceError::NotReady {
            following: status.following,
            reason: status.last_error,
        });
    };
    let info = served.bundle.info();
    let body = ModelInfoJson {
        name: &served.meta.name,
        version: served.meta.version,
        stage: &status.stage,
        run_id: &served.meta.run_id,
        source: &served.meta.source,
        loaded_at: crate::format_ms(served.meta.loaded_at_ms),
        following: &status.following,
        last_error: &status.last_error,
        run_name: &info.name,
        family: &info.family,
        created: &info.created,
        threshold: info.threshold,
        metrics: served.metrics(),
        params: &info.params,
        inputs: fields_json(&served),
        explain_max: crate::inference::MAX_EXPLAIN,
        limits: LimitsJson {
            max_records: inference.config().max_records,
            max_body_bytes: inference.config().max_body_bytes,
        },
    };
    axum::Json(body).into_response()
}
