//! `readmit data`: RawData and CleanData from the terminal — ingest a CSV, see what is
//! ingested, append training batches, fetch the UCI file and synthesize records.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures_util::StreamExt;
use readmit_proto::v1;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use super::Global;
use crate::fleet::Role;
use crate::output::{self, OutputFormat};

/// Upload chunk size: well under the 4 MiB gRPC message limit, large enough to keep the
/// per-message overhead negligible for the 18 MB real file.
const CHUNK_BYTES: usize = 1 << 20;

/// Retries of an `AppendBatch` whose reply was lost in transit. Each one resends the same
/// request id, so the agent appends the batch at most once.
const APPEND_RETRIES: u32 = 3;

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Validate a CSV (plain or .gz) against the schema, split it and write RawData.
    ///
    /// The same file again changes nothing; a different one is refused unless --replace.
    Ingest {
        /// The CSV: on this machine (streamed to the agent), or with --on-agent on the agent's.
        file: String,
        #[arg(long, value_enum, default_value_t = Split::Original)]
        split: Split,
        /// Replace data ingested from a different file (atomically).
        #[arg(long)]
        replace: bool,
        /// FILE is a path on the agent's machine: send the path, not the bytes.
        #[arg(long)]
        on_agent: bool,
    },
    /// What is ingested: the data set's digest and split, pool and training rows, table counts.
    Status,
    /// Move the next batch of pool rows into the training table, exactly once.
    AppendBatch {
        /// Rows to append (the agent's default is 15,000).
        #[arg(long)]
        batch_size: Option<u32>,
        /// Keep appending until the pool is exhausted (with --output json, one line a batch).
        #[arg(long)]
        until_exhausted: bool,
    },
    /// Download the UCI archive on the agent, check its digest and cache it there.
    Fetch {
        /// Download from here instead of the UCI archive.
        #[arg(long)]
        url: Option<String>,
        /// Download again even when a verified copy is cached.
        #[arg(long)]
        force: bool,
    },
    /// Write synthetic records with the real schema to a file on the agent.
    Synth {
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A path on the agent (default: a file under its data dir named by rows and seed).
        #[arg(long)]
        path: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Row for row the original system's split.
    Original,
    /// Same proportions, grouped by patient so no patient is in two splits.
    Grouped,
}

impl Split {
    fn wire(self) -> i32 {
        (match self {
            Split::Original => v1::SplitKind::Original,
            Split::Grouped => v1::SplitKind::Grouped,
        }) as i32
    }
}

fn split_name(split: i32) -> &'static str {
    match v1::SplitKind::try_from(split) {
        Ok(v1::SplitKind::Original) => "original",
        Ok(v1::SplitKind::Grouped) => "grouped",
        _ => "unspecified",
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC time to the second.
fn utc(ms: i64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn tables_json(tables: &[v1::TableCount]) -> Vec<Value> {
    tables
        .iter()
        .map(|t| {
            json!({
                "database": t.database,
                "table": t.table,
                "rows": t.rows,
                "readmitted": t.readmitted,
                "fingerprint": Some(&t.fingerprint).filter(|f| !f.is_empty()),
            })
        })
        .collect()
}

/// The tables; the class balance and fingerprint columns only when the reply has them.
fn print_tables(tables: &[v1::TableCount]) {
    let facts = tables.iter().any(|t| t.readmitted.is_some());
    let mut header = vec!["DATABASE", "TABLE", "ROWS"];
    if facts {
        header.extend(["READMITTED <30", "FINGERPRINT"]);
    }
    let mut table = output::table_dyn(header.into_iter().map(String::from).collect());
    for t in tables {
        let mut row = vec![t.database.clone(), t.table.clone(), t.rows.to_string()];
        if facts {
            row.push(t.readmitted.map(|n| n.to_string()).unwrap_or_default());
            row.push(t.fingerprint.clone());
        }
        table.add_row(row);
    }
    println!("{table}");
}

/// Whether a failed call may not have reached the agent, or its reply may have been lost:
/// a refused or dropped connection. Anything the agent itself decided is final.
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    )
}

