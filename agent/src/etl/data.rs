//! The ETL role's data operations, shared by the gRPC service and the DAG tasks: ingesting a
//! CSV into RawData, appending batches, fetching and synthesising data sets, and status.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use readmit_ml::data::{read_csv_bytes, split_frame};
use readmit_ml::split::{ORIGINAL_SEED, SplitMethod};
use sha2::{Digest, Sha256};

use super::clean::CleanStore;
use super::fetch::{FetchError, Fetched, fetch_dataset};
use super::io::{blocking, hex, write_atomic};
use super::metrics::DataMetrics;
use super::paths::Roots;
use super::raw::{self, Appended, Dataset, NewDataset, RawStore, SplitFacts};
use super::runs::{EtlError, Result};
use crate::db::Db;

/// Rows in one table of RawData or CleanData.
#[derive(Clone, Debug, PartialEq)]
pub struct TableCount {
    pub database: &'static str,
    pub table: &'static str,
    pub rows: i64,
    /// A RawData table's fingerprint and class balance, where the status reports them.
    pub facts: Option<SplitFacts>,
}

#[derive(Clone, Debug)]
pub struct IngestReport {
    /// False when this very file was already ingested with this split: nothing changed.
    pub changed: bool,
    pub dataset: Dataset,
    pub tables: Vec<TableCount>,
    pub duration_s: f64,
    /// Of which: reading, validating and splitting the file; the rest is writing RawData.
    pub read_s: f64,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct DataStatus {
    pub dataset: Option<Dataset>,
    pub tables: Vec<TableCount>,
}

/// The bounds on what callers may make the ETL role read and write.
#[derive(Clone, Debug)]
pub struct DataLimits {
    /// Where operators put files to ingest by path (besides the data sets directory).
    pub import_dir: PathBuf,
    /// The largest CSV ingested, as sent and after gunzip: a file, an upload or its expansion.
    pub max_ingest_bytes: u64,
}

impl DataLimits {
    pub fn from_settings(settings: &crate::settings::Settings) -> Self {
        Self {
            import_dir: settings.import_dir.clone(),
            max_ingest_bytes: settings.max_ingest_bytes,
        }
    }
}

#[derive(Clone)]
pub struct DataService {
    raw: RawStore,
    clean: CleanStore,
    data_dir: PathBuf,
    roots: Roots,
    max_ingest_bytes: u64,
    metrics: DataMetrics,
    facts: Arc<Mutex<FactsCache>>,
}

/// Each RawData table's facts with the ingest they were read from. A table changes only by a
/// new ingest or by growing (appends), so the ingest and the row count say when to read again.
type FactsCache = HashMap<&'static str, (String, SplitFacts)>;

impl DataService {
    /// Opens RawData (applying its migrations) and CleanData.
    pub async fn open(
        raw_db: Db,
        clean_db: Db,
        data_dir: &Path,
        limits: DataLimits,
        metrics: DataMetrics,
    ) -> Result<Self> {
        let data = Self {
            raw: RawStore::open(raw_db).await?,
            clean: CleanStore::new(clean_db),
            data_dir: data_dir.to_owned(),
            roots: Roots::new(&data_dir.join("datasets"), &limits.import_dir),
            max_ingest_bytes: limits.max_ingest_bytes,
            metrics,
            facts: Arc::default(),
        };
        data.counts().await?;
        Ok(data)
    }

    pub fn metrics(&self) -> &DataMetrics {
        &self.metrics
    }

    pub fn raw(&self) -> &RawStore {
        &self.raw
    }

    pub fn clean(&self) -> &CleanStore {
        &self.clean
    }

    /// Where fetched and synthesised data sets are kept.
    pub fn datasets_dir(&self) -> PathBuf {
        self.data_dir.join("datasets")
    }

    /// The largest CSV ingested, before and after gunzip (the `max_ingest_bytes` setting).
    pub fn max_ingest_bytes(&self) -> u64 {
        self.max_ingest_bytes
    }

    /// Ingests a CSV (plain or gzip) on this machine, named by a caller: it must lie in the
    /// data sets or import directory and be at most `max_ingest_bytes`.
    pub async fn ingest_file(
        &self,
        given: &str,
        split: SplitMethod,
        replace: bool,
    ) -> Result<IngestReport> {
        let path = self.roots.readable(given, self.max_ingest_bytes)?;
        let max = self.max_ingest_bytes;
        let bytes = blocking({
            let path = path.clone();
            move || {
                // Bounded again while reading: the file may have grown since it was checked.
                let file = std::fs::File::open(&path).map_err(EtlError::io(&path))?;
                let mut bytes = Vec::new();
                file.take(max + 1)
                    .read_to_end(&mut bytes)
                    .map_err(EtlError::io(&path))?;
                Ok(bytes)
            }
        })
        .await?;
        if bytes.len() as u64 > max {
            return Err(too_large(given, max));
        }
        self.ingest_bytes(bytes, &path.display().to_string(), split, replace)
            .await
    }

