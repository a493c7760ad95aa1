//! Shared test support: fresh databases on the real servers this machine runs.
#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod bundles;
pub mod certs;

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    MariaDb,
    Postgres,
}

/// The body of a GET that must succeed at the transport level (any status).
pub async fn text(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// A database made for one test, dropped by `cleanup`.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn admin_url(backend: Backend) -> String {
    match backend {
        Backend::MariaDb => std::env::var("READMIT_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        Backend::Postgres => std::env::var("READMIT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        Backend::Sqlite => String::new(),
    }
}

fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "readmit_t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        readmit_agent::now_ms() % 1_000_000
    )
}

/// A fresh, empty database. When the server is missing the test fails under CI and is skipped
/// (returns `None`, with a note) elsewhere.
pub async fn fresh(backend: Backend) -> Option<TestDb> {
    sqlx::any::install_default_drivers();
    let name = unique_name();
    if let Backend::Sqlite = backend {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("{name}.db")).display()
        );
        return Some(TestDb {
            url,
            backend,
            name,
            _dir: Some(dir),
        });
    }
    let admin = admin_url(backend);
    let mut conn = match sqlx::AnyConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            let why = format!("{backend:?} at {admin} is not reachable: {e}");
            if std::env::var_os("CI").is_some() {
                panic!("{why} (CI is set, so this test must not skip)");
            }
            eprintln!("skipping: {why}");
            return None;
        }
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    Some(TestDb {
        url: format!("{base}/{name}"),
        backend,
        name,
        _dir: None,
    })
}

impl TestDb {
    pub async fn cleanup(self) {
        if let Backend::Sqlite = self.backend {
            return;
        }
        let mut conn = sqlx::AnyConnection::connect(&admin_url(self.backend))
            .await
            .unwrap();
        let drop = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// The project's Python (the venv `.ci/services` makes), if it can import `modules`. Missing
/// Python fails the test under CI and skips it elsewhere, with a note.
pub fn python_with(modules: &[&str]) -> Option<std::path::PathBuf> {
    let python = std::env::var_os("READMIT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache")
                });
            cache.join("readmit/venv/bin/python")
        });
    let imports = format!("import {}", modules.join(", "));
    let ok = std::process::Command::new(&python)
        .args(["-c", &imports])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let why = format!("{} cannot `{imports}` (run .ci/services)", python.display());
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set, so this test must not skip)");
    }
    eprintln!("skipping: {why}");
    None
}

/// An S3-protocol server on loopback (moto, from the project's venv), stopped on drop.
pub struct S3Server {
    pub endpoint: String,
    child: std::process::Child,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto's S3 server and creates `bucket`. Fails under CI when it cannot, skips elsewhere.
pub async fn s3_server(bucket: &str) -> Option<S3Server> {
    let python = python_with(&["moto"])?;
    let moto = python.with_file_name("moto_server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", moto.display()));
    let server = S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http
            .put(format!("{}/{bucket}", server.endpoint))
            .send()
            .await
            && r.status().is_success()
        {
            return Some(server);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("moto did not start on {}", server.endpoint);
}

/// A DAG run as the agent reports it now.
pub async fn dag_run(client: &readmit_proto::Client, run_id: &str) -> readmit_proto::v1::DagRun {
    client
        .etl()
        .get_dag_run(readmit_proto::v1::GetDagRunRequest {
            run_id: run_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Whether a run has ended, whatever the outcome.
pub fn run_finished(run: &readmit_proto::v1::DagRun) -> bool {
    use readmit_proto::v1::RunState;
    !matches!(
        RunState::try_from(run.state),
        Ok(RunState::Queued | RunState::Running)
    )
}

/// Triggers `dag` with `params` over the Etl service; the queued run.
pub async fn trigger(
    client: &readmit_proto::Client,
    dag: &str,
    params: &[(&str, &str)],
) -> readmit_proto::v1::DagRun {
    client
        .etl()
        .trigger_dag(readmit_proto::v1::TriggerDagRequest {
            dag: dag.into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Polls a run until `done` holds, failing the test after `seconds`.
pub async fn wait_for_run(
    client: &readmit_proto::Client,
    run_id: &str,
    done: impl Fn(&readmit_proto::v1::DagRun) -> bool,
    seconds: u64,
) -> readmit_proto::v1::DagRun {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        let run = dag_run(client, run_id).await;
        if done(&run) {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("run {run_id} did not reach the expected state in {seconds} s");
}

/// A load test's summary once it has ended and, with `kept`, been logged to tracking (or
/// failed to be).
pub async fn load_test_ended(
    client: &readmit_proto::Client,
    id: &str,
    kept: bool,
) -> readmit_proto::v1::LoadTestSummary {
    use readmit_proto::v1;
    for _ in 0..600 {
        let s = client
            .load_test()
            .get_load_test(v1::LoadTestRef { test_id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if s.state != v1::LoadTestState::Running as i32
            && (!kept || !s.run_id.is_empty() || !s.error.is_empty())
        {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("load test {id} did not end");
}
