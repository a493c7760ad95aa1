//! `/openapi.json` against live agents: it parses as OpenAPI 3.1, describes exactly the routes
//! the agent's roles serve (each answers something other than 404), builds `RawRecord` from the
//! schema, and marks the token requirement where tokens are set.

mod support;

use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use serde_json::Value;

const MODEL: &str = "best_diabetes_readmission_model";

async fn start(roles: &[Role], token: Option<&str>) -> (RunningAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings {
        token: token.map(str::to_owned),
        ..RawSettings::loopback(dir.path(), roles)
    }
    .validate()
    .unwrap();
    (RunningAgent::start(settings).await.unwrap(), dir)
}

async fn document(http: &reqwest::Client, base: &str, token: Option<&str>) -> Value {
    let mut request = http.get(format!("{base}/openapi.json"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

fn paths(doc: &Value) -> Vec<&str> {
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn describes_the_inference_role_and_every_path_answers() {
    let (agent, _dir) = start(&[Role::Inference], None).await;
    let http = reqwest::Client::new();
    let base = agent.http_url();
    let doc = document(&http, &base, None).await;

    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], readmit_agent::VERSION);
    let paths = paths(&doc);
    for expected in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/predict",
        "/model-info",
        "/invocations",
        "/ping",
        "/health",
        "/version",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("mlflow") || p.contains("artifacts")),
        "the inference role serves no tracking API: {paths:?}"
    );

    // Every operation the document names is served: nothing answers 404 (503 is expected, as
    // no model is loaded).
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = format!(
            "{base}{}",
            path.replace("{name}", MODEL).replace("{version}", "1")
        );
        for (method, _) in item.as_object().unwrap() {
            let request = match method.as_str() {
                "get" => http.get(&url),
                "post" => http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                other => panic!("{path}: unexpected method {other}"),
            };
            let status = request.send().await.unwrap().status();
            assert_ne!(status, 404, "{method} {path} is documented but not served");
            operations += 1;
        }
    }
    assert_eq!(operations, paths.len(), "one operation per path");
    // And a route the role does not serve really is absent.
    let status = http
        .get(format!("{base}/api/2.0/mlflow/experiments/list"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);

    // The record schema comes from the 50 columns plus prior_encounters.
    let record = &doc["components"]["schemas"]["RawRecord"];
    let properties = record["properties"].as_object().unwrap();
    assert_eq!(properties.len(), 51, "{:?}", properties.keys());
    let age = &properties["age"];
    let levels: Vec<String> = (0..10)
        .map(|d| format!("[{}-{})", d * 10, d * 10 + 10))
        .collect();
    assert_eq!(age["enum"], serde_json::json!(levels));
    assert_eq!(age["type"], "string");
    let required: Vec<&str> = record["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"age") && required.contains(&"A1Cresult"));
    // Ids, the target, fields that may be missing and the engineered count are optional.
    for optional in [
        "encounter_id",
        "readmitted",
        "race",
        "weight",
        "prior_encounters",
    ] {
        assert!(!required.contains(&optional), "{optional} is optional");
    }
    assert_eq!(record["additionalProperties"], false);
    assert_eq!(
        properties["race"]["type"],
        serde_json::json!(["string", "null"])
    );
    assert_eq!(properties["time_in_hospital"]["minimum"], 1);
    assert_eq!(properties["prior_encounters"]["minimum"], 0);
    // The bodies of /predict and /invocations reference it.
    let text = doc.to_string();
    let predict = &doc["paths"]["/predict"]["post"];
    assert_eq!(
        predict["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PredictBody"
    );
    assert!(text.matches("#/components/schemas/RawRecord").count() >= 5);
    assert!(
        doc["paths"]["/invocations"]["post"]["requestBody"]["content"]
            .get("text/csv")
            .is_some()
    );
    for status in ["200", "400", "413", "422", "503"] {
        assert!(
            predict["responses"].get(status).is_some(),
            "/predict documents {status}"
        );
    }
    for error in ["PredictError", "MlflowError", "OipError", "OipInferRequest"] {
        assert!(doc["components"]["schemas"].get(error).is_some(), "{error}");
    }
    // Without tokens nothing is marked as needing one.
    assert!(doc["components"].get("securitySchemes").is_none());

    if let Some(python) = support::python_with(&["openapi_spec_validator"]) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import json, sys; from openapi_spec_validator import validate; \
                 validate(json.load(open(sys.argv[1])))",
            ])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openapi-spec-validator: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn only_the_roles_that_run_and_tokens_where_needed() {
    let (agent, _dir) = start(&[Role::Tracking], Some("sekrit")).await;
    let http = reqwest::Client::new();
    let base = agent.http_url();
    // A read like any other GET: refused without the token.
    let status = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let doc = document(&http, &base, Some("sekrit")).await;
    let paths = paths(&doc);
    assert_eq!(
        paths,
        ["/healthz", "/metrics", "/openapi.json", "/readyz"],
        "tracking's MLflow API is documented by MLflow, inference does not run"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"],
        serde_json::json!([])
    );
    assert_eq!(
        doc["paths"]["/openapi.json"]["get"]["security"],
        serde_json::json!([{"token": []}])
    );
    agent.stop().await.unwrap();
}