pub async fn run(global: &Global, command: &DataCommand) -> anyhow::Result<ExitCode> {
    let client = global.client(Role::Etl).await?;
    let mut etl = client.etl();
    let call = |s: tonic::Status| anyhow::anyhow!(output::status_error(client.url(), &s));
    match command {
        DataCommand::Ingest {
            file,
            split,
            replace,
            on_agent,
        } => {
            let reply = if *on_agent {
                etl.ingest(v1::IngestRequest {
                    path: file.clone(),
                    split: split.wire(),
                    replace: *replace,
                })
                .await
                .map_err(call)?
                .into_inner()
            } else {
                let header = v1::IngestHeader {
                    file_name: file.clone(),
                    split: split.wire(),
                    replace: *replace,
                };
                upload(&mut etl, file, header, call, global.output).await?
            };
            if global.output == OutputFormat::Json {
                output::print_json(&json!({
                    "changed": reply.changed,
                    "sha256": reply.sha256,
                    "split": split_name(reply.split),
                    "tables": tables_json(&reply.tables),
                    "duration_s": reply.duration_s,
                    "message": reply.message,
                }))?;
            } else {
                let changed = if reply.changed {
                    "changed"
                } else {
                    "unchanged"
                };
                println!("{changed}: {}", reply.message);
                println!("sha256:   {}", reply.sha256);
                println!("split:    {}", split_name(reply.split));
                println!("duration: {:.2}s", reply.duration_s);
                print_tables(&reply.tables);
            }
        }
        DataCommand::Status => {
            let s = etl
                .get_data_status(v1::GetDataStatusRequest {})
                .await
                .map_err(call)?
                .into_inner();
            if global.output == OutputFormat::Json {
                output::print_json(&json!({
                    "dataset_sha256": s.dataset_sha256,
                    "split": split_name(s.split),
                    "ingested_at_ms": s.ingested_at_ms,
                    "tables": tables_json(&s.tables),
                    "pool_rows": s.pool_rows,
                    "train_rows": s.train_rows,
                    "pool_remaining": s.pool_remaining,
                    "batches_appended": s.batches_appended,
                    "batch_size": s.batch_size,
                }))?;
            } else {
                if s.dataset_sha256.is_empty() {
                    println!("nothing ingested yet: readmit data ingest FILE");
                } else {
                    println!("data set:    sha256 {}", s.dataset_sha256);
                    println!("split:       {}", split_name(s.split));
                    println!("ingested at: {}", utc(s.ingested_at_ms));
                    println!("pool rows:   {}", s.pool_rows);
                    println!("train rows:  {}", s.train_rows);
                    println!("remaining:   {}", s.pool_remaining);
                    println!(
                        "batches:     {} (default size {})",
                        s.batches_appended, s.batch_size
                    );
                }
                print_tables(&s.tables);
            }
        }
        DataCommand::AppendBatch {
            batch_size,
            until_exhausted,
        } => loop {
            let reply = append_batch(&mut etl, batch_size.unwrap_or(0), call).await?;
            if global.output == OutputFormat::Json {
                let value = json!({
                    "appended": reply.appended,
                    "train_rows": reply.train_rows,
                    "pool_remaining": reply.pool_remaining,
                    "exhausted": reply.exhausted,
                    "batch_number": reply.batch_number,
                    "message": reply.message,
                    "replayed": reply.replayed,
                });
                if *until_exhausted {
                    println!("{value}");
                } else {
                    output::print_json(&value)?;
                }
            } else {
                println!("{}", reply.message);
            }
            if !until_exhausted || reply.exhausted {
                break;
            }
            // A fresh request id appends a fresh batch, so nothing appended without the pool
            // being exhausted would loop forever: stop and say so instead.
            if reply.appended == 0 {
                anyhow::bail!(
                    "agent at {}: appended no rows but did not report the pool exhausted",
                    client.url()
                );
            }
        },
        DataCommand::Fetch { url, force } => {
            let f = etl
                .fetch_dataset(v1::FetchDatasetRequest {
                    url: url.clone().unwrap_or_default(),
                    force: *force,
                })
                .await
                .map_err(call)?
                .into_inner();
            if global.output == OutputFormat::Json {
                output::print_json(&json!({
                    "path": f.path,
                    "sha256": f.sha256,
                    "bytes": f.bytes,
                    "cached": f.cached,
                }))?;
            } else {
                println!("path:   {}", f.path);
                println!("sha256: {}", f.sha256);
                println!(
                    "size:   {}",
                    output::bytes(u64::try_from(f.bytes).unwrap_or(0))
                );
                println!("cached: {}", if f.cached { "yes" } else { "no" });
            }
        }
        DataCommand::Synth { rows, seed, path } => {
            let s = etl
                .synthesize_dataset(v1::SynthesizeDatasetRequest {
                    rows: *rows,
                    seed: *seed,
                    path: path.clone().unwrap_or_default(),
                })
                .await
                .map_err(call)?
                .into_inner();
            if global.output == OutputFormat::Json {
                output::print_json(&json!({"path": s.path, "rows": s.rows, "sha256": s.sha256}))?;
            } else {
                println!("path:   {}", s.path);
                println!("rows:   {}", s.rows);
                println!("sha256: {}", s.sha256);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

type EtlClient = v1::etl_client::EtlClient<readmit_proto::Svc>;

/// One `AppendBatch` with one request id, resent on transport errors so that a reply lost
/// with a dropped connection neither loses nor doubles the batch.
async fn append_batch(
    etl: &mut EtlClient,
    batch_size: u32,
    call: impl Fn(tonic::Status) -> anyhow::Error,
) -> anyhow::Result<v1::AppendBatchReply> {
    let request = v1::AppendBatchRequest {
        batch_size,
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let mut retries = 0;
    loop {
        match etl.append_batch(request.clone()).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) if transient(&status) && retries < APPEND_RETRIES => {
                retries += 1;
                eprintln!(
                    "{}; retrying request {} ({retries}/{APPEND_RETRIES})",
                    call(status),
                    request.request_id
                );
                tokio::time::sleep(Duration::from_millis(250 << retries)).await;
            }
            Err(status) => return Err(call(status)),
        }
    }
}

/// Streams a local file to the agent as-is (a .gz stays compressed: the agent reads both) in
/// 1 MiB chunks after `header`.
async fn upload(
    etl: &mut EtlClient,
    file: &str,
    header: v1::IngestHeader,
    call: impl Fn(tonic::Status) -> anyhow::Error,
    output: OutputFormat,
) -> anyhow::Result<v1::IngestReply> {
    let opened = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {file}"))?;
    let size = opened.metadata().await.map_or(0, |m| m.len());
    let bar = crate::progress::bytes(crate::progress::shown(output), size, "upload");
    let sent = bar.clone();
    // A read error mid-file must not end the stream: the agent would take the truncated file
    // for the whole one. The stream stalls instead and the error cancels the call below.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<std::io::Error>();
    let data = futures_util::stream::unfold(
        (opened, Some(failed_tx), sent),
        |(mut opened, failed, sent)| async move {
            let mut buf = vec![0; CHUNK_BYTES];
            let mut filled = 0;
            while filled < CHUNK_BYTES {
                match opened.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        if let Some(failed) = failed {
                            let _ = failed.send(e);
                        }
                        return std::future::pending().await;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            sent.inc(filled as u64);
            let chunk = v1::IngestChunk {
                chunk: Some(v1::ingest_chunk::Chunk::Data(buf)),
            };
            Some((chunk, (opened, failed, sent)))
        },
    );
    let chunks = futures_util::stream::iter([v1::IngestChunk {
        chunk: Some(v1::ingest_chunk::Chunk::Header(header)),
    }])
    .chain(data);
    let result = tokio::select! {
        reply = etl.ingest_upload(chunks) => Ok(reply.map_err(call)?.into_inner()),
        Ok(e) = failed_rx => Err(anyhow::Error::new(e).context(format!("cannot read {file}"))),
    };
    bar.finish_and_clear();
    result
}
