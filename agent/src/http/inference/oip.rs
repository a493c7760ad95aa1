//! KServe's Open Inference Protocol v2 over REST, as `tritonclient.http` speaks it: health,
//! server and model metadata, and `infer` with one tensor per raw field, in JSON or with the
//! binary tensor extension (`Inference-Header-Content-Length`). Errors are `{"error": ...}`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::OpenApi;
use utoipa::openapi::schema::Schema;

use super::{observed, read_body, status_of};
use crate::inference::input::{self, Column, Sent, json_kind};
use crate::inference::tensors::{self, OUTPUTS, PROBABILITY, READMITTED, input_tensors};
use crate::inference::{Endpoint, Inference, InferenceError, Place, Prediction, Served};

/// The binary tensor extension's header: the length of the JSON part of the body.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// This module's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(
        server_metadata,
        live,
        ready,
        metadata,
        metadata_version,
        model_ready,
        model_ready_version,
        infer,
        infer_version
    ),
    tags((name = "oip", description = "KServe's Open Inference Protocol v2 over REST"))
)]
pub(super) struct Api;

pub(super) fn router() -> Router<Inference> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(metadata_version),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_version),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
}

/// The protocol's error body.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipError)]
struct ErrorJson {
    error: String,
}

fn oip_error(e: &InferenceError) -> Response {
    (
        status_of(e),
        axum::Json(ErrorJson {
            error: e.to_string(),
        }),
    )
        .into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipServerMetadata)]
struct ServerMetadataJson {
    name: &'static str,
    version: &'static str,
    extensions: Vec<&'static str>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipLive)]
struct LiveJson {
    live: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipReady)]
struct ReadyJson {
    ready: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipModelReady)]
struct ModelReadyJson<'a> {
    name: &'a str,
    ready: bool,
}

/// A tensor's name, datatype and shape (`-1`: one element per record).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipTensorMetadata)]
struct TensorMetadataJson<'a> {
    name: &'a str,
    /// `BYTES` for categorical fields, `INT64` or `FP64` for numbers; `FP32` and `BOOL` out.
    datatype: &'a str,
    shape: Vec<i64>,
}

/// A model's metadata: one input tensor per raw field it reads or requires.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipModelMetadata)]
struct ModelMetadataJson<'a> {
    name: &'a str,
    versions: Vec<String>,
    platform: &'a str,
    inputs: Vec<TensorMetadataJson<'a>>,
    outputs: Vec<TensorMetadataJson<'a>>,
}

/// `name` and `version` of the model routes; the name is the served registered model's.
const NAME: &str = "The registered model's name, e.g. best_diabetes_readmission_model";
const VERSION: &str = "The registered model version; only the served one answers";

#[utoipa::path(
    get,
    path = "/v2",
    tag = "oip",
    summary = "Server metadata",
    responses((status = 200, body = ServerMetadataJson))
)]
async fn server_metadata() -> Response {
    axum::Json(ServerMetadataJson {
        name: "readmit",
        version: crate::VERSION,
        extensions: vec!["binary_tensor_data"],
    })
    .into_response()
}

#[utoipa::path(
    get,
    path = "/v2/health/live",
    tag = "oip",
    responses((status = 200, body = LiveJson))
)]
async fn live() -> Response {
    axum::Json(LiveJson { live: true }).into_response()
}

#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "oip",
    responses(
        (status = 200, description = "A model serves", body = ReadyJson),
        (status = 503, description = "No model is loaded yet", body = ReadyJson),
    )
)]
async fn ready(State(inference): State<Inference>) -> Response {
    let ready = inference.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(ReadyJson { ready })).into_response()
}

fn metadata_json(served: &Served) -> ModelMetadataJson<'_> {
    fn tensors<'a>(
        metas: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<TensorMetadataJson<'a>> {
        metas
            .into_iter()
            .map(|(name, datatype)| TensorMetadataJson {
                name,
                datatype,
                shape: vec![-1],
            })
            .collect()
    }
    ModelMetadataJson {
        name: &served.meta.name,
        versions: vec![served.meta.version.to_string()],
        platform: "readmit_onnx_tract",
        inputs: tensors(input_tensors(served)),
        outputs: tensors(OUTPUTS),
    }
}

