//! The `readmit-agent` binary as an operator runs it: settings errors, serving, SIGTERM.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_readmit-agent"));
    for (key, _) in std::env::vars() {
        if key.starts_with("READMIT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn refuses_an_exposed_address_without_a_token() {
    let out = agent().args(["--grpc-addr", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0.0.0.0:0") && stderr.contains("--insecure"),
        "{stderr}"
    );
}

#[test]
fn names_a_bad_setting_from_the_environment() {
    let out = agent()
        .env("READMIT_HTTP_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http_addr") && stderr.contains("not-an-address"),
        "{stderr}"
    );
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let mut child = agent()
        .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
        .args(["--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let up = runtime.block_on(async {
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http_port}/readyz")).await {
                return r.status() == 200;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    assert!(up, "the agent never became ready");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log lines"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "agent serving"),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "agent stopped"),
        "{stderr}"
    );
}
