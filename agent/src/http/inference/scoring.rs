//! MLflow's scoring protocol, as `mlflow models serve` speaks it: `POST /invocations` with
//! JSON (`dataframe_split`, `dataframe_records`, `instances` or `inputs`) or CSV, answered
//! `{"predictions": [...]}` (one probability per record), errors as MLflow's
//! `{"error_code", "message"}`; `GET /ping`, `/health` and `/version`.

use std::borrow::Cow;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use readmit_ml::record::RawRecord;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{OpenApi, ToSchema as _};

use super::record::RawRecordSchema;
use super::{json_bytes, observed, parse_json, read_body, record_schemas, status_of};
use crate::http::MlflowError;
use crate::inference::input::{self, Column, Sent, json_kind};
use crate::inference::{Endpoint, Inference, InferenceError, Prediction};

const FORMATS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// This module's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(invocations, ping, health, version),
    tags((name = "mlflow-scoring", description = "MLflow's scoring protocol, as `mlflow models serve` speaks it"))
)]
pub(super) struct Api;

pub(super) fn router() -> Router<Inference> {
    Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(health))
        .route("/version", get(version))
}

/// 200 once a model serves, as MLflow's server answers once its model is loaded.
#[utoipa::path(
    get,
    path = "/ping",
    tag = "mlflow-scoring",
    responses(
        (status = 200, description = "A model serves", body = String, content_type = "text/plain"),
        (status = 503, description = "No model loaded yet", body = String, content_type = "text/plain"),
    )
)]
async fn ping(State(inference): State<Inference>) -> Response {
    if inference.is_ready() {
        (StatusCode::OK, "\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no model loaded yet\n").into_response()
    }
}

/// The same as `/ping`, as MLflow's server answers both.
#[utoipa::path(
    get,
    path = "/health",
    tag = "mlflow-scoring",
    responses(
        (status = 200, description = "A model serves", body = String, content_type = "text/plain"),
        (status = 503, description = "No model loaded yet", body = String, content_type = "text/plain"),
    )
)]
async fn health(state: State<Inference>) -> Response {
    ping(state).await
}

/// The MLflow version the bundles are written for.
#[utoipa::path(
    get,
    path = "/version",
    tag = "mlflow-scoring",
    responses((status = 200, body = String, content_type = "text/plain"))
)]
async fn version() -> Response {
    (StatusCode::OK, readmit_ml::bundle::MLFLOW_VERSION).into_response()
}

fn required_format(received: &str) -> InferenceError {
    InferenceError::malformed(format!(
        "The input must be a JSON dictionary with exactly one of the input fields {{'{}'}}. \
         {received}",
        FORMATS.join("', '")
    ))
}

/// One probability of readmission within 30 days per record, in order.
#[derive(Serialize, utoipa::ToSchema)]
struct InvocationsReply {
    predictions: Vec<f32>,
}

/// The JSON body of `POST /invocations`: exactly one of MLflow's four input fields.
struct InvocationsBody;

impl utoipa::PartialSchema for InvocationsBody {
    fn schema() -> RefOr<Schema> {
        let record = || Ref::from_schema_name(RawRecordSchema::name());
        let any = || ObjectBuilder::new().schema_type(SchemaType::AnyValue);
        let records = || ArrayBuilder::new().items(record()).min_items(Some(1));
        let columns = || {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("Field name to one value per record (columnar)."))
                .additional_properties(Some(ArrayBuilder::new().items(any())))
        };
        let split = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("pandas' split orient; `index` is ignored."))
            .property(
                "columns",
                ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
            )
            .property(
                "data",
                ArrayBuilder::new().items(ArrayBuilder::new().items(any())),
            )
            .property("index", ArrayBuilder::new().items(any()))
            .required("columns")
            .required("data")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let form = |name: &str, schema: RefOr<Schema>| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(name, schema)
                .required(name)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let records_or_columns =
            || -> RefOr<Schema> { OneOfBuilder::new().item(records()).item(columns()).into() };
        OneOfBuilder::new()
            .item(form("dataframe_split", split.into()))
            .item(form("dataframe_records", records().into()))
            .item(form("instances", records_or_columns()))
            .item(form("inputs", records_or_columns()))
            .description(Some(format!(
                "Exactly one of {{{}}}; the records are `RawRecord`s.",
                FORMATS.join(", ")
            )))
            .into()
    }
}

