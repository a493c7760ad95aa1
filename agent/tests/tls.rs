//! TLS on real agents on 127.0.0.1:0, with certificates made here with rcgen: gRPC and HTTP
//! round trips, handshakes that stall or fail without stopping anyone else, mutual TLS
//! refusing a certificate from another CA, an expired one and none, a certificate and a
//! client CA rotated under a running agent, and the real `mlflow` client over HTTPS.

mod support;

use support::certs::{Ca, Leaf, write};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use readmit_proto::{Client, ClientTls, v1};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An agent with the tracking role serving TLS with `server` (mutual when `client_ca`).
async fn start(dir: &Path, server: &Leaf, client_ca: Option<&str>) -> RunningAgent {
    let settings = RawSettings {
        tls_cert: Some(write(dir, "server.pem", &server.cert)),
        tls_key: Some(write(dir, "server-key.pem", &server.key)),
        tls_client_ca: client_ca.map(|pem| write(dir, "client-ca.pem", pem)),
        ..RawSettings::loopback(&dir.join("data"), &[Role::Tracking])
    }
    .validate()
    .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    assert!(agent.grpc_url().starts_with("https://127.0.0.1:"));
    agent
}

/// Client TLS options trusting `ca`, presenting `identity` if any.
fn client_tls(dir: &Path, tag: &str, ca: &str, identity: Option<&Leaf>) -> ClientTls {
    ClientTls {
        ca_cert: Some(write(dir, &format!("{tag}-ca.pem"), ca)),
        cert: identity.map(|l| write(dir, &format!("{tag}.pem"), &l.cert)),
        key: identity.map(|l| write(dir, &format!("{tag}-key.pem"), &l.key)),
    }
}

/// One gRPC call over a new connection; the error text when the connection or call fails.
async fn grpc_call(url: &str, tls: &ClientTls) -> Result<v1::AgentInfo, String> {
    let client = Client::connect_with(url, None, tls)
        .await
        .map_err(|e| e.to_string())?;
    client
        .agent()
        .get_info(v1::GetInfoRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("{s:?}"))
}

