//! Runs: created (named as MLflow names them), read whole in a few queries per page of
//! runs, updated, deleted and restored, searched, and their metric history.

use std::collections::HashMap;

use super::rows::{
    metric_from_row, owned_metric_from_row, param_from_row, run_info_from_row, tag_from_row,
};
use super::{RunQuery, TrackingStore, fetch_rows, page_size, parse_page_token};
use crate::tracking::entities::*;
use crate::tracking::search::{self, Bind};
use crate::{now_ms, sql};

pub const RUN_NAME_TAG: &str = "mlflow.runName";

pub(super) fn run_not_found(run_id: &str) -> TrackingError {
    TrackingError::NotFound {
        what: "run",
        id: format!("with id={run_id}"),
    }
}

/// Refuses to change a run that is not active (deleted runs are read-only until restored).
pub(super) fn require_active(run_id: &str, stage: Lifecycle) -> Result<()> {
    if stage != Lifecycle::Active {
        return Err(TrackingError::InvalidState(format!(
            "the run {run_id} must be in the 'active' state; it is {stage}"
        )));
    }
    Ok(())
}

/// Whether a run takes writes is read with this one query on either driver: its stage.
pub(super) const RUN_STAGE_SQL: &str = "SELECT lifecycle_stage FROM runs WHERE run_id = ?";

/// A run takes writes only when it exists and is active; `stage` is what [`RUN_STAGE_SQL`]
/// found, on whichever driver read it.
pub(super) fn check_writable(run_id: &str, stage: Option<String>) -> Result<()> {
    let stage = stage.ok_or_else(|| run_not_found(run_id))?;
    require_active(run_id, stage.parse()?)
}

impl TrackingStore {
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

    /// Refuses, inside a write transaction, a run that may not take writes.
    pub(super) async fn require_writable(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
    ) -> Result<()> {
        let stage: Option<String> = sqlx::query_scalar(self.db.dynamic(RUN_STAGE_SQL))
            .bind(run_id)
            .fetch_optional(conn)
            .await?;
        check_writable(run_id, stage)
    }

    /// The run, which must be active, inside a write transaction.
    pub(super) async fn active_run(
        &self,
        conn: &mut sqlx::AnyConnection,
        run_id: &str,
    ) -> Result<RunInfo> {
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

    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        let db = &self.db;
        let mut w = db.begin_write().await?;
        self.require_writable(&mut w.tx, run_id).await?;
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
        let order = search::parse_order_list(&query.order_by, target)?;
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
