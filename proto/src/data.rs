//! Typed data operations on [`Client`]: what the console asks of an etl agent about RawData and
//! CleanData — the status, ingesting a file (on the agent or uploaded), appending a batch,
//! fetching the UCI file, synthesizing records — in plain types.

use std::path::Path;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt as _;

use crate::client::Client;
use crate::registry::CallError;
use crate::v1;

/// Upload chunk size: well under the 4 MiB gRPC message limit, large enough to keep the
/// per-message overhead negligible for the 18 MB real file.
const UPLOAD_CHUNK: usize = 1 << 20;

/// How the encounters are split into pool, validation and test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKind {
    /// The original project's split, row for row.
    Original,
    /// Grouped by patient: no patient in two splits.
    Grouped,
}

impl SplitKind {
    pub fn name(self) -> &'static str {
        match self {
            SplitKind::Original => "original",
            SplitKind::Grouped => "grouped",
        }
    }

    fn wire(self) -> i32 {
        match self {
            SplitKind::Original => v1::SplitKind::Original as i32,
            SplitKind::Grouped => v1::SplitKind::Grouped as i32,
        }
    }

    /// `None` for an unset split (nothing ingested yet).
    fn from_wire(split: i32) -> Option<Self> {
        match v1::SplitKind::try_from(split) {
            Ok(v1::SplitKind::Original) => Some(SplitKind::Original),
            Ok(v1::SplitKind::Grouped) => Some(SplitKind::Grouped),
            _ => None,
        }
    }
}

/// A table's row count and, for a RawData split once ingested, its digest and class balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableFacts {
    pub database: String,
    pub table: String,
    pub rows: i64,
    /// The SHA-256 of the encounter ids in split order.
    pub fingerprint: Option<String>,
    /// Rows readmitted within 30 days.
    pub readmitted: Option<i64>,
}

/// What the databases hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataState {
    /// The ingested file's SHA-256; `None` before anything is ingested.
    pub dataset_sha256: Option<String>,
    pub split: Option<SplitKind>,
    pub ingested_at_ms: i64,
    pub tables: Vec<TableFacts>,
    pub pool_rows: i64,
    pub train_rows: i64,
    pub pool_remaining: i64,
    pub batches_appended: i64,
    /// The default batch size.
    pub batch_size: i64,
}

/// What an ingest did.
#[derive(Clone, Debug, PartialEq)]
pub struct Ingested {
    /// False when the same file was already ingested.
    pub changed: bool,
    pub sha256: String,
    pub split: Option<SplitKind>,
    pub tables: Vec<TableFacts>,
    pub duration_s: f64,
    pub message: String,
}

/// What appending a batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub appended: i64,
    pub train_rows: i64,
    pub pool_remaining: i64,
    /// Nothing was left to append.
    pub exhausted: bool,
    pub batch_number: i64,
    pub message: String,
    /// The request id was seen before: this is that batch's answer, nothing appended again.
    pub replayed: bool,
}

/// The UCI file on the agent's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedFile {
    pub path: String,
    pub sha256: String,
    pub bytes: i64,
    /// Already there: nothing downloaded.
    pub cached: bool,
}

/// Synthetic records written on the agent's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticFile {
    pub path: String,
    pub rows: u64,
    pub sha256: String,
}

fn tables(tables: Vec<v1::TableCount>) -> Vec<TableFacts> {
    tables
        .into_iter()
        .map(|t| TableFacts {
            database: t.database,
            table: t.table,
            rows: t.rows,
            fingerprint: Some(t.fingerprint).filter(|f| !f.is_empty()),
            readmitted: t.readmitted,
        })
        .collect()
}

impl From<v1::IngestReply> for Ingested {
    fn from(r: v1::IngestReply) -> Self {
        Self {
            changed: r.changed,
            sha256: r.sha256,
            split: SplitKind::from_wire(r.split),
            tables: tables(r.tables),
            duration_s: r.duration_s,
            message: r.message,
        }
    }
}

impl Client {
    /// What RawData and CleanData hold.
    pub async fn data_status(&self) -> Result<DataState, CallError> {
        let s = self
            .etl()
            .get_data_status(v1::GetDataStatusRequest {})
            .await
            .map_err(CallError::status("data status"))?
            .into_inner();
        Ok(DataState {
            dataset_sha256: Some(s.dataset_sha256).filter(|h| !h.is_empty()),
            split: SplitKind::from_wire(s.split),
            ingested_at_ms: s.ingested_at_ms,
            tables: tables(s.tables),
            pool_rows: s.pool_rows,
            train_rows: s.train_rows,
            pool_remaining: s.pool_remaining,
            batches_appended: s.batches_appended,
            batch_size: s.batch_size,
        })
    }