#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    tag = "oip",
    summary = "Model metadata",
    params(("name" = String, Path, description = NAME)),
    responses(
        (status = 200, body = ModelMetadataJson),
        (status = 404, description = "Not the served model", body = ErrorJson),
        (status = 503, description = "No model is loaded yet", body = ErrorJson),
    )
)]
async fn metadata(State(inference): State<Inference>, Path(name): Path<String>) -> Response {
    match inference.served_as(&name, None) {
        Ok(served) => axum::Json(metadata_json(&served)).into_response(),
        Err(e) => oip_error(&e),
    }
}

#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}",
    tag = "oip",
    summary = "Model version metadata",
    params(
        ("name" = String, Path, description = NAME),
        ("version" = String, Path, description = VERSION),
    ),
    responses(
        (status = 200, body = ModelMetadataJson),
        (status = 404, description = "Not the served model or version", body = ErrorJson),
        (status = 503, description = "No model is loaded yet", body = ErrorJson),
    )
)]
async fn metadata_version(
    State(inference): State<Inference>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match inference.served_as(&name, Some(&version)) {
        Ok(served) => axum::Json(metadata_json(&served)).into_response(),
        Err(e) => oip_error(&e),
    }
}

fn ready_reply(inference: &Inference, name: &str, version: Option<&str>) -> Response {
    match inference.served_as(name, version) {
        Ok(_) => axum::Json(ModelReadyJson { name, ready: true }).into_response(),
        Err(e @ InferenceError::NotReady { .. }) => (
            status_of(&e),
            axum::Json(ModelReadyJson { name, ready: false }),
        )
            .into_response(),
        Err(e) => oip_error(&e),
    }
}

#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    tag = "oip",
    params(("name" = String, Path, description = NAME)),
    responses(
        (status = 200, description = "The model serves", body = ModelReadyJson),
        (status = 404, description = "Not the served model", body = ErrorJson),
        (status = 503, description = "No model is loaded yet", body = ModelReadyJson),
    )
)]
async fn model_ready(State(inference): State<Inference>, Path(name): Path<String>) -> Response {
    ready_reply(&inference, &name, None)
}

#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/ready",
    tag = "oip",
    params(
        ("name" = String, Path, description = NAME),
        ("version" = String, Path, description = VERSION),
    ),
    responses(
        (status = 200, description = "The model version serves", body = ModelReadyJson),
        (status = 404, description = "Not the served model or version", body = ErrorJson),
        (status = 503, description = "No model is loaded yet", body = ModelReadyJson),
    )
)]
async fn model_ready_version(
    State(inference): State<Inference>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    ready_reply(&inference, &name, Some(&version))
}

#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    tag = "oip",
    summary = "Score records given as one tensor per raw field",
    params(("name" = String, Path, description = NAME), InferHeader),
    request_body(
        description = "JSON, or with the binary tensor extension the JSON part followed by the \
                       tensors' raw bytes",
        content((InferRequest = "application/json"), (InferRequest = "application/octet-stream"))
    ),
    responses(
        (status = 200, description = "The outputs, in JSON or (binary_data) followed by raw bytes",
            content((InferResponse = "application/json"),
                    (InferResponse = "application/octet-stream"))),
        (status = 400, description = "A malformed request", body = ErrorJson),
        (status = 404, description = "Not the served model", body = ErrorJson),
        (status = 413, description = "The body or the batch is over its limit", body = ErrorJson),
        (status = 422, description = "A bad tensor or field", body = ErrorJson),
        (status = 503, description = "No model is loaded yet", body = ErrorJson),
    )
)]
async fn infer(
    State(inference): State<Inference>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_common(inference, name, None, headers, body).await
}

