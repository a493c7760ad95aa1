//! The tracking store: experiments, runs, params, tags and metric history in SQL (SQLite,
//! MySQL/MariaDB or PostgreSQL), with MLflow's rules for what may change and what may not.
//! This file holds the store itself, its schema and what every search shares (binding
//! generated SQL, paging); `experiments`, `runs` and `batch` hold the operations and `rows`
//! decodes result rows from either driver.

mod batch;
mod experiments;
mod rows;
mod runs;

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::entities::*;
use super::search::{self, Bind};
use crate::db::{Db, SchemaChange};
use crate::{now_ms, sql};

pub(super) use batch::{KeyValues, write_key_values};
pub use runs::RUN_NAME_TAG;

const CHANGES: &[SchemaChange] = &[
    SchemaChange {
        version: 1,
        description: "experiments, runs, params, tags, metrics",
        sql: include_str!("../../../migrations/tracking/0001_runs.sql"),
    },
    SchemaChange {
        version: 2,
        description: "logged models and run outputs",
        sql: include_str!("../../../migrations/tracking/0002_logged_models.sql"),
    },
    SchemaChange {
        version: 3,
        description: "registered models, versions, aliases, registry events",
        sql: include_str!("../../../migrations/tracking/0003_registry.sql"),
    },
];

/// Rows per multi-row INSERT: well under every backend's limit on bound parameters.
const ROWS_PER_INSERT: usize = 1000;
pub const DEFAULT_MAX_RESULTS: u32 = 1000;
pub const MAX_RESULTS_LIMIT: u32 = 50_000;

#[derive(Clone, Debug)]
pub struct TrackingStore {
    db: Db,
}

pub(super) type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

pub(super) fn bind_all<'q>(mut q: Query<'q>, binds: &[Bind]) -> Query<'q> {
    for b in binds {
        q = match b {
            Bind::Int(v) => q.bind(*v),
            Bind::Float(v) => q.bind(*v),
            Bind::Text(v) => q.bind(v.clone()),
        };
    }
    q
}

/// The rows of generated SQL whose `?`s are bound to `binds`, in order, on the pool.
pub(super) async fn fetch_rows(
    db: &Db,
    text: String,
    binds: &[Bind],
) -> Result<Vec<AnyRow>, sqlx::Error> {
    bind_all(sqlx::query(db.dynamic(&text)), binds)
        .fetch_all(db.pool())
        .await
}

/// `(?, ?, ?), (?, ?, ?)`: placeholders for `rows` rows of `columns` values.
pub(super) fn value_rows(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

impl TrackingStore {
    /// Applies migrations and makes sure the `Default` experiment (id 0) exists.
    pub async fn open(db: Db) -> Result<Self> {
        db.migrate("tracking", CHANGES).await?;
        let store = Self { db };
        store.ensure_default_experiment().await?;
        Ok(store)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn ensure_default_experiment(&self) -> Result<()> {
        let db = &self.db;
        let mut w = db.begin_write().await?;
        let found: Option<i64> = sqlx::query_scalar(sql!(
            db,
            "SELECT experiment_id FROM experiments WHERE experiment_id = ?"
        ))
        .bind(DEFAULT_EXPERIMENT_ID)
        .fetch_optional(&mut *w.tx)
        .await?;
        if found.is_none() {
            let now = now_ms();
            sqlx::query(sql!(
                db,
                "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, \
                 creation_time, last_update_time) VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .bind(DEFAULT_EXPERIMENT_ID)
            .bind(DEFAULT_EXPERIMENT_NAME)
            .bind(format!("mlflow-artifacts:/{DEFAULT_EXPERIMENT_ID}"))
            .bind(Lifecycle::Active.as_str())
            .bind(now)
            .bind(now)
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await?;
        Ok(())
    }

    /// Runs a tag's DELETE in its own write transaction: `NotFound` when there was no such tag.
    pub(super) async fn delete_tag_row(&self, query: Query<'_>, id: String) -> Result<()> {
        let mut w = self.db.begin_write().await?;
        if query.execute(&mut *w.tx).await?.rows_affected() == 0 {
            return Err(TrackingError::NotFound { what: "tag", id });
        }
        w.commit().await?;
        Ok(())
    }

    /// One page of a search's ids (`query.limit` of them), and the token of the next page if
    /// there is one: one more row than the page is asked for to know.
    pub(super) async fn page_of_ids<T>(
        &self,
        query: search::IdsQuery<'_>,
    ) -> Result<(Vec<T>, Option<String>)>
    where
        T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + rusqlite::types::FromSql,
        T: Send + 'static,
    {
        let (limit, offset) = (query.limit, query.offset);
        let q = search::ids_query(
            self.db.dialect(),
            &search::IdsQuery {
                limit: limit + 1,
                ..query
            },
        )?;
        let (text, binds) = (q.text.clone(), q.binds.clone());
        let read = self
            .db
            .read_sqlite(move |conn| -> Result<Vec<T>> {
                let mut statement = conn.prepare(&text)?;
                let rows = statement.query_map(rusqlite::params_from_iter(&binds), |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await;
        let mut ids: Vec<T> = match read {
            Some(ids) => ids?,
            None => fetch_rows(&self.db, q.text, &q.binds)
                .await?
                .iter()
                .map(|r| r.try_get::<T, _>(0))
                .collect::<Result<_, _>>()?,
        };
        let next = (ids.len() as i64 > limit).then(|| page_token_for(offset + limit));
        ids.truncate(limit as usize);
        Ok((ids, next))
    }
}

/// What `search_experiments` looks for.
#[derive(Clone, Debug)]
pub struct ExperimentQuery {
    pub view: ViewType,
    pub filter: String,
    pub order_by: Vec<String>,
    pub max_results: u32,
    pub page_token: Option<String>,
}

impl Default for ExperimentQuery {
    fn default() -> Self {
        Self {
            view: ViewType::ActiveOnly,
            filter: String::new(),
            order_by: Vec::new(),
            max_results: DEFAULT_MAX_RESULTS,
            page_token: None,
        }
    }
}

/// What `search_runs` looks for.
#[derive(Clone, Debug)]
pub struct RunQuery {
    pub experiment_ids: Vec<i64>,
    pub filter: String,
    pub order_by: Vec<String>,
    pub view: ViewType,
    pub max_results: u32,
    pub page_token: Option<String>,
}

impl Default for RunQuery {
    fn default() -> Self {
        Self {
            experiment_ids: Vec::new(),
            filter: String::new(),
            order_by: Vec::new(),
            view: ViewType::ActiveOnly,
            max_results: DEFAULT_MAX_RESULTS,
            page_token: None,
        }
    }
}

pub(super) fn page_size(max_results: u32) -> Result<i64> {
    match max_results {
        0 => Ok(i64::from(DEFAULT_MAX_RESULTS)),
        n if n <= MAX_RESULTS_LIMIT => Ok(i64::from(n)),
        n => Err(TrackingError::invalid(
            "max_results",
            format!("{n} is more than the limit of {MAX_RESULTS_LIMIT}"),
        )),
    }
}

/// Page tokens are opaque to clients; inside they are an offset.
pub(super) fn page_token_for(offset: i64) -> String {
    format!("o{offset}")
}

pub(super) fn parse_page_token(token: Option<&str>) -> Result<i64> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t
            .strip_prefix('o')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                TrackingError::invalid(
                    "page_token",
                    format!("{t:?} is not a page token this server gave"),
                )
            }),
    }
}
