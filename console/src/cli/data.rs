//! `readmit data`: RawData and CleanData from the terminal — ingest a CSV, see what is
//! ingested, append training batches, fetch the UCI file and synthesize records.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use readmit_proto::{Appended, CallError, Client, DataState, Ingested, SplitKind, TableFacts};
use serde_json::{Value, json};

use super::Global;
use crate::fleet::Role;
use crate::output::{self, OutputFormat};

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
    fn kind(self) -> SplitKind {
        match self {
            Split::Original => SplitKind::Original,
            Split::Grouped => SplitKind::Grouped,
        }
    }
}

fn split_name(split: Option<SplitKind>) -> &'static str {
    split.map_or("unspecified", SplitKind::name)
}

/// Milliseconds since the epoch as an RFC 3339 UTC time to the second.
fn utc(ms: i64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn tables_json(tables: &[TableFacts]) -> Vec<Value> {
    tables
        .iter()
        .map(|t| {
            json!({
                "database": t.database,
                "table": t.table,
                "rows": t.rows,
                "readmitted": t.readmitted,
                "fingerprint": t.fingerprint,
            })
        })
        .collect()
}

/// The tables; the class balance and fingerprint columns only when the reply has them.
fn print_tables(tables: &[TableFacts]) {
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
            row.push(t.fingerprint.clone().unwrap_or_default());
        }
        table.add_row(row);
    }
    println!("{table}");
}

/// Whether a failed call may not have reached the agent, or its reply may have been lost:
/// a refused or dropped connection. Anything the agent itself decided is final.
fn transient(error: &CallError) -> bool {
    matches!(
        error.code(),
        Some(tonic::Code::Unavailable | tonic::Code::Unknown)
    )
}

pub async fn run(global: &Global, command: &DataCommand) -> anyhow::Result<ExitCode> {
    let client = global.client(Role::Etl).await?;
    let failed = |e: CallError| anyhow::anyhow!(output::call_error(client.url(), &e));
    match command {
        DataCommand::Ingest {
            file,
            split,
            replace,
            on_agent,
        } => {
            let reply = if *on_agent {
                client.ingest(file, split.kind(), *replace).await
            } else {
                let size = std::fs::metadata(file).map_or(0, |m| m.len());
                let bar =
                    crate::progress::bytes(crate::progress::shown(global.output), size, "upload");
                let sent = bar.clone();
                let reply = client
                    .ingest_upload(Path::new(file), split.kind(), *replace, move |n| {
                        sent.inc(n);
                    })
                    .await;
                bar.finish_and_clear();
                reply
            };
            print_ingested(global, &reply.map_err(failed)?)?;
        }
        DataCommand::Status => print_status(global, &client.data_status().await.map_err(failed)?)?,
        DataCommand::AppendBatch {
            batch_size,
            until_exhausted,
        } => loop {
            let reply = append_batch(&client, batch_size.unwrap_or(0)).await?;
            print_appended(global, &reply, *until_exhausted)?;
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
            let f = client
                .fetch_dataset(url.as_deref(), *force)
                .await
                .map_err(failed)?;
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
            let s = client
                .synthesize_dataset(*rows, *seed, path.as_deref())
                .await
                .map_err(failed)?;
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

fn print_ingested(global: &Global, reply: &Ingested) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&json!({
            "changed": reply.changed,
            "sha256": reply.sha256,
            "split": split_name(reply.split),
            "tables": tables_json(&reply.tables),
            "duration_s": reply.duration_s,
            "message": reply.message,
        }));
    }
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
    Ok(())
}

fn print_status(global: &Global, s: &DataState) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&json!({
            "dataset_sha256": s.dataset_sha256.clone().unwrap_or_default(),
            "split": split_name(s.split),
            "ingested_at_ms": s.ingested_at_ms,
            "tables": tables_json(&s.tables),
            "pool_rows": s.pool_rows,
            "train_rows": s.train_rows,
            "pool_remaining": s.pool_remaining,
            "batches_appended": s.batches_appended,
            "batch_size": s.batch_size,
        }));
    }
    match &s.dataset_sha256 {
        None => println!("nothing ingested yet: readmit data ingest FILE"),
        Some(sha256) => {
            println!("data set:    sha256 {sha256}");
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
    }
    print_tables(&s.tables);
    Ok(())
}

/// One batch's answer: a JSON object (one line each with `until_exhausted`), or its message.
fn print_appended(global: &Global, reply: &Appended, one_line: bool) -> anyhow::Result<()> {
    if global.output != OutputFormat::Json {
        println!("{}", reply.message);
        return Ok(());
    }
    let value = json!({
        "appended": reply.appended,
        "train_rows": reply.train_rows,
        "pool_remaining": reply.pool_remaining,
        "exhausted": reply.exhausted,
        "batch_number": reply.batch_number,
        "message": reply.message,
        "replayed": reply.replayed,
    });
    if one_line {
        println!("{value}");
        Ok(())
    } else {
        output::print_json(&value)
    }
}

/// One `AppendBatch` with one request id, resent on transport errors so that a reply lost
/// with a dropped connection neither loses nor doubles the batch.
async fn append_batch(client: &Client, batch_size: u32) -> anyhow::Result<Appended> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut retries = 0;
    loop {
        match client.append_batch(batch_size, &request_id).await {
            Ok(reply) => return Ok(reply),
            Err(e) if transient(&e) && retries < APPEND_RETRIES => {
                retries += 1;
                eprintln!(
                    "{}; retrying request {request_id} ({retries}/{APPEND_RETRIES})",
                    output::call_error(client.url(), &e),
                );
                tokio::time::sleep(Duration::from_millis(250 << retries)).await;
            }
            Err(e) => anyhow::bail!(output::call_error(client.url(), &e)),
        }
    }
}
