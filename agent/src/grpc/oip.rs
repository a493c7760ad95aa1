//! KServe's Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`), as
//! `tritonclient.grpc` speaks it: tensors arrive typed in `contents` or little-endian in
//! `raw_input_contents`; outputs go back raw, as Triton sends them. Handlers convert and
//! delegate to the inference role.

use std::time::Instant;

use readmit_proto::oip;
use tonic::{Request, Response, Status};

use super::inference::status;
use crate::inference::input::{self, Column, Sent};
use crate::inference::tensors::{self, OUTPUTS, PROBABILITY, READMITTED, input_tensors};
use crate::inference::{Endpoint, Inference, InferenceError, Place, Prediction};

pub struct OipService {
    inference: Inference,
}

pub fn server(
    inference: Inference,
) -> oip::grpc_inference_service_server::GrpcInferenceServiceServer<OipService> {
    oip::grpc_inference_service_server::GrpcInferenceServiceServer::new(OipService { inference })
        .max_decoding_message_size(64 * 1024 * 1024)
}

type Reply<T> = Result<Response<T>, Status>;

/// One tensor's typed `contents` as field values, by its datatype.
fn typed_contents<'a>(
    name: &str,
    datatype: &str,
    c: &'a oip::InferTensorContents,
) -> Result<Vec<Sent<'a>>, InferenceError> {
    tensors::element_size(name, datatype)?;
    Ok(match datatype {
        "BYTES" => c
            .bytes_contents
            .iter()
            .enumerate()
            .map(|(i, b)| {
                std::str::from_utf8(b).map(Sent::Text).map_err(|_| {
                    InferenceError::invalid(
                        Place::field(name),
                        format!("element {i} is not UTF-8 text"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        "BOOL" => c.bool_contents.iter().map(|b| Sent::Bool(*b)).collect(),
        "INT8" | "INT16" | "INT32" => c
            .int_contents
            .iter()
            .map(|v| Sent::Int(i64::from(*v)))
            .collect(),
        "INT64" => c.int64_contents.iter().map(|v| Sent::Int(*v)).collect(),
        "UINT8" | "UINT16" | "UINT32" => c
            .uint_contents
            .iter()
            .map(|v| Sent::Int(i64::from(*v)))
            .collect(),
        "UINT64" => c
            .uint64_contents
            .iter()
            .map(|v| {
                i64::try_from(*v).map(Sent::Int).map_err(|_| {
                    InferenceError::invalid(Place::field(name), format!("{v} is too large"))
                })
            })
            .collect::<Result<_, _>>()?,
        "FP32" => c
            .fp32_contents
            .iter()
            .map(|v| Sent::Float(f64::from(*v)))
            .collect(),
        "FP64" => c.fp64_contents.iter().map(|v| Sent::Float(*v)).collect(),
        other => {
            return Err(InferenceError::invalid(
                Place::field(name),
                format!("datatype {other} is not one a field takes: use BYTES, INT64 or FP64"),
            ));
        }
    })
}

fn columns(r: &oip::ModelInferRequest) -> Result<Vec<Column<'_>>, InferenceError> {
    let raw = &r.raw_input_contents;
    if !raw.is_empty() && raw.len() != r.inputs.len() {
        return Err(InferenceError::malformed(format!(
            "{} raw_input_contents for {} inputs: give one per input, or none",
            raw.len(),
            r.inputs.len()
        )));
    }
    r.inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let values = match (raw.get(i), &t.contents) {
                (Some(bytes), None) => tensors::decode_raw(&t.name, &t.datatype, bytes)?,
                (Some(_), Some(_)) => {
                    return Err(InferenceError::invalid(
                        Place::field(&t.name),
                        "the tensor's data is both in contents and raw_input_contents",
                    ));
                }
                (None, Some(contents)) => typed_contents(&t.name, &t.datatype, contents)?,
                (None, None) => {
                    return Err(InferenceError::invalid(
                        Place::field(&t.name),
                        "the tensor has no data",
                    ));
                }
            };
            tensors::check_shape(&t.name, &t.shape, values.len())?;
            Ok(Column {
                name: &t.name,
                values,
            })
        })
        .collect()
}

#[tonic::async_trait]
impl oip::grpc_inference_service_server::GrpcInferenceService for OipService {
    async fn server_live(
        &self,
        _: Request<oip::ServerLiveRequest>,
    ) -> Reply<oip::ServerLiveResponse> {
        Ok(Response::new(oip::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<oip::ServerReadyRequest>,
    ) -> Reply<oip::ServerReadyResponse> {
        Ok(Response::new(oip::ServerReadyResponse {
            ready: self.inference.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<oip::ModelReadyRequest>,
    ) -> Reply<oip::ModelReadyResponse> {
        let r = r.into_inner();
        let ready = match self.inference.served_as(&r.name, Some(&r.version)) {
            Ok(_) => true,
            Err(InferenceError::NotReady { .. }) => false,
            Err(e) => return Err(status(&e)),
        };
        Ok(Response::new(oip::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<oip::ServerMetadataRequest>,
    ) -> Reply<oip::ServerMetadataResponse> {
        Ok(Response::new(oip::ServerMetadataResponse {
            name: "readmit".into(),
            version: crate::VERSION.into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<oip::ModelMetadataRequest>,
    ) -> Reply<oip::ModelMetadataResponse> {
        let r = r.into_inner();
        let served = self
            .inference
            .served_as(&r.name, Some(&r.version))
            .map_err(|e| status(&e))?;
        let (inputs, outputs) = (input_tensors(&served), OUTPUTS);
        let tensor =
            |(name, datatype): (&str, &str)| oip::model_metadata_response::TensorMetadata {
                name: name.to_owned(),
                datatype: datatype.to_owned(),
                shape: vec![-1],
            };
        Ok(Response::new(oip::ModelMetadataResponse {
            name: served.meta.name.clone(),
            versions: vec![served.meta.version.to_string()],
            platform: "readmit_onnx_tract".into(),
            inputs: inputs.into_iter().map(tensor).collect(),
            outputs: outputs.into_iter().map(tensor).collect(),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<oip::ModelInferRequest>,
    ) -> Reply<oip::ModelInferResponse> {
        let started = Instant::now();
        let r = r.into_inner();
        let result = async {
            self.inference
                .served_as(&r.model_name, Some(&r.model_version))?;
            let wanted = r
                .outputs
                .iter()
                .map(|o| {
                    [PROBABILITY, READMITTED]
                        .into_iter()
                        .find(|n| *n == o.name)
                        .ok_or_else(|| {
                            InferenceError::invalid(
                                Place::field(&o.name),
                                format!(
                                    "unknown output; the outputs are {PROBABILITY} and {READMITTED}"
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let records =
                input::records_from_columns(&columns(&r)?, self.inference.config().max_records)?;
            let prediction = self
                .inference
                .predict(Endpoint::OipGrpc, records, 0)
                .await?;
            Ok((prediction, wanted))
        }
        .await;
        self.inference.observe(
            Endpoint::OipGrpc,
            result.as_ref().err(),
            started.elapsed().as_secs_f64(),
        );
        let (Prediction { served, scored }, mut wanted) = result.map_err(|e| status(&e))?;
        if wanted.is_empty() {
            wanted = vec![PROBABILITY, READMITTED];
        }
        let n = i64::try_from(scored.len()).unwrap_or(i64::MAX);
        let mut outputs = Vec::new();
        let mut raw = Vec::new();
        for name in wanted {
            let (datatype, bytes) = if name == PROBABILITY {
                let p: Vec<f32> = scored.iter().map(|s| s.probability).collect();
                ("FP32", tensors::encode_f32(&p))
            } else {
                let d: Vec<bool> = scored.iter().map(|s| s.readmitted).collect();
                ("BOOL", tensors::encode_bool(&d))
            };
            outputs.push(oip::model_infer_response::InferOutputTensor {
                name: name.to_owned(),
                datatype: datatype.to_owned(),
                shape: vec![n],
                ..Default::default()
            });
            raw.push(bytes);
        }
        Ok(Response::new(oip::ModelInferResponse {
            model_name: served.meta.name.clone(),
            model_version: served.meta.version.to_string(),
            id: r.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents: raw,
        }))
    }
}
