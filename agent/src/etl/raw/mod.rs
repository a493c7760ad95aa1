//! RawData in SQL: the ingested data set split into the original system's tables, and the
//! batches appended from the training pool.
//!
//! Tables keep the original names (`train_pool`, `train_data`, `validation_data`, `test_data`)
//! and the CSV's column names, so existing queries keep working. Each also has
//! `split_position`, the row's place in its split (the pool's order is the order batches are
//! appended in), and `train_data` has `batch_number`. `raw_dataset` holds the one ingested
//! data set, `raw_batches` every append with the request that made it, which is what makes an
//! append exactly-once: a retried request finds its batch instead of appending another.

mod read;

use std::sync::LazyLock;

use polars::prelude::{DataFrame, Int64Chunked, StringChunked};
use readmit_ml::schema::{self, COLUMNS, Kind, MAX_TEXT_LEN};
use readmit_ml::split::SplitMethod;
use sqlx::Row;

use super::runs::{EtlError, Result};
use crate::db::{BulkValue, Db, Dialect, Owned, Records, Rows, SchemaChange, Step};
use crate::{now_ms, sql};

pub const TRAIN_POOL: &str = "train_pool";
pub const TRAIN_DATA: &str = "train_data";
pub const VALIDATION_DATA: &str = "validation_data";
pub const TEST_DATA: &str = "test_data";
/// Every RawData table, in the order they are listed.
pub const TABLES: [&str; 4] = [TRAIN_POOL, TRAIN_DATA, VALIDATION_DATA, TEST_DATA];

/// Rows an append moves when the request does not say: the original's batch size.
pub const DEFAULT_BATCH_SIZE: u32 = 15_000;

const SPLIT_POSITION: &str = "split_position";
const BATCH_NUMBER: &str = "batch_number";

/// The RawData columns every table has: the CSV's, then the engineered prior-encounter count.
pub fn data_columns() -> impl Iterator<Item = (&'static str, bool, bool)> {
    COLUMNS
        .iter()
        .map(|c| {
            let integer = matches!(c.kind, Kind::Integer { .. });
            (c.name, integer, c.missing_allowed)
        })
        .chain([(schema::PRIOR_ENCOUNTERS, true, false)])
}

/// The tables' DDL, generated from `ml::schema` so the two can never disagree.
fn schema_sql() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let mut sql = String::from(
            "-- RawData: the ingested data set's splits, generated from ml::schema.\n",
        );
        for table in TABLES {
            sql.push_str(&format!("CREATE TABLE \"{table}\" (\n"));
            for (name, integer, nullable) in data_columns() {
                let ty = if integer {
                    "BIGINT".to_owned()
                } else {
                    format!("VARCHAR({MAX_TEXT_LEN})")
                };
                let null = if nullable { "" } else { " NOT NULL" };
                sql.push_str(&format!("    \"{name}\" {ty}{null},\n"));
            }
            sql.push_str(&format!("    \"{SPLIT_POSITION}\" BIGINT NOT NULL,\n"));
            if table == TRAIN_DATA {
                sql.push_str(&format!("    \"{BATCH_NUMBER}\" BIGINT NOT NULL,\n"));
            }
            sql.push_str(&format!(
                "    PRIMARY KEY (\"{}\")\n);\n",
                schema::ENCOUNTER_ID
            ));
            sql.push_str(&format!(
                "CREATE UNIQUE INDEX \"{table}_by_position\" ON \"{table}\" (\"{SPLIT_POSITION}\");\n"
            ));
        }
        sql.push_str(
            "CREATE TABLE raw_dataset (
    id              SMALLINT PRIMARY KEY,
    ingest_id       VARCHAR(64) NOT NULL,
    sha256          VARCHAR(64) NOT NULL,
    file_name       VARCHAR(1000) NOT NULL,
    split           VARCHAR(20) NOT NULL,
    seed            BIGINT NOT NULL,
    ingested_at     BIGINT NOT NULL,
    pool_rows       BIGINT NOT NULL,
    validation_rows BIGINT NOT NULL,
    test_rows       BIGINT NOT NULL,
    train_rows      BIGINT NOT NULL,
    batches         BIGINT NOT NULL
);
CREATE TABLE raw_batches (
    ingest_id      VARCHAR(64) NOT NULL,
    batch_number   BIGINT NOT NULL,
    request_id     VARCHAR(200) NOT NULL,
    first_position BIGINT NOT NULL,
    rows_appended  BIGINT NOT NULL,
    appended_at    BIGINT NOT NULL,
    PRIMARY KEY (ingest_id, batch_number)
);
CREATE UNIQUE INDEX raw_batches_by_request ON raw_batches (ingest_id, request_id);
",
        );
        sql
    });
    &SQL
}

