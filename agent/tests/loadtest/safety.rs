//! What bounds the engine: ceilings and the allowlist refuse what they should, only inference
//! agents serve it, an inference agent named as the target's agent opens its own listeners
//! (and nothing else) when its certificate proves it is one of the deployment's, a test that reaches nothing ends failed, and a test whose summary is too
//! long for a tag still lists after a restart.

use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use readmit_proto::{Client, v1};

use super::support::certs::{Ca, write};
use super::{agent, agent_again, closed, ended, figures, server, target};

#[tokio::test]
async fn ceilings_and_the_allowlist_refuse_and_only_inference_agents_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = agent(dir.path(), &[Role::Inference]).await;
    let spec = |url: &str, users: u32| v1::LoadTestSpec {
        target: target(url.into(), v1::TargetKind::Predict),
        load: closed(users, 0),
        duration_ms: 1_000,
        ..Default::default()
    };
    for url in ["http://192.0.2.1:80", "http://example.com:8080"] {
        let e = client
            .load_test()
            .start_load_test(spec(url, 1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{url}: {e:?}");
        assert!(e.message().contains("loadtest_allow"), "{e:?}");
    }
    let e = client
        .load_test()
        .start_load_test(spec("http://127.0.0.1:9", 100_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("loadtest_max_users"), "{e:?}");
    let mut bad = spec("http://127.0.0.1:9", 1);
    bad.thresholds = vec!["p95<soon".into()];
    let e = client.load_test().start_load_test(bad).await.unwrap_err();
    assert!(e.message().contains("soon"), "{e:?}");
    let e = client
        .load_test()
        .get_load_test(v1::LoadTestRef {
            test_id: "lt-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    agent.stop().await.unwrap();

    let (agent, client) = agent_roles(dir.path(), &[Role::Tracking]).await;
    let e = client
        .load_test()
        .list_load_tests(v1::ListLoadTestsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    agent.stop().await.unwrap();
}

async fn agent_roles(dir: &std::path::Path, roles: &[Role]) -> (RunningAgent, Client) {
    agent(&dir.join("other"), roles).await
}

/// This machine's first non-loopback IPv4 address: a host the allowlist does not open by
/// itself. (Found by routing a UDP socket; nothing is sent.)
fn outside_ip() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.1:9")
        .expect("a route to 192.0.2.1 (this test needs a non-loopback IPv4 interface)");
    let ip = socket.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "this test needs a non-loopback IPv4 interface, found {ip}"
    );
    ip
}

/// An agent with `roles` listening on `ip` over TLS with a certificate `ca` issued for `ip`,
/// trusting `ca` for its own calls (`tls_ca`), with the deployment's token.
async fn agent_on(
    dir: &std::path::Path,
    ip: std::net::IpAddr,
    ca: &Ca,
    roles: &[Role],
) -> RunningAgent {
    let leaf = ca.issue(&ip.to_string(), false);
    let settings = RawSettings {
        grpc_addr: format!("{ip}:0"),
        http_addr: format!("{ip}:0"),
        token: Some(VOUCH_TOKEN.into()),
        tls_cert: Some(write(dir, "cert.pem", &leaf.cert)),
        tls_key: Some(write(dir, "key.pem", &leaf.key)),
        tls_ca: Some(write(dir, "ca.pem", &ca.pem)),
        ..RawSettings::loopback(dir, roles)
    }
    .validate()
    .unwrap();
    RunningAgent::start(settings).await.unwrap()
}

const VOUCH_TOKEN: &str = "a-token-both-agents-of-this-deployment-hold";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inference_agent_named_as_the_target_agent_vouches_for_its_own_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let ip = outside_ip();
    let ca = Ca::new("deployment CA");
    let engine = agent_on(&dir.path().join("engine"), ip, &ca, &[Role::Inference]).await;
    let other = agent_on(&dir.path().join("other"), ip, &ca, &[Role::Inference]).await;
    let tracking = agent_on(&dir.path().join("tracking"), ip, &ca, &[Role::Tracking]).await;
    let tls = readmit_proto::ClientTls {
        ca_cert: Some(write(dir.path(), "console-ca.pem", &ca.pem)),
        ..Default::default()
    };
    let client = Client::connect_with(&engine.grpc_url(), Some(VOUCH_TOKEN), &tls)
        .await
        .unwrap();
    let spec = |url: String, agent: String| v1::LoadTestSpec {
        target: Some(v1::LoadTarget {
            url,
            agent,
            ..Default::default()
        }),
        load: closed(1, 0),
        duration_ms: 500,
        ..Default::default()
    };
    let refused = |spec: v1::LoadTestSpec| {
        let client = client.clone();
        async move {
            let e = client.load_test().start_load_test(spec).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
            e.message().to_owned()
        }
    };
    // The other agent's HTTP listener is on a host the allowlist does not name...
    let said = refused(spec(other.http_url(), String::new())).await;
    assert!(said.contains("target.agent"), "{said}");
    // ...but the agent itself, its certificate checked against the deployment's CA, vouches.
    let started = client
        .load_test()
        .start_load_test(spec(other.http_url(), other.grpc_url()))
        .await
        .unwrap()
        .into_inner();
    let summary = ended(&client, &started.test_id, false).await;
    assert!(figures(&summary).requests > 0, "{summary:?}");
    // Over plain text any host could answer (and would get the engine's token): refused
    // before anything is sent.
    let plain = other.grpc_url().replace("https://", "http://");
    let said = refused(spec(other.http_url(), plain)).await;
    assert!(said.contains("tls_ca"), "{said}");
    // It vouches for its own listeners only, not for other ports of its host.
    let said = refused(spec(free_port_url(ip), other.grpc_url())).await;
    assert!(said.contains("loadtest_allow"), "{said}");
    // An agent without the inference role vouches for nothing.
    let said = refused(spec(tracking.http_url(), tracking.grpc_url())).await;
    assert!(said.contains("not the inference role"), "{said}");
    for a in [engine, other, tracking] {
        a.stop().await.unwrap();
    }
}

/// A URL on `ip` where nothing listens.
fn free_port_url(ip: std::net::IpAddr) -> String {
    let port = std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("https://{ip}:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_test_that_never_reaches_its_target_ends_failed_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = agent(dir.path(), &[Role::Inference]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            // Loopback needs nobody to vouch for it: a plain-text agent named is not even asked.
            target: Some(v1::LoadTarget {
                url: format!("http://127.0.0.1:{port}"),
                agent: "http://127.0.0.1:9".into(),
                ..Default::default()
            }),
            load: closed(2, 10),
            duration_ms: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let summary = ended(&client, &started.test_id, false).await;
    assert_eq!(
        summary.state,
        v1::LoadTestState::Failed as i32,
        "{summary:?}"
    );
    assert!(summary.error.contains("no connection"), "{summary:?}");
    assert!(figures(&summary).requests > 0, "{summary:?}");
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_test_whose_summary_is_too_long_for_a_tag_still_lists_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = server(|| async { "{}" }).await;
    let (agent, client) = agent_again(dir.path()).await;
    // The most thresholds and ramp stages a test may have, thresholds spelled out long, and
    // the longest name.
    let thresholds: Vec<String> = (0..32)
        .map(|i| format!("p(99.9) <= {}.123456789 ms", 100_000_000 + i))
        .collect();
    let started = client
        .load_test()
        .start_load_test(v1::LoadTestSpec {
            name: "n".repeat(200),
            target: target(format!("http://{addr}"), v1::TargetKind::Predict),
            load: Some(v1::load_test_spec::Load::Open(v1::OpenLoop {
                start_rate: 20.0,
                stages: (0..100)
                    .map(|_| v1::RateStage {
                        rate: 20.0,
                        duration_ms: 5,
                    })
                    .collect(),
                connections: 1,
            })),
            thresholds,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kept = ended(&client, &started.test_id, true).await;
    assert!(!kept.run_id.is_empty(), "{kept:?}");
    let run = client
        .tracking()
        .get_run(v1::RunRef {
            run_id: kept.run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let tags = run.data.unwrap_or_default().tags;
    assert!(
        !tags.contains_key("readmit.loadtest.summary"),
        "this test is about a summary over the tag's 8000 characters; it fit: {}",
        tags["readmit.loadtest.summary"].len()
    );
    agent.stop().await.unwrap();

    // After a restart only tracking knows the test: the list reads its report.
    let (agent, client) = agent_again(dir.path()).await;
    let listed = client
        .load_test()
        .list_load_tests(v1::ListLoadTestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tests;
    let found = listed
        .iter()
        .find(|t| t.test_id == started.test_id)
        .unwrap_or_else(|| panic!("{} is not listed: {listed:?}", started.test_id));
    assert_eq!(found.run_id, kept.run_id);
    assert_eq!(found.thresholds.len(), 32, "{found:?}");
    agent.stop().await.unwrap();
}
