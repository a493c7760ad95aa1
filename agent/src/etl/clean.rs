//! CleanData in SQL: the processed splits the preprocessing DAG writes, one row per encounter
//! with the selected, scaled features, and the fitted pipeline that made them.
//!
//! Tables keep the original names (`diabetes_train_processed`, `diabetes_validation_processed`,
//! `diabetes_test_processed`): `encounter_id`, one DOUBLE PRECISION column per selected feature
//! and `readmitted` (1 for `<30`). `clean_features` maps each column to the pipeline's feature
//! name and ANOVA F; `clean_version` holds the pipeline and where the data came from. The
//! selected features change as training data grows, so every save builds all five tables under
//! staging names and swaps them in at once (one transaction on SQLite and PostgreSQL, one
//! `RENAME TABLE` on MySQL, whose DDL cannot be transactional): readers see the old CleanData
//! or the new, never a mix, even if the agent dies mid-save.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use readmit_ml::matrix::Matrix;
use readmit_ml::pipeline::Pipeline;
use sqlx::Row;

use super::runs::{EtlError, Result};
use crate::db::{BulkValue, Db, Dialect, Ordered, Owned, Records, Rows, Step};
use crate::now_ms;

pub const TRAIN_PROCESSED: &str = "diabetes_train_processed";
pub const VALIDATION_PROCESSED: &str = "diabetes_validation_processed";
pub const TEST_PROCESSED: &str = "diabetes_test_processed";
/// The processed tables, train, validation, test.
pub const PROCESSED: [&str; 3] = [TRAIN_PROCESSED, VALIDATION_PROCESSED, TEST_PROCESSED];
const FEATURES: &str = "clean_features";
const VERSION: &str = "clean_version";
const STAGING: &str = "__staging";
const OLD: &str = "__old";

/// One processed split: its encounters, their features and labels.
#[derive(Clone, Debug)]
pub struct Processed {
    pub encounter_ids: Vec<i64>,
    pub x: Matrix,
    pub y: Vec<bool>,
}

impl Rows for Processed {
    fn height(&self) -> usize {
        self.encounter_ids.len()
    }

    /// `encounter_id`, the features, `readmitted`.
    fn row<'a>(&'a self, index: usize, out: &mut Vec<BulkValue<'a>>) {
        out.push(BulkValue::Int(Some(self.encounter_ids[index])));
        out.extend(
            self.x
                .row(index)
                .iter()
                .map(|v| BulkValue::Real(f64::from(*v))),
        );
        out.push(BulkValue::Int(Some(i64::from(self.y[index]))));
    }
}

/// Where a CleanData version came from.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanVersion {
    pub version: i64,
    pub dag_run_id: String,
    pub ingest_id: String,
    pub dataset_sha256: String,
    pub train_rows: i64,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct CleanStore {
    db: Db,
}

impl CleanStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Replaces CleanData with `splits` (train, validation, test) and `pipeline`, atomically.
    pub async fn save(
        &self,
        pipeline: &Pipeline,
        splits: [Processed; 3],
        mut version: CleanVersion,
    ) -> Result<CleanVersion> {
        let db = &self.db;
        let dialect = db.dialect();
        let names = column_names(pipeline.names());
        let generation = now_ms();
        version.version = generation;
        version.created_at = generation;
        // Leftovers of a save that died before its swap.
        let mut steps: Vec<Step> = tables()
            .flat_map(|table| [STAGING, OLD].map(|suffix| format!("{table}{suffix}")))
            .map(|table| drop_table(dialect, &table))
            .collect();
        for (table, split) in PROCESSED.into_iter().zip(splits) {
            steps.extend(split_table(dialect, table, split, &names, generation));
        }
        steps.extend(features_table(dialect, pipeline, &names));
        steps.extend(version_table(dialect, pipeline, &version)?);
        steps.extend(swap(db).await?);
        db.write(steps).await?;
        Ok(version)
    }

    /// Rows of each processed table that exists.
    pub async fn counts(&self) -> Result<Vec<(&'static str, i64)>> {
        let db = &self.db;
        let mut conn = db.pool().acquire().await?;
        let existing = existing_tables(db, &mut *conn).await?;
        let mut out = Vec::new();
        for table in PROCESSED {
            if existing.contains(table) {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM {table}"
                )))
                .fetch_one(&mut *conn)
                .await?;
                out.push((table, n));
            }
        }
        Ok(out)
    }

    /// The three processed splits (train, validation, test), their pipeline and version, read
    /// in one snapshot: a save meanwhile cannot mix two versions into one training set.
    pub async fn read_all(&self) -> Result<([Processed; 3], Pipeline, CleanVersion)> {
        let db = &self.db;
        let mut tx = db.pool().begin().await?;
        if db.dialect() == Dialect::Postgres {
            // READ COMMITTED would let each statement see a newer commit.
            sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let empty = || {
            EtlError::Conflict(
                "CleanData is empty: run the preprocess_incremental DAG first".into(),
            )
        };
        if !existing_tables(db, &mut *tx).await?.contains(VERSION) {
            return Err(empty());
        }
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SELECT version, dag_run_id, ingest_id, dataset_sha256, train_rows, created_at, pipeline FROM {VERSION}"
        )))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(empty)?;
        let (version, pipeline) = version_of(&row)?;
        let names = column_names(pipeline.names());
        let columns: Vec<String> = names.iter().map(|n| db.dialect().quote_ident(n)).collect();
        let mut splits = Vec::with_capacity(3);
        for table in PROCESSED {
            let text = format!(
                "SELECT encounter_id, readmitted, {} FROM {table} ORDER BY encounter_id",
                columns.join(", ")
            );
            let mut ids = Vec::new();
            let mut y = Vec::new();
            let mut data = Vec::new();
            let mut rows = sqlx::raw_sql(sqlx::AssertSqlSafe(text)).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                ids.push(row.try_get::<i64, _>(0)?);
                y.push(row.try_get::<i64, _>(1)? != 0);
                for i in 0..names.len() {
                    #[allow(clippy::cast_possible_truncation)]
                    data.push(row.try_get::<f64, _>(i + 2)? as f32);
                }
            }
            drop(rows);
            let x = Matrix::new(ids.len(), names.len(), data, pipeline.names().to_vec())
                .map_err(|e| EtlError::Corrupt(format!("{table}: {e}")))?;
            splits.push(Processed {
                encounter_ids: ids,
                x,
                y,
            });
        }
        tx.commit().await?;
        let splits: [Processed; 3] = splits
            .try_into()
            .map_err(|_| EtlError::Corrupt("expected three processed tables".into()))?;
        Ok((splits, pipeline, version))
    }
}