/// The data set RawData holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Changes with every ingest, even of the same file after a replace.
    pub ingest_id: String,
    /// SHA-256 of the CSV text (after gzip, if it was compressed).
    pub sha256: String,
    pub file_name: String,
    pub split: SplitMethod,
    pub seed: u32,
    pub ingested_at: i64,
    pub pool_rows: i64,
    pub validation_rows: i64,
    pub test_rows: i64,
    /// Pool rows appended to `train_data` so far.
    pub train_rows: i64,
    pub batches: i64,
}

/// What a RawData table holds beyond its size: which rows, and how many of the positive class.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitFacts {
    /// Rows the fingerprint covers.
    pub rows: i64,
    /// The table's encounter ids in split order, as [`readmit_ml::split::fingerprint`] digests
    /// them: equal to what the ML core computes for the same split.
    pub fingerprint: String,
    /// Rows readmitted within 30 days (`readmitted` is `<30`).
    pub readmitted: i64,
}

/// What an append did.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    pub rows: i64,
    pub batch_number: i64,
    pub train_rows: i64,
    pub pool_remaining: i64,
    /// The pool was already empty: nothing was appended.
    pub exhausted: bool,
    /// The request had already been carried out: this is its recorded result.
    pub replayed: bool,
}

impl Appended {
    /// What happened, in the words operators read in replies and task logs.
    pub fn message(&self) -> String {
        if self.exhausted {
            return format!(
                "the training pool is exhausted: {TRAIN_DATA} already holds all {} pool rows",
                self.train_rows
            );
        }
        let again = if self.replayed {
            " (this request had already done it; nothing new appended)"
        } else {
            ""
        };
        format!(
            "batch {}: {} rows appended to {TRAIN_DATA}{again}; {} rows in {TRAIN_DATA}, {} left \
             in the pool",
            self.batch_number, self.rows, self.train_rows, self.pool_remaining
        )
    }
}

/// The splits of a data set to ingest, frames as `ml::data::read_csv` returns them.
pub struct NewDataset<'a> {
    pub sha256: &'a str,
    pub file_name: &'a str,
    pub split: SplitMethod,
    pub seed: u32,
    pub train_pool: &'a DataFrame,
    pub validation: &'a DataFrame,
    pub test: &'a DataFrame,
}

pub fn split_name(split: SplitMethod) -> &'static str {
    match split {
        SplitMethod::Original => "original",
        SplitMethod::Grouped => "grouped",
    }
}

fn parse_split(text: &str) -> Result<SplitMethod> {
    match text {
        "original" => Ok(SplitMethod::Original),
        "grouped" => Ok(SplitMethod::Grouped),
        other => Err(EtlError::Corrupt(format!("unknown split {other:?}"))),
    }
}

#[derive(Clone, Debug)]
pub struct RawStore {
    db: Db,
}

