//! The inference role against real agents on loopback: it follows the registry and swaps
//! models under load without a failed request, keeps serving while tracking is away and
//! catches up after, serves from its cache after a restart, refuses a corrupt bundle while the
//! old model serves, and gives the same probabilities over every interface as the bundle does
//! offline.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use readmit_ml::bundle::LoadedBundle;
use readmit_proto::{Client, oip, v1};
use serde_json::{Value, json};
use support::bundles::{self, Kind, MODEL};

async fn agent(
    dir: &std::path::Path,
    roles: &[Role],
    tracking_url: &str,
    grpc: &str,
) -> RunningAgent {
    let settings = RawSettings {
        tracking_url: tracking_url.into(),
        grpc_addr: grpc.into(),
        ..RawSettings::loopback(dir, roles)
    }
    .validate()
    .unwrap();
    RunningAgent::start(settings).await.unwrap()
}

async fn both_roles(dir: &std::path::Path) -> (RunningAgent, Client) {
    let agent = agent(dir, &[Role::Tracking, Role::Inference], "", "127.0.0.1:0").await;
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    (agent, client)
}

/// Writes a bundle of `kind` under `root` and registers it; the new version's number.
async fn new_version(client: &Client, root: &std::path::Path, kind: Kind) -> i64 {
    let dir = root.join(format!("bundle-{}", uuid_like()));
    bundles::write(&dir, kind);
    bundles::publish(client, &dir).await.version
}

