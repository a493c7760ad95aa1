//! The ways in that a review found, each tried against a real agent on 127.0.0.1:0 with the
//! real client, and seen closed: trigger parameters reaching a shell command, secrets in a
//! shell task's environment, paths outside the agent's directories, gzip bombs and oversized
//! uploads, unauthenticated reads, metric label floods, and token scopes and rotation.

mod security_support;
mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use readmit_agent::settings::RawSettings;
use readmit_proto::Client;
use readmit_proto::v1;
use security_support::{
    put_chunked, series, spawn_agent, start, tokens_file, trigger_request, upload,
};
use tonic::Code;

const ADMIN: &str = "admin-secret-1";
const VIEWER: &str = "viewer-secret-2";

#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_cannot_change_a_shell_command() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let marker = dir.path().join("pwned");
    std::fs::write(
        dags.join("note.toml"),
        r#"
name = "note"
[params]
note = { type = "string", default = "hello" }
count = 3
[[tasks]]
id = "write"
kind = "shell"
params = { command = "printf '%s' \"$READMIT_PARAM_NOTE\" > note.txt" }
"#,
    )
    .unwrap();
    let agent = start(RawSettings {
        dags_dir: dags.display().to_string(),
        ..RawSettings::loopback(dir.path(), &[readmit_agent::Role::Etl])
    })
    .await;
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    let mut etl = client.etl();

    // The override that used to replace the command: refused, naming the parameter.
    let touch = format!("touch {}", marker.display());
    let err = etl
        .trigger_dag(trigger_request("note", &[("command", &touch)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("\"command\"") && err.message().contains("count, note"),
        "{}",
        err.message()
    );
    // Ill-typed values are refused the same way, before any run is queued.
    let err = etl
        .trigger_dag(trigger_request("note", &[("count", "three")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("count") && err.message().contains("int"),
        "{}",
        err.message()
    );
    let runs = etl
        .list_dag_runs(v1::ListDagRunsRequest {
            dag: "note".into(),
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(runs.runs.is_empty(), "no run was queued: {:?}", runs.runs);

    // A declared value full of shell syntax is only ever data in an environment variable.
    let sneaky = format!("x'; {touch}; echo '$(touch {})", marker.display());
    let run = etl
        .trigger_dag(trigger_request("note", &[("note", &sneaky)]))
        .await
        .unwrap()
        .into_inner();
    let run = support::wait_for_run(&client, &run.run_id, support::run_finished, 30).await;
    assert_eq!(run.state, v1::RunState::Succeeded as i32, "{run:?}");
    let written =
        std::fs::read_to_string(dir.path().join("runs").join(&run.run_id).join("note.txt"));
    assert_eq!(written.unwrap(), sneaky);
    assert!(!marker.exists(), "the injected command must never run");
    agent.stop().await.unwrap();
}

/// The agent binary with secrets in its environment, as a badly kept host would give it.
#[tokio::test(flavor = "multi_thread")]
async fn a_shell_task_sees_no_secret_from_the_agent_environment() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("printenv.toml"),
        r#"
name = "printenv"
env = ["READMIT_TEST_ALLOWED"]
[params]
colour = "blue"
[[tasks]]
id = "env"
kind = "shell"
params = { command = "env" }
"#,
    )
    .unwrap();
    let (mut child, client) = spawn_agent(
        &[
            ("READMIT_TOKEN", "token-in-the-environment"),
            ("AWS_SECRET_ACCESS_KEY", "aws-key-in-the-environment"),
            ("AWS_ACCESS_KEY_ID", "aws-id-in-the-environment"),
            ("READMIT_TEST_ALLOWED", "allowed-by-the-dag-file"),
        ],
        dir.path(),
        &dags,
        "token-in-the-environment",
    )
    .await;
    let run = support::trigger(&client, "printenv", &[]).await;
    let run = support::wait_for_run(&client, &run.run_id, support::run_finished, 30).await;
    assert_eq!(run.state, v1::RunState::Succeeded as i32, "{run:?}");
    let logs = client
        .etl()
        .get_run_logs(v1::GetRunLogsRequest {
            run_id: run.run_id.clone(),
            task_id: "env".into(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let env: Vec<&str> = logs.lines.iter().map(|l| l.message.as_str()).collect();
    let all = env.join("\n");
    for secret in [
        "token-in-the-environment",
        "aws-key-in-the-environment",
        "aws-id-in-the-environment",
    ] {
        assert!(!all.contains(secret), "{secret} leaked into:\n{all}");
    }
    for expected in [
        "PATH=",
        "HOME=",
        "READMIT_RUN_DIR=",
        "READMIT_PARAM_COLOUR=blue",
        "READMIT_TEST_ALLOWED=allowed-by-the-dag-file",
    ] {
        assert!(
            env.iter().any(|l| l.starts_with(expected)),
            "{expected} missing:\n{all}"
        );
    }
    assert!(
        !env.iter()
            .any(|l| l.starts_with("AWS_") || l.starts_with("READMIT_TOKEN")),
        "{all}"
    );

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !stderr.contains("token-in-the-environment"),
        "the token is never logged:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_side_paths_stay_in_their_directories_and_echo_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let import = dir.path().join("import");
    std::fs::create_dir_all(&import).unwrap();
    // A file outside whose first line would be echoed by the header check.
    let outside = dir.path().join("outside.csv");
    std::fs::write(&outside, "hunter2_password,ssn\n1,2\n").unwrap();
    std::os::unix::fs::symlink(&outside, import.join("link.csv")).unwrap();
    let agent = start(RawSettings {
        import_dir: import.display().to_string(),
        ..RawSettings::loopback(&data, &[readmit_agent::Role::Etl])
    })
    .await;
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    let mut etl = client.etl();
    let ingest = |path: String| v1::IngestRequest {
        path,
        split: v1::SplitKind::Original as i32,
        replace: false,
    };
    for path in [
        outside.display().to_string(),
        import.join("link.csv").display().to_string(),
        format!("{}/../outside.csv", import.display()),
        "../../outside.csv".to_owned(),
        "/etc/passwd".to_owned(),
        "/proc/self/environ".to_owned(),
    ] {
        let err = etl.ingest(ingest(path.clone())).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err:?}");
        let m = err.message();
        assert!(
            !m.contains("hunter2") && !m.contains("root:"),
            "{path}: {m}"
        );
        assert!(m.contains("path"), "{path}: {m}");
    }
    // Inside the import directory, a malformed header is reported (it is the operator's file).
    std::fs::write(import.join("mine.csv"), "not_a_column\n1\n").unwrap();
    let err = etl
        .ingest(ingest(import.join("mine.csv").display().to_string()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("mine.csv"), "{}", err.message());

    let synth = |path: &str| v1::SynthesizeDatasetRequest {
        rows: 10,
        seed: 1,
        path: path.into(),
    };
    let escape = dir.path().join("written-outside.csv");
    for path in [
        escape.display().to_string(),
        "../raw.db".to_owned(),
        "../../written-outside.csv".to_owned(),
    ] {
        let err = etl.synthesize_dataset(synth(&path)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err:?}");
    }
    assert!(!escape.exists());
    // A symlinked directory inside that leads out is refused too.
    std::os::unix::fs::symlink(dir.path(), import.join("up")).unwrap();
    let err = etl
        .synthesize_dataset(synth(&import.join("up/x.csv").display().to_string()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(!dir.path().join("x.csv").exists());
    // The ingest_raw DAG's path goes through the same check: the run fails, echoing nothing.
    let run = support::trigger(
        &client,
        "ingest_raw",
        &[("path", outside.to_str().unwrap())],
    )
    .await;
    let run = support::wait_for_run(&client, &run.run_id, support::run_finished, 30).await;
    assert_eq!(run.state, v1::RunState::Failed as i32, "{run:?}");
    assert!(run.error.contains("outside"), "{}", run.error);
    let logs = etl
        .get_run_logs(v1::GetRunLogsRequest {
            run_id: run.run_id.clone(),
            task_id: String::new(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        logs.lines.iter().all(|l| !l.message.contains("hunter2")),
        "{:?}",
        logs.lines
    );
    // A plain name lands in the data sets directory, and ingests from there.
    let made = etl
        .synthesize_dataset(synth("mine_synthetic.csv"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        Path::new(&made.path).starts_with(data.join("datasets").canonicalize().unwrap())
            || Path::new(&made.path)
                .starts_with(std::path::absolute(data.join("datasets")).unwrap()),
        "{}",
        made.path
    );
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bombs_and_oversized_uploads_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let import = dir.path().join("import");
    std::fs::create_dir_all(&import).unwrap();
    let limit = 1024 * 1024;
    let agent = start(RawSettings {
        import_dir: import.display().to_string(),
        max_ingest_bytes: limit,
        max_artifact_bytes: 4096,
        ..RawSettings::loopback(&dir.path().join("data"), &readmit_agent::Role::ALL)
    })
    .await;
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();

    // 64 MiB of zeros in 64 KiB of gzip: stopped at 1 MiB of output.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 200 * 1024, "{}", bomb.len());
    let err = upload(&client, "bomb.csv.gz", &bomb).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("max_ingest_bytes") && err.message().contains(&limit.to_string()),
        "{}",
        err.message()
    );
    // The same bomb by path, and a plain file past the limit, uploaded and by path.
    std::fs::write(import.join("bomb.csv.gz"), &bomb).unwrap();
    let big = vec![b'a'; 2 * 1024 * 1024];
    std::fs::write(import.join("big.csv"), &big).unwrap();
    for path in ["bomb.csv.gz", "big.csv"] {
        let err = client
            .etl()
            .ingest(v1::IngestRequest {
                path: import.join(path).display().to_string(),
                split: 0,
                replace: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{path}: {err:?}");
        assert!(
            err.message().contains("max_ingest_bytes"),
            "{}",
            err.message()
        );
    }
    let err = upload(&client, "big.csv", &big).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("max_ingest_bytes"),
        "{}",
        err.message()
    );

    // Artifact PUTs: 413 past max_artifact_bytes, with a length up front or streamed.
    let http = reqwest::Client::new();
    let base = agent.http_url();
    let created: serde_json::Value = http
        .post(format!("{base}/api/2.0/mlflow/runs/create"))
        .json(&serde_json::json!({"experiment_id": "0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = created["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = |name: &str| {
        format!("{base}/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/{name}")
    };
    let small = http
        .put(at("small.bin"))
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    let sized = http
        .put(at("sized.bin"))
        .body(vec![1u8; 10_000])
        .send()
        .await
        .unwrap();
    assert_eq!(sized.status(), 413);
    assert!(sized.text().await.unwrap().contains("max_artifact_bytes"));
    let path = format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/streamed.bin");
    let (status, body) = put_chunked(agent.http_addr, &path, 10, 1000).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_artifact_bytes"), "{body}");
    let gone = http.get(at("streamed.bin")).send().await.unwrap();
    assert_eq!(gone.status(), 404, "nothing half-written stays behind");

    // Still healthy: probes answer and a small valid upload still works.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    client
        .etl()
        .get_data_status(v1::GetDataStatusRequest {})
        .await
        .unwrap();
    agent.stop().await.unwrap();
}

/// Reads of the MLflow API (and artifact downloads) that were open with a token set.
const MLFLOW_READS: &[&str] = &[
    "/api/2.0/mlflow/experiments/get?experiment_id=0",
    "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
    "/api/2.0/mlflow/experiments/search",
    "/api/2.0/mlflow/runs/get?run_id=abc",
    "/api/2.0/mlflow/metrics/get-history?run_id=abc&metric_key=m",
    "/api/2.0/mlflow/registered-models/search",
    "/api/2.0/mlflow/registered-models/get?name=m",
    "/api/2.0/mlflow/model-versions/search",
    "/api/2.0/mlflow/logged-models/abc",
    "/ajax-api/2.0/mlflow/experiments/search",
    "/api/2.0/mlflow-artifacts/artifacts?path=0",
    "/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/model.onnx",
    "/no/such/route",
];

#[tokio::test(flavor = "multi_thread")]
async fn with_tokens_every_http_route_but_the_probes_needs_one_of_the_right_scope() {
    let dir = tempfile::tempdir().unwrap();
    let file = tokens_file(
        dir.path(),
        &format!("ops:admin:{ADMIN}\nviewer:read:{VIEWER}\n"),
    );
    let agent = start(RawSettings {
        tokens_file: Some(file),
        ..RawSettings::loopback(&dir.path().join("data"), &[readmit_agent::Role::Tracking])
    })
    .await;
    let http = reqwest::Client::new();
    let base = agent.http_url();
    for path in MLFLOW_READS {
        let open = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(open.status(), 401, "GET {path} without a token");
        let read = http
            .get(format!("{base}{path}"))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap();
        assert!(
            ![401, 403].contains(&read.status().as_u16()),
            "GET {path} with a read token: {}",
            read.status()
        );
    }
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http.get(format!("{base}{probe}"))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{probe}"
        );
    }
    // Searches are POSTs that change nothing: a read token may; a mutation needs admin.
    let search = http
        .post(format!("{base}/api/2.0/mlflow/runs/search"))
        .bearer_auth(VIEWER)
        .json(&serde_json::json!({"experiment_ids": ["0"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 200);
    let create = |token: &str| {
        http.post(format!("{base}/api/2.0/mlflow/experiments/create"))
            .bearer_auth(token)
            .json(&serde_json::json!({"name": format!("by-{token}")}))
            .send()
    };
    let refused = create(VIEWER).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("viewer") && body.contains("admin") && !body.contains(VIEWER),
        "{body}"
    );
    assert_eq!(create(ADMIN).await.unwrap().status(), 200);
    agent.stop().await.unwrap();

    // metrics_auth closes /metrics too; the probes stay open.
    let agent = start(RawSettings {
        token: Some(ADMIN.into()),
        metrics_auth: true,
        ..RawSettings::loopback(&dir.path().join("data2"), &[readmit_agent::Role::Tracking])
    })
    .await;
    let base = agent.http_url();
    assert_eq!(
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(format!("{base}/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_random_paths_and_methods_leaves_the_series_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(RawSettings {
        token: Some(ADMIN.into()),
        ..RawSettings::loopback(dir.path(), &readmit_agent::Role::ALL)
    })
    .await;
    let http = reqwest::Client::new();
    let base = agent.http_url();
    for i in 0..150 {
        let method = reqwest::Method::from_bytes(format!("X{i}Q").as_bytes()).unwrap();
        let path = format!("{base}/api/2.0/mlflow/random-{i}?q={i}");
        let _ = http.request(method, &path).send().await.unwrap();
        let _ = http.get(format!("{base}/random/{i}")).send().await.unwrap();
        let _ = http
            .post(format!("{base}/api/2.0/mlflow/runs/get?run_id={i}"))
            .send()
            .await
            .unwrap();
    }
    let channel = tonic::transport::Channel::from_shared(agent.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..150 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = [
            format!("/readmit.v1.Etl/Random{i}"),
            format!("/grpc.health.v1.Health/Random{i}"),
            format!("/other.Service{i}/Call"),
        ][i % 3]
            .parse()
            .unwrap();
        let codec = tonic_prost::ProstCodec::<v1::GetInfoRequest, v1::AgentInfo>::default();
        let _ = grpc
            .unary(tonic::Request::new(v1::GetInfoRequest {}), path, codec)
            .await;
    }
    let text = support::text(&http, format!("{base}/metrics")).await;
    let http_series = series(&text, "readmit_http_requests_total");
    let grpc_series = series(&text, "readmit_grpc_requests_total");
    let all = format!("{}\n{}", http_series.join("\n"), grpc_series.join("\n"));
    assert!(
        !all.contains("random") && !all.contains("Random") && !all.contains("X1Q"),
        "{all}"
    );
    assert!(
        http_series.len() <= 6,
        "{} HTTP series:\n{all}",
        http_series.len()
    );
    // The flood collapses into one `other` series; the rest are real methods, some called by
    // the agent's own roles (the inference role follows the registry over gRPC).
    let other = grpc_series
        .iter()
        .filter(|l| l.contains("method=\"other\""))
        .count();
    assert!(other <= 1, "{other} gRPC series for unknown paths:\n{all}");
    assert!(
        grpc_series
            .iter()
            .filter(|l| !l.contains("method=\"other\""))
            .all(|l| l.contains("method=\"/readmit.v1.") || l.contains("method=\"/grpc.")),
        "{all}"
    );
    assert!(
        http_series.iter().any(|l| l.contains("status=\"401\"")),
        "refused calls are counted as such:\n{all}"
    );
    assert!(
        grpc_series.iter().any(|l| l.contains("method=\"other\"")),
        "{all}"
    );
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_token_cannot_mutate_and_two_tokens_serve_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let file = tokens_file(
        dir.path(),
        &format!(
            "# rotation: old and new both valid\nold:admin:{ADMIN}\nnew:admin:new-secret-3\nviewer:read:{VIEWER}\n"
        ),
    );
    let agent = start(RawSettings {
        tokens_file: Some(file.clone()),
        ..RawSettings::loopback(&dir.path().join("data"), &readmit_agent::Role::ALL)
    })
    .await;
    let url = agent.grpc_url();
    let viewer = Client::connect(&url, Some(VIEWER)).await.unwrap();
    viewer
        .etl()
        .list_dags(v1::ListDagsRequest {})
        .await
        .unwrap();
    viewer
        .agent()
        .get_info(v1::GetInfoRequest {})
        .await
        .unwrap();
    viewer
        .tracking()
        .list_experiments(v1::ListExperimentsRequest::default())
        .await
        .unwrap();
    let refused = [
        viewer
            .etl()
            .trigger_dag(trigger_request("append_batch", &[]))
            .await
            .map(|_| ()),
        viewer
            .etl()
            .set_dag_paused(v1::SetDagPausedRequest {
                dag: "append_batch".into(),
                paused: true,
            })
            .await
            .map(|_| ()),
        viewer
            .etl()
            .synthesize_dataset(v1::SynthesizeDatasetRequest {
                rows: 5,
                seed: 1,
                path: String::new(),
            })
            .await
            .map(|_| ()),
        viewer
            .tracking()
            .create_experiment(v1::CreateExperimentRequest {
                name: "by-viewer".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
    ];
    for (i, r) in refused.into_iter().enumerate() {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "call {i}: {err:?}");
        assert!(
            err.message().contains("viewer") && !err.message().contains(VIEWER),
            "{}",
            err.message()
        );
    }

    // Both admin tokens work during the rotation.
    for secret in [ADMIN, "new-secret-3"] {
        let admin = Client::connect(&url, Some(secret)).await.unwrap();
        admin
            .etl()
            .set_dag_paused(v1::SetDagPausedRequest {
                dag: "append_batch".into(),
                paused: true,
            })
            .await
            .unwrap();
    }
    // The old one is removed from the file: refused within seconds, no restart.
    std::fs::write(
        &file,
        format!("new:admin:new-secret-3\nviewer:read:{VIEWER}\n"),
    )
    .unwrap();
    let old = Client::connect(&url, Some(ADMIN)).await.unwrap();
    let mut refused_at = None;
    for i in 0..100 {
        if let Err(e) = old.agent().get_info(v1::GetInfoRequest {}).await {
            assert_eq!(e.code(), Code::Unauthenticated);
            refused_at = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused_at.is_some(),
        "the removed token still works after 10 s"
    );
    let new = Client::connect(&url, Some("new-secret-3")).await.unwrap();
    new.agent().get_info(v1::GetInfoRequest {}).await.unwrap();

    // HTTP follows the same scopes.
    let http = reqwest::Client::new();
    let base = agent.http_url();
    let put = http
        .post(format!("{base}/api/2.0/mlflow/experiments/create"))
        .bearer_auth(VIEWER)
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    agent.stop().await.unwrap();
}
