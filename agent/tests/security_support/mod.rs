//! Helpers of `tests/security.rs`: agents in-process and as the real binary, uploads, a
//! hand-written chunked PUT, and reading metric series.

use std::path::Path;
use std::time::Duration;

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use readmit_proto::Client;
use readmit_proto::v1;

/// An agent in this process from `settings`.
pub async fn start(settings: RawSettings) -> RunningAgent {
    RunningAgent::start(settings.validate().unwrap())
        .await
        .unwrap()
}

/// Writes a tokens file (`name:scope:secret` lines) into `dir`.
pub fn tokens_file(dir: &Path, lines: &str) -> std::path::PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, lines).unwrap();
    path
}

/// Streams `bytes` to IngestUpload in 256 KiB chunks.
pub async fn upload(
    client: &Client,
    name: &str,
    bytes: &[u8],
) -> Result<v1::IngestReply, tonic::Status> {
    let mut chunks = vec![v1::IngestChunk {
        chunk: Some(v1::ingest_chunk::Chunk::Header(v1::IngestHeader {
            file_name: name.into(),
            split: v1::SplitKind::Original as i32,
            replace: false,
        })),
    }];
    for part in bytes.chunks(256 * 1024) {
        chunks.push(v1::IngestChunk {
            chunk: Some(v1::ingest_chunk::Chunk::Data(part.to_vec())),
        });
    }
    client
        .etl()
        .ingest_upload(futures_util::stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

/// A PUT with a chunked body (no length up front), written by hand so nothing buffers it:
/// `chunks` chunks of `size` bytes. Returns the status and the body's text.
pub async fn put_chunked(
    addr: std::net::SocketAddr,
    path: &str,
    chunks: usize,
    size: usize,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", "z".repeat(size));
        // The server may answer and close once past its limit: later writes may fail.
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A trigger of `dag` with `params`.
pub fn trigger_request(dag: &str, params: &[(&str, &str)]) -> v1::TriggerDagRequest {
    v1::TriggerDagRequest {
        dag: dag.into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// The agent binary (ETL role) with `env` added to its environment, serving `dags`; waits until
/// a call with `token` succeeds. The caller stops the child.
pub async fn spawn_agent(
    env: &[(&str, &str)],
    data_dir: &Path,
    dags: &Path,
    token: &str,
) -> (std::process::Child, Client) {
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (grpc, http) = (port(), port());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_readmit-agent"));
    command.envs(env.iter().copied());
    let mut child = command
        .args(["--roles", "etl"])
        .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--dags-dir")
        .arg(dags)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{grpc}");
    for _ in 0..300 {
        if let Ok(c) = Client::connect(&url, Some(token)).await
            && c.agent().get_info(v1::GetInfoRequest {}).await.is_ok()
        {
            return (child, c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the agent binary did not start on {url}");
}

/// The lines of one metric in a Prometheus text page: one per series.
pub fn series(text: &str, metric: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .map(str::to_owned)
        .collect()
}
