//! `readmit data` against a real agent running the etl role on SQLite: synthesize, ingest
//! (streamed and on the agent), append batches until the pool is exhausted, and the errors an
//! operator sees for a bad file and for no network.

mod common;

use common::readmit;

use std::net::SocketAddr;

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn readmit_json(url: &str, args: &[&str]) -> Value {
    let mut full = vec!["--output", "json"];
    full.extend_from_slice(args);
    let (ok, out, err) = readmit(url, &full).await;
    assert!(ok, "readmit {args:?} failed:\n{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The CSV with the `age` of the data row on `line` (the header is line 1) set to `value`.
fn with_age(csv: &str, line: usize, value: &str) -> String {
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    let column = lines[0].split(',').position(|c| c == "age").unwrap();
    let mut fields: Vec<&str> = lines[line - 1].split(',').collect();
    assert!(fields[column].starts_with('['), "{}", lines[line - 1]);
    fields[column] = value;
    lines[line - 1] = fields.join(",");
    lines.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread")]
async fn data_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings::loopback(dir.path(), &[readmit_agent::Role::Etl])
        .validate()
        .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let url = agent.grpc_url();

    let (ok, out, _) = readmit(&url, &["data", "status"]).await;
    assert!(ok && out.contains("nothing ingested yet"), "{out}");

    let synth = readmit_json(&url, &["data", "synth", "--rows", "3000", "--seed", "7"]).await;
    assert_eq!(synth["rows"], 3000);
    let csv = synth["path"].as_str().unwrap().to_owned();
    assert!(std::path::Path::new(&csv).is_file(), "{csv}");

    // Streamed from the client: the agent reads the bytes, not the path.
    let (ok, out, err) = readmit(&url, &["data", "ingest", &csv]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("changed: "), "{out}");
    assert!(
        out.contains("DATABASE") && out.contains("TABLE") && out.contains("ROWS"),
        "{out}"
    );
    let (ok, out, _) = readmit(&url, &["--output", "json", "data", "ingest", &csv]).await;
    assert!(ok, "{out}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["sha256"], synth["sha256"], "the digest is the file's");
    let rows: i64 = again["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_i64().unwrap())
        .sum();
    assert!(rows >= 3000, "{again}");

    let (ok, out, err) = readmit(&url, &["data", "ingest", "--on-agent", &csv]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("unchanged: "), "{out}");

    let status = readmit_json(&url, &["data", "status"]).await;
    assert_eq!(status["dataset_sha256"], synth["sha256"]);
    assert_eq!(status["split"], "original");
    assert_eq!(status["train_rows"], 0);
    let pool = status["pool_rows"].as_i64().unwrap();
    assert!(pool > 1000 && pool < 3000, "{status}");

    let first = readmit_json(&url, &["data", "append-batch", "--batch-size", "1000"]).await;
    assert_eq!(first["appended"], 1000, "{first}");
    assert_eq!(first["train_rows"], 1000);
    assert_eq!(first["pool_remaining"], pool - 1000);
    assert_eq!(first["replayed"], false);

    let (ok, out, err) = readmit(
        &url,
        &[
            "data",
            "append-batch",
            "--batch-size",
            "1000",
            "--until-exhausted",
        ],
    )
    .await;
    assert!(ok, "an exhausted pool is not an error: {out}\n{err}");
    let last = out.lines().last().unwrap();
    assert!(last.contains("exhausted"), "{out}");
    assert!(
        out.contains(&format!("{pool} rows in train_data, 0 left")),
        "{out}"
    );

    let (ok, out, err) = readmit(&url, &["data", "append-batch"]).await;
    assert!(ok && out.contains("exhausted"), "{out}\n{err}");

    let status = readmit_json(&url, &["data", "status"]).await;
    assert_eq!(status["pool_remaining"], 0, "{status}");
    assert_eq!(status["train_rows"], pool);
    let (ok, out, _) = readmit(&url, &["data", "status"]).await;
    assert!(ok && out.contains("remaining:   0"), "{out}");

    // A bad value is refused with its file, line and column; the data set stays as it was.
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&bad, with_age(&text, 5, "[10-21)")).unwrap();
    let bad = bad.display().to_string();
    let (ok, out, err) = readmit(&url, &["data", "ingest", "--replace", &bad]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains(&bad) && err.contains("line 5") && err.contains("column `age`"),
        "{err}"
    );
    let status = readmit_json(&url, &["data", "status"]).await;
    assert_eq!(status["dataset_sha256"], synth["sha256"]);

    let (ok, _, err) = readmit(&url, &["data", "ingest", "/no/such/file.csv"]).await;
    assert!(!ok && err.contains("/no/such/file.csv"), "{err}");

    let (ok, out, err) = readmit(
        &url,
        &["data", "fetch", "--url", "http://127.0.0.1:1/x.zip"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("pass the file") && !err.contains("is the agent running"),
        "the agent's own advice, not a hint that it is down: {err}"
    );

    agent.stop().await.unwrap();
}

/// A TCP proxy in front of the agent that loses the reply to the first call made through it
/// after the console's GetInfo, as a dropped connection would: on its first connection it
/// relays everything until the agent starts answering that call (an HTTP/2 HEADERS frame on
/// stream 3 or later), then closes both sides. Later connections are relayed as they are.
async fn lossy_proxy(agent: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(agent).await.unwrap();
            tokio::spawn(relay(client, server, std::mem::replace(&mut first, false)));
        }
    });
    addr
}

async fn relay(client: TcpStream, server: TcpStream, lose_reply: bool) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    if !lose_reply {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = up.await;
        return;
    }
    // The server's side of an HTTP/2 connection is frames from its first byte: a 9-byte
    // header (24-bit length, type, flags, stream id), then the payload.
    let mut pending = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 9 {
            let len = usize::from(pending[0]) << 16
                | usize::from(pending[1]) << 8
                | usize::from(pending[2]);
            if pending.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([pending[5], pending[6], pending[7], pending[8]]);
            // Stream 1 is the console's GetInfo (it learns the agent's roles first); the
            // next stream, 3, is the call whose reply is lost.
            if pending[3] == 1 && stream & 0x7fff_ffff >= 3 {
                // The reply's headers: the agent has done the work. Drop the connection.
                up.abort();
                return;
            }
            if client_write.write_all(&pending[..9 + len]).await.is_err() {
                break;
            }
            pending.drain(..9 + len);
        }
    }
    up.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_append_reply_is_retried_without_appending_twice() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings::loopback(dir.path(), &[readmit_agent::Role::Etl])
        .validate()
        .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let url = agent.grpc_url();
    let synth = readmit_json(&url, &["data", "synth", "--rows", "3000", "--seed", "7"]).await;
    let csv = synth["path"].as_str().unwrap();
    readmit_json(&url, &["data", "ingest", "--on-agent", csv]).await;

    let agent_addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let proxy = format!("http://{}", lossy_proxy(agent_addr).await);
    let (ok, out, err) = readmit(&proxy, &["data", "append-batch", "--batch-size", "1000"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("retrying request"), "{err}");
    assert!(
        out.contains("1000 rows in train_data") && out.contains("had already done it"),
        "the retry is answered with the batch the lost call made: {out}"
    );
    let status = readmit_json(&url, &["data", "status"]).await;
    assert_eq!(status["train_rows"], 1000, "appended once: {status}");
    assert_eq!(status["batches_appended"], 1);
    agent.stop().await.unwrap();
}