/// Every table one CleanData version is made of.
fn tables() -> impl Iterator<Item = &'static str> {
    PROCESSED.into_iter().chain([FEATURES, VERSION])
}

fn drop_table(dialect: Dialect, table: &str) -> Step {
    Step::Sql(format!(
        "DROP TABLE IF EXISTS {}",
        dialect.quote_ident(table)
    ))
}

/// One split's staging table (features as columns, keyed by encounter) and its rows.
fn split_table(
    dialect: Dialect,
    table: &str,
    split: Processed,
    names: &[String],
    generation: i64,
) -> [Step; 2] {
    let staging = format!("{table}{STAGING}");
    let mut ddl = format!("CREATE TABLE {} (\n", dialect.quote_ident(&staging));
    ddl.push_str("    encounter_id BIGINT NOT NULL,\n");
    for name in names {
        ddl.push_str(&format!(
            "    {} DOUBLE PRECISION NOT NULL,\n",
            dialect.quote_ident(name)
        ));
    }
    ddl.push_str("    readmitted SMALLINT NOT NULL,\n");
    ddl.push_str(&format!(
        "    CONSTRAINT {} PRIMARY KEY (encounter_id)\n)",
        dialect.quote_ident(&format!("{table}_pk_{generation}"))
    ));
    let mut columns: Vec<&str> = vec!["encounter_id"];
    columns.extend(names.iter().map(String::as_str));
    columns.push("readmitted");
    // In key order: the primary key's B-tree (InnoDB's table itself) only appends.
    let ids = split.encounter_ids.clone();
    [
        Step::Sql(ddl),
        Step::insert(&staging, &columns, Ordered::by_key(split, move |i| ids[i])),
    ]
}

/// The staging table of the features' names, source columns and F scores.
fn features_table(dialect: Dialect, pipeline: &Pipeline, names: &[String]) -> [Step; 2] {
    let features = names
        .iter()
        .zip(pipeline.names())
        .zip(pipeline.f_scores())
        .enumerate()
        .map(|(i, ((column, feature), f))| {
            vec![
                Owned::Int(Some(i64::try_from(i).unwrap_or(i64::MAX))),
                Owned::Text(Some(column.clone())),
                Owned::Text(Some(feature.clone())),
                Owned::Real(*f),
            ]
        })
        .collect();
    [
        Step::Sql(format!(
            "CREATE TABLE {} (\n    position BIGINT NOT NULL,\n    column_name VARCHAR(100) NOT NULL,\n    feature TEXT NOT NULL,\n    f_score DOUBLE PRECISION NOT NULL\n)",
            dialect.quote_ident(&format!("{FEATURES}{STAGING}"))
        )),
        Step::insert(
            &format!("{FEATURES}{STAGING}"),
            &["position", "column_name", "feature", "f_score"],
            Records(features),
        ),
    ]
}