    /// Validates a CSV's content against the schema, splits it and writes RawData in one
    /// transaction. The same file again changes nothing; another file is refused unless
    /// `replace`. `name` names the file in errors.
    pub async fn ingest_bytes(
        &self,
        bytes: Vec<u8>,
        name: &str,
        split: SplitMethod,
        replace: bool,
    ) -> Result<IngestReport> {
        let start = Instant::now();
        let path = PathBuf::from(name);
        let max = self.max_ingest_bytes;
        let (text, sha256) = blocking({
            let path = path.clone();
            move || {
                let text = gunzip_capped(bytes, &path, max)?;
                let sha256 = hex(&Sha256::digest(&text));
                Ok((text, sha256))
            }
        })
        .await?;
        if let Some(old) = self.raw.dataset().await? {
            if old.sha256 == sha256 && old.split == split {
                return Ok(IngestReport {
                    changed: false,
                    message: format!(
                        "{name} is already ingested (sha256 {sha256}, {}): nothing changed",
                        crate::format_ms(old.ingested_at)
                    ),
                    tables: self.counts().await?,
                    dataset: old,
                    duration_s: start.elapsed().as_secs_f64(),
                    read_s: start.elapsed().as_secs_f64(),
                });
            }
            if !replace {
                return Err(raw::refuse_other(&old, &sha256, split));
            }
        }
        let splits = blocking(move || {
            let frame = read_csv_bytes(text, &path)?;
            Ok(split_frame(&frame, split, ORIGINAL_SEED)?)
        })
        .await?;
        let parsed_s = start.elapsed().as_secs_f64();
        let dataset = self
            .raw
            .ingest(
                &NewDataset {
                    sha256: &sha256,
                    file_name: name,
                    split,
                    seed: ORIGINAL_SEED,
                    train_pool: &splits.train_pool,
                    validation: &splits.validation,
                    test: &splits.test,
                },
                replace,
            )
            .await?;
        let duration_s = start.elapsed().as_secs_f64();
        tracing::info!(
            file = name,
            read_and_validate_s = parsed_s,
            write_s = duration_s - parsed_s,
            "ingested"
        );
        for (table, rows) in [
            (raw::TRAIN_POOL, dataset.pool_rows),
            (raw::VALIDATION_DATA, dataset.validation_rows),
            (raw::TEST_DATA, dataset.test_rows),
        ] {
            self.metrics.rows_written(table, rows);
        }
        Ok(IngestReport {
            changed: true,
            message: format!(
                "ingested {name}: {} pool, {} validation, {} test rows ({} split) in {duration_s:.2} s",
                dataset.pool_rows,
                dataset.validation_rows,
                dataset.test_rows,
                raw::split_name(split)
            ),
            tables: self.counts().await?,
            dataset,
            duration_s,
            read_s: parsed_s,
        })
    }

    /// Downloads the UCI archive (or `url`), checks the CSV's digest and caches it under the
    /// data dir; a verified cached copy is returned without network unless `force`.
    pub async fn fetch(&self, url: Option<&str>, force: bool) -> Result<Fetched> {
        fetch_dataset(&self.datasets_dir(), url, force)
            .await
            .map_err(|e| match e {
                FetchError::Io { path, source } => EtlError::Io { path, source },
                other => EtlError::Unavailable(other.to_string()),
            })
    }

    /// Writes `rows` synthetic records with the real schema to `path` (default: the data sets
    /// directory, named by rows and seed; a caller's path must lie in the data sets or import
    /// directory), atomically; returns the path and its SHA-256.
    pub async fn synthesize(
        &self,
        rows: usize,
        seed: u64,
        path: Option<&str>,
    ) -> Result<(PathBuf, String)> {
        if rows == 0 {
            return Err(EtlError::Invalid {
                field: "rows".into(),
                reason: "must be at least 1".into(),
            });
        }
        let path = match path {
            Some(given) => self.roots.writable(given)?,
            None => self
                .datasets_dir()
                .join(format!("synthetic_{rows}_seed{seed}.csv")),
        };
        blocking(move || {
            let bytes = readmit_ml::synth::csv_bytes(rows, seed);
            let sha256 = hex(&Sha256::digest(&bytes));
            write_atomic(&path, &bytes)?;
            Ok((path, sha256))
        })
        .await
    }