    /// Ingests a file the agent reads from its own disk.
    pub async fn ingest(
        &self,
        path: &str,
        split: SplitKind,
        replace: bool,
    ) -> Result<Ingested, CallError> {
        let reply = self
            .etl()
            .ingest(v1::IngestRequest {
                path: path.into(),
                split: split.wire(),
                replace,
            })
            .await
            .map_err(CallError::status(format!("ingest {path}")))?;
        Ok(reply.into_inner().into())
    }

    /// Streams a local file to the agent as it is (a `.gz` stays compressed: the agent reads
    /// both) and ingests it; `on_sent` hears the bytes of each chunk sent. A read error
    /// midway cancels the call: the agent never takes a truncated file for the whole one.
    pub async fn ingest_upload(
        &self,
        file: &Path,
        split: SplitKind,
        replace: bool,
        on_sent: impl FnMut(u64) + Send + 'static,
    ) -> Result<Ingested, CallError> {
        let io = |source| CallError::Io {
            path: file.to_owned(),
            source,
        };
        let opened = tokio::fs::File::open(file).await.map_err(io)?;
        let header = v1::IngestChunk {
            chunk: Some(v1::ingest_chunk::Chunk::Header(v1::IngestHeader {
                file_name: file.display().to_string(),
                split: split.wire(),
                replace,
            })),
        };
        // On a read error the stream stalls rather than ends (an end would read as the whole
        // file) and the error, sent here, cancels the call.
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<std::io::Error>();
        let data = futures_util::stream::unfold(
            (opened, Some(failed_tx), on_sent),
            |(mut opened, failed, mut on_sent)| async move {
                let mut buf = vec![0; UPLOAD_CHUNK];
                let mut filled = 0;
                while filled < UPLOAD_CHUNK {
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
                on_sent(filled as u64);
                let chunk = v1::IngestChunk {
                    chunk: Some(v1::ingest_chunk::Chunk::Data(buf)),
                };
                Some((chunk, (opened, failed, on_sent)))
            },
        );
        let chunks = futures_util::stream::iter([header]).chain(data);
        let mut etl = self.etl();
        tokio::select! {
            reply = etl.ingest_upload(chunks) => {
                let what = format!("ingest {}", file.display());
                Ok(reply.map_err(CallError::status(what))?.into_inner().into())
            }
            Ok(e) = failed_rx => Err(io(e)),
        }
    }

    /// Appends the next batch (`batch_size` 0: the agent's default) from the pool to the
    /// training table. The same `request_id` sent again appends nothing twice: the agent
    /// answers with that batch (`replayed`), so a call whose answer was lost can be resent.
    pub async fn append_batch(
        &self,
        batch_size: u32,
        request_id: &str,
    ) -> Result<Appended, CallError> {
        let r = self
            .etl()
            .append_batch(v1::AppendBatchRequest {
                batch_size,
                request_id: request_id.into(),
            })
            .await
            .map_err(CallError::status("append a batch"))?
            .into_inner();
        Ok(Appended {
            appended: r.appended,
            train_rows: r.train_rows,
            pool_remaining: r.pool_remaining,
            exhausted: r.exhausted,
            batch_number: r.batch_number,
            message: r.message,
            replayed: r.replayed,
        })
    }

    /// Has the agent download the UCI file (from `url`, else its default) unless cached.
    pub async fn fetch_dataset(
        &self,
        url: Option<&str>,
        force: bool,
    ) -> Result<FetchedFile, CallError> {
        let f = self
            .etl()
            .fetch_dataset(v1::FetchDatasetRequest {
                url: url.unwrap_or_default().into(),
                force,
            })
            .await
            .map_err(CallError::status("fetch the UCI file"))?
            .into_inner();
        Ok(FetchedFile {
            path: f.path,
            sha256: f.sha256,
            bytes: f.bytes,
            cached: f.cached,
        })
    }

    /// Has the agent write `rows` synthetic records with the real schema (to `path`, else a
    /// file of its choosing).
    pub async fn synthesize_dataset(
        &self,
        rows: u64,
        seed: u64,
        path: Option<&str>,
    ) -> Result<SyntheticFile, CallError> {
        let s = self
            .etl()
            .synthesize_dataset(v1::SynthesizeDatasetRequest {
                rows,
                seed,
                path: path.unwrap_or_default().into(),
            })
            .await
            .map_err(CallError::status("synthesize records"))?
            .into_inner();
        Ok(SyntheticFile {
            path: s.path,
            rows: s.rows,
            sha256: s.sha256,
        })
    }
}