fn rustls_client(ca: &str, identity: Option<&Leaf>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        Some(leaf) => {
            let chain = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

/// An HTTPS client trusting `ca`, presenting `identity` if any.
fn https(ca: &str, identity: Option<&Leaf>) -> reqwest_tls::Client {
    reqwest_tls::Client::builder()
        .use_preconfigured_tls(rustls_client(ca, identity))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn healthz(client: &reqwest_tls::Client, agent: &RunningAgent) -> Result<u16, String> {
    client
        .get(format!("{}/healthz", agent.http_url()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| readmit_proto::error_chain(&e))
}

/// The certificate the agent presents to a new handshake on `addr`, offering the protocol
/// its listener speaks (`h2` for gRPC, `http/1.1` for HTTP).
async fn served_certificate(
    addr: std::net::SocketAddr,
    alpn: &str,
    ca: &str,
    identity: Option<&Leaf>,
) -> Result<CertificateDer<'static>, String> {
    let mut config = rustls_client(ca, identity);
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "no certificate presented".into())
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Polls `check` until it holds, failing the test after 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_and_http_answer_over_tls_while_bad_handshakes_stall_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let agent = start(dir.path(), &ca.issue("tracking", false), None).await;

    // A client that connects and never speaks, and one that speaks plain HTTP to the TLS
    // port: neither stops the accept loop nor delays the clients after them.
    let mut stalled = Vec::new();
    for addr in [agent.grpc_addr, agent.http_addr] {
        stalled.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), plain.read_to_end(&mut reply)).await;
        assert!(
            !String::from_utf8_lossy(&reply).contains("ok"),
            "a plain-text request must not be served"
        );
    }

    let tls = client_tls(dir.path(), "client", &ca.pem, None);
    let info = grpc_call(&agent.grpc_url(), &tls).await.unwrap();
    assert_eq!(info.roles, ["tracking"]);

    // Plain gRPC to the TLS listener, and TLS without the CA, both fail.
    let plain = format!("http://{}", agent.grpc_addr);
    assert!(grpc_call(&plain, &ClientTls::default()).await.is_err());
    let public_roots = grpc_call(&agent.grpc_url(), &ClientTls::default()).await;
    assert!(
        public_roots
            .as_ref()
            .is_err_and(|e| e.to_lowercase().contains("certificate")),
        "{public_roots:?}"
    );
    // TLS options with an http:// URL are refused rather than ignored.
    let err = Client::connect_with(&plain, None, &tls).await.unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");

    // HTTP: probes and the MLflow API over HTTPS.
    let http = https(&ca.pem, None);
    assert_eq!(healthz(&http, &agent).await, Ok(200));
    let created = http
        .post(format!(
            "{}/api/2.0/mlflow/experiments/create",
            agent.http_url()
        ))
        .header("content-type", "application/json")
        .body(r#"{"name": "over-tls"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let got = http
        .get(format!(
            "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name=over-tls",
            agent.http_url()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["experiment"]["name"], "over-tls");
    // An HTTPS client that does not trust the CA is refused by its own verification.
    let other = Ca::new("other CA");
    assert!(healthz(&https(&other.pem, None), &agent).await.is_err());

    drop(stalled);
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_refuses_another_ca_an_expired_certificate_and_none() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let other = Ca::new("other CA");
    let agent = start(dir.path(), &ca.issue("tracking", false), Some(&ca.pem)).await;
    let d = dir.path();

    let good = ca.issue("console", false);
    let cases = [
        ("good", Some(good.clone()), true),
        ("other-ca", Some(other.issue("console", false)), false),
        ("expired", Some(ca.issue("console", true)), false),
        ("none", None, false),
    ];
    for (tag, identity, accepted) in &cases {
        let tls = client_tls(d, tag, &ca.pem, identity.as_ref());
        let grpc = grpc_call(&agent.grpc_url(), &tls).await;
        assert_eq!(grpc.is_ok(), *accepted, "gRPC with {tag}: {grpc:?}");
        let http = healthz(&https(&ca.pem, identity.as_ref()), &agent).await;
        assert_eq!(http == Ok(200), *accepted, "HTTP with {tag}: {http:?}");
    }
    // The refusals left the listeners serving.
    let tls = client_tls(d, "good-again", &ca.pem, Some(&good));
    assert!(grpc_call(&agent.grpc_url(), &tls).await.is_ok());
    assert_eq!(healthz(&https(&ca.pem, Some(&good)), &agent).await, Ok(200));
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_and_a_client_ca_rotate_under_a_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test CA");
    let first = ca.issue("tracking", false);
    let agent = start(d, &first, Some(&ca.pem)).await;
    let client = ca.issue("console", false);
    assert_eq!(
        served_certificate(agent.grpc_addr, "h2", &ca.pem, Some(&client)).await,
        Ok(der(&first.cert))
    );
    let tls = client_tls(d, "console", &ca.pem, Some(&client));
    let connected = Client::connect_with(&agent.grpc_url(), None, &tls)
        .await
        .unwrap();

    // A new certificate and key written over the old files: new handshakes get it.
    let second = ca.issue("tracking", false);
    write(d, "server-key.pem", &second.key);
    write(d, "server.pem", &second.cert);
    let addr = agent.grpc_addr;
    eventually("the new certificate served", || {
        let (ca, client, second) = (ca.pem.clone(), client.clone(), der(&second.cert));
        async move { served_certificate(addr, "h2", &ca, Some(&client)).await == Ok(second) }
    })
    .await;
    let http = agent.http_addr;
    assert_eq!(
        served_certificate(http, "http/1.1", &ca.pem, Some(&client)).await,
        Ok(der(&second.cert)),
        "the HTTP listener serves it too"
    );
    // The connection made before the rotation still works, and so do new ones.
    connected
        .agent()
        .get_info(v1::GetInfoRequest {})
        .await
        .unwrap();
    assert!(grpc_call(&agent.grpc_url(), &tls).await.is_ok());

    // A half-written pair (a key that does not match the certificate) keeps the last good one.
    write(d, "server-key.pem", &ca.issue("tracking", false).key);
    tokio::time::sleep(readmit_agent::tls::RELOAD_POLL * 3).await;
    assert_eq!(
        served_certificate(addr, "h2", &ca.pem, Some(&client)).await,
        Ok(der(&second.cert))
    );
    write(d, "server-key.pem", &second.key);

    // The client CA replaced: the new CA's clients get in, the old CA's no longer do.
    let next = Ca::new("next CA");
    let next_client = next.issue("console", false);
    let next_tls = client_tls(d, "next", &ca.pem, Some(&next_client));
    assert!(grpc_call(&agent.grpc_url(), &next_tls).await.is_err());
    write(d, "client-ca.pem", &next.pem);
    let url = agent.grpc_url();
    eventually("the new client CA accepted", || {
        let (url, next_tls) = (url.clone(), next_tls.clone());
        async move { grpc_call(&url, &next_tls).await.is_ok() }
    })
    .await;
    assert!(grpc_call(&agent.grpc_url(), &tls).await.is_err());
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mlflow_client_logs_over_https_and_mutual_tls() {
    let Some(python) = support::python_with(&["mlflow"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let agent = start(dir.path(), &ca.issue("tracking", false), None).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let script = r#"
import mlflow
mlflow.set_experiment("over-https")
with mlflow.start_run() as run:
    mlflow.log_param("C", "0.1")
    mlflow.log_metric("val_roc_auc", 0.64)
    mlflow.log_text("hello", "note.txt")
client = mlflow.tracking.MlflowClient()
got = client.get_run(run.info.run_id)
assert got.data.metrics["val_roc_auc"] == 0.64, got.data.metrics
assert got.data.params["C"] == "0.1", got.data.params
assert mlflow.artifacts.load_text(run.info.artifact_uri + "/note.txt") == "hello"
print("ok")
"#;
    let run = |agent: &RunningAgent, cert: Option<&Path>, client: Option<&Path>| {
        let mut command = std::process::Command::new(&python);
        command
            .args(["-c", script])
            .env("MLFLOW_TRACKING_URI", agent.http_url())
            .env_remove("MLFLOW_TRACKING_CLIENT_CERT_PATH")
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
            .env_remove("MLFLOW_TRACKING_SERVER_CERT_PATH")
            .env_remove("REQUESTS_CA_BUNDLE");
        if let Some(cert) = cert {
            command.env("MLFLOW_TRACKING_SERVER_CERT_PATH", cert);
        }
        if let Some(client) = client {
            command.env("MLFLOW_TRACKING_CLIENT_CERT_PATH", client);
        }
        command.output().unwrap()
    };
    let trusted = tokio::task::block_in_place(|| run(&agent, Some(&ca_file), None));
    assert!(
        trusted.status.success() && String::from_utf8_lossy(&trusted.stdout).contains("ok"),
        "mlflow over HTTPS:\n{}\n{}",
        String::from_utf8_lossy(&trusted.stdout),
        String::from_utf8_lossy(&trusted.stderr)
    );
    // Without the CA, the client's verification refuses the agent's certificate.
    let untrusted = tokio::task::block_in_place(|| run(&agent, None, None));
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    agent.stop().await.unwrap();

    // Under mutual TLS, with its certificate and key in one PEM file.
    let mutual_dir = dir.path().join("mutual");
    let mutual = start(&mutual_dir, &ca.issue("tracking", false), Some(&ca.pem)).await;
    let client = ca.issue("mlflow", false);
    let client_file = write(
        dir.path(),
        "mlflow-client.pem",
        &format!("{}{}", client.cert, client.key),
    );
    let out = tokio::task::block_in_place(|| run(&mutual, Some(&ca_file), Some(&client_file)));
    assert!(
        out.status.success(),
        "mlflow over mutual TLS:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    mutual.stop().await.unwrap();
}

/// What an inference agent following `tracking` says of it, once it has said anything.
async fn following_error(agent: &RunningAgent, tls: &ClientTls) -> String {
    let client = Client::connect_with(&agent.grpc_url(), None, tls)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served = client
            .inference()
            .get_served_model(v1::GetServedModelRequest {})
            .await
            .unwrap()
            .into_inner();
        if !served.last_error.is_empty() || Instant::now() > deadline {
            return served.last_error;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inference_role_follows_tracking_over_mutual_tls_with_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test CA");
    let tracking = start(&d.join("t"), &ca.issue("tracking", false), Some(&ca.pem)).await;
    let ca_file = write(d, "ca.pem", &ca.pem);
    let own = ca.issue("inference", false);
    let follower = |tls_cert: Option<PathBuf>, tls_key: Option<PathBuf>, data: &str| RawSettings {
        tracking_url: tracking.grpc_url(),
        tls_ca: Some(ca_file.clone()),
        tls_cert,
        tls_key,
        ..RawSettings::loopback(&d.join(data), &[Role::Inference])
    };
    let inference = RunningAgent::start(
        follower(
            Some(write(d, "inference.pem", &own.cert)),
            Some(write(d, "inference-key.pem", &own.key)),
            "i",
        )
        .validate()
        .unwrap(),
    )
    .await
    .unwrap();
    let tls = client_tls(d, "console", &ca.pem, Some(&ca.issue("console", false)));
    // It reached the registry (over mutual TLS) and found nothing registered yet.
    let said = following_error(&inference, &tls).await;
    assert!(said.contains("resolves to no version"), "{said}");

    // Without a certificate of its own, the tracking role refuses it.
    let anonymous = RunningAgent::start(follower(None, None, "a").validate().unwrap())
        .await
        .unwrap();
    let said = following_error(&anonymous, &ClientTls::default()).await;
    // (TLS 1.3 refuses a client certificate after the client's side of the handshake, so
    // the follower sees the alert or just a closed connection.)
    assert!(
        !said.is_empty() && !said.contains("resolves to no version"),
        "{said}"
    );
    for agent in [inference, anonymous, tracking] {
        agent.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_with_every_role_calls_its_own_tracking_role_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test CA");
    let own = ca.issue("node", false);
    let settings = RawSettings {
        tls_cert: Some(write(d, "node.pem", &own.cert)),
        tls_key: Some(write(d, "node-key.pem", &own.key)),
        tls_client_ca: Some(write(d, "ca.pem", &ca.pem)),
        tls_ca: Some(d.join("ca.pem")),
        ..RawSettings::loopback(&d.join("data"), &Role::ALL)
    }
    .validate()
    .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let tls = client_tls(d, "console", &ca.pem, Some(&ca.issue("console", false)));
    let said = following_error(&agent, &tls).await;
    assert!(said.contains("resolves to no version"), "{said}");

    // The whole data path over mutual TLS: the ETL role logs and promotes a model in its
    // tracking role, and the inference role follows the promotion and serves it.
    let client = Client::connect_with(&agent.grpc_url(), None, &tls)
        .await
        .unwrap();
    let synth = client
        .etl()
        .synthesize_dataset(v1::SynthesizeDatasetRequest {
            rows: 4000,
            seed: 5,
            path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let steps: [(&str, Vec<(&str, &str)>); 4] = [
        ("ingest_raw", vec![("path", synth.path.as_str())]),
        (
            "append_batch",
            vec![("batch_size", "1000"), ("until_exhausted", "true")],
        ),
        ("preprocess_incremental", vec![]),
        ("train_and_register", vec![("models", "LR_C_0.1")]),
    ];
    for (dag, params) in &steps {
        let run = support::trigger(&client, dag, params).await;
        let run = support::wait_for_run(&client, &run.run_id, support::run_finished, 300).await;
        assert_eq!(run.state, v1::RunState::Succeeded as i32, "{dag}: {run:#?}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let served = loop {
        let served = client
            .inference()
            .get_served_model(v1::GetServedModelRequest {})
            .await
            .unwrap()
            .into_inner();
        if served.loaded || Instant::now() > deadline {
            break served;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(served.loaded && served.version == 1, "{served:?}");

    // The load-test engine sends over TLS too, presenting the agent's own certificate to its
    // own mutual-TLS listeners, over HTTP and gRPC.
    for (kind, url) in [
        (v1::TargetKind::Predict, agent.http_url()),
        (v1::TargetKind::GrpcPredict, agent.grpc_url()),
    ] {
        assert!(url.starts_with("https://"), "{url}");
        let started = client
            .load_test()
            .start_load_test(v1::LoadTestSpec {
                target: Some(v1::LoadTarget {
                    url: url.clone(),
                    kind: kind as i32,
                    ..Default::default()
                }),
                load: Some(v1::load_test_spec::Load::Closed(v1::ClosedLoop {
                    users: 2,
                    ..Default::default()
                })),
                duration_ms: 1_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let summary = support::load_test_ended(&client, &started.test_id, false).await;
        let total = summary.total.clone().unwrap_or_default();
        assert_eq!(
            summary.state,
            v1::LoadTestState::Finished as i32,
            "{url}: {summary:?}"
        );
        assert!(
            total.requests > 10 && total.failures == 0,
            "{url}: {summary:?}"
        );
    }
    agent.stop().await.unwrap();
}
