//! What requests carry: real encounters — the test split, read through this agent's ETL role
//! when it runs one — or records from the synthetic generator, encoded once per target so each
//! request draws a different, ready body.

use bytes::Bytes;
use readmit_ml::record::RawRecord;
use readmit_proto::v1;
use serde_json::{Value, json};

use super::LoadTestError;
use super::spec::{Target, TargetKind};

/// Records drawn for a test: enough that neighbouring requests never repeat.
pub const RECORDS: usize = 1_000;

/// Where a test's records came from.
pub const FROM_TEST_SPLIT: &str = "test_split";
pub const FROM_SYNTHETIC: &str = "synthetic";

/// The bodies of one test, one per request in turn.
pub enum Bodies {
    Http {
        path: String,
        content_type: &'static str,
        bodies: Vec<Bytes>,
    },
    Grpc {
        requests: Vec<v1::PredictRequest>,
    },
}

impl Bodies {
    pub fn len(&self) -> usize {
        match self {
            Bodies::Http { bodies, .. } => bodies.len(),
            Bodies::Grpc { requests } => requests.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The test split's first records, when this agent's ETL role holds one; else `None`.
pub async fn test_split(etl: &crate::etl::Etl, n: usize) -> Option<Vec<RawRecord>> {
    let frame = match etl.data.raw().read_table(crate::etl::raw::TEST_DATA).await {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the test split; load tests use synthetic records");
            return None;
        }
    };
    if frame.height() == 0 {
        return None;
    }
    let records = readmit_ml::data::records(&frame, 0..n).ok()?;
    (!records.is_empty()).then_some(records)
}

/// `n` synthetic encounters, the same for the same seed.
pub fn synthetic(n: usize, seed: u64) -> Vec<RawRecord> {
    let mut generator = readmit_ml::synth::Generator::new(seed, n.max(100));
    (0..n)
        .filter_map(|i| {
            let fields = generator.next_fields();
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            // The split counts earlier encounters over the whole file; a few here, as there.
            RawRecord::from_csv_fields(&fields)
                .ok()
                .map(|r| r.with_prior_encounters(u32::try_from(i % 4).unwrap_or(0)))
        })
        .collect()
}

/// Encodes `records` for `target`: each body a different record (or batch of records).
pub async fn encode(target: &Target, records: &[RawRecord]) -> Result<Bodies, LoadTestError> {
    let json: Vec<Value> = records
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    if json.is_empty() {
        return Err(LoadTestError::Unavailable {
            reason: "no records to send".into(),
        });
    }
    let bodies = match &target.kind {
        TargetKind::Predict => Bodies::Http {
            path: "/predict".into(),
            content_type: "application/json",
            bodies: json.iter().map(|r| Bytes::from(r.to_string())).collect(),
        },
        TargetKind::Invocations { batch } => {
            // About 20k records encoded in all, at least four different bodies.
            let count = (20_000 / batch).max(4).min(json.len());
            Bodies::Http {
                path: "/invocations".into(),
                content_type: "application/json",
                bodies: (0..count)
                    .map(|j| {
                        let rows: Vec<&Value> = (0..*batch)
                            .map(|k| &json[(j * batch + k) % json.len()])
                            .collect();
                        Bytes::from(json!({ "dataframe_records": rows }).to_string())
                    })
                    .collect(),
            }
        }
        TargetKind::OipInfer { model } => {
            let inputs = oip_inputs(&target.url, model).await?;
            Bodies::Http {
                path: format!("/v2/models/{model}/infer"),
                content_type: "application/json",
                bodies: json
                    .iter()
                    .map(|r| oip_body(&inputs, std::slice::from_ref(r)))
                    .collect(),
            }
        }
        TargetKind::GrpcPredict => Bodies::Grpc {
            requests: json
                .iter()
                .map(|r| v1::PredictRequest {
                    records: vec![grpc_record(r)],
                    explain: 0,
                })
                .collect(),
        },
    };
    Ok(bodies)
}

/// The model's declared inputs (name, datatype), from the OIP metadata endpoint.
async fn oip_inputs(base: &str, model: &str) -> Result<Vec<(String, String)>, LoadTestError> {
    let url = format!("{base}/v2/models/{model}");
    let unavailable = |reason: String| LoadTestError::Unavailable {
        reason: format!("{url}: {reason}"),
    };
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| unavailable(readmit_proto::error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("answered {}", response.status())));
    }
    let metadata: Value = response
        .json()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let inputs: Vec<(String, String)> = metadata["inputs"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .filter_map(|t| {
                    Some((
                        t["name"].as_str()?.to_owned(),
                        t["datatype"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if inputs.is_empty() {
        return Err(unavailable("the model metadata lists no inputs".into()));
    }
    Ok(inputs)
}

/// One OIP REST request body: a tensor per declared input, for `records`.
pub fn oip_body(inputs: &[(String, String)], records: &[Value]) -> Bytes {
    let tensors: Vec<Value> = inputs
        .iter()
        .map(|(name, datatype)| {
            let data: Vec<Value> = records
                .iter()
                .map(|r| match (&r[name], datatype.as_str()) {
                    (Value::Null, "BYTES") => json!("?"),
                    (Value::String(s), "INT64") => json!(s.parse::<i64>().unwrap_or(0)),
                    (Value::Number(n), "BYTES") => json!(n.to_string()),
                    (v, _) => v.clone(),
                })
                .collect();
            json!({"name": name, "datatype": datatype, "shape": [records.len()], "data": data})
        })
        .collect();
    Bytes::from(json!({ "inputs": tensors }).to_string())
}

/// A raw record as JSON, as the gRPC message carries it.
pub fn grpc_record(record: &Value) -> v1::Record {
    v1::Record {
        fields: record
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| {
                        let kind = match v {
                            Value::String(s) => v1::field_value::Kind::Text(s.clone()),
                            Value::Number(n) => v1::field_value::Kind::Number(n.as_f64()?),
                            _ => return None,
                        };
                        Some((k.clone(), v1::FieldValue { kind: Some(kind) }))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_body_is_a_different_record() {
        let records = synthetic(50, 7);
        assert_eq!(records.len(), 50);
        let target = Target {
            url: "http://127.0.0.1:1".into(),
            kind: TargetKind::Invocations { batch: 10 },
            timeout: std::time::Duration::from_secs(1),
        };
        let Bodies::Http { bodies, path, .. } = encode(&target, &records).await.unwrap() else {
            panic!("invocations are HTTP");
        };
        assert_eq!(path, "/invocations");
        assert!(bodies.len() >= 4);
        assert_ne!(bodies[0], bodies[1]);
        let first: Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(first["dataframe_records"].as_array().unwrap().len(), 10);
        let grpc = Target {
            kind: TargetKind::GrpcPredict,
            ..target
        };
        let Bodies::Grpc { requests } = encode(&grpc, &records).await.unwrap() else {
            panic!("gRPC");
        };
        assert_eq!(requests.len(), 50);
        assert_ne!(requests[0], requests[1]);
    }
}