fn uuid_like() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn predict(http: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    http.post(format!("{base}/predict"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn ready_status(http: &reqwest::Client, base: &str) -> u16 {
    http.get(format!("{base}/readyz?role=inference"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follows_promotions_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = both_roles(dir.path()).await;
    let http = reqwest::Client::new();
    let base = agent.http_url();

    // No model yet: the role is not ready, the agent's other roles are.
    assert_eq!(ready_status(&http, &base).await, 503);
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let health = client
        .health()
        .check(readmit_proto::health::HealthCheckRequest {
            service: "readmit.v1.Inference".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        readmit_proto::health::health_check_response::ServingStatus::NotServing as i32
    );
    let record = bundles::json(&bundles::records(1, 9)[0]);
    let early = predict(&http, &base, &record).await;
    assert_eq!(early.status(), 503);
    let early: Value = early.json().await.unwrap();
    assert!(
        early["error"]
            .as_str()
            .unwrap()
            .contains("models:/best_diabetes_readmission_model/Production"),
        "{early}"
    );

    let v1 = new_version(&client, dir.path(), Kind::Logistic(0.1)).await;
    bundles::promote(&client, v1).await;
    bundles::wait_served(&client, v1, 30).await;
    assert_eq!(ready_status(&http, &base).await, 200);

    // Load from 8 clients while v2 is promoted.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (http, base, stop, failures, done) = (
            http.clone(),
            base.clone(),
            stop.clone(),
            failures.clone(),
            done.clone(),
        );
        let records: Vec<Value> = bundles::records(20, 100 + i)
            .iter()
            .map(bundles::json)
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let response = predict(&http, &base, &records[k % records.len()]).await;
                k += 1;
                if response.status() != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let body: Value = response.json().await.unwrap();
                versions.push(body["model_version"].as_i64().unwrap());
                done.fetch_add(1, Ordering::Relaxed);
            }
            versions
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v2 = new_version(&client, dir.path(), Kind::Boosting(30)).await;
    bundles::promote(&client, v2).await;
    bundles::wait_served(&client, v2, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut last_versions = Vec::new();
    for task in tasks {
        let versions = task.await.unwrap();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "a client saw the old model after the new one"
        );
        last_versions.push(*versions.last().unwrap());
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );
    assert!(
        done.load(Ordering::Relaxed) > 50,
        "too little load to mean anything"
    );
    assert!(last_versions.iter().all(|v| *v == v2), "{last_versions:?}");

    // The swap shows in the metrics.
    let metrics = support::text(&http, format!("{base}/metrics")).await;
    assert!(
        metrics.contains(&format!(
            "inference_model_info{{name=\"{MODEL}\",version=\"{v2}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(!metrics.contains(&format!(
        "inference_model_info{{name=\"{MODEL}\",version=\"{v1}\"}}"
    )));
    assert!(
        metrics.contains("inference_model_swaps_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("inference_requests_total{endpoint=\"predict\",outcome=\"ok\"}"));
    assert!(
        metrics.contains("inference_input_psi{field=\"number_inpatient\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("inference_predicted_probability_bucket"));
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_bundle_is_refused_while_the_old_model_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = both_roles(dir.path()).await;
    let good = new_version(&client, dir.path(), Kind::Logistic(0.1)).await;
    bundles::promote(&client, good).await;
    bundles::wait_served(&client, good, 30).await;

    // Another model's graph in this bundle: it loads, but scores the example unlike training.
    let bad_dir = dir.path().join("bad");
    bundles::write(&bad_dir, Kind::Logistic(0.1));
    let other = dir.path().join("other");
    bundles::write(&other, Kind::Boosting(10));
    std::fs::copy(other.join("model.onnx"), bad_dir.join("model.onnx")).unwrap();
    let bad = bundles::publish(&client, &bad_dir).await.version;
    bundles::promote(&client, bad).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let served = loop {
        let s = client
            .inference()
            .get_served_model(v1::GetServedModelRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.last_error.contains("refused") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the corrupt version was not refused: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(served.version, good, "{served:?}");
    assert!(
        served.last_error.contains("model.onnx")
            && served.last_error.contains(&format!("version {bad}")),
        "{served:?}"
    );
    let http = reqwest::Client::new();
    let record = bundles::json(&bundles::records(1, 3)[0]);
    let body: Value = predict(&http, &agent.http_url(), &record)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["model_version"], good);
    // The promotion archived the version that still serves, and both interfaces say so.
    assert_eq!(served.stage, "Archived", "{served:?}");
    let info: Value = http
        .get(format!("{}/model-info", agent.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["stage"], "Archived", "{info}");
    let metrics = support::text(&http, format!("{}/metrics", agent.http_url())).await;
    assert!(
        metrics.contains("inference_model_loads_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );

    // Asked explicitly, the refused version is tried again, and refused again.
    let again = client
        .inference()
        .reload_model(v1::ReloadModelRequest {
            name: String::new(),
            version: bad,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::Unavailable, "{again:?}");
    assert!(again.message().contains("refused"), "{again:?}");
    // A pinned good version loads on request.
    let reloaded = client
        .inference()
        .reload_model(v1::ReloadModelRequest {
            name: String::new(),
            version: good,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reloaded.version, good);
    let other_model = client
        .inference()
        .reload_model(v1::ReloadModelRequest {
            name: "some_other_model".into(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(other_model.code(), tonic::Code::NotFound);
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_away_then_back_and_a_restart_served_from_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let tracking_dir = root.path().join("tracking");
    let inference_dir = root.path().join("inference");
    let tracking = agent(&tracking_dir, &[Role::Tracking], "", "127.0.0.1:0").await;
    let tracking_addr = tracking.grpc_addr.to_string();
    let client = Client::connect(&tracking.grpc_url(), None).await.unwrap();
    let v1 = new_version(&client, root.path(), Kind::Logistic(0.1)).await;
    bundles::promote(&client, v1).await;

    let inference = agent(
        &inference_dir,
        &[Role::Inference],
        &tracking.grpc_url(),
        "127.0.0.1:0",
    )
    .await;
    let ic = Client::connect(&inference.grpc_url(), None).await.unwrap();
    bundles::wait_served(&ic, v1, 30).await;

    // Tracking goes away: the role keeps serving and says why it cannot follow.
    tracking.stop().await.unwrap();
    let http = reqwest::Client::new();
    let record = bundles::json(&bundles::records(1, 4)[0]);
    for _ in 0..5 {
        let r = predict(&http, &inference.http_url(), &record).await;
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back on the same address, a promotion is made before the role has reconnected.
    let tracking = agent(&tracking_dir, &[Role::Tracking], "", &tracking_addr).await;
    let client = Client::connect(&tracking.grpc_url(), None).await.unwrap();
    let v2 = new_version(&client, root.path(), Kind::Logistic(1.0)).await;
    bundles::promote(&client, v2).await;
    bundles::wait_served(&ic, v2, 30).await;

    // A restarted inference agent with tracking down serves its cached model at once.
    inference.stop().await.unwrap();
    tracking.stop().await.unwrap();
    let restarted = agent(
        &inference_dir,
        &[Role::Inference],
        &format!("http://{tracking_addr}"),
        "127.0.0.1:0",
    )
    .await;
    let rc = Client::connect(&restarted.grpc_url(), None).await.unwrap();
    let served = bundles::wait_served(&rc, v2, 10).await;
    assert!(!served.last_error.is_empty() || served.loaded, "{served:?}");
    let r = predict(&http, &restarted.http_url(), &record).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model_version"], v2);
    restarted.stop().await.unwrap();
}

/// The probabilities of `records` over every interface, and from the bundle offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interface_gives_the_bundles_own_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = both_roles(dir.path()).await;
    let bundle_dir = dir.path().join("gbm");
    bundles::write(&bundle_dir, Kind::Boosting(40));
    let version = bundles::publish(&client, &bundle_dir).await.version;
    bundles::promote(&client, version).await;
    bundles::wait_served(&client, version, 30).await;
    let offline = LoadedBundle::load(&bundle_dir).unwrap();
    let records = bundles::records(25, 77);
    let expected: Vec<f64> = offline
        .predict_records(&records)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let http = reqwest::Client::new();
    let base = agent.http_url();
    let close = |what: &str, got: &[f64]| {
        assert_eq!(got.len(), expected.len(), "{what}");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!((g - e).abs() <= 1e-6, "{what}: record {i}: {g} vs {e}");
        }
    };
    let as_json: Vec<Value> = records.iter().map(bundles::json).collect();

    let body: Value = predict(&http, &base, &Value::Array(as_json.clone()))
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<f64> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["probability"].as_f64().unwrap())
        .collect();
    close("/predict", &got);
    let one: Value = predict(&http, &base, &as_json[0])
        .await
        .json()
        .await
        .unwrap();
    close_one(one["probability"].as_f64().unwrap(), expected[0]);
    // All at once, one record a request: the dynamic batcher scores some together, and each
    // answer is still its own record's.
    let at_once: Vec<_> = as_json
        .iter()
        .map(|record| {
            let (http, base, record) = (http.clone(), base.clone(), record.clone());
            tokio::spawn(async move {
                let reply: Value = predict(&http, &base, &record).await.json().await.unwrap();
                reply["probability"].as_f64().unwrap()
            })
        })
        .collect();
    let mut got = Vec::new();
    for answer in at_once {
        got.push(answer.await.unwrap());
    }
    close("/predict, every record at once", &got);

    let got = scored(
        http.post(format!("{base}/invocations"))
            .json(&json!({"dataframe_records": as_json})),
    )
    .await;
    close("/invocations records", &got);
    // The split orient and CSV give the same.
    let columns: Vec<String> = readmit_ml::schema::COLUMNS
        .iter()
        .map(|c| c.name.to_owned())
        .collect();
    let with_prior: Vec<String> = columns
        .iter()
        .cloned()
        .chain(["prior_encounters".to_owned()])
        .collect();
    let rows_prior: Vec<Vec<Value>> = as_json
        .iter()
        .map(|r| {
            with_prior
                .iter()
                .map(|c| r.get(c).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    let got = scored(
        http.post(format!("{base}/invocations"))
            .json(&json!({"dataframe_split": {"columns": with_prior, "data": rows_prior}})),
    )
    .await;
    close("/invocations split", &got);
    let mut csv = with_prior.join(",") + "\n";
    for row in &rows_prior {
        let cells: Vec<String> = row
            .iter()
            .map(|v| match v {
                Value::Null => String::new(),
                Value::String(s) if s.contains(',') => format!("\"{s}\""),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    let got = scored(
        http.post(format!("{base}/invocations"))
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await;
    close("/invocations csv", &got);

    // OIP REST, one BYTES or INT64 tensor per field.
    let (tensors, grpc_inputs) = oip_tensors(&as_json, &columns_of(&as_json));
    let reply: Value = http
        .post(format!("{base}/v2/models/{MODEL}/infer"))
        .json(&json!({"id": "req-7", "inputs": tensors}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["id"], "req-7");
    assert_eq!(reply["model_version"], version.to_string());
    let got: Vec<f64> = reply["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    close("OIP REST", &got);

    // OIP gRPC with typed contents.
    let mut grpc =
        oip::grpc_inference_service_client::GrpcInferenceServiceClient::connect(agent.grpc_url())
            .await
            .unwrap();
    let reply = grpc
        .model_infer(oip::ModelInferRequest {
            model_name: MODEL.into(),
            id: "g-1".into(),
            inputs: grpc_inputs,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.id, "g-1");
    let raw = &reply.raw_output_contents[0];
    let got: Vec<f64> = raw
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
        .collect();
    close("OIP gRPC", &got);

    // readmit's own gRPC Predict, with explanations.
    let request = v1::PredictRequest {
        records: as_json
            .iter()
            .map(|r| v1::Record {
                fields: r
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        let kind = match v {
                            Value::String(s) => v1::field_value::Kind::Text(s.clone()),
                            Value::Number(n) => v1::field_value::Kind::Number(n.as_f64().unwrap()),
                            other => panic!("{k}: {other}"),
                        };
                        (k.clone(), v1::FieldValue { kind: Some(kind) })
                    })
                    .collect(),
            })
            .collect(),
        explain: 3,
    };
    let reply = client
        .inference()
        .predict(request)
        .await
        .unwrap()
        .into_inner();
    let got: Vec<f64> = reply.predictions.iter().map(|p| p.probability).collect();
    close("gRPC Predict", &got);
    assert!(reply.predictions.iter().all(|p| p.contributions.len() <= 3));
    assert!(
        reply
            .predictions
            .iter()
            .any(|p| !p.contributions.is_empty())
    );

    // Explanations over HTTP: the fields that moved the score, largest first, in raw terms.
    let explained: Value = http
        .post(format!("{base}/predict?explain=5"))
        .json(&as_json[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    close_one(explained["probability"].as_f64().unwrap(), expected[0]);
    let explanation = explained["explanation"].as_array().unwrap();
    assert!(
        !explanation.is_empty() && explanation.len() <= 5,
        "{explained}"
    );
    let effects: Vec<f64> = explanation
        .iter()
        .map(|c| c["effect"].as_f64().unwrap().abs())
        .collect();
    assert!(effects.windows(2).all(|w| w[0] >= w[1]), "{effects:?}");
    for c in explanation {
        let field = c["field"].as_str().unwrap();
        assert!(offline.info().inputs.iter().any(|i| i == field), "{field}");
        assert_ne!(c["value"], c["reference"], "{c}");
    }
    // The replaced record scores as the effect says.
    let first = &explanation[0];
    let mut replaced = as_json[0].clone();
    let reference = first["reference"].as_str().unwrap();
    replaced[first["field"].as_str().unwrap()] = json!(reference);
    let p: Value = predict(&http, &base, &replaced).await.json().await.unwrap();
    let effect = explained["probability"].as_f64().unwrap() - p["probability"].as_f64().unwrap();
    assert!(
        (effect - first["effect"].as_f64().unwrap()).abs() < 1e-5,
        "{effect} vs {first}"
    );
    agent.stop().await.unwrap();
}

/// The `predictions` of an `/invocations` reply.
async fn scored(request: reqwest::RequestBuilder) -> Vec<f64> {
    let reply: Value = request.send().await.unwrap().json().await.unwrap();
    reply["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions in {reply}"))
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect()
}

fn close_one(got: f64, expected: f64) {
    assert!((got - expected).abs() <= 1e-6, "{got} vs {expected}");
}

/// Every field any record carries.
fn columns_of(records: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .flat_map(|r| r.as_object().unwrap().keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One OIP tensor per field, as JSON (REST) and typed contents (gRPC). Every record carries
/// every field here (the synthetic ones do), so no tensor has holes.
fn oip_tensors(
    records: &[Value],
    names: &[String],
) -> (Vec<Value>, Vec<oip::model_infer_request::InferInputTensor>) {
    let mut rest = Vec::new();
    let mut grpc = Vec::new();
    let n = i64::try_from(records.len()).unwrap();
    for name in names {
        let values: Vec<&Value> = records.iter().map(|r| &r[name]).collect();
        let numeric = values.iter().all(|v| v.is_i64());
        if numeric {
            let data: Vec<i64> = values.iter().map(|v| v.as_i64().unwrap()).collect();
            rest.push(json!({"name": name, "datatype": "INT64", "shape": [n], "data": data}));
            grpc.push(oip::model_infer_request::InferInputTensor {
                name: name.clone(),
                datatype: "INT64".into(),
                shape: vec![n],
                contents: Some(oip::InferTensorContents {
                    int64_contents: data,
                    ..Default::default()
                }),
                ..Default::default()
            });
        } else {
            let data: Vec<String> = values
                .iter()
                .map(|v| match v {
                    Value::Null => readmit_ml::schema::MISSING.to_owned(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            rest.push(json!({"name": name, "datatype": "BYTES", "shape": [n, 1], "data": data}));
            grpc.push(oip::model_infer_request::InferInputTensor {
                name: name.clone(),
                datatype: "BYTES".into(),
                shape: vec![n],
                contents: Some(oip::InferTensorContents {
                    bytes_contents: data.into_iter().map(String::into_bytes).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    (rest, grpc)
}