impl RawStore {
    pub async fn open(db: Db) -> Result<Self> {
        db.migrate(
            "raw",
            &[SchemaChange {
                version: 1,
                description: "RawData splits, the data set, appended batches",
                sql: schema_sql(),
            }],
        )
        .await?;
        Ok(Self { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn dataset(&self) -> Result<Option<Dataset>> {
        read_dataset(&self.db, self.db.pool(), false).await
    }

    /// Rows in every RawData table, in [`TABLES`] order.
    pub async fn counts(&self) -> Result<Vec<(&'static str, i64)>> {
        let mut out = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let text = format!("SELECT COUNT(*) FROM \"{table}\"");
            let n: i64 = sqlx::query_scalar(self.db.dynamic(&self.db.dialect().requote(&text)))
                .fetch_one(self.db.pool())
                .await?;
            out.push((table, n));
        }
        Ok(out)
    }

    /// Writes a new data set in one transaction. Refused when another one is present, unless
    /// `replace`: then the old one goes in the same transaction, so readers see one or the
    /// other, never a mix.
    pub async fn ingest(&self, new: &NewDataset<'_>, replace: bool) -> Result<Dataset> {
        let db = &self.db;
        let old = self.dataset().await?;
        if let Some(old) = &old
            && !replace
        {
            return Err(refuse_other(old, new.sha256, new.split));
        }
        let dataset = Dataset {
            ingest_id: uuid::Uuid::new_v4().simple().to_string(),
            sha256: new.sha256.to_owned(),
            file_name: new.file_name.to_owned(),
            split: new.split,
            seed: new.seed,
            ingested_at: now_ms(),
            pool_rows: height(new.train_pool),
            validation_rows: height(new.validation),
            test_rows: height(new.test),
            train_rows: 0,
            batches: 0,
        };
        let for_update = match db.dialect() {
            Dialect::Sqlite => "",
            Dialect::MySql | Dialect::Postgres => " FOR UPDATE",
        };
        let mut steps = vec![Step::Expect {
            sql: format!("SELECT ingest_id FROM raw_dataset WHERE id = 1{for_update}"),
            expected: old.map(|old| old.ingest_id),
            conflict: "RawData changed while this file was being ingested; try again".into(),
        }];
        steps.extend(delete_all(db.dialect()));
        let mut columns: Vec<&str> = data_columns().map(|(name, _, _)| name).collect();
        columns.push(SPLIT_POSITION);
        for (table, frame) in [
            (TRAIN_POOL, new.train_pool),
            (VALIDATION_DATA, new.validation),
            (TEST_DATA, new.test),
        ] {
            steps.push(Step::insert(table, &columns, FrameRows::new(frame)?));
        }
        let text = |v: &str| Owned::Text(Some(v.to_owned()));
        let int = |v: i64| Owned::Int(Some(v));
        steps.push(Step::insert(
            "raw_dataset",
            &[
                "id",
                "ingest_id",
                "sha256",
                "file_name",
                "split",
                "seed",
                "ingested_at",
                "pool_rows",
                "validation_rows",
                "test_rows",
                "train_rows",
                "batches",
            ],
            Records(vec![vec![
                int(1),
                text(&dataset.ingest_id),
                text(&dataset.sha256),
                text(&dataset.file_name),
                text(split_name(dataset.split)),
                int(i64::from(dataset.seed)),
                int(dataset.ingested_at),
                int(dataset.pool_rows),
                int(dataset.validation_rows),
                int(dataset.test_rows),
                int(0),
                int(0),
            ]]),
        ));
        db.write(steps).await?;
        Ok(dataset)
    }

    /// Empties RawData: the data set, its splits and batches.
    pub async fn clear(&self) -> Result<()> {
        self.db.write(delete_all(self.db.dialect())).await?;
        Ok(())
    }

    /// Appends the next `size` pool rows not yet in `train_data`, in pool order, as one batch.
    /// `request_id` makes it exactly-once: the same request again returns the batch it made.
    pub async fn append_batch(&self, size: u32, request_id: &str) -> Result<Appended> {
        check_append(size, request_id)?;
        let db = &self.db;
        let mut w = db.begin_write().await?;
        // Locks the data set's row on MySQL and PostgreSQL, so concurrent appends queue here;
        // SQLite's writers already queue in begin_write.
        let dataset = read_dataset(db, &mut *w.tx, true).await?.ok_or_else(|| {
            EtlError::Conflict(
                "RawData is empty: ingest a file first (readmit data ingest FILE)".into(),
            )
        })?;
        if let Some(replayed) = recorded_append(db, &mut w.tx, &dataset, request_id).await? {
            return Ok(replayed);
        }
        let remaining = dataset.pool_rows - dataset.train_rows;
        if remaining <= 0 {
            return Ok(Appended {
                rows: 0,
                batch_number: dataset.batches,
                train_rows: dataset.train_rows,
                pool_remaining: 0,
                exhausted: true,
                replayed: false,
            });
        }
        let rows = remaining.min(i64::from(size));
        let first = dataset.train_rows;
        let batch_number = dataset.batches + 1;
        move_pool_rows(db, &mut w.tx, batch_number, first, rows).await?;
        sqlx::query(sql!(
            db,
            "INSERT INTO raw_batches (ingest_id, batch_number, request_id, first_position, \
             rows_appended, appended_at) VALUES (?, ?, ?, ?, ?, ?)"
        ))
        .bind(&dataset.ingest_id)
        .bind(batch_number)
        .bind(request_id)
        .bind(first)
        .bind(rows)
        .bind(now_ms())
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(sql!(
            db,
            "UPDATE raw_dataset SET train_rows = ?, batches = ? WHERE id = 1"
        ))
        .bind(first + rows)
        .bind(batch_number)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(Appended {
            rows,
            batch_number,
            train_rows: first + rows,
            pool_remaining: remaining - rows,
            exhausted: false,
            replayed: false,
        })
    }
}

fn height(frame: &DataFrame) -> i64 {
    i64::try_from(frame.height()).unwrap_or(i64::MAX)
}

/// The conflict when a different data set is already ingested.
pub fn refuse_other(old: &Dataset, sha256: &str, split: SplitMethod) -> EtlError {
    let what = if old.sha256 == sha256 {
        format!(
            "this file is already ingested with the {} split, not {}",
            split_name(old.split),
            split_name(split)
        )
    } else {
        format!(
            "RawData already holds {} (sha256 {}, ingested {})",
            old.file_name,
            &old.sha256,
            crate::format_ms(old.ingested_at)
        )
    };
    EtlError::Conflict(format!(
        "{what}; ask to replace it (--replace) to swap it atomically"
    ))
}

/// An append's size and request id, checked before any transaction starts.
fn check_append(size: u32, request_id: &str) -> Result<()> {
    if size == 0 {
        return Err(EtlError::Invalid {
            field: "batch_size".into(),
            reason: "must be at least 1".into(),
        });
    }
    if request_id.is_empty() || request_id.len() > 200 {
        return Err(EtlError::Invalid {
            field: "request_id".into(),
            reason: "must be 1 to 200 characters".into(),
        });
    }
    Ok(())
}

/// The recorded result of an append this request id already made, replayed.
async fn recorded_append(
    db: &Db,
    tx: &mut sqlx::AnyConnection,
    dataset: &Dataset,
    request_id: &str,
) -> Result<Option<Appended>> {
    let recorded = sqlx::query(sql!(
        db,
        "SELECT batch_number, first_position, rows_appended FROM raw_batches \
         WHERE ingest_id = ? AND request_id = ?"
    ))
    .bind(&dataset.ingest_id)
    .bind(request_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = recorded else {
        return Ok(None);
    };
    let rows: i64 = row.try_get("rows_appended")?;
    let first: i64 = row.try_get("first_position")?;
    Ok(Some(Appended {
        rows,
        batch_number: row.try_get("batch_number")?,
        train_rows: first + rows,
        pool_remaining: dataset.pool_rows - dataset.train_rows,
        exhausted: false,
        replayed: true,
    }))
}

/// Copies the pool's rows at positions `first..first + rows` into `train_data` as batch
/// `batch_number`; every one of them must be there.
async fn move_pool_rows(
    db: &Db,
    tx: &mut sqlx::AnyConnection,
    batch_number: i64,
    first: i64,
    rows: i64,
) -> Result<()> {
    let columns: Vec<String> = data_columns()
        .map(|(name, _, _)| format!("\"{name}\""))
        .chain([format!("\"{SPLIT_POSITION}\"")])
        .collect();
    let columns = columns.join(", ");
    let text = format!(
        "INSERT INTO \"{TRAIN_DATA}\" ({columns}, \"{BATCH_NUMBER}\") \
         SELECT {columns}, ? FROM \"{TRAIN_POOL}\" \
         WHERE \"{SPLIT_POSITION}\" >= ? AND \"{SPLIT_POSITION}\" < ?"
    );
    let moved = sqlx::query(db.dynamic(&db.dialect().requote(&text)))
        .bind(batch_number)
        .bind(first)
        .bind(first + rows)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if i64::try_from(moved).ok() != Some(rows) {
        return Err(EtlError::Corrupt(format!(
            "train_pool positions {first}..{} hold {moved} rows, expected {rows}",
            first + rows
        )));
    }
    Ok(())
}

async fn read_dataset<'e, E>(db: &Db, executor: E, for_update: bool) -> Result<Option<Dataset>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let select = "SELECT ingest_id, sha256, file_name, split, seed, ingested_at, pool_rows, \
                  validation_rows, test_rows, train_rows, batches FROM raw_dataset WHERE id = 1";
    let text = match (for_update, db.dialect()) {
        (true, Dialect::MySql | Dialect::Postgres) => format!("{select} FOR UPDATE"),
        _ => select.to_owned(),
    };
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(text))
        .fetch_optional(executor)
        .await?
    else {
        return Ok(None);
    };
    let seed: i64 = row.try_get("seed")?;
    Ok(Some(Dataset {
        ingest_id: row.try_get("ingest_id")?,
        sha256: row.try_get("sha256")?,
        file_name: row.try_get("file_name")?,
        split: parse_split(&row.try_get::<String, _>("split")?)?,
        seed: u32::try_from(seed).map_err(|_| EtlError::Corrupt(format!("seed {seed}")))?,
        ingested_at: row.try_get("ingested_at")?,
        pool_rows: row.try_get("pool_rows")?,
        validation_rows: row.try_get("validation_rows")?,
        test_rows: row.try_get("test_rows")?,
        train_rows: row.try_get("train_rows")?,
        batches: row.try_get("batches")?,
    }))
}

/// Deletes the data set, its batches and every split's rows.
fn delete_all(dialect: Dialect) -> Vec<Step> {
    ["raw_batches", "raw_dataset"]
        .into_iter()
        .chain(TABLES)
        .map(|table| Step::Sql(format!("DELETE FROM {}", dialect.quote_ident(table))))
        .collect()
}

/// A frame in `read_csv`'s layout as rows to insert, its row order as `split_position`.
struct FrameRows {
    columns: Vec<FrameColumn>,
    height: usize,
}

enum FrameColumn {
    Int(Int64Chunked),
    Text(StringChunked),
}

impl FrameRows {
    fn new(frame: &DataFrame) -> Result<Self> {
        let corrupt = |name: &str, e: polars::error::PolarsError| {
            EtlError::Corrupt(format!("frame column {name}: {e}"))
        };
        let mut columns = Vec::new();
        for (name, integer, _) in data_columns() {
            let column = frame.column(name).map_err(|e| corrupt(name, e))?;
            columns.push(if integer {
                FrameColumn::Int(
                    column
                        .i64()
                        .map_err(|e| corrupt(name, e))?
                        .rechunk()
                        .into_owned(),
                )
            } else {
                FrameColumn::Text(
                    column
                        .str()
                        .map_err(|e| corrupt(name, e))?
                        .rechunk()
                        .into_owned(),
                )
            });
        }
        Ok(Self {
            columns,
            height: frame.height(),
        })
    }
}

impl Rows for FrameRows {
    fn height(&self) -> usize {
        self.height
    }

    fn row<'a>(&'a self, index: usize, out: &mut Vec<BulkValue<'a>>) {
        for column in &self.columns {
            out.push(match column {
                FrameColumn::Int(v) => BulkValue::Int(v.get(index)),
                FrameColumn::Text(v) => BulkValue::Text(v.get(index)),
            });
        }
        out.push(BulkValue::Int(Some(
            i64::try_from(index).unwrap_or(i64::MAX),
        )));
    }
}