    pub async fn append_batch(&self, size: u32, request_id: &str) -> Result<Appended> {
        let appended = self.raw.append_batch(size, request_id).await?;
        if !appended.replayed {
            self.metrics.rows_written(raw::TRAIN_DATA, appended.rows);
            self.metrics
                .set_table_rows("raw", raw::TRAIN_DATA, appended.train_rows);
        }
        Ok(appended)
    }

    /// Rows in every RawData and CleanData table (also published as metrics).
    pub async fn counts(&self) -> Result<Vec<TableCount>> {
        let raw = self
            .raw
            .counts()
            .await?
            .into_iter()
            .map(|(table, rows)| TableCount {
                database: "raw",
                table,
                rows,
                facts: None,
            });
        let clean = self
            .clean
            .counts()
            .await?
            .into_iter()
            .map(|(table, rows)| TableCount {
                database: "clean",
                table,
                rows,
                facts: None,
            });
        let counts: Vec<TableCount> = raw.chain(clean).collect();
        for t in &counts {
            self.metrics.set_table_rows(t.database, t.table, t.rows);
        }
        Ok(counts)
    }

    /// The data set, and every table's rows; RawData's tables with their fingerprints and
    /// class balance, read again only when the data set or the table's size changed.
    pub async fn status(&self) -> Result<DataStatus> {
        let dataset = self.raw.dataset().await?;
        let mut tables = self.counts().await?;
        if let Some(dataset) = &dataset {
            for t in tables.iter_mut().filter(|t| t.database == "raw") {
                t.facts = Some(
                    self.split_facts(&dataset.ingest_id, t.table, t.rows)
                        .await?,
                );
            }
        }
        Ok(DataStatus { dataset, tables })
    }

    async fn split_facts(
        &self,
        ingest_id: &str,
        table: &'static str,
        rows: i64,
    ) -> Result<SplitFacts> {
        let cached = |cache: &FactsCache| {
            cache
                .get(table)
                .filter(|(id, facts)| id == ingest_id && facts.rows == rows)
                .map(|(_, facts)| facts.clone())
        };
        if let Some(facts) = cached(&self.facts.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(facts);
        }
        let facts = self.raw.split_facts(table).await?;
        self.facts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table, (ingest_id.to_owned(), facts.clone()));
        Ok(facts)
    }

    /// Up to `limit` records of the test split from position `offset`, and how many the
    /// split holds; a position past the end is `Invalid`, naming `offset`.
    pub async fn test_records(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<readmit_ml::record::RawRecord>, usize)> {
        let frame = self.raw.read_table(raw::TEST_DATA).await?;
        let total = frame.height();
        if offset >= total {
            return Err(EtlError::Invalid {
                field: "offset".into(),
                reason: if total == 0 {
                    "the test split is empty: ingest a data set first".into()
                } else {
                    format!("the test split holds records 0 to {}", total - 1)
                },
            });
        }
        let records = readmit_ml::data::records(&frame, offset..offset.saturating_add(limit))?;
        Ok((records, total))
    }
}

fn too_large(what: &str, max: u64) -> EtlError {
    EtlError::TooLarge {
        what: what.to_owned(),
        limit: "max_ingest_bytes",
        max,
    }
}

/// A gzip file's content, expanded no further than `max` bytes, so a small file that inflates
/// a thousandfold (a gzip bomb) is refused after `max` bytes of work; plain text passes
/// through if it fits. A CSV never starts with gzip's magic, so gzip inside gzip is refused too.
fn gunzip_capped(bytes: Vec<u8>, path: &Path, max: u64) -> Result<Vec<u8>> {
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    let name = path.display().to_string();
    if !bytes.starts_with(&GZIP_MAGIC) {
        if bytes.len() as u64 > max {
            return Err(too_large(&name, max));
        }
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|source| readmit_ml::data::DataError::Gzip {
            path: path.to_owned(),
            source,
        })?;
    if out.len() as u64 > max {
        return Err(too_large(&format!("{name} once decompressed"), max));
    }
    if out.starts_with(&GZIP_MAGIC) {
        return Err(EtlError::Invalid {
            field: name,
            reason: "gzip inside gzip is not a CSV".into(),
        });
    }
    Ok(out)
}