impl utoipa::ToSchema for InvocationsBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("InvocationsBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        record_schemas(schemas);
    }
}

/// MLflow's scoring protocol: records in JSON or CSV, one probability each.
#[utoipa::path(
    post,
    path = "/invocations",
    tag = "mlflow-scoring",
    request_body(
        description = "JSON in one of MLflow's four forms, or a CSV with a header row of field \
                       names (`pandas.DataFrame.to_csv(index=False)`; an empty cell or `?` is \
                       missing)",
        content(
            (InvocationsBody = "application/json"),
            (String = "text/csv"),
        )
    ),
    responses(
        (status = 200, body = InvocationsReply),
        (status = 400, description = "A malformed body or a bad field, in MLflow's words",
            body = MlflowError),
        (status = 413, description = "The body or the batch is over its limit (named)",
            body = MlflowError),
        (status = 415, description = "Not JSON or CSV in UTF-8", body = String,
            content_type = "text/plain"),
        (status = 503, description = "No model is loaded yet", body = MlflowError),
    )
)]
async fn invocations(
    State(inference): State<Inference>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work = async {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut parts = content_type.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("").to_ascii_lowercase();
        for parameter in parts.filter(|p| !p.is_empty()) {
            let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            if !key.eq_ignore_ascii_case("charset") || !value.eq_ignore_ascii_case("utf-8") {
                return Err(InferenceError::Unsupported {
                    reason: format!(
                        "Unsupported content type parameter {parameter:?}: the scoring server \
                         only reads UTF-8 (charset=utf-8)"
                    ),
                });
            }
        }
        let limit = inference.config().max_records;
        let bytes = read_body(&headers, body, inference.config().max_body_bytes).await?;
        let records = match mime.as_str() {
            "application/json" => records_from_json(&parse_json(&bytes)?, limit)?,
            "text/csv" => records_from_csv(&bytes, limit)?,
            _ => {
                return Err(InferenceError::Unsupported {
                    reason: format!(
                        "This predictor only supports the following content types: \
                         ['text/csv', 'application/json']. Got {content_type:?}."
                    ),
                });
            }
        };
        let Prediction { scored, .. } =
            inference.predict(Endpoint::Invocations, records, 0).await?;
        let reply = InvocationsReply {
            predictions: scored.iter().map(|s| s.probability).collect(),
        };
        Ok(json_bytes(serde_json::to_vec(&reply)))
    };
    observed(&inference, Endpoint::Invocations, work)
        .await
        .unwrap_or_else(|e| mlflow_error(&e))
}

