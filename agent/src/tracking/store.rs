//! The tracking store: experiments, runs, params, tags and metric history in SQL (SQLite,
//! MySQL/MariaDB or PostgreSQL), with MLflow's rules for what may change and what may not.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::entities::*;
use super::search::{self, Bind};
use crate::db::{Db, Dialect, SchemaChange, is_unique_violation};
use crate::{now_ms, sql};

const CHANGES: &[SchemaChange] = &[
    SchemaChange {
        version: 1,
        description: "experiments, runs, params, tags, metrics",
        sql: include_str!("../../migrations/tracking/0001_runs.sql"),
    },
    SchemaChange {
        version: 2,
        description: "logged models and run outputs",
        sql: include_str!("../../migrations/tracking/0002_logged_models.sql"),
    },
    SchemaChange {
        version: 3,
        description: "registered models, versions, aliases, registry events",
        sql: include_str!("../../migrations/tracking/0003_registry.sql"),
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

/// A table of (owner, key, value) rows: params and tags of runs and of logged models.
#[derive(Clone, Copy)]
pub(super) struct KeyValues {
    table: &'static str,
    owner: &'static str,
    key: &'static str,
}

impl KeyValues {
    pub(super) const RUN_PARAMS: KeyValues = KeyValues {
        table: "params",
        owner: "run_id",
        key: "param_key",
    };
    pub(super) const RUN_TAGS: KeyValues = KeyValues {
        table: "tags",
        owner: "run_id",
        key: "tag_key",
    };
    pub(super) const MODEL_PARAMS: KeyValues = KeyValues {
        table: "logged_model_params",
        owner: "model_id",
        key: "param_key",
    };
    pub(super) const MODEL_TAGS: KeyValues = KeyValues {
        table: "logged_model_tags",
        owner: "model_id",
        key: "tag_key",
    };
}

/// Inserts `rows` for `owner`. With `upsert` an existing key takes the new value and, within
/// `rows`, the last value of a key wins (PostgreSQL refuses to touch a row twice in one
/// statement, so duplicates are dropped first); without it a key must be new.
pub(super) async fn write_key_values(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    kv: KeyValues,
    owner: &str,
    rows: &[(&str, &str)],
    upsert: bool,
) -> Result<()> {
    let unique = last_per_key(rows);
    for chunk in unique.chunks(ROWS_PER_INSERT) {
        let text = key_values_sql(db.dialect(), kv, chunk.len(), upsert);
        let mut query = sqlx::query(db.dynamic(&text));
        for &(k, v) in chunk {
            query = query
                .bind(owner.to_owned())
                .bind(k.to_owned())
                .bind(v.to_owned());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `rows` with one row per key, the last one given.
fn last_per_key<'a>(rows: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut unique: Vec<(&str, &str)> = Vec::with_capacity(rows.len());
    for &(k, v) in rows.iter().rev() {
        if !unique.iter().any(|(u, _)| *u == k) {
            unique.push((k, v));
        }
    }
    unique
}

/// The INSERT (or upsert) of `rows` key-value rows `(owner, key, value)` into `kv`'s table.
fn key_values_sql(dialect: Dialect, kv: KeyValues, rows: usize, upsert: bool) -> String {
    let KeyValues {
        table,
        owner: owner_col,
        key,
    } = kv;
    let values = value_rows(rows, 3);
    let insert = format!("INSERT INTO {table} ({owner_col}, {key}, value) VALUES {values}");
    match (upsert, dialect) {
        (false, _) => insert,
        (true, Dialect::MySql) => format!("{insert} ON DUPLICATE KEY UPDATE value = VALUES(value)"),
        (true, Dialect::Sqlite | Dialect::Postgres) => {
            format!(
                "{insert} ON CONFLICT ({owner_col}, {key}) DO UPDATE SET value = excluded.value"
            )
        }
    }
}

/// The INSERT of `rows` metric rows `(run_id, metric_key, step, ts, value, is_nan)` into the
/// history; a row already there (the same point logged again) is skipped.
fn metrics_sql(dialect: Dialect, rows: usize) -> String {
    let rows = value_rows(rows, 6);
    match dialect {
        Dialect::Sqlite => format!(
            "INSERT OR IGNORE INTO metrics (run_id, metric_key, step, ts, value, is_nan) VALUES {rows}"
        ),
        Dialect::MySql => format!(
            "INSERT IGNORE INTO metrics (run_id, metric_key, step, ts, value, is_nan) VALUES {rows}"
        ),
        Dialect::Postgres => format!(
            "INSERT INTO metrics (run_id, metric_key, step, ts, value, is_nan) VALUES {rows} \
             ON CONFLICT DO NOTHING"
        ),
    }
}

/// The upsert of `rows` rows into `latest_metrics`. SQLite and PostgreSQL keep the newer row
/// in the statement itself; MySQL cannot compare with the existing row there, so its caller
/// passes only rows newer than the stored ones.
fn latest_metrics_sql(dialect: Dialect, rows: usize) -> String {
    let rows = value_rows(rows, 6);
    match dialect {
        Dialect::MySql => format!(
            "INSERT INTO latest_metrics (run_id, metric_key, step, ts, value, is_nan) VALUES {rows} \
             ON DUPLICATE KEY UPDATE step = VALUES(step), ts = VALUES(ts), \
             value = VALUES(value), is_nan = VALUES(is_nan)"
        ),
        // The same order as `later`: step, then timestamp, then value, NaN lowest.
        Dialect::Sqlite | Dialect::Postgres => format!(
            "INSERT INTO latest_metrics (run_id, metric_key, step, ts, value, is_nan) VALUES {rows} \
             ON CONFLICT (run_id, metric_key) DO UPDATE SET step = excluded.step, \
             ts = excluded.ts, value = excluded.value, is_nan = excluded.is_nan \
             WHERE (excluded.step, excluded.ts, \
                    CASE WHEN excluded.is_nan = 1 THEN {lowest:e} ELSE excluded.value END) \
                 > (latest_metrics.step, latest_metrics.ts, \
                    CASE WHEN latest_metrics.is_nan = 1 THEN {lowest:e} ELSE latest_metrics.value END)",
            lowest = f64::MIN
        ),
    }
}

/// The newest of `metrics` for each key, in order of first appearance.
fn newest_per_key(metrics: &[Metric]) -> Vec<&Metric> {
    let mut newest: Vec<&Metric> = Vec::new();
    for m in metrics {
        match newest.iter_mut().find(|n| n.key == m.key) {
            Some(n) if later(m, n) => *n = m,
            Some(_) => {}
            None => newest.push(m),
        }
    }
    newest
}

/// `params` with one per key (the first), and of those the ones not stored yet; a key stored
/// with another value is refused, as MLflow does.
fn new_params<'a>(
    run_id: &str,
    params: &'a [Param],
    stored: &HashMap<String, String>,
) -> Result<Vec<&'a Param>> {
    let mut unique: Vec<&Param> = Vec::with_capacity(params.len());
    for p in params {
        if !unique.iter().any(|u| u.key == p.key) {
            unique.push(p);
        }
    }
    let mut fresh = Vec::new();
    for p in unique {
        match stored.get(&p.key) {
            Some(old) if *old != p.value => {
                return Err(TrackingError::invalid(
                    format!("params[{}]", p.key),
                    format!(
                        "changing param values is not allowed: run {run_id} already has \
                         {}={old:?}, not {:?}",
                        p.key, p.value
                    ),
                ));
            }
            Some(_) => {}
            None => fresh.push(p),
        }
    }
    Ok(fresh)
}

/// The query for the stored values of some of a run's params (`param_key`, `value`).
fn stored_params_query(run_id: &str, params: &[Param]) -> search::SqlParts {
    keyed_query(
        "SELECT param_key, value FROM params WHERE run_id = ? AND param_key IN",
        run_id,
        params.iter().map(|p| p.key.as_str()),
    )
}

/// Refuses to change a run that is not active (deleted runs are read-only until restored).
fn require_active(run_id: &str, stage: Lifecycle) -> Result<()> {
    if stage != Lifecycle::Active {
        return Err(TrackingError::InvalidState(format!(
            "the run {run_id} must be in the 'active' state; it is {stage}"
        )));
    }
    Ok(())
}

/// [`TrackingStore::log_batch`] on the SQLite writer connection: the same statements, each
/// prepared once and run a row at a time.
fn log_batch_sqlite(tx: &rusqlite::Transaction<'_>, run_id: &str, batch: &Batch) -> Result<()> {
    use rusqlite::OptionalExtension as _;
    let stage: Option<String> = tx
        .prepare_cached("SELECT lifecycle_stage FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    let stage = stage.ok_or_else(|| run_not_found(run_id))?;
    require_active(run_id, stage.parse()?)?;
    if !batch.params.is_empty() {
        let q = stored_params_query(run_id, &batch.params);
        let stored: HashMap<String, String> = tx
            .prepare(&q.text)?
            .query_map(rusqlite::params_from_iter(&q.binds), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut insert = tx.prepare_cached(&key_values_sql(
            Dialect::Sqlite,
            KeyValues::RUN_PARAMS,
            1,
            false,
        ))?;
        for p in new_params(run_id, &batch.params, &stored)? {
            insert.execute([run_id, &p.key, &p.value])?;
        }
    }
    if !batch.tags.is_empty() {
        let rows: Vec<(&str, &str)> = batch.tags.iter().map(Tag::pair).collect();
        let mut upsert = tx.prepare_cached(&key_values_sql(
            Dialect::Sqlite,
            KeyValues::RUN_TAGS,
            1,
            true,
        ))?;
        for (k, v) in last_per_key(&rows) {
            upsert.execute([run_id, k, v])?;
        }
    }
    if !batch.metrics.is_empty() {
        // Each metric as a row `(run_id, metric_key, step, ts, value, is_nan)`.
        let write = |sql: String, metrics: &mut dyn Iterator<Item = &Metric>| {
            let mut statement = tx.prepare_cached(&sql)?;
            for m in metrics {
                let (value, is_nan) = stored_value(m.value);
                let row = rusqlite::params![run_id, m.key, m.step, m.timestamp, value, is_nan];
                statement.execute(row)?;
            }
            Ok::<_, rusqlite::Error>(())
        };
        write(metrics_sql(Dialect::Sqlite, 1), &mut batch.metrics.iter())?;
        let newest = newest_per_key(&batch.metrics);
        write(
            latest_metrics_sql(Dialect::Sqlite, 1),
            &mut newest.into_iter(),
        )?;
    }
    Ok(())
}

/// Binds metric rows as `(run_id, metric_key, step, ts, value, is_nan)`, in order.
fn bind_metric_rows<'q, M: std::borrow::Borrow<Metric>>(
    mut query: Query<'q>,
    run_id: &str,
    metrics: &[M],
) -> Query<'q> {
    for m in metrics.iter().map(std::borrow::Borrow::borrow) {
        let (value, is_nan) = stored_value(m.value);
        query = query
            .bind(run_id.to_owned())
            .bind(m.key.clone())
            .bind(m.step)
            .bind(m.timestamp)
            .bind(value)
            .bind(is_nan);
    }
    query
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

/// `<prefix> (?, ?, …)` bound to one run id, then `keys`.
fn keyed_query<'a>(
    prefix: &str,
    run_id: &str,
    keys: impl ExactSizeIterator<Item = &'a str>,
) -> search::SqlParts {
    let text = format!("{prefix} ({})", vec!["?"; keys.len()].join(", "));
    let mut binds = vec![Bind::Text(run_id.to_owned())];
    binds.extend(keys.map(|k| Bind::Text(k.to_owned())));
    search::SqlParts { text, binds }
}

/// `(?, ?, ?), (?, ?, ?)`: placeholders for `rows` rows of `columns` values.
pub(super) fn value_rows(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// MySQL cannot store infinities and SQLite turns NaN into NULL: store NaN as a flag and clamp
/// infinities to the largest finite doubles, as MLflow does.
fn stored_value(v: f64) -> (f64, i64) {
    if v.is_nan() {
        (0.0, 1)
    } else if v.is_infinite() {
        (if v > 0.0 { f64::MAX } else { f64::MIN }, 0)
    } else {
        (v, 0)
    }
}

fn loaded_value(value: f64, is_nan: i64) -> f64 {
    if is_nan != 0 { f64::NAN } else { value }
}

/// MLflow's order for the "latest" value of a metric: highest step, then timestamp, then value.
fn later(a: &Metric, b: &Metric) -> bool {
    let rank = |m: &Metric| {
        (
            m.step,
            m.timestamp,
            if m.value.is_nan() { f64::MIN } else { m.value },
        )
    };
    rank(a) > rank(b)
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

    // ---- experiments -------------------------------------------------------------------

    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> Result<i64> {
        check_experiment_name(name)?;
        for t in tags {
            check_key("tag", &t.key)?;
        }
        let db = &self.db;
        // Another agent on the same MySQL or PostgreSQL database may take the next id between
        // our read and our insert: then take the one after.
        for _ in 0..5 {
            let mut w = db.begin_write().await?;
            if self.experiment_id_by_name(&mut w.tx, name).await?.is_some() {
                return Err(TrackingError::AlreadyExists {
                    what: "experiment",
                    id: format!("named {name:?}"),
                });
            }
            let id: i64 = sqlx::query_scalar(sql!(
                db,
                "SELECT COALESCE(MAX(experiment_id), 0) + 1 FROM experiments"
            ))
            .fetch_one(&mut *w.tx)
            .await?;
            let location = match artifact_location.filter(|l| !l.trim().is_empty()) {
                Some(l) => l.trim_end_matches('/').to_owned(),
                None => format!("mlflow-artifacts:/{id}"),
            };
            let now = now_ms();
            let inserted = sqlx::query(sql!(
                db,
                "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, \
                 creation_time, last_update_time) VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .bind(id)
            .bind(name)
            .bind(location)
            .bind(Lifecycle::Active.as_str())
            .bind(now)
            .bind(now)
            .execute(&mut *w.tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => continue,
                other => {
                    other?;
                }
            }
            for t in tags {
                self.upsert_experiment_tag(&mut w.tx, id, t).await?;
            }
            w.commit().await?;
            return Ok(id);
        }
        Err(TrackingError::InvalidState(format!(
            "could not pick an id for experiment {name:?}: too many concurrent creations"
        )))
    }

    async fn experiment_id_by_name(
        &self,
        conn: &mut sqlx::AnyConnection,
        name: &str,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(sql!(
            self.db,
            "SELECT experiment_id FROM experiments WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(conn)
        .await?)
    }

    async fn upsert_experiment_tag(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: i64,
        tag: &Tag,
    ) -> Result<()> {
        let db = &self.db;
        let text = match db.dialect() {
            Dialect::MySql => sql!(
                db,
                "INSERT INTO experiment_tags (experiment_id, tag_key, value) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE value = VALUES(value)"
            ),
            Dialect::Sqlite | Dialect::Postgres => sql!(
                db,
                "INSERT INTO experiment_tags (experiment_id, tag_key, value) VALUES (?, ?, ?) \
                 ON CONFLICT (experiment_id, tag_key) DO UPDATE SET value = excluded.value"
            ),
        };
        sqlx::query(text)
            .bind(id)
            .bind(&tag.key)
            .bind(&tag.value)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub async fn get_experiment(&self, id: i64) -> Result<Experiment> {
        let db = &self.db;
        let row = sqlx::query(sql!(
            db,
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, \
             last_update_time FROM experiments WHERE experiment_id = ?"
        ))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| TrackingError::NotFound {
            what: "experiment",
            id: format!("id={id}"),
        })?;
        self.experiment_from_row(&row).await
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let db = &self.db;
        let row = sqlx::query(sql!(
            db,
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, \
             last_update_time FROM experiments WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| TrackingError::NotFound {
            what: "experiment",
            id: format!("named {name:?}"),
        })?;
        self.experiment_from_row(&row).await
    }

    async fn experiment_from_row(&self, row: &AnyRow) -> Result<Experiment> {
        let id: i64 = row.try_get("experiment_id")?;
        let db = &self.db;
        let tags = sqlx::query(sql!(
            db,
            "SELECT tag_key, value FROM experiment_tags WHERE experiment_id = ? ORDER BY tag_key"
        ))
        .bind(id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(Tag {
                key: r.try_get("tag_key")?,
                value: r.try_get("value")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Experiment {
            experiment_id: id,
            name: row.try_get("name")?,
            artifact_location: row.try_get("artifact_location")?,
            lifecycle_stage: row.try_get::<String, _>("lifecycle_stage")?.parse()?,
            creation_time: row.try_get("creation_time")?,
            last_update_time: row.try_get("last_update_time")?,
            tags,
        })
    }

    /// Experiments in a view, newest first, a page at a time.
    /// Experiments in a view matching an MLflow filter (`name LIKE 'diabetes%'`,
    /// `tags.team = 'ml'`, `creation_time > 1700000000000`), ordered (newest first by default),
    /// a page at a time.
    pub async fn search_experiments(
        &self,
        query: &ExperimentQuery,
    ) -> Result<(Vec<Experiment>, Option<String>)> {
        let target = search::Target::Experiments;
        let clauses = search::parse_filter(&query.filter, target)?;
        let order: Vec<search::OrderBy> = query
            .order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| search::parse_order_by(o, target))
            .collect::<Result<_>>()?;
        let (ids, next) = self
            .page_of_ids::<i64>(search::IdsQuery {
                target,
                experiment_ids: &[],
                stages: query.view.stages(),
                clauses: &clauses,
                order: &order,
                limit: page_size(query.max_results)?,
                offset: parse_page_token(query.page_token.as_deref())?,
            })
            .await?;
        let mut experiments = Vec::with_capacity(ids.len());
        for id in ids {
            experiments.push(self.get_experiment(id).await?);
        }
        Ok((experiments, next))
    }

    pub async fn set_experiment_lifecycle(&self, id: i64, stage: Lifecycle) -> Result<()> {
        let db = &self.db;
        let experiment = self.get_experiment(id).await?;
        if id == DEFAULT_EXPERIMENT_ID && stage == Lifecycle::Deleted {
            return Err(TrackingError::invalid(
                "experiment_id",
                "the Default experiment cannot be deleted",
            ));
        }
        if experiment.lifecycle_stage == stage {
            return Err(TrackingError::InvalidState(format!(
                "experiment {id} is already {stage}"
            )));
        }
        let now = now_ms();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "UPDATE experiments SET lifecycle_stage = ?, last_update_time = ? WHERE experiment_id = ?"
        ))
        .bind(stage.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
        // As in MLflow, a deleted experiment's runs go to the trash with it, and come back.
        let (from, deleted_time) = match stage {
            Lifecycle::Deleted => (Lifecycle::Active, Some(now)),
            Lifecycle::Active => (Lifecycle::Deleted, None),
        };
        sqlx::query(sql!(
            db,
            "UPDATE runs SET lifecycle_stage = ?, deleted_time = ? WHERE experiment_id = ? AND lifecycle_stage = ?"
        ))
        .bind(stage.as_str())
        .bind(deleted_time)
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn rename_experiment(&self, id: i64, new_name: &str) -> Result<()> {
        check_experiment_name(new_name)?;
        let db = &self.db;
        let experiment = self.get_experiment(id).await?;
        if experiment.lifecycle_stage != Lifecycle::Active {
            return Err(TrackingError::InvalidState(format!(
                "experiment {id} is deleted"
            )));
        }
        let mut w = db.begin_write().await?;
        if self
            .experiment_id_by_name(&mut w.tx, new_name)
            .await?
            .is_some_and(|other| other != id)
        {
            return Err(TrackingError::AlreadyExists {
                what: "experiment",
                id: format!("named {new_name:?}"),
            });
        }
        sqlx::query(sql!(
            db,
            "UPDATE experiments SET name = ?, last_update_time = ? WHERE experiment_id = ?"
        ))
        .bind(new_name)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn set_experiment_tag(&self, id: i64, tag: &Tag) -> Result<()> {
        check_key("tag", &tag.key)?;
        self.get_experiment(id).await?;
        let mut w = self.db.begin_write().await?;
        self.upsert_experiment_tag(&mut w.tx, id, tag).await?;
        w.commit().await?;
        Ok(())
    }

    // ---- runs --------------------------------------------------------------------------

    pub async fn create_run(&self, new: NewRun) -> Result<Run> {
        let experiment = self.get_experiment(new.experiment_id).await?;
        if experiment.lifecycle_stage != Lifecycle::Active {
            return Err(TrackingError::InvalidState(format!(
                "experiment {} is deleted: restore it before adding runs",
                new.experiment_id
            )));
        }
        let mut tags = new.tags;
        for t in &tags {
            check_key("tag", &t.key)?;
        }
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let name_tag = tags
            .iter()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let run_name = new
            .run_name
            .filter(|n| !n.is_empty())
            .or(name_tag)
            .unwrap_or_else(|| generated_run_name(&run_id));
        tags.retain(|t| t.key != RUN_NAME_TAG);
        tags.push(Tag {
            key: RUN_NAME_TAG.into(),
            value: run_name.clone(),
        });
        let info = RunInfo {
            artifact_uri: format!("{}/{run_id}/artifacts", experiment.artifact_location),
            run_id,
            run_name,
            experiment_id: new.experiment_id,
            user_id: new.user_id.unwrap_or_default(),
            status: RunStatus::Running,
            start_time: new.start_time.unwrap_or_else(now_ms),
            end_time: None,
            lifecycle_stage: Lifecycle::Active,
        };
        let db = &self.db;
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time, \
             end_time, lifecycle_stage, artifact_uri) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&info.run_id)
        .bind(info.experiment_id)
        .bind(&info.run_name)
        .bind(&info.user_id)
        .bind(info.status.as_str())
        .bind(info.start_time)
        .bind(info.end_time)
        .bind(info.lifecycle_stage.as_str())
        .bind(&info.artifact_uri)
        .execute(&mut *w.tx)
        .await?;
        self.upsert_tags(&mut w.tx, &info.run_id, &tags).await?;
        w.commit().await?;
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Run {
            info,
            metrics: Vec::new(),
            params: Vec::new(),
            tags,
        })
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        self.load_runs(&[run_id.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| run_not_found(run_id))
    }

    async fn run_info(&self, conn: &mut sqlx::AnyConnection, run_id: &str) -> Result<RunInfo> {
        let db = &self.db;
        let row = sqlx::query(sql!(
            db,
            "SELECT run_id, experiment_id, run_name, user_id, status, start_time, end_time, \
             lifecycle_stage, artifact_uri FROM runs WHERE run_id = ?"
        ))
        .bind(run_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
        run_info_from_row(&row)
    }

    /// The run, which must be active, inside a write transaction.
    async fn active_run(&self, conn: &mut sqlx::AnyConnection, run_id: &str) -> Result<RunInfo> {
        let info = self.run_info(conn, run_id).await?;
        require_active(run_id, info.lifecycle_stage)?;
        Ok(info)
    }

    pub async fn update_run(&self, run_id: &str, update: RunUpdate) -> Result<RunInfo> {
        let db = &self.db;
        let mut w = db.begin_write().await?;
        let mut info = self.active_run(&mut w.tx, run_id).await?;
        if let Some(status) = update.status {
            info.status = status;
        }
        if let Some(end) = update.end_time {
            info.end_time = Some(end);
        }
        if let Some(name) = update.run_name.filter(|n| !n.is_empty()) {
            self.upsert_tags(
                &mut w.tx,
                run_id,
                &[Tag {
                    key: RUN_NAME_TAG.into(),
                    value: name.clone(),
                }],
            )
            .await?;
            info.run_name = name;
        }
        sqlx::query(sql!(
            db,
            "UPDATE runs SET status = ?, end_time = ?, run_name = ? WHERE run_id = ?"
        ))
        .bind(info.status.as_str())
        .bind(info.end_time)
        .bind(&info.run_name)
        .bind(run_id)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(info)
    }

    pub async fn set_run_lifecycle(&self, run_id: &str, stage: Lifecycle) -> Result<()> {
        let db = &self.db;
        let mut w = db.begin_write().await?;
        self.run_info(&mut w.tx, run_id).await?;
        let deleted_time = (stage == Lifecycle::Deleted).then(now_ms);
        sqlx::query(sql!(
            db,
            "UPDATE runs SET lifecycle_stage = ?, deleted_time = ? WHERE run_id = ?"
        ))
        .bind(stage.as_str())
        .bind(deleted_time)
        .bind(run_id)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// Logs metrics, params and tags to an active run in one transaction: all or nothing.
    pub async fn log_batch(&self, run_id: &str, batch: &Batch) -> Result<()> {
        batch.check()?;
        // A SQLite file: the whole transaction in one hop to the writer's thread, where sqlx
        // would make one per statement (most of a single metric's time).
        if let Some(writer) = self.db.sqlite_writer() {
            let (id, batch) = (run_id.to_owned(), batch.clone());
            return writer
                .run(move |tx| log_batch_sqlite(tx, &id, &batch))
                .await;
        }
        let mut w = self.db.begin_write().await?;
        self.active_run(&mut w.tx, run_id).await?;
        self.insert_params(&mut w.tx, run_id, &batch.params).await?;
        self.upsert_tags(&mut w.tx, run_id, &batch.tags).await?;
        self.insert_metrics(&mut w.tx, run_id, &batch.metrics)
            .await?;
        w.commit().await?;
        Ok(())
    }

    async fn insert_params(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
        params: &[Param],
    ) -> Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        let db = &self.db;
        let q = stored_params_query(run_id, params);
        let stored: HashMap<String, String> = bind_all(sqlx::query(db.dynamic(&q.text)), &q.binds)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("param_key")?, r.try_get("value")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let fresh = new_params(run_id, params, &stored)?;
        let rows: Vec<(&str, &str)> = fresh.iter().map(|p| p.pair()).collect();
        write_key_values(&self.db, conn, KeyValues::RUN_PARAMS, run_id, &rows, false).await
    }

    async fn upsert_tags(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<()> {
        let rows: Vec<(&str, &str)> = tags.iter().map(Tag::pair).collect();
        write_key_values(&self.db, conn, KeyValues::RUN_TAGS, run_id, &rows, true).await
    }

    async fn insert_metrics(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
        metrics: &[Metric],
    ) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        let db = &self.db;
        for chunk in metrics.chunks(ROWS_PER_INSERT) {
            let text = metrics_sql(db.dialect(), chunk.len());
            bind_metric_rows(sqlx::query(db.dynamic(&text)), run_id, chunk)
                .execute(&mut *conn)
                .await?;
        }

        // The newest value per key in this batch, against the newest already stored: MySQL
        // reads the stored values first (see `latest_metrics_sql`).
        let newest = newest_per_key(metrics);
        let changed: Vec<&Metric> = if db.dialect() == Dialect::MySql {
            let q = keyed_query(
                "SELECT metric_key, step, ts, value, is_nan FROM latest_metrics WHERE run_id = ? AND metric_key IN",
                run_id,
                newest.iter().map(|m| m.key.as_str()),
            );
            let stored: HashMap<String, Metric> =
                bind_all(sqlx::query(db.dynamic(&q.text)), &q.binds)
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(metric_from_row)
                    .map(|m| m.map(|m| (m.key.clone(), m)))
                    .collect::<Result<_, _>>()?;
            newest
                .into_iter()
                .filter(|m| stored.get(&m.key).is_none_or(|s| later(m, s)))
                .collect()
        } else {
            newest
        };
        for chunk in changed.chunks(ROWS_PER_INSERT) {
            let text = latest_metrics_sql(db.dialect(), chunk.len());
            bind_metric_rows(sqlx::query(db.dynamic(&text)), run_id, chunk)
                .execute(&mut *conn)
                .await?;
        }
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

    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        let db = &self.db;
        let mut w = db.begin_write().await?;
        self.active_run(&mut w.tx, run_id).await?;
        let done = sqlx::query(sql!(
            db,
            "DELETE FROM tags WHERE run_id = ? AND tag_key = ?"
        ))
        .bind(run_id)
        .bind(key)
        .execute(&mut *w.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(TrackingError::NotFound {
                what: "tag",
                id: format!("{key:?} of run {run_id}"),
            });
        }
        w.commit().await?;
        Ok(())
    }

    /// Every value logged for one metric of one run, by step then time.
    pub async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let db = &self.db;
        let mut conn = db.pool().acquire().await?;
        self.run_info(&mut conn, run_id).await?;
        sqlx::query(sql!(
            db,
            "SELECT metric_key, step, ts, value, is_nan FROM metrics WHERE run_id = ? AND metric_key = ? \
             ORDER BY step, ts, value"
        ))
        .bind(run_id)
        .bind(key)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(metric_from_row)
        .collect()
    }

    /// Runs of some experiments matching an MLflow filter, ordered, a page at a time.
    pub async fn search_runs(&self, query: &RunQuery) -> Result<(Vec<Run>, Option<String>)> {
        if query.experiment_ids.is_empty() {
            return Err(TrackingError::invalid(
                "experiment_ids",
                "name at least one experiment",
            ));
        }
        let target = search::Target::Runs;
        let clauses = search::parse_filter(&query.filter, target)?;
        let order: Vec<search::OrderBy> = query
            .order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| search::parse_order_by(o, target))
            .collect::<Result<_>>()?;
        let limit = page_size(query.max_results)?;
        let offset = parse_page_token(query.page_token.as_deref())?;
        let (ids, next) = self
            .page_of_ids::<String>(search::IdsQuery {
                target,
                experiment_ids: &query.experiment_ids,
                stages: query.view.stages(),
                clauses: &clauses,
                order: &order,
                limit,
                offset,
            })
            .await?;
        Ok((self.load_runs(&ids).await?, next))
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

    /// Whole runs, in the order of `ids`; unknown ids are left out.
    pub async fn load_runs(&self, ids: &[String]) -> Result<Vec<Run>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let queries = RunParts::queries(ids.len());
        // A SQLite file: four queries on one connection of its own, without sqlx's hand-off
        // per row (most of a search's time otherwise).
        let (sqlite_queries, owned) = (queries.clone(), ids.to_vec());
        let read = self
            .db
            .read_sqlite(move |conn| RunParts::read_sqlite(conn, &sqlite_queries, &owned))
            .await;
        let parts = match read {
            Some(parts) => parts?,
            None => {
                let db = &self.db;
                let binds: Vec<Bind> = ids.iter().map(|i| Bind::Text(i.clone())).collect();
                let [runs, params, tags, metrics] = queries;
                let fetch = |text: String| fetch_rows(db, text, &binds);
                let (runs, params, tags, metrics) =
                    tokio::try_join!(fetch(runs), fetch(params), fetch(tags), fetch(metrics))?;
                RunParts {
                    runs: runs.iter().map(run_info_from_row).collect::<Result<_>>()?,
                    params: params.iter().map(param_from_row).collect::<Result<_>>()?,
                    tags: tags.iter().map(tag_from_row).collect::<Result<_>>()?,
                    metrics: metrics
                        .iter()
                        .map(owned_metric_from_row)
                        .collect::<Result<_>>()?,
                }
            }
        };
        Ok(parts.assemble(ids))
    }
}

/// What [`TrackingStore::load_runs`] reads: runs, and their params, tags and latest metrics by
/// run id.
struct RunParts {
    runs: Vec<RunInfo>,
    params: Vec<(String, Param)>,
    tags: Vec<(String, Tag)>,
    metrics: Vec<(String, Metric)>,
}

impl RunParts {
    /// The four queries, each over `n` bound run ids.
    fn queries(n: usize) -> [String; 4] {
        let list = vec!["?"; n].join(", ");
        [
            format!(
                "SELECT run_id, experiment_id, run_name, user_id, status, start_time, end_time, \
                 lifecycle_stage, artifact_uri FROM runs WHERE run_id IN ({list})"
            ),
            format!(
                "SELECT run_id, param_key, value FROM params WHERE run_id IN ({list}) ORDER BY param_key"
            ),
            format!(
                "SELECT run_id, tag_key, value FROM tags WHERE run_id IN ({list}) ORDER BY tag_key"
            ),
            format!(
                "SELECT run_id, metric_key, step, ts, value, is_nan FROM latest_metrics \
                 WHERE run_id IN ({list}) ORDER BY metric_key"
            ),
        ]
    }

    fn read_sqlite(
        conn: &rusqlite::Connection,
        queries: &[String; 4],
        ids: &[String],
    ) -> Result<Self> {
        fn all<T>(
            conn: &rusqlite::Connection,
            sql: &str,
            ids: &[String],
            decode: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
        ) -> Result<Vec<T>> {
            let mut statement = conn.prepare(sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(ids))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(decode(row)?);
            }
            Ok(out)
        }
        Ok(Self {
            runs: all(conn, &queries[0], ids, |r| run_info_from_row(r))?,
            params: all(conn, &queries[1], ids, |r| param_from_row(r))?,
            tags: all(conn, &queries[2], ids, |r| tag_from_row(r))?,
            metrics: all(conn, &queries[3], ids, |r| owned_metric_from_row(r))?,
        })
    }

    /// The runs in the order of `ids`, each with its params, tags and metrics.
    fn assemble(self, ids: &[String]) -> Vec<Run> {
        let mut by_id: HashMap<String, Run> = self
            .runs
            .into_iter()
            .map(|info| {
                let run = Run {
                    info,
                    metrics: Vec::new(),
                    params: Vec::new(),
                    tags: Vec::new(),
                };
                (run.info.run_id.clone(), run)
            })
            .collect();
        for (id, param) in self.params {
            if let Some(run) = by_id.get_mut(&id) {
                run.params.push(param);
            }
        }
        for (id, tag) in self.tags {
            if let Some(run) = by_id.get_mut(&id) {
                run.tags.push(tag);
            }
        }
        for (id, metric) in self.metrics {
            if let Some(run) = by_id.get_mut(&id) {
                run.metrics.push(metric);
            }
        }
        ids.iter().filter_map(|id| by_id.remove(id)).collect()
    }
}

/// The columns of a result row by name, whichever driver read it.
trait Cells {
    fn text(&self, name: &str) -> Result<String>;
    fn int(&self, name: &str) -> Result<i64>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>>;
    fn real(&self, name: &str) -> Result<f64>;
}

/// `Cells` for a driver's row type, through its by-name getter.
macro_rules! cells_by_name {
    ($row:ty, $get:ident) => {
        impl Cells for $row {
            fn text(&self, name: &str) -> Result<String> {
                Ok(self.$get(name)?)
            }
            fn int(&self, name: &str) -> Result<i64> {
                Ok(self.$get(name)?)
            }
            fn opt_int(&self, name: &str) -> Result<Option<i64>> {
                Ok(self.$get(name)?)
            }
            fn real(&self, name: &str) -> Result<f64> {
                Ok(self.$get(name)?)
            }
        }
    };
}
cells_by_name!(AnyRow, try_get);
cells_by_name!(rusqlite::Row<'_>, get);

/// A run's key-value row (a param or a tag, keyed by `key_column`) and the run it belongs to.
fn key_value_from_row<T>(
    row: &impl Cells,
    key_column: &str,
    make: fn(String, String) -> T,
) -> Result<(String, T)> {
    Ok((
        row.text("run_id")?,
        make(row.text(key_column)?, row.text("value")?),
    ))
}

fn param_from_row(row: &impl Cells) -> Result<(String, Param)> {
    key_value_from_row(row, "param_key", |key, value| Param { key, value })
}

fn tag_from_row(row: &impl Cells) -> Result<(String, Tag)> {
    key_value_from_row(row, "tag_key", |key, value| Tag { key, value })
}

fn owned_metric_from_row(row: &impl Cells) -> Result<(String, Metric)> {
    Ok((row.text("run_id")?, metric_from_row(row)?))
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

pub const RUN_NAME_TAG: &str = "mlflow.runName";

fn run_not_found(run_id: &str) -> TrackingError {
    TrackingError::NotFound {
        what: "run",
        id: format!("with id={run_id}"),
    }
}

fn run_info_from_row(row: &impl Cells) -> Result<RunInfo> {
    Ok(RunInfo {
        run_id: row.text("run_id")?,
        run_name: row.text("run_name")?,
        experiment_id: row.int("experiment_id")?,
        user_id: row.text("user_id")?,
        status: row.text("status")?.parse()?,
        start_time: row.int("start_time")?,
        end_time: row.opt_int("end_time")?,
        artifact_uri: row.text("artifact_uri")?,
        lifecycle_stage: row.text("lifecycle_stage")?.parse()?,
    })
}

fn metric_from_row(row: &impl Cells) -> Result<Metric> {
    Ok(Metric {
        key: row.text("metric_key")?,
        value: loaded_value(row.real("value")?, row.int("is_nan")?),
        timestamp: row.int("ts")?,
        step: row.int("step")?,
    })
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

/// A readable default name, as MLflow gives runs: two words and a number from the run id.
fn generated_run_name(run_id: &str) -> String {
    const ADJECTIVES: [&str; 16] = [
        "amber", "brisk", "calm", "daring", "eager", "fleet", "gentle", "hardy", "keen", "lucid",
        "mellow", "nimble", "placid", "quiet", "rustic", "sturdy",
    ];
    const NOUNS: [&str; 16] = [
        "otter", "heron", "lynx", "maple", "falcon", "badger", "willow", "comet", "finch", "cedar",
        "marten", "plover", "aspen", "bison", "wren", "ibis",
    ];
    let n = u32::from_str_radix(&run_id[..8.min(run_id.len())], 16).unwrap_or(0);
    format!(
        "{}-{}-{}",
        ADJECTIVES[(n & 15) as usize],
        NOUNS[((n >> 4) & 15) as usize],
        (n >> 8) % 1000
    )
}
