//! The `readmit.v1.Inference` gRPC service (predictions for the console and other agents, what
//! serves, the input signature, reloads) and the one mapping from inference errors to gRPC
//! status, which the Open Inference Protocol's service shares. Handlers convert and delegate.

use std::time::Instant;

use readmit_proto::v1;
use tonic::{Request, Response, Status};

use crate::inference::input::{self, Sent};
use crate::inference::{Endpoint, Inference, InferenceError, Prediction};

/// The one mapping from inference errors to gRPC status codes.
pub fn status(error: &InferenceError) -> Status {
    let message = error.to_string();
    match error {
        InferenceError::NotReady { .. } | InferenceError::Reload { .. } => {
            Status::unavailable(message)
        }
        InferenceError::Invalid { .. }
        | InferenceError::Malformed { .. }
        | InferenceError::Empty
        | InferenceError::Unsupported { .. } => Status::invalid_argument(message),
        InferenceError::TooLarge { .. } => Status::resource_exhausted(message),
        InferenceError::UnknownModel { .. } => Status::not_found(message),
        InferenceError::Internal { .. } => {
            tracing::error!(error = %message, "inference failed");
            Status::internal(message)
        }
    }
}

pub struct InferenceService {
    inference: Inference,
}

pub fn server(inference: Inference) -> v1::inference_server::InferenceServer<InferenceService> {
    v1::inference_server::InferenceServer::new(InferenceService { inference })
        .max_decoding_message_size(64 * 1024 * 1024)
}

pub fn served_out(status: crate::inference::Status) -> v1::ServedModel {
    let crate::inference::Status {
        served,
        stage,
        following,
        last_error,
    } = status;
    let Some(s) = served else {
        return v1::ServedModel {
            following,
            last_error,
            ..Default::default()
        };
    };
    v1::ServedModel {
        loaded: true,
        name: s.meta.name.clone(),
        version: s.meta.version,
        stage,
        run_id: s.meta.run_id.clone(),
        source: s.meta.source.clone(),
        loaded_at_ms: s.meta.loaded_at_ms,
        threshold: f64::from(s.threshold()),
        metrics: s.metrics().into_iter().collect(),
        following,
        last_error,
    }
}

fn record_in(
    index: usize,
    record: &v1::Record,
) -> Result<readmit_ml::record::RawRecord, InferenceError> {
    input::record(
        Some(index),
        record.fields.iter().map(|(name, value)| {
            let sent = match &value.kind {
                None => Sent::Missing,
                Some(v1::field_value::Kind::Text(t)) => Sent::Text(t),
                Some(v1::field_value::Kind::Number(n)) => Sent::Float(*n),
            };
            (name.as_str(), sent)
        }),
    )
}

fn field_type(kind: &str) -> v1::FieldType {
    match kind {
        "integer" => v1::FieldType::Integer,
        "categorical" | "icd9" => v1::FieldType::Categorical,
        _ => v1::FieldType::Unspecified,
    }
}

#[tonic::async_trait]
impl v1::inference_server::Inference for InferenceService {
    async fn predict(
        &self,
        r: Request<v1::PredictRequest>,
    ) -> Result<Response<v1::PredictReply>, Status> {
        let started = Instant::now();
        let result = async {
            let r = r.into_inner();
            input::check_count(r.records.len(), self.inference.config().max_records)?;
            let records = r
                .records
                .iter()
                .enumerate()
                .map(|(i, rec)| record_in(i, rec))
                .collect::<Result<Vec<_>, _>>()?;
            let explain = usize::try_from(r.explain).unwrap_or(usize::MAX);
            self.inference
                .predict(Endpoint::GrpcPredict, records, explain)
                .await
        }
        .await;
        self.inference.observe(
            Endpoint::GrpcPredict,
            result.as_ref().err(),
            started.elapsed().as_secs_f64(),
        );
        let Prediction { served, scored } = result.map_err(|e| status(&e))?;
        Ok(Response::new(v1::PredictReply {
            predictions: scored
                .into_iter()
                .map(|s| v1::Prediction {
                    probability: f64::from(s.probability),
                    readmitted: s.readmitted,
                    contributions: s
                        .contributions
                        .into_iter()
                        .map(|c| v1::Contribution {
                            field: c.field.to_owned(),
                            value: c.value,
                            reference: c.reference,
                            effect: c.effect,
                        })
                        .collect(),
                })
                .collect(),
            model_name: served.meta.name.clone(),
            model_version: served.meta.version,
            threshold: f64::from(served.threshold()),
        }))
    }

    async fn get_served_model(
        &self,
        _: Request<v1::GetServedModelRequest>,
    ) -> Result<Response<v1::ServedModel>, Status> {
        Ok(Response::new(served_out(self.inference.status())))
    }

    async fn get_signature(
        &self,
        _: Request<v1::GetSignatureRequest>,
    ) -> Result<Response<v1::ModelSignature>, Status> {
        let s = self.inference.status();
        let served = s.served.ok_or_else(|| {
            status(&InferenceError::NotReady {
                following: s.following,
                reason: s.last_error,
            })
        })?;
        let inputs = served
            .bundle
            .input_signature()
            .columns
            .iter()
            .map(|c| v1::InputField {
                name: c.spec.name.clone(),
                r#type: field_type(&c.spec.kind) as i32,
                allowed_values: if c.spec.levels.is_empty() {
                    c.training_levels.clone()
                } else {
                    c.spec.levels.clone()
                },
                required: input::is_required(c),
                description: describe(c),
            })
            .collect();
        Ok(Response::new(v1::ModelSignature { inputs }))
    }

    async fn reload_model(
        &self,
        r: Request<v1::ReloadModelRequest>,
    ) -> Result<Response<v1::ServedModel>, Status> {
        let r = r.into_inner();
        let following = &self.inference.config().target;
        if !r.name.is_empty() && r.name != following.name {
            return Err(status(&InferenceError::UnknownModel {
                reason: format!(
                    "this agent follows {following}; it cannot load model {:?}",
                    r.name
                ),
            }));
        }
        let version = (r.version > 0).then_some(r.version);
        self.inference
            .reload(version)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(served_out(self.inference.status())))
    }
}

/// A form's hint for one field: its range, whether other levels are accepted, whether the
/// model reads it at all.
fn describe(c: &readmit_ml::bundle::InputColumn) -> String {
    let mut parts = Vec::new();
    if let (Some(min), Some(max)) = (c.spec.min, c.spec.max) {
        parts.push(format!("{min}..={max}"));
    }
    if c.spec.kind == "icd9" {
        parts.push("an ICD-9 code such as 250.83, V57 or E909".to_owned());
    }
    if c.spec.open {
        parts.push("other levels are accepted".to_owned());
    }
    if c.spec.missing_allowed {
        parts.push("may be missing".to_owned());
    }
    if !c.used {
        parts.push("not read by this model".to_owned());
    }
    parts.join("; ")
}
