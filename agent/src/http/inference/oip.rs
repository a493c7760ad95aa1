//! KServe's Open Inference Protocol v2 over REST, as `tritonclient.http` speaks it: health,
//! server and model metadata, and `infer` with one tensor per raw field, in JSON or with the
//! binary tensor extension (`Inference-Header-Content-Length`). Errors are `{"error": ...}`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::{observed, read_body, status_of};
use crate::inference::input::{self, Column, Sent, json_kind};
use crate::inference::tensors::{self, OUTPUTS, PROBABILITY, READMITTED, input_tensors};
use crate::inference::{Endpoint, Inference, InferenceError, Place, Prediction, Served};

/// The binary tensor extension's header: the length of the JSON part of the body.
const HEADER_LENGTH: &str = "inference-header-content-length";

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

fn oip_error(e: &InferenceError) -> Response {
    (status_of(e), axum::Json(json!({"error": e.to_string()}))).into_response()
}

async fn server_metadata() -> Response {
    axum::Json(
        json!({"name": "readmit", "version": crate::VERSION, "extensions": ["binary_tensor_data"]}),
    )
    .into_response()
}

async fn live() -> Response {
    axum::Json(json!({"live": true})).into_response()
}

async fn ready(State(inference): State<Inference>) -> Response {
    let ready = inference.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({"ready": ready}))).into_response()
}

fn metadata_json(served: &Served) -> Value {
    let (inputs, outputs) = (input_tensors(served), OUTPUTS);
    let tensor =
        |(name, datatype): (&str, &str)| json!({"name": name, "datatype": datatype, "shape": [-1]});
    json!({
        "name": served.meta.name,
        "versions": [served.meta.version.to_string()],
        "platform": "readmit_onnx_tract",
        "inputs": inputs.into_iter().map(tensor).collect::<Vec<_>>(),
        "outputs": outputs.into_iter().map(tensor).collect::<Vec<_>>(),
    })
}

async fn metadata(State(inference): State<Inference>, Path(name): Path<String>) -> Response {
    match inference.served_as(&name, None) {
        Ok(served) => axum::Json(metadata_json(&served)).into_response(),
        Err(e) => oip_error(&e),
    }
}

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
        Ok(_) => axum::Json(json!({"name": name, "ready": true})).into_response(),
        Err(e @ InferenceError::NotReady { .. }) => (
            status_of(&e),
            axum::Json(json!({"name": name, "ready": false})),
        )
            .into_response(),
        Err(e) => oip_error(&e),
    }
}

async fn model_ready(State(inference): State<Inference>, Path(name): Path<String>) -> Response {
    ready_reply(&inference, &name, None)
}

async fn model_ready_version(
    State(inference): State<Inference>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    ready_reply(&inference, &name, Some(&version))
}

async fn infer(
    State(inference): State<Inference>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_common(inference, name, None, headers, body).await
}

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
        } = inference.predict(records, 0).await?;
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
    let tensors: Vec<Value> = outputs
        .iter()
        .map(|&(name, as_binary)| {
            let (datatype, data, raw) = if name == PROBABILITY {
                (
                    "FP32",
                    json!(probabilities),
                    tensors::encode_f32(&probabilities),
                )
            } else {
                ("BOOL", json!(decisions), tensors::encode_bool(&decisions))
            };
            let mut tensor = json!({"name": name, "datatype": datatype, "shape": [n]});
            if as_binary {
                tensor["parameters"] = json!({"binary_data_size": raw.len()});
                binary.extend(raw);
            } else {
                tensor["data"] = data;
            }
            tensor
        })
        .collect();
    let mut reply = json!({
        "model_name": served.meta.name,
        "model_version": served.meta.version.to_string(),
        "outputs": tensors,
    });
    if let Some(id) = request.get("id") {
        reply["id"] = id.clone();
    }
    let mut head = reply.to_string().into_bytes();
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let length = HeaderValue::from(head.len());
    head.extend(binary);
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], head).into_response();
    response.headers_mut().insert(HEADER_LENGTH, length);
    response
}
