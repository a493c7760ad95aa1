//! The agent chassis end to end: a real agent on 127.0.0.1:0, the real gRPC client, real HTTP.

use std::time::Duration;

use futures_util::StreamExt;
use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use readmit_proto::Client;
use readmit_proto::health::HealthCheckRequest;
use readmit_proto::health::health_check_response::ServingStatus;
use readmit_proto::reflection::ServerReflectionRequest;
use readmit_proto::reflection::server_reflection_request::MessageRequest;
use readmit_proto::reflection::server_reflection_response::MessageResponse;
use readmit_proto::v1;

async fn start(token: Option<&str>) -> (RunningAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings {
        token: token.map(str::to_owned),
        ..RawSettings::loopback(dir.path(), &readmit_agent::Role::ALL)
    }
    .validate()
    .unwrap();
    (RunningAgent::start(settings).await.unwrap(), dir)
}

/// A deadline for things that should take milliseconds: it catches hangs, it measures nothing.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
}

#[tokio::test]
async fn info_and_status_stream() {
    let (agent, _dir) = start(None).await;
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();

    let info = client
        .agent()
        .get_info(v1::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.roles, ["etl", "tracking", "inference"]);
    assert_eq!(info.version, readmit_agent::VERSION);
    assert_eq!(info.grpc_addr, agent.grpc_addr.to_string());
    assert_eq!(info.http_addr, agent.http_addr.to_string());
    assert!(!info.host.is_empty() && info.cpus >= 1 && !info.auth_required);
    assert_eq!(info.pid, std::process::id());

    let status = client
        .agent()
        .get_status(v1::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.ready);
    assert!(status.memory_total_bytes > 0 && status.process_rss_bytes > 0);

    let mut stream = client
        .agent()
        .watch_status(v1::WatchStatusRequest { interval_ms: 100 })
        .await
        .unwrap()
        .into_inner();
    let mut uptimes = Vec::new();
    for _ in 0..3 {
        let s = within("a status sample", stream.next())
            .await
            .unwrap()
            .unwrap();
        uptimes.push(s.uptime_s);
    }
    assert!(
        uptimes.windows(2).all(|w| w[0] < w[1]),
        "uptime must grow: {uptimes:?}"
    );

    let err = client
        .agent()
        .watch_status(v1::WatchStatusRequest { interval_ms: 5 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("interval_ms"), "{}", err.message());
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_answer() {
    let (agent, _dir) = start(None).await;
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    for service in ["", "readmit.v1.Agent"] {
        let reply = client
            .health()
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    let unknown = client
        .health()
        .check(HealthCheckRequest {
            service: "nope.Svc".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);

    let requests = futures_util::stream::iter([
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "readmit.v1.Tracking".into(),
            )),
        },
    ]);
    let mut replies = client
        .reflection()
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let listed = within("reflection", replies.next()).await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("expected a service list, got {listed:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    // Every service an agent with every role serves, and nothing it does not serve.
    for name in [
        "readmit.v1.Agent",
        "readmit.v1.Etl",
        "readmit.v1.Tracking",
        "readmit.v1.Inference",
        "readmit.v1.LoadTest",
        readmit_proto::OIP_SERVICE_NAME,
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    let file = within("reflection", replies.next()).await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(fd)) = file.message_response else {
        panic!("expected a file descriptor, got {file:?}");
    };
    assert!(!fd.file_descriptor_proto.is_empty());
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn http_probes_and_prometheus_metrics() {
    let (agent, _dir) = start(None).await;
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    client
        .agent()
        .get_info(v1::GetInfoRequest {})
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = agent.http_url();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");

    let missing = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error_code"], "ENDPOINT_NOT_FOUND");

    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let find = |name: &'static str| scrape.samples.iter().filter(move |s| s.metric == name);
    assert_eq!(find("readmit_build_info").count(), 1);
    assert!(find("process_resident_memory_bytes").count() == 1);
    let info_calls = find("readmit_grpc_requests_total")
        .find(|s| s.labels.get("method") == Some("/readmit.v1.Agent/GetInfo"))
        .expect("the GetInfo call is counted");
    assert_eq!(info_calls.labels.get("code"), Some("Ok"));
    assert!(find("readmit_http_requests_total").any(|s| s.labels.get("route") == Some("/healthz")));
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn the_token_guards_grpc_and_mutating_http() {
    let (agent, _dir) = start(Some("right-token")).await;

    for token in [None, Some("wrong-token")] {
        let client = Client::connect(&agent.grpc_url(), token).await.unwrap();
        let err = client
            .agent()
            .get_info(v1::GetInfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "token {token:?}");
        let err = client
            .health()
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::Unauthenticated,
            "health with token {token:?}"
        );
    }
    let client = Client::connect(&agent.grpc_url(), Some("right-token"))
        .await
        .unwrap();
    let info = client
        .agent()
        .get_info(v1::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.auth_required);

    let http = reqwest::Client::new();
    let base = agent.http_url();
    let open = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        open.status(),
        200,
        "reads stay open for scrapers and probes"
    );
    for bad in [None, Some("Bearer wrong-token")] {
        let mut request = http.post(format!("{base}/api/anything"));
        if let Some(h) = bad {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "header {bad:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let allowed = http
        .post(format!("{base}/api/anything"))
        .bearer_auth("right-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.status(),
        404,
        "past the guard, the route does not exist"
    );

    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("readmit_grpc_requests_total")
                && l.contains("code=\"Unauthenticated\"")),
        "refused calls are counted"
    );
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_streams_and_closes_listeners() {
    let (agent, _dir) = start(None).await;
    let url = agent.grpc_url();
    let http_url = agent.http_url();
    let client = Client::connect(&url, None).await.unwrap();
    let mut stream = client
        .agent()
        .watch_status(v1::WatchStatusRequest { interval_ms: 100 })
        .await
        .unwrap()
        .into_inner();
    within("first sample", stream.next())
        .await
        .unwrap()
        .unwrap();

    within("graceful shutdown", agent.stop()).await.unwrap();
    // The watcher's stream ends cleanly instead of holding the shutdown open.
    let rest: Vec<_> = within("the stream's end", stream.collect::<Vec<_>>()).await;
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");

    assert!(
        Client::connect(&url, None).await.is_err(),
        "the gRPC listener is closed"
    );
    assert!(
        reqwest::get(format!("{http_url}/healthz")).await.is_err(),
        "HTTP is closed"
    );
}
