//! The load-test engine against real agents and real servers on loopback: a closed loop sends
//! exactly as many requests as the served model counts, over HTTP and gRPC, and the finished
//! test is a run of `load_tests` in tracking; requests carry different records of the test
//! split when the agent holds one; an open loop against a server that stalls once
//! shows the stall in its corrected percentiles where the service time does not; a capacity
//! search finds a throttled server's known capacity; stop, watch and abort work. What bounds
//! the engine is in `safety`.

mod safety;
#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use readmit_proto::{Client, v1};
use support::bundles::{self, Kind};

pub(crate) async fn agent(dir: &std::path::Path, roles: &[Role]) -> (RunningAgent, Client) {
    let settings = RawSettings::loopback(dir, roles).validate().unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    (agent, client)
}

/// A real axum server on loopback answering POST /predict with `handler`.
pub(crate) async fn server<H, T>(handler: H) -> SocketAddr
where
    H: axum::handler::Handler<T, ()> + Clone + Send + Sync + 'static,
    T: 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = axum::Router::new().route("/predict", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

pub(crate) fn closed(users: u32, think_ms: u64) -> Option<v1::load_test_spec::Load> {
    Some(v1::load_test_spec::Load::Closed(v1::ClosedLoop {
        users,
        spawn_rate: 0.0,
        think_min_ms: think_ms,
        think_max_ms: think_ms,
    }))
}

pub(crate) fn target(url: String, kind: v1::TargetKind) -> Option<v1::LoadTarget> {
    Some(v1::LoadTarget {
        url,
        kind: kind as i32,
        ..Default::default()
    })
}

/// Follows the test with `WatchLoadTest` to its end; the samples seen.
async fn watch_to_end(client: &Client, id: &str) -> Vec<v1::LoadTestSample> {
    let mut stream = client
        .load_test()
        .watch_load_test(v1::LoadTestRef { test_id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut samples = Vec::new();
    while let Some(s) = tokio::time::timeout(Duration::from_secs(120), stream.next())
        .await
        .expect("a sample at least every two minutes")
    {
        samples.push(s.unwrap());
    }
    samples
}

pub(crate) use support::load_test_ended as ended;

/// `inference_requests_total` for one endpoint, every outcome.
async fn served_requests(http: &reqwest::Client, base: &str, endpoint: &str) -> f64 {
    let text = support::text(http, format!("{base}/metrics")).await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "inference_requests_total" && s.labels.get("endpoint") == Some(endpoint)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

pub(crate) fn figures(s: &v1::LoadTestSummary) -> v1::Figures {
    s.total.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_loop_counts_match_the_servers_counter_and_the_test_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = agent(dir.path(), &[Role::Tracking, Role::Inference]).await;
    let version = bundles::publish(&client, &{
        let bundle = dir.path().join("bundle");
        bundles::write(&bundle, Kind::Logistic(0.1));
        bundle
    })
    .await
    .version;
    bundles::promote(&client, version).await;
    bundles::wait_served(&client, version, 30).await;
    let http = reqwest::Client::new();
    let base = agent.http_url();

    let kinds = [
        (v1::TargetKind::Predict, agent.http_url(), "predict", 300),
        (
            v1::TargetKind::GrpcPredict,
            agent.grpc_url(),
            "grpc_predict",
            120,
        ),
        (
            v1::TargetKind::Invocations,
            agent.http_url(),
            "invocations",
            60,
        ),
        (v1::TargetKind::OipInfer, agent.http_url(), "oip_rest", 60),
    ];
    let count = kinds.len();
    for (kind, url, endpoint, requests) in kinds {
        let before = served_requests(&http, &base, endpoint).await;
        let started = client
            .load_test()
            .start_load_test(v1::LoadTestSpec {
                name: format!("count-{endpoint}"),
                target: Some(v1::LoadTarget {
                    url,
                    kind: kind as i32,
                    batch: 5,
                    ..Default::default()
                }),
                load: closed(6, 0),
                duration_ms: 120_000,
                max_requests: requests,
                thresholds: vec!["errors<1%".into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(started.state, v1::LoadTestState::Running as i32);
        let samples = watch_to_end(&client, &started.test_id).await;
        assert!(!samples.is_empty());
        assert_ne!(
            samples.last().unwrap().state,
            v1::LoadTestState::Running as i32,
            "the stream's last sample says how the test ended"
        );
        let s = ended(&client, &started.test_id, true).await;
        let total = figures(&s);
        assert_eq!(s.state, v1::LoadTestState::Finished as i32, "{s:?}");
        assert_eq!(total.requests, requests, "{s:?}");
        assert_eq!(total.failures, 0, "{s:?}");
        assert!(s.passed, "{s:?}");
        let after = served_requests(&http, &base, endpoint).await;
        assert_eq!(
            after - before,
            requests as f64,
            "the engine sent what the server counted ({endpoint})"
        );
        // Kept: a finished run of load_tests with the summary and per-second metrics.
        assert!(!s.run_id.is_empty(), "{s:?}");
        let run = client
            .tracking()
            .get_run(v1::RunRef {
                run_id: s.run_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let info = run.info.unwrap();
        assert_eq!(info.status, v1::RunStatus::Finished as i32);
        let experiment = client.experiment_id("load_tests").await.unwrap().unwrap();
        assert_eq!(info.experiment_id, experiment);
        let data = run.data.unwrap();
        let metric = |k: &str| data.metrics.iter().find(|m| m.key == k).map(|m| m.value);
        assert_eq!(metric("requests"), Some(requests as f64));
        assert!(metric("total_p95_ms").is_some());
        let param = |k: &str| {
            data.params
                .iter()
                .find(|p| p.key == k)
                .map(|p| p.value.clone())
        };
        let kind_name = endpoint.replace("oip_rest", "oip_infer");
        assert_eq!(param("target_kind"), Some(kind_name));
        assert_eq!(param("users").as_deref(), Some("6"));
        let history = client
            .tracking()
            .get_metric_history(v1::GetMetricHistoryRequest {
                run_id: s.run_id.clone(),
                metric_key: "rps".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!history.metrics.is_empty());
        let report = client
            .download_bytes(&s.run_id, "report.json", 1 << 24)
            .await
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
        assert_eq!(report["id"], s.test_id);
        assert_eq!(report["total"]["requests"], requests);
    }
    // List reads the kept runs back.
    let listed = client
        .load_test()
        .list_load_tests(v1::ListLoadTestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tests;
    assert_eq!(listed.len(), count, "{listed:?}");
    assert!(listed.iter().all(|t| !t.run_id.is_empty()));
    agent.stop().await.unwrap();

    // A new agent on the same tracking store still shows the kept tests.
    let (agent, client) = agent_again(dir.path()).await;
    let listed = client
        .load_test()
        .list_load_tests(v1::ListLoadTestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tests;
    assert_eq!(listed.len(), count, "{listed:?}");
    let shown = client
        .load_test()
        .get_load_test(v1::LoadTestRef {
            test_id: listed[0].test_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(figures(&shown).requests > 0);
    agent.stop().await.unwrap();
}

pub(crate) async fn agent_again(dir: &std::path::Path) -> (RunningAgent, Client) {
    agent(dir, &[Role::Tracking, Role::Inference]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_loop_shows_a_stall_the_service_time_hides() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = agent(dir.path(), &[Role::Inference]).await;
    // The 100th request stalls the only connection for a second.
    let seen = Arc::new(AtomicU64::new(0));
    let addr = server(move || {
        let seen = Arc::clone(&seen);
        async move {
            if seen.fetch_add(1, Ordering::Relaxed) == 100 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            "{}"
        }
    })
    .await;
    let started = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(format!("http://{addr}"), v1::TargetKind::Predict),
            load: Some(v1::load_test_spec::Load::Open(v1::OpenLoop {
                start_rate: 100.0,
                stages: vec![],
                connections: 1,
            })),
            duration_ms: 5_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let s = ended(&client, &started.test_id, false).await;
    let total = figures(&s);
    let corrected = total.latency.unwrap();
    let service = total.service.unwrap();
    eprintln!(
        "stall: corrected {corrected:?}, service {service:?}, late {}, missed {}",
        total.late, total.missed
    );
    // 500 requests due; the ~100 due during the stall wait up to 1 s each.
    assert!(total.requests >= 400, "{total:?}");
    assert!(
        total.late >= 50,
        "requests held back by the stall are late: {total:?}"
    );
    assert!(
        corrected.p99_ms > 500.0 && corrected.p90_ms > 100.0,
        "the corrected percentiles show the stall: {corrected:?}"
    );
    assert!(
        service.p99_ms < 200.0 && service.max_ms >= 1000.0,
        "the service time sees one slow request only: {service:?}"
    );
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capacity_search_finds_a_throttled_servers_capacity() {
    const CAPACITY: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = agent(dir.path(), &[Role::Inference]).await;
    // Eight requests at a time, 200 ms each: a ninth user waits a whole turn. The objective
    // leaves 100 ms for a loaded machine's delays and breaks at a whole turn's wait.
    let permits = Arc::new(tokio::sync::Semaphore::new(CAPACITY));
    let addr = server(move || {
        let permits = Arc::clone(&permits);
        async move {
            let _permit = permits.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            "{}"
        }
    })
    .await;
    let started = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(format!("http://{addr}"), v1::TargetKind::Predict),
            load: closed(0, 0),
            thresholds: vec!["p95<300ms".into(), "errors<1%".into()],
            capacity: Some(v1::CapacitySearch {
                start: 2,
                step: 4,
                max: 30,
                step_duration_ms: 4_000,
                refine: 3,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let s = ended(&client, &started.test_id, false).await;
    let found = s.capacity.clone().unwrap();
    let levels: Vec<(u32, bool)> = s.steps.iter().map(|st| (st.level, st.passed)).collect();
    eprintln!("capacity: {found:?}, steps (users, held) {levels:?}");
    let max = f64::from(found.max_level);
    assert!(
        (max - CAPACITY as f64).abs() <= 0.15 * CAPACITY as f64,
        "found {} users, the server holds {CAPACITY}: steps {levels:?}",
        found.max_level
    );
    assert_eq!(found.dimension, "users");
    assert!(s.passed);
    assert!(s.steps.len() >= 4, "{levels:?}");
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_stop_and_abort_on_a_broken_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = agent(dir.path(), &[Role::Inference]).await;
    let addr = server(|| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        "{}"
    })
    .await;
    let url = format!("http://{addr}");
    let long = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(url.clone(), v1::TargetKind::Predict),
            load: closed(3, 10),
            duration_ms: 600_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Two samples, then the watcher goes away: the test runs on.
    {
        let mut stream = client
            .load_test()
            .watch_load_test(v1::LoadTestRef {
                test_id: long.test_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        for _ in 0..2 {
            let sample = stream.next().await.unwrap().unwrap();
            assert_eq!(sample.state, v1::LoadTestState::Running as i32);
            assert_eq!(sample.test_id, long.test_id);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let get = |id: String| {
        let client = client.clone();
        async move {
            client
                .load_test()
                .get_load_test(v1::LoadTestRef { test_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let running = get(long.test_id.clone()).await;
    assert_eq!(running.state, v1::LoadTestState::Running as i32);
    assert!(running.last.unwrap().elapsed_s >= 2.5);

    // The cap on concurrent tests (2 by default) refuses a third.
    let second = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(url.clone(), v1::TargetKind::Predict),
            load: closed(1, 10),
            duration_ms: 600_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let third = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(url.clone(), v1::TargetKind::Predict),
            load: closed(1, 10),
            duration_ms: 1_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(third.code(), tonic::Code::ResourceExhausted, "{third:?}");
    assert!(third.message().contains("loadtest_max_concurrent"));

    for id in [&long.test_id, &second.test_id] {
        let stopped = client
            .load_test()
            .stop_load_test(v1::LoadTestRef {
                test_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stopped.state, v1::LoadTestState::Stopped as i32);
        assert!(figures(&stopped).requests > 0);
    }
    // Watching an ended test gives its last sample and ends.
    let tail = watch_to_end(&client, &long.test_id).await;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].state, v1::LoadTestState::Stopped as i32);

    // A 20 ms server cannot hold p95<1ms: the test aborts long before its minute.
    let aborting = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(url, v1::TargetKind::Predict),
            load: closed(2, 0),
            duration_ms: 60_000,
            thresholds: vec!["p95<1ms".into()],
            abort_on_fail: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let s = ended(&client, &aborting.test_id, false).await;
    assert_eq!(s.state, v1::LoadTestState::Aborted as i32, "{s:?}");
    assert!(!s.passed);
    assert!(!s.thresholds[0].passed);
    assert!(s.ended_at_ms - s.started_at_ms < 30_000);

    // A watched test when the agent shuts down: the test stops, the stream ends, and the
    // agent's shutdown does not wait on either.
    let last = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(format!("http://{addr}"), v1::TargetKind::Predict),
            load: closed(2, 10),
            duration_ms: 600_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = client
        .load_test()
        .watch_load_test(v1::LoadTestRef {
            test_id: last.test_id,
        })
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(60), agent.stop())
        .await
        .expect("shutdown does not wait on a running test or its watcher")
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0;
        while let Some(Ok(_)) = stream.next().await {
            n += 1;
        }
        n
    })
    .await
    .expect("the stream ends with the agent");
    assert!(rest <= 2, "{rest} samples after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_carry_different_records_of_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = agent(dir.path(), &[Role::Etl, Role::Inference]).await;
    let mut etl = client.etl();
    let synth = etl
        .synthesize_dataset(v1::SynthesizeDatasetRequest {
            rows: 3000,
            seed: 11,
            path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    etl.ingest(v1::IngestRequest {
        path: synth.path.clone(),
        split: v1::SplitKind::Original as i32,
        replace: false,
    })
    .await
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let addr = {
        let seen = Arc::clone(&seen);
        server(move |axum::Json(record): axum::Json<serde_json::Value>| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(record["encounter_id"].clone());
                "{}"
            }
        })
        .await
    };
    let started = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            target: target(format!("http://{addr}"), v1::TargetKind::Predict),
            load: closed(3, 0),
            duration_ms: 60_000,
            max_requests: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.payload, "test_split");
    let s = ended(&client, &started.test_id, false).await;
    assert_eq!(figures(&s).requests, 100, "{s:?}");
    assert_eq!(figures(&s).failures, 0, "{s:?}");

    let frame = readmit_ml::data::read_csv(std::path::Path::new(&synth.path)).unwrap();
    let splits = readmit_ml::data::split_frame(
        &frame,
        readmit_ml::split::SplitMethod::Original,
        readmit_ml::split::ORIGINAL_SEED,
    )
    .unwrap();
    let test_ids: std::collections::HashSet<String> =
        readmit_ml::data::records(&splits.test, 0..splits.test.height())
            .unwrap()
            .iter()
            .map(|r| serde_json::to_value(r).unwrap()["encounter_id"].to_string())
            .collect();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 100);
    let distinct: std::collections::HashSet<String> = seen.iter().map(|v| v.to_string()).collect();
    assert_eq!(distinct.len(), 100, "each request a different record");
    assert!(
        distinct.iter().all(|id| test_ids.contains(id)),
        "every record is of the test split"
    );
    agent.stop().await.unwrap();
}
