//! Bad input over every inference interface: never a 5xx, never a panic, never a wrong
//! answer — a 4xx (or the gRPC code) in the protocol's own error shape that names the field,
//! and the record's index in a batch.

mod support;

use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use readmit_proto::{Client, oip, v1};
use serde_json::{Value, json};
use support::bundles::{self, Kind, MODEL};

struct Served {
    agent: RunningAgent,
    client: Client,
    http: reqwest::Client,
    record: Value,
    _dir: tempfile::TempDir,
}

async fn serving(max_records: usize, max_body: usize) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings {
        inference_max_records: max_records,
        inference_max_body_bytes: max_body,
        ..RawSettings::loopback(dir.path(), &[Role::Tracking, Role::Inference])
    }
    .validate()
    .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    let bundle = dir.path().join("bundle");
    bundles::write(&bundle, Kind::Logistic(0.1));
    let version = bundles::publish(&client, &bundle).await.version;
    bundles::promote(&client, version).await;
    bundles::wait_served(&client, version, 30).await;
    let record = bundles::json(&bundles::records(1, 21)[0]);
    Served {
        agent,
        client,
        http: reqwest::Client::new(),
        record,
        _dir: dir,
    }
}

impl Served {
    fn with(&self, field: &str, value: Value) -> Value {
        let mut r = self.record.clone();
        r[field] = value;
        r
    }

    fn without(&self, field: &str) -> Value {
        let mut r = self.record.clone();
        r.as_object_mut().unwrap().remove(field);
        r
    }

