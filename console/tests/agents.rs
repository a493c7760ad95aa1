//! `readmit agents` against real agents started in this process.

use std::process::{Command, Output};

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;

async fn start(token: Option<&str>) -> RunningAgent {
    // The agent keeps its files in a directory that outlives the test's use of it.
    let dir = tempfile::tempdir().unwrap().keep();
    let settings = RawSettings {
        token: token.map(str::to_owned),
        ..RawSettings::loopback(&dir, &[readmit_agent::Role::Tracking])
    }
    .validate()
    .unwrap();
    RunningAgent::start(settings).await.unwrap()
}

/// Runs the `readmit` binary off the runtime's threads, with no READMIT_* from the caller.
async fn readmit(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_readmit"));
        cmd.env_remove("READMIT_AGENT")
            .env_remove("READMIT_TOKEN")
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_and_table_show_every_agent() {
    let a = start(None).await;
    let b = start(None).await;
    let out = readmit(
        args(&[
            "agents",
            "--agent",
            &a.grpc_url(),
            "--agent",
            &b.grpc_url(),
            "--output",
            "json",
        ]),
        vec![],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let views: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let views = views.as_array().unwrap();
    assert_eq!(views.len(), 2);
    for (view, agent) in views.iter().zip([&a, &b]) {
        assert_eq!(view["agent"], agent.grpc_url());
        assert_eq!(view["info"]["roles"], serde_json::json!(["tracking"]));
        assert_eq!(view["info"]["version"], readmit_agent::VERSION);
        assert_eq!(view["status"]["ready"], true);
        assert!(view["status"]["memory_total_bytes"].as_u64().unwrap() > 0);
        assert!(view.get("error").is_none());
    }

    let out = readmit(args(&["agents"]), vec![("READMIT_AGENT", a.grpc_url())]).await;
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.contains("AGENT") && header.contains("ROLES") && header.contains("UPTIME"));
    let row = lines.next().unwrap();
    assert!(
        row.contains(&a.grpc_url()) && row.contains("tracking"),
        "{table}"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_agent_is_named_and_fails_the_command() {
    let a = start(None).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = readmit(
        args(&[
            "agents",
            "--agent",
            &a.grpc_url(),
            "--agent",
            &dead,
            "--output",
            "json",
        ]),
        vec![],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dead) && stderr.contains("cannot reach"),
        "{stderr}"
    );
    let views: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        views[0]["status"]["ready"], true,
        "the live agent is still reported"
    );
    assert!(views[1]["error"].as_str().unwrap().contains(&dead));
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_come_from_the_flag_or_the_environment() {
    let a = start(Some("tok-123")).await;
    let url = a.grpc_url();
    let out = readmit(args(&["agents", "--agent", &url]), vec![]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unauthenticated") && stderr.contains("--token"),
        "{stderr}"
    );

    let out = readmit(
        args(&["agents", "--agent", &url, "--token", "tok-123"]),
        vec![],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = readmit(
        args(&["agents", "--agent", &url]),
        vec![("READMIT_TOKEN", "tok-123".into())],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.stop().await.unwrap();
}
