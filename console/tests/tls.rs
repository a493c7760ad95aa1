//! `readmit certs init` and the console over TLS: the files it writes (keys 0600, host
//! certificates that verify against its CA, nothing overwritten without --force), then the
//! `readmit` binary against an agent serving those certificates with mutual TLS.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Runs the `readmit` binary off the runtime's threads, with no READMIT_* from the caller.
async fn readmit(args: &[&str], env: &[(&'static str, &Path)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(&'static str, std::path::PathBuf)> =
        env.iter().map(|(k, v)| (*k, v.to_path_buf())).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_readmit"));
        for key in [
            "READMIT_AGENT",
            "READMIT_TOKEN",
            "READMIT_CA_CERT",
            "READMIT_TLS_CERT",
            "READMIT_TLS_KEY",
        ] {
            cmd.env_remove(key);
        }
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `cert` verifies against `ca` for the server name `name`, now.
fn verifies(ca: &Path, cert: &Path, name: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let leaf = CertificateDer::from_pem_file(cert).unwrap();
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn certs_init_writes_a_ca_and_certificates_that_verify_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let out = out_dir.to_str().unwrap();
    let init = [
        "certs",
        "init",
        "--hosts",
        "etl,tracking,inference",
        "--out",
        out,
    ];
    let made = readmit(&init, &[]).await;
    assert!(made.status.success(), "{}", stderr(&made));
    let names = [
        "ca",
        "etl",
        "tracking",
        "inference",
        "console", // certificates
    ];
    for name in names {
        assert!(out_dir.join(format!("{name}.pem")).is_file(), "{name}.pem");
        let key = out_dir.join(format!("{name}-key.pem"));
        assert!(key.is_file(), "{name}-key.pem");
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600, "{name}-key.pem");
    }
    let ca = out_dir.join("ca.pem");
    for host in ["etl", "tracking", "inference"] {
        let cert = out_dir.join(format!("{host}.pem"));
        for name in [host, "localhost", "127.0.0.1", "::1"] {
            assert_eq!(verifies(&ca, &cert, name), Ok(()), "{host}.pem for {name}");
        }
        assert!(verifies(&ca, &cert, "elsewhere.example").is_err());
    }
    // The console's certificate is a client's: it names no server.
    assert!(verifies(&ca, &out_dir.join("console.pem"), "localhost").is_err());
    // Another CA's copy does not vouch for these certificates.
    let other = dir.path().join("other");
    let made = readmit(
        &[
            "certs",
            "init",
            "--hosts",
            "etl",
            "--out",
            other.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(verifies(&other.join("ca.pem"), &out_dir.join("etl.pem"), "etl").is_err());

    // Nothing is overwritten without --force, and nothing half-written either.
    let before = std::fs::read(&ca).unwrap();
    let again = readmit(&init, &[]).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("--force") && stderr(&again).contains("ca.pem"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    let mut forced = init.to_vec();
    forced.push("--force");
    let replaced = readmit(&forced, &[]).await;
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert_ne!(std::fs::read(&ca).unwrap(), before);
    #[cfg(unix)]
    assert_eq!(mode(&out_dir.join("ca-key.pem")), 0o600);

    // Host names become file names: a path is refused.
    let bad = readmit(&["certs", "init", "--hosts", "../x", "--out", out], &[]).await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("../x"), "{}", stderr(&bad));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_drives_an_agent_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = readmit(
        &[
            "certs",
            "init",
            "--hosts",
            "tracking",
            "--out",
            certs.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(made.status.success(), "{}", stderr(&made));
    let settings = RawSettings {
        tls_cert: Some(certs.join("tracking.pem")),
        tls_key: Some(certs.join("tracking-key.pem")),
        tls_client_ca: Some(certs.join("ca.pem")),
        ..RawSettings::loopback(&dir.path().join("data"), &[readmit_agent::Role::Tracking])
    }
    .validate()
    .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let url = agent.grpc_url();
    assert!(url.starts_with("https://"));
    let (ca, cert, key) = (
        certs.join("ca.pem"),
        certs.join("console.pem"),
        certs.join("console-key.pem"),
    );
    let (ca_s, cert_s, key_s) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );

    // Flags.
    let out = readmit(
        &[
            "--agent",
            &url,
            "--ca-cert",
            ca_s,
            "--tls-cert",
            cert_s,
            "--tls-key",
            key_s,
            "--output",
            "json",
            "agents",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let views: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(views[0]["info"]["roles"], serde_json::json!(["tracking"]));

    // The environment, and an address without a scheme (https:// once TLS options are set).
    let bare = agent.grpc_addr.to_string();
    let env = [
        ("READMIT_CA_CERT", ca.as_path()),
        ("READMIT_TLS_CERT", cert.as_path()),
        ("READMIT_TLS_KEY", key.as_path()),
    ];
    let out = readmit(
        &["--agent", &bare, "--output", "json", "models", "list"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Without the client certificate the agent refuses (TLS 1.3 reports that after the
    // client's side of the handshake, so the console may see only a closed connection);
    // without the CA the console refuses the agent's certificate itself.
    let out = readmit(&["--agent", &url, "--ca-cert", ca_s, "models", "list"], &[]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&url), "{}", stderr(&out));
    let out = readmit(
        &[
            "--agent",
            &url,
            "--tls-cert",
            cert_s,
            "--tls-key",
            key_s,
            "models",
            "list",
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("UnknownIssuer") || stderr(&out).contains("certificate"),
        "{}",
        stderr(&out)
    );
    // A CA given with a plain http:// URL is refused, not ignored.
    let plain = format!("http://{bare}");
    let out = readmit(
        &["--agent", &plain, "--ca-cert", ca_s, "models", "list"],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
    agent.stop().await.unwrap();
}

/// `readmit up` is in the console only with the `embedded` feature (the default).
#[cfg(feature = "embedded")]
#[tokio::test(flavor = "multi_thread")]
async fn readmit_up_serves_over_mutual_tls_and_its_console_calls_get_in() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = readmit(
        &[
            "certs",
            "init",
            "--hosts",
            "node",
            "--out",
            certs.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(made.status.success(), "{}", stderr(&made));
    let path = |name: &str| certs.join(name).display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_readmit"))
        .env_remove("READMIT_TOKEN")
        .env_remove("READMIT_CA_CERT")
        .env_remove("READMIT_TLS_CERT")
        .env_remove("READMIT_TLS_KEY")
        .args([
            "up",
            "--serve-only",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
        ])
        .args(["127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--tls-cert",
            &path("node.pem"),
            "--tls-key",
            &path("node-key.pem"),
        ])
        .args([
            "--tls-client-ca",
            &path("ca.pem"),
            "--tls-ca",
            &path("ca.pem"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("Serving until") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    let seen =
        tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(120)))
            .await
            .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.expect("readmit up did not start serving");
    assert!(seen.contains("gRPC https://127.0.0.1:"), "{seen}");
    // The agents table it prints came over mutual TLS: a row with the roles, no error.
    assert!(
        seen.lines()
            .any(|l| l.contains("https://") && l.contains("tracking")),
        "{seen}"
    );
}