    async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        // An oversized body is refused with a 413 the client reads: the agent reads on and
        // drops a bounded amount of it rather than resetting a connection still being written.
        let r = self
            .http
            .post(format!("{}{path}", self.agent.http_url()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(path, "application/json", body.to_string().into_bytes())
            .await
    }
}

/// The cases every JSON interface must refuse, with what the message must name.
fn bad_records(s: &Served) -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("missing required field", s.without("age"), "`age`"),
        (
            "unknown field",
            s.with("shoe_size", json!(44)),
            "`shoe_size`",
        ),
        (
            "wrong type",
            s.with("num_medications", json!([1])),
            "`num_medications`",
        ),
        ("boolean", s.with("insulin", json!(false)), "`insulin`"),
        (
            "unknown category",
            s.with("age", json!("[200-300)")),
            "[70-80)",
        ),
        (
            "negative count",
            s.with("number_inpatient", json!(-2)),
            "`number_inpatient`",
        ),
        (
            "fraction",
            s.with("time_in_hospital", json!(2.5)),
            "`time_in_hospital`",
        ),
        (
            "huge number",
            s.with("num_lab_procedures", json!(1e300)),
            "`num_lab_procedures`",
        ),
        (
            "negative prior",
            s.with("prior_encounters", json!(-1)),
            "prior_encounters",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_refuses_bad_input_naming_the_field_and_record() {
    let s = serving(10, 64 * 1024).await;
    for (case, record, named) in bad_records(&s) {
        let (status, body) = s.post_json("/predict", &record).await;
        assert_eq!(status, 422, "{case}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(named), "{case}: {message}");
        // In a batch the record's index is named too.
        let (status, body) = s
            .post_json("/predict", &json!([s.record, s.record, record]))
            .await;
        assert_eq!(status, 422, "{case}: {body}");
        assert_eq!(body["record"], 2, "{case}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("record 2: "),
            "{case}: {body}"
        );
    }
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"age\": ".to_vec(),
            400,
            "not valid JSON",
        ),
        ("a number", b"42".to_vec(), 400, "JSON object"),
        ("empty batch", b"[]".to_vec(), 400, "no records"),
        (
            "NaN literal",
            b"{\"age\": NaN}".to_vec(),
            400,
            "not valid JSON",
        ),
    ];
    for (case, body, want, named) in cases {
        let (status, reply) = s.post("/predict", "application/json", body).await;
        assert_eq!(status, want, "{case}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains(named),
            "{case}: {reply}"
        );
    }
    // Over the limits: 413 naming the limit and its setting.
    let (status, reply) = s
        .post_json("/predict", &Value::Array(vec![s.record.clone(); 11]))
        .await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("10 records")
            && reply["error"]
                .as_str()
                .unwrap()
                .contains("inference_max_records"),
        "{reply}"
    );
    let (status, reply) = s
        .post("/predict", "application/json", vec![b' '; 70 * 1024])
        .await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("65536 bytes"),
        "{reply}"
    );
    // A bad query parameter is named.
    let (status, reply) = s.post_json("/predict?explain=lots", &s.record).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["field"], "explain");
    let (status, reply) = s.post_json("/predict?verbose=1", &s.record).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["field"], "verbose");
    // The agent still answers.
    let (status, _) = s.post_json("/predict", &s.record).await;
    assert_eq!(status, 200);
    let metrics = support::text(&s.http, format!("{}/metrics", s.agent.http_url())).await;
    assert!(
        metrics.contains("inference_errors_total{endpoint=\"predict\",kind=\"invalid_input\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("inference_errors_total{endpoint=\"predict\",kind=\"too_large\"} 2"),
        "{metrics}"
    );
    s.agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_refuses_bad_input_in_mlflows_shape() {
    let s = serving(10, 64 * 1024).await;
    for (case, record, named) in bad_records(&s) {
        let (status, body) = s
            .post_json(
                "/invocations",
                &json!({"dataframe_records": [s.record, record]}),
            )
            .await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error_code"], "BAD_REQUEST", "{case}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(named) && message.contains("record 1"),
            "{case}: {message}"
        );
    }
    let (status, body) = s
        .post_json("/invocations", &json!({"records": [s.record]}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("dataframe_split"),
        "{body}"
    );
    let (status, body) = s.post_json("/invocations", &json!([s.record])).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Received a list"),
        "{body}"
    );
    let (status, body) = s
        .post_json(
            "/invocations",
            &json!({"dataframe_split": {"columns": ["age"], "data": [["[70-80)", 1]]}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("row 0 has 2 values"),
        "{body}"
    );
    let (status, body) = s
        .post(
            "/invocations",
            "text/csv",
            b"age,gender\n[70-80)\n".to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], "BAD_REQUEST");
    let (status, body) = s
        .post("/invocations", "application/xml", b"<x/>".to_vec())
        .await;
    assert_eq!(status, 415, "{body}");
    assert!(body.as_str().unwrap().contains("text/csv"), "{body}");
    let (status, body) = s
        .post_json(
            "/invocations",
            &json!({"dataframe_records": vec![s.record.clone(); 11]}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error_code"], "REQUEST_LIMIT_EXCEEDED");
    let (status, body) = s
        .post_json("/invocations", &json!({"dataframe_records": []}))
        .await;
    assert_eq!(status, 400, "{body}");
    let ping = s
        .http
        .get(format!("{}/ping", s.agent.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    s.agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_inference_protocol_refuses_bad_tensors() {
    let s = serving(10, 64 * 1024).await;
    let infer = format!("/v2/models/{MODEL}/infer");
    let age = |data: Value, shape: Value| json!({"inputs": [{"name": "age", "datatype": "BYTES", "shape": shape, "data": data}]});
    let cases = vec![
        (
            "shape mismatch",
            age(json!(["[70-80)"]), json!([2])),
            422,
            "`age`",
        ),
        (
            "bad datatype",
            json!({"inputs": [{"name": "age", "datatype": "STRING", "shape": [1], "data": ["x"]}]}),
            422,
            "STRING",
        ),
        (
            "typed mismatch",
            json!({"inputs": [{"name": "time_in_hospital", "datatype": "INT64", "shape": [1], "data": ["3"]}]}),
            422,
            "`time_in_hospital`",
        ),
        ("no inputs", json!({"id": "x"}), 400, "inputs"),
        (
            "missing field",
            age(json!(["[70-80)"]), json!([1])),
            422,
            "is required",
        ),
        (
            "unknown output",
            json!({"inputs": [], "outputs": [{"name": "logits"}]}),
            422,
            "logits",
        ),
    ];
    for (case, body, want, named) in cases {
        let (status, reply) = s.post_json(&infer, &body).await;
        assert_eq!(status, want, "{case}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains(named),
            "{case}: {reply}"
        );
    }
    let (status, reply) = s
        .post_json(
            "/v2/models/other/infer",
            &age(json!(["[70-80)"]), json!([1])),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = s
        .post_json(
            &format!("/v2/models/{MODEL}/versions/99/infer"),
            &age(json!(["[70-80)"]), json!([1])),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = s.post(&infer, "application/json", b"{nope".to_vec()).await;
    assert_eq!(status, 400, "{reply}");
    let metadata: Value = s
        .http
        .get(format!("{}/v2/models/{MODEL}", s.agent.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        metadata["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "age" && i["datatype"] == "BYTES"),
        "{metadata}"
    );

    // gRPC: the same refusals as status codes that name the tensor.
    let mut grpc =
        oip::grpc_inference_service_client::GrpcInferenceServiceClient::connect(s.agent.grpc_url())
            .await
            .unwrap();
    let tensor =
        |name: &str, datatype: &str, shape: Vec<i64>| oip::model_infer_request::InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            contents: Some(oip::InferTensorContents {
                bytes_contents: vec![b"[70-80)".to_vec()],
                ..Default::default()
            }),
            ..Default::default()
        };
    let e = grpc
        .model_infer(oip::ModelInferRequest {
            model_name: MODEL.into(),
            inputs: vec![tensor("age", "BYTES", vec![3])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("`age`"), "{e:?}");
    let e = grpc
        .model_infer(oip::ModelInferRequest {
            model_name: MODEL.into(),
            inputs: vec![tensor("age", "BYTES", vec![1])],
            raw_input_contents: vec![vec![1, 2, 3], vec![4]],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = grpc
        .model_infer(oip::ModelInferRequest {
            model_name: "other".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let ready = grpc
        .model_ready(oip::ModelReadyRequest {
            name: MODEL.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready);
    s.agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_predict_refuses_bad_records() {
    let s = serving(10, 64 * 1024).await;
    let record = |fields: &Value| v1::Record {
        fields: fields
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let kind = match v {
                    Value::String(t) => Some(v1::field_value::Kind::Text(t.clone())),
                    Value::Number(n) => Some(v1::field_value::Kind::Number(n.as_f64().unwrap())),
                    _ => None,
                };
                (k.clone(), v1::FieldValue { kind })
            })
            .collect(),
    };
    for (case, bad, named) in [
        (
            "unknown category",
            s.with("age", json!("[200-300)")),
            "`age`",
        ),
        ("NaN", s.with("time_in_hospital", json!(0)), "NaN"),
        ("missing", s.without("gender"), "`gender`"),
    ] {
        let mut bad = record(&bad);
        if case == "NaN" {
            bad.fields.insert(
                "time_in_hospital".into(),
                v1::FieldValue {
                    kind: Some(v1::field_value::Kind::Number(f64::NAN)),
                },
            );
        }
        let e = s
            .client
            .inference()
            .predict(v1::PredictRequest {
                records: vec![record(&s.record), bad],
                explain: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{case}: {e:?}");
        assert!(
            e.message().contains(named) && e.message().contains("record 1"),
            "{case}: {e:?}"
        );
    }
    let e = s
        .client
        .inference()
        .predict(v1::PredictRequest {
            records: vec![],
            explain: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = s
        .client
        .inference()
        .predict(v1::PredictRequest {
            records: vec![record(&s.record); 11],
            explain: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let e = s
        .client
        .inference()
        .predict(v1::PredictRequest {
            records: vec![record(&s.record)],
            explain: 500,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("explain"), "{e:?}");
    s.agent.stop().await.unwrap();
}
