//! Writing what runs log: params (which may not change), tags (which may), metric history
//! and each metric's latest value, in multi-row statements per driver, with MLflow's rules
//! for which value is the latest.

use std::collections::HashMap;

use sqlx::Row;

use super::rows::metric_from_row;
use super::runs::{RUN_STAGE_SQL, check_writable};
use super::{Query, ROWS_PER_INSERT, TrackingStore, bind_all, value_rows};
use crate::db::{Db, Dialect};
use crate::tracking::entities::*;
use crate::tracking::search::{self, Bind};

/// A table of (owner, key, value) rows: params and tags of runs and of logged models.
#[derive(Clone, Copy)]
pub(in crate::tracking) struct KeyValues {
    table: &'static str,
    owner: &'static str,
    key: &'static str,
}

impl KeyValues {
    pub(in crate::tracking) const RUN_PARAMS: KeyValues = KeyValues {
        table: "params",
        owner: "run_id",
        key: "param_key",
    };
    pub(in crate::tracking) const RUN_TAGS: KeyValues = KeyValues {
        table: "tags",
        owner: "run_id",
        key: "tag_key",
    };
    pub(in crate::tracking) const MODEL_PARAMS: KeyValues = KeyValues {
        table: "logged_model_params",
        owner: "model_id",
        key: "param_key",
    };
    pub(in crate::tracking) const MODEL_TAGS: KeyValues = KeyValues {
        table: "logged_model_tags",
        owner: "model_id",
        key: "tag_key",
    };
}

/// Inserts `rows` for `owner`. With `upsert` an existing key takes the new value and, within
/// `rows`, the last value of a key wins (PostgreSQL refuses to touch a row twice in one
/// statement, so duplicates are dropped first); without it a key must be new.
pub(in crate::tracking) async fn write_key_values(
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

/// The rows a batch writes, once the run's stored params are known. Every rule about which
/// rows go in is applied here, and both drivers write exactly these rows.
struct BatchRows<'a> {
    /// Params not stored yet, one per key; a changed value has been refused.
    params: Vec<&'a Param>,
    /// Tags, the last value given for each key.
    tags: Vec<(&'a str, &'a str)>,
    /// Every metric, for the history.
    history: &'a [Metric],
    /// The newest metric of each key in the batch, for `latest_metrics`.
    latest: Vec<&'a Metric>,
}

impl<'a> BatchRows<'a> {
    fn new(
        run_id: &str,
        batch: &'a Batch,
        stored_params: &HashMap<String, String>,
    ) -> Result<Self> {
        let tags: Vec<(&str, &str)> = batch.tags.iter().map(Tag::pair).collect();
        Ok(Self {
            params: new_params(run_id, &batch.params, stored_params)?,
            tags: last_per_key(&tags),
            history: &batch.metrics,
            latest: newest_per_key(&batch.metrics),
        })
    }
}

/// [`TrackingStore::log_batch`] on the SQLite writer connection: the same reads and rows as
/// the sqlx path, each statement prepared once and run a row at a time.
fn log_batch_sqlite(tx: &rusqlite::Transaction<'_>, run_id: &str, batch: &Batch) -> Result<()> {
    use rusqlite::OptionalExtension as _;
    let stage: Option<String> = tx
        .prepare_cached(RUN_STAGE_SQL)?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    check_writable(run_id, stage)?;
    let stored: HashMap<String, String> = if batch.params.is_empty() {
        HashMap::new()
    } else {
        let q = stored_params_query(run_id, &batch.params);
        tx.prepare(&q.text)?
            .query_map(rusqlite::params_from_iter(&q.binds), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?
    };
    let rows = BatchRows::new(run_id, batch, &stored)?;
    let key_values = |kv: KeyValues, upsert: bool, rows: &[(&str, &str)]| {
        if rows.is_empty() {
            return Ok(());
        }
        let mut statement = tx.prepare_cached(&key_values_sql(Dialect::Sqlite, kv, 1, upsert))?;
        for &(k, v) in rows {
            statement.execute([run_id, k, v])?;
        }
        Ok::<_, rusqlite::Error>(())
    };
    let params: Vec<(&str, &str)> = rows.params.iter().map(|p| p.pair()).collect();
    key_values(KeyValues::RUN_PARAMS, false, &params)?;
    key_values(KeyValues::RUN_TAGS, true, &rows.tags)?;
    if !rows.history.is_empty() {
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
        write(metrics_sql(Dialect::Sqlite, 1), &mut rows.history.iter())?;
        write(
            latest_metrics_sql(Dialect::Sqlite, 1),
            &mut rows.latest.into_iter(),
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
        let db = &self.db;
        let mut w = db.begin_write().await?;
        self.require_writable(&mut w.tx, run_id).await?;
        let stored = self.stored_params(&mut w.tx, run_id, &batch.params).await?;
        let rows = BatchRows::new(run_id, batch, &stored)?;
        let params: Vec<(&str, &str)> = rows.params.iter().map(|p| p.pair()).collect();
        write_key_values(db, &mut w.tx, KeyValues::RUN_PARAMS, run_id, &params, false).await?;
        write_key_values(db, &mut w.tx, KeyValues::RUN_TAGS, run_id, &rows.tags, true).await?;
        self.insert_metrics(&mut w.tx, run_id, rows.history, rows.latest)
            .await?;
        w.commit().await?;
        Ok(())
    }

    /// The stored values of the batch's params, read inside its transaction.
    async fn stored_params(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
        params: &[Param],
    ) -> Result<HashMap<String, String>> {
        if params.is_empty() {
            return Ok(HashMap::new());
        }
        let db = &self.db;
        let q = stored_params_query(run_id, params);
        Ok(bind_all(sqlx::query(db.dynamic(&q.text)), &q.binds)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("param_key")?, r.try_get("value")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    pub(super) async fn upsert_tags(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<()> {
        let rows: Vec<(&str, &str)> = tags.iter().map(Tag::pair).collect();
        write_key_values(&self.db, conn, KeyValues::RUN_TAGS, run_id, &rows, true).await
    }

    /// Writes the history and, of `newest` (the batch's newest metric per key), the values
    /// newer than the stored ones to `latest_metrics`.
    async fn insert_metrics(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
        metrics: &[Metric],
        newest: Vec<&Metric>,
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
}