/// MLflow's error shape; content-type refusals are plain text, as MLflow sends them.
fn mlflow_error(e: &InferenceError) -> Response {
    let status = status_of(e);
    let code = match e {
        InferenceError::Unsupported { .. } => {
            return (status, e.to_string()).into_response();
        }
        InferenceError::NotReady { .. } | InferenceError::Reload { .. } => {
            "TEMPORARILY_UNAVAILABLE"
        }
        InferenceError::TooLarge { .. } => "REQUEST_LIMIT_EXCEEDED",
        InferenceError::Internal { .. } => "INTERNAL_ERROR",
        InferenceError::UnknownModel { .. } => "RESOURCE_DOES_NOT_EXIST",
        InferenceError::Invalid { .. }
        | InferenceError::Malformed { .. }
        | InferenceError::Empty => "BAD_REQUEST",
    };
    // MLflow answers every bad request with 400.
    let status = if code == "BAD_REQUEST" {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    (
        status,
        axum::Json(MlflowError {
            error_code: code,
            message: e.to_string(),
        }),
    )
        .into_response()
}

fn records_from_json(body: &Value, limit: usize) -> Result<Vec<RawRecord>, InferenceError> {
    let object = match body {
        Value::Object(o) => o,
        Value::Array(_) => return Err(required_format("Received a list.")),
        other => {
            return Err(required_format(&format!(
                "Received unexpected input type {}.",
                json_kind(other)
            )));
        }
    };
    let present: Vec<&str> = FORMATS
        .iter()
        .copied()
        .filter(|k| object.contains_key(*k))
        .collect();
    let [format] = present[..] else {
        let keys: Vec<&String> = object.keys().collect();
        return Err(required_format(&format!(
            "Received dictionary with input fields: {keys:?}."
        )));
    };
    let data = &object[format];
    match (format, data) {
        ("dataframe_split", Value::Object(split)) => records_from_split(split, limit),
        ("dataframe_records" | "instances" | "inputs", Value::Array(items)) => {
            input::records_from_json(items, limit)
        }
        ("instances" | "inputs", Value::Object(columns)) => {
            let columns = columns
                .iter()
                .map(|(name, values)| match values {
                    Value::Array(values) => Ok(Column {
                        name,
                        values: values.iter().map(Sent::from_json).collect(),
                    }),
                    other => Err(InferenceError::malformed(format!(
                        "{format}: column `{name}` must be a list of values, not {}",
                        json_kind(other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            input::records_from_columns(&columns, limit)
        }
        (format, other) => Err(InferenceError::malformed(format!(
            "{format} must be {}, not {}",
            if format == "dataframe_split" {
                "an object with `columns` and `data`"
            } else {
                "a list of records"
            },
            json_kind(other)
        ))),
    }
}

/// pandas' split orient: `columns`, `data` as rows, an optional `index` (ignored).
fn records_from_split(
    split: &Map<String, Value>,
    limit: usize,
) -> Result<Vec<RawRecord>, InferenceError> {
    if let Some(key) = split
        .keys()
        .find(|k| !matches!(k.as_str(), "columns" | "data" | "index"))
    {
        return Err(InferenceError::malformed(format!(
            "dataframe_split: unknown key `{key}`; it takes columns, data and index"
        )));
    }
    let Some(Value::Array(names)) = split.get("columns") else {
        return Err(InferenceError::malformed(
            "dataframe_split needs `columns`, a list of field names",
        ));
    };
    let Some(Value::Array(rows)) = split.get("data") else {
        return Err(InferenceError::malformed(
            "dataframe_split needs `data`, a list of rows",
        ));
    };
    let names: Vec<&str> = names
        .iter()
        .map(|n| {
            n.as_str().ok_or_else(|| {
                InferenceError::malformed(format!(
                    "dataframe_split: column names are strings, not {}",
                    json_kind(n)
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    input::check_count(rows.len(), limit)?;
    let mut columns: Vec<Column<'_>> = names
        .iter()
        .map(|name| Column {
            name,
            values: Vec::with_capacity(rows.len()),
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let Value::Array(cells) = row else {
            return Err(InferenceError::malformed(format!(
                "dataframe_split: row {i} must be a list of values, not {}",
                json_kind(row)
            )));
        };
        if cells.len() != names.len() {
            return Err(InferenceError::malformed(format!(
                "dataframe_split: row {i} has {} values for {} columns",
                cells.len(),
                names.len()
            )));
        }
        for (column, cell) in columns.iter_mut().zip(cells) {
            column.values.push(Sent::from_json(cell));
        }
    }
    input::records_from_columns(&columns, limit)
}

/// A CSV with a header of field names, as `pandas.DataFrame.to_csv(index=False)` writes it;
/// an empty cell or `?` is missing.
fn records_from_csv(bytes: &[u8], limit: usize) -> Result<Vec<RawRecord>, InferenceError> {
    let bad = |e: csv::Error| {
        InferenceError::malformed(format!(
            "Failed to parse input as a CSV table with a header row: {e}"
        ))
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .take(limit.saturating_add(1))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    input::check_count(rows.len(), limit)?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            input::record(
                Some(i),
                header.iter().zip(row.iter()).map(|(name, cell)| {
                    let value = if cell.is_empty() {
                        Sent::Missing
                    } else {
                        Sent::Text(cell)
                    };
                    (name.as_str(), value)
                }),
            )
        })
        .collect()
}