#[utoipa::path(
    post,
    path = "/v2/models/{name}/versions/{version}/infer",
    tag = "oip",
    summary = "Score records with a given model version",
    params(
        ("name" = String, Path, description = NAME),
        ("version" = String, Path, description = VERSION),
        InferHeader,
    ),
    request_body(
        description = "As for /v2/models/{name}/infer",
        content((InferRequest = "application/json"), (InferRequest = "application/octet-stream"))
    ),
    responses(
        (status = 200, description = "The outputs, in JSON or (binary_data) followed by raw bytes",
            content((InferResponse = "application/json"),
                    (InferResponse = "application/octet-stream"))),
        (status = 400, description = "A malformed request", body = ErrorJson),
        (status = 404, description = "Not the served model or version", body = ErrorJson),
        (status = 413, description = "The body or the batch is over its limit", body = ErrorJson),
        (status = 422, description = "A bad tensor or field", body = ErrorJson),
        (status = 503, description = "No model is loaded yet", body = ErrorJson),
    )
)]
async fn infer_version(
    State(inference): State<Inference>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_common(inference, name, Some(version), headers, body).await
}

fn param_true(parameters: Option<&Value>, key: &str) -> bool {
    parameters
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

async fn infer_common(
    inference: Inference,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work = async {
        let served = inference.served_as(&name, version.as_deref())?;
        let bytes = read_body(&headers, body, inference.config().max_body_bytes).await?;
        let json_length = match headers.get(HEADER_LENGTH) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|n| *n <= bytes.len())
                    .ok_or_else(|| {
                        InferenceError::malformed(format!(
                            "{HEADER_LENGTH} must be the length of the JSON part of the body \
                             (at most {} bytes)",
                            bytes.len()
                        ))
                    })?,
            ),
            None => None,
        };
        let (head, mut binary) = bytes.split_at(json_length.unwrap_or(bytes.len()));
        let request: Value = serde_json::from_slice(head).map_err(|e| {
            InferenceError::malformed(format!("the inference request is not valid JSON: {e}"))
        })?;
        let Value::Object(request) = request else {
            return Err(InferenceError::malformed(
                "the inference request must be a JSON object with `inputs`",
            ));
        };
        let Some(Value::Array(inputs)) = request.get("inputs") else {
            return Err(InferenceError::malformed(
                "the inference request needs `inputs`, a list of tensors",
            ));
        };
        let mut columns = Vec::with_capacity(inputs.len());
        for tensor in inputs {
            columns.push(column(tensor, &mut binary)?);
        }
        if !binary.is_empty() {
            return Err(InferenceError::malformed(format!(
                "{} bytes of binary data follow the tensors' declared sizes",
                binary.len()
            )));
        }
        let outputs = requested_outputs(&request)?;
        let records = input::records_from_columns(&columns, inference.config().max_records)?;
        let Prediction {
            served: used,
            scored,
        } = inference.predict(Endpoint::OipRest, records, 0).await?;
        drop(served);
        Ok(infer_reply(&request, &used, &scored, &outputs))
    };
    observed(&inference, Endpoint::OipRest, work)
        .await
        .unwrap_or_else(|e| oip_error(&e))
}

/// One input tensor as a column; binary data is taken from the front of `binary`.
fn column<'a>(tensor: &'a Value, binary: &mut &'a [u8]) -> Result<Column<'a>, InferenceError> {
    let field = |key: &str| tensor.get(key);
    let name = field("name")
        .and_then(Value::as_str)
        .ok_or_else(|| InferenceError::malformed("every input tensor needs a `name`"))?;
    let datatype = field("datatype").and_then(Value::as_str).ok_or_else(|| {
        InferenceError::invalid(Place::field(name), "the tensor needs a `datatype`")
    })?;
    let shape: Vec<i64> = match field("shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_i64())
            .collect::<Option<_>>()
            .ok_or_else(|| {
                InferenceError::invalid(Place::field(name), "shape must be whole numbers")
            })?,
        _ => {
            return Err(InferenceError::invalid(
                Place::field(name),
                "the tensor needs a `shape`",
            ));
        }
    };
    tensors::element_size(name, datatype)?;
    let binary_size = field("parameters")
        .and_then(|p| p.get("binary_data_size"))
        .map(|v| {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    InferenceError::invalid(
                        Place::field(name),
                        "binary_data_size must be a byte count",
                    )
                })
        })
        .transpose()?;
    let values = match (binary_size, field("data")) {
        (Some(size), None) => {
            if size > binary.len() {
                return Err(InferenceError::invalid(
                    Place::field(name),
                    format!(
                        "binary_data_size {size} is more than the {} bytes left",
                        binary.len()
                    ),
                ));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            tensors::decode_raw(name, datatype, mine)?
        }
        (None, Some(data)) => {
            let mut flat = Vec::new();
            flatten(data, &mut flat);
            flat.into_iter()
                .enumerate()
                .map(|(i, v)| typed(name, datatype, i, v))
                .collect::<Result<_, _>>()?
        }
        (Some(_), Some(_)) => {
            return Err(InferenceError::invalid(
                Place::field(name),
                "give either data or binary_data_size, not both",
            ));
        }
        (None, None) => {
            return Err(InferenceError::invalid(
                Place::field(name),
                "the tensor has no data",
            ));
        }
    };
    tensors::check_shape(name, &shape, values.len())?;
    Ok(Column { name, values })
}