/// The staging table of the version's one row: where it came from and the fitted pipeline.
fn version_table(
    dialect: Dialect,
    pipeline: &Pipeline,
    version: &CleanVersion,
) -> Result<[Step; 2]> {
    let json = pipeline
        .to_json()
        .map_err(|e| EtlError::Ml(format!("saving the pipeline: {e}")))?;
    Ok([
        Step::Sql(format!(
            "CREATE TABLE {} (\n    version BIGINT NOT NULL,\n    dag_run_id VARCHAR(64) NOT NULL,\n    ingest_id VARCHAR(64) NOT NULL,\n    dataset_sha256 VARCHAR(64) NOT NULL,\n    train_rows BIGINT NOT NULL,\n    created_at BIGINT NOT NULL,\n    pipeline TEXT NOT NULL\n)",
            dialect.quote_ident(&format!("{VERSION}{STAGING}"))
        )),
        Step::insert(
            &format!("{VERSION}{STAGING}"),
            &[
                "version",
                "dag_run_id",
                "ingest_id",
                "dataset_sha256",
                "train_rows",
                "created_at",
                "pipeline",
            ],
            Records(vec![vec![
                Owned::Int(Some(version.version)),
                Owned::Text(Some(version.dag_run_id.clone())),
                Owned::Text(Some(version.ingest_id.clone())),
                Owned::Text(Some(version.dataset_sha256.clone())),
                Owned::Int(Some(version.train_rows)),
                Owned::Int(Some(version.created_at)),
                Owned::Text(Some(json)),
            ]]),
        ),
    ])
}

/// The steps that put the staging tables in place of the current ones, all at once.
async fn swap(db: &Db) -> Result<Vec<Step>> {
    let dialect = db.dialect();
    let mut steps = Vec::new();
    match dialect {
        Dialect::MySql => {
            // MySQL's DDL commits as it goes: one RENAME TABLE swaps every table at once.
            let existing = existing_tables(db, db.pool()).await?;
            let mut pairs = Vec::new();
            for table in tables() {
                if existing.contains(table) {
                    pairs.push(format!("`{table}` TO `{table}{OLD}`"));
                }
                pairs.push(format!("`{table}{STAGING}` TO `{table}`"));
            }
            steps.push(Step::Sql(format!("RENAME TABLE {}", pairs.join(", "))));
            for table in tables() {
                steps.push(drop_table(dialect, &format!("{table}{OLD}")));
            }
        }
        Dialect::Sqlite | Dialect::Postgres => {
            for table in tables() {
                steps.push(drop_table(dialect, table));
                steps.push(Step::Sql(format!(
                    "ALTER TABLE {} RENAME TO {}",
                    dialect.quote_ident(&format!("{table}{STAGING}")),
                    dialect.quote_ident(table)
                )));
            }
        }
    }
    Ok(steps)
}

fn version_of(row: &sqlx::any::AnyRow) -> Result<(CleanVersion, Pipeline)> {
    let pipeline = Pipeline::from_json(&row.try_get::<String, _>("pipeline")?)
        .map_err(|e| EtlError::Corrupt(format!("{VERSION}.pipeline: {e}")))?;
    Ok((
        CleanVersion {
            version: row.try_get("version")?,
            dag_run_id: row.try_get("dag_run_id")?,
            ingest_id: row.try_get("ingest_id")?,
            dataset_sha256: row.try_get("dataset_sha256")?,
            train_rows: row.try_get("train_rows")?,
            created_at: row.try_get("created_at")?,
        },
        pipeline,
    ))
}

/// SQL column names for the pipeline's feature names: lower-case letters, digits and
/// underscores, at most 60 characters (PostgreSQL cuts names at 63 bytes, MySQL refuses more
/// than 64), unique.
pub fn column_names(features: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    features
        .iter()
        .map(|feature| {
            let mut name = String::with_capacity(feature.len());
            for c in feature.chars() {
                let c = if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                };
                if !(c == '_' && name.ends_with('_')) {
                    name.push(c);
                }
            }
            let mut name = name.trim_matches('_').to_owned();
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                name.insert_str(0, "f_");
            }
            name.truncate(60);
            let base = name.clone();
            let mut n = 2;
            while !seen.insert(name.clone()) || name == "encounter_id" || name == "readmitted" {
                name = format!("{}_{n}", &base[..base.len().min(56)]);
                n += 1;
            }
            name
        })
        .collect()
}

/// The CleanData tables that exist, of those this module makes.
async fn existing_tables<'e, E>(db: &Db, executor: E) -> Result<HashSet<String>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let text = match db.dialect() {
        Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        Dialect::MySql => {
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        }
        Dialect::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()"
        }
    };
    let names: Vec<String> = sqlx::query_scalar(text).fetch_all(executor).await?;
    Ok(names.into_iter().collect())
}