/// Row-major data may be nested as the shape is; it is read flat.
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

/// One JSON element, checked against its tensor's datatype.
fn typed<'a>(
    name: &str,
    datatype: &str,
    i: usize,
    v: &'a Value,
) -> Result<Sent<'a>, InferenceError> {
    let ok = match datatype {
        "BYTES" => v.is_string(),
        "BOOL" => v.is_boolean(),
        d if d.starts_with("INT") || d.starts_with("UINT") => v.is_i64() || v.is_u64(),
        _ => v.is_number(),
    };
    if ok {
        Ok(Sent::from_json(v))
    } else {
        Err(InferenceError::invalid(
            Place::field(name),
            format!(
                "element {i} is {} but the tensor's datatype is {datatype}",
                json_kind(v)
            ),
        ))
    }
}

/// The outputs asked for (all when none are named), and whether each wants binary data.
fn requested_outputs(
    request: &Map<String, Value>,
) -> Result<Vec<(&'static str, bool)>, InferenceError> {
    let all_binary = param_true(request.get("parameters"), "binary_data_output");
    let Some(outputs) = request.get("outputs") else {
        return Ok(vec![(PROBABILITY, all_binary), (READMITTED, all_binary)]);
    };
    let Value::Array(outputs) = outputs else {
        return Err(InferenceError::malformed("`outputs` must be a list"));
    };
    outputs
        .iter()
        .map(|o| {
            let name = o.get("name").and_then(Value::as_str).unwrap_or("");
            let known = [PROBABILITY, READMITTED]
                .into_iter()
                .find(|n| *n == name)
                .ok_or_else(|| {
                    InferenceError::invalid(
                        Place::field(name),
                        format!("unknown output; the outputs are {PROBABILITY} and {READMITTED}"),
                    )
                })?;
            Ok((
                known,
                all_binary || param_true(o.get("parameters"), "binary_data"),
            ))
        })
        .collect()
}

fn infer_reply(
    request: &Map<String, Value>,
    served: &Served,
    scored: &[crate::inference::Scored],
    outputs: &[(&'static str, bool)],
) -> Response {
    let n = scored.len();
    let probabilities: Vec<f32> = scored.iter().map(|s| s.probability).collect();
    let decisions: Vec<bool> = scored.iter().map(|s| s.readmitted).collect();
    let mut binary = Vec::new();
    let tensors: Vec<ResponseOutput> = outputs
        .iter()
        .map(|&(name, as_binary)| {
            let (datatype, data, raw) = if name == PROBABILITY {
                (
                    "FP32",
                    Value::from(probabilities.clone()),
                    tensors::encode_f32(&probabilities),
                )
            } else {
                (
                    "BOOL",
                    Value::from(decisions.clone()),
                    tensors::encode_bool(&decisions),
                )
            };
            let mut tensor = ResponseOutput {
                name,
                datatype,
                shape: [n],
                data: None,
                parameters: None,
            };
            if as_binary {
                tensor.parameters = Some(BinaryDataSize {
                    binary_data_size: raw.len(),
                });
                binary.extend(raw);
            } else {
                tensor.data = Some(data);
            }
            tensor
        })
        .collect();
    let reply = InferResponse {
        model_name: &served.meta.name,
        model_version: served.meta.version.to_string(),
        id: request.get("id"),
        outputs: tensors,
    };
    let Ok(mut head) = serde_json::to_vec(&reply) else {
        return oip_error(&InferenceError::Internal {
            reason: "cannot render the inference reply".to_owned(),
        });
    };
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let length = HeaderValue::from(head.len());
    head.extend(binary);
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], head).into_response();
    response.headers_mut().insert(HEADER_LENGTH, length);
    response
}

/// The binary tensor extension's header, on requests that use it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(
    dead_code,
    reason = "describes the header for the document; the handler reads it raw"
)]
struct InferHeader {
    /// The length of the JSON part of an `application/octet-stream` body; the tensors' raw
    /// bytes follow it.
    #[param(rename = "Inference-Header-Content-Length")]
    length: Option<usize>,
}

/// An inference request: one tensor per raw field, each with one element per record.
#[derive(utoipa::ToSchema)]
#[schema(as = OipInferRequest)]
#[allow(
    dead_code,
    reason = "the request's shape for the document; the handler parses it by \
    hand to name the bad tensor and element"
)]
struct InferRequest {
    /// Echoed in the response.
    id: Option<String>,
    parameters: Option<InferParameters>,
    inputs: Vec<RequestInput>,
    /// The outputs wanted; both when absent.
    outputs: Option<Vec<RequestOutput>>,
}

#[derive(utoipa::ToSchema)]
#[schema(as = OipInferParameters)]
#[allow(dead_code, reason = "part of InferRequest's shape")]
struct InferParameters {
    /// Every output as raw bytes after the JSON part.
    binary_data_output: Option<bool>,
}

/// One raw field as a tensor.
#[derive(utoipa::ToSchema)]
#[schema(as = OipRequestInput)]
#[allow(dead_code, reason = "part of InferRequest's shape")]
struct RequestInput {
    /// The field's name, as in `RawRecord`.
    name: String,
    /// `BYTES` for categorical fields, `INT64` or `FP64` for numbers.
    datatype: String,
    /// Its element count must be the number of records.
    shape: Vec<i64>,
    /// The elements, row-major (nesting as the shape is accepted); `null` is missing.
    #[schema(schema_with = elements)]
    data: Option<Vec<Value>>,
    parameters: Option<BinaryDataSize>,
}

/// One output wanted.
#[derive(utoipa::ToSchema)]
#[schema(as = OipRequestOutput)]
#[allow(dead_code, reason = "part of InferRequest's shape")]
struct RequestOutput {
    /// `probability` or `readmitted`.
    name: String,
    parameters: Option<OutputParameters>,
}

#[derive(utoipa::ToSchema)]
#[schema(as = OipOutputParameters)]
#[allow(dead_code, reason = "part of InferRequest's shape")]
struct OutputParameters {
    /// This output as raw bytes after the JSON part.
    binary_data: Option<bool>,
}

/// Where a tensor's data is raw bytes after the JSON part: how many are its.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipBinaryDataSize)]
struct BinaryDataSize {
    binary_data_size: usize,
}

/// The reply to `infer`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipInferResponse)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    /// The request's `id`, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    id: Option<&'a Value>,
    outputs: Vec<ResponseOutput>,
}

/// One output: `probability` (FP32) or `readmitted` (BOOL), one element per record.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OipResponseOutput)]
struct ResponseOutput {
    name: &'static str,
    datatype: &'static str,
    #[schema(value_type = Vec<usize>)]
    shape: [usize; 1],
    /// The elements, unless sent as binary data.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = elements)]
    data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryDataSize>,
}

/// A tensor's JSON elements: strings, numbers or booleans (or `null` for missing).
fn elements() -> Schema {
    // Imported here: in the module's scope they would make the derives' paths "unnecessary".
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let scalar = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Null));
    Schema::Array(ArrayBuilder::new().items(scalar).build())
}
