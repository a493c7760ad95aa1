//! The DAG runner's state in SQL: paused flags, runs, task instances and log lines. Every
//! change is one statement or one transaction, so a crash leaves nothing half-recorded.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::dag::DagDef;
use super::runs::*;
use crate::db::{Db, Dialect, SchemaChange};
use crate::{now_ms, sql};

const CHANGES: &[SchemaChange] = &[
    SchemaChange {
        version: 1,
        description: "DAG state, runs, task instances, task logs",
        sql: include_str!("../../migrations/etl/0001_runs.sql"),
    },
    SchemaChange {
        version: 2,
        description: "the scheduler lease",
        sql: include_str!("../../migrations/etl/0002_scheduler_lease.sql"),
    },
    SchemaChange {
        version: 3,
        description: "each run's owner and heartbeat",
        sql: include_str!("../../migrations/etl/0003_run_owner.sql"),
    },
];

#[derive(Clone, Debug)]
pub struct EtlStore {
    db: Db,
}

fn run_not_found(run_id: &str) -> EtlError {
    EtlError::NotFound {
        what: "DAG run",
        id: run_id.to_owned(),
    }
}

impl EtlStore {
    pub async fn open(db: Db) -> Result<Self> {
        db.migrate("etl", CHANGES).await?;
        Ok(Self { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Takes or renews the scheduler lease for `holder` until `now + ttl_ms`; false when
    /// another holder's lease has not expired. Several ETL agents can share one database and
    /// only the holder schedules.
    pub async fn take_lease(&self, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        let db = &self.db;
        let taken = sqlx::query(sql!(
            db,
            "UPDATE scheduler_lease SET holder = ?, expires_at = ? \
             WHERE id = 1 AND (holder = ? OR expires_at < ?)"
        ))
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(holder)
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// Gives the lease up, so another agent can schedule at once.
    pub async fn release_lease(&self, holder: &str) -> Result<()> {
        let db = &self.db;
        sqlx::query(sql!(
            db,
            "UPDATE scheduler_lease SET expires_at = 0 WHERE id = 1 AND holder = ?"
        ))
        .bind(holder)
        .execute(db.pool())
        .await?;
        Ok(())
    }

    /// Whether each DAG is paused; a DAG never seen takes its file's `paused` setting.
    pub async fn paused(&self, dag: &DagDef) -> Result<bool> {
        let db = &self.db;
        let paused: Option<i64> =
            sqlx::query_scalar(sql!(db, "SELECT paused FROM dag_state WHERE dag = ?"))
                .bind(&dag.name)
                .fetch_optional(db.pool())
                .await?;
        Ok(paused.map_or(dag.paused_on_load, |p| p != 0))
    }

    pub async fn set_paused(&self, dag: &str, paused: bool) -> Result<()> {
        let db = &self.db;
        let text = match db.dialect() {
            Dialect::MySql => sql!(
                db,
                "INSERT INTO dag_state (dag, paused) VALUES (?, ?) ON DUPLICATE KEY UPDATE paused = VALUES(paused)"
            ),
            Dialect::Sqlite | Dialect::Postgres => sql!(
                db,
                "INSERT INTO dag_state (dag, paused) VALUES (?, ?) ON CONFLICT (dag) DO UPDATE SET paused = excluded.paused"
            ),
        };
        let mut w = db.begin_write().await?;
        sqlx::query(text)
            .bind(dag)
            .bind(i64::from(paused))
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn last_scheduled_at(&self, dag: &str) -> Result<Option<i64>> {
        let db = &self.db;
        Ok(sqlx::query_scalar::<_, Option<i64>>(sql!(
            db,
            "SELECT last_scheduled_at FROM dag_state WHERE dag = ?"
        ))
        .bind(dag)
        .fetch_optional(db.pool())
        .await?
        .flatten())
    }

    pub async fn set_last_scheduled_at(&self, dag: &DagDef, at: i64) -> Result<()> {
        let paused = self.paused(dag).await?;
        let db = &self.db;
        let text = match db.dialect() {
            Dialect::MySql => sql!(
                db,
                "INSERT INTO dag_state (dag, paused, last_scheduled_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE last_scheduled_at = VALUES(last_scheduled_at)"
            ),
            Dialect::Sqlite | Dialect::Postgres => sql!(
                db,
                "INSERT INTO dag_state (dag, paused, last_scheduled_at) VALUES (?, ?, ?) \
                 ON CONFLICT (dag) DO UPDATE SET last_scheduled_at = excluded.last_scheduled_at"
            ),
        };
        let mut w = db.begin_write().await?;
        sqlx::query(text)
            .bind(&dag.name)
            .bind(i64::from(paused))
            .bind(at)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(())
    }

    /// Queues a run of `dag` for the agent `owner` with every task queued, unless the DAG
    /// already has `max_active_runs` runs queued or running: checked and inserted in one
    /// transaction.
    pub async fn create_run(
        &self,
        dag: &DagDef,
        trigger: &str,
        params: &BTreeMap<String, String>,
        owner: &str,
    ) -> Result<DagRun> {
        let db = &self.db;
        let mut w = db.begin_write().await?;
        let active: i64 = sqlx::query_scalar(sql!(
            db,
            "SELECT COUNT(*) FROM dag_runs WHERE dag = ? AND state IN ('queued', 'running')"
        ))
        .bind(&dag.name)
        .fetch_one(&mut *w.tx)
        .await?;
        if active >= i64::from(dag.max_active_runs) {
            return Err(EtlError::Conflict(format!(
                "DAG {} already has {active} active run(s), its limit (max_active_runs = {})",
                dag.name, dag.max_active_runs
            )));
        }
        let now = now_ms();
        let run_id = format!("{}__{}", dag.name, uuid::Uuid::new_v4().simple());
        let params_json =
            serde_json::to_string(params).map_err(|e| EtlError::Corrupt(e.to_string()))?;
        sqlx::query(sql!(
            db,
            "INSERT INTO dag_runs (run_id, dag, state, trigger_kind, params, queued_at, owner, \
             heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&run_id)
        .bind(&dag.name)
        .bind(RunState::Queued.as_str())
        .bind(trigger)
        .bind(params_json)
        .bind(now)
        .bind(owner)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        for (position, task) in dag.tasks.iter().enumerate() {
            sqlx::query(sql!(
                db,
                "INSERT INTO task_instances (run_id, task_id, position, kind, state, attempt, max_attempts) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(&run_id)
            .bind(&task.id)
            .bind(position as i64)
            .bind(&task.kind)
            .bind(RunState::Queued.as_str())
            .bind(0i64)
            .bind(i64::from(task.retries) + 1)
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await?;
        self.get_run(&run_id).await
    }

    pub async fn set_run_state(
        &self,
        run_id: &str,
        state: RunState,
        error: Option<&str>,
    ) -> Result<()> {
        let db = &self.db;
        let now = now_ms();
        let mut w = db.begin_write().await?;
        let done = match state {
            RunState::Running => sqlx::query(sql!(
                db,
                "UPDATE dag_runs SET state = ?, started_at = ? WHERE run_id = ?"
            ))
            .bind(state.as_str())
            .bind(now)
            .bind(run_id),
            _ => sqlx::query(sql!(
                db,
                "UPDATE dag_runs SET state = ?, ended_at = ?, error = ? WHERE run_id = ?"
            ))
            .bind(state.as_str())
            .bind(now)
            .bind(error.map(str::to_owned))
            .bind(run_id),
        }
        .execute(&mut *w.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(run_not_found(run_id));
        }
        w.commit().await?;
        Ok(())
    }

    pub async fn set_task_state(
        &self,
        run_id: &str,
        task_id: &str,
        state: RunState,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<()> {
        let db = &self.db;
        let now = now_ms();
        let mut w = db.begin_write().await?;
        match state {
            RunState::Running => {
                sqlx::query(sql!(
                    db,
                    "UPDATE task_instances SET state = ?, attempt = ?, started_at = ?, ended_at = NULL, error = NULL \
                     WHERE run_id = ? AND task_id = ?"
                ))
                .bind(state.as_str())
                .bind(i64::from(attempt))
                .bind(now)
                .bind(run_id)
                .bind(task_id)
                .execute(&mut *w.tx)
                .await?
            }
            _ => {
                sqlx::query(sql!(
                    db,
                    "UPDATE task_instances SET state = ?, attempt = ?, ended_at = ?, error = ? WHERE run_id = ? AND task_id = ?"
                ))
                .bind(state.as_str())
                .bind(i64::from(attempt))
                .bind(now)
                .bind(error.map(str::to_owned))
                .bind(run_id)
                .bind(task_id)
                .execute(&mut *w.tx)
                .await?
            }
        };
        w.commit().await?;
        Ok(())
    }

    /// Appends a log line; its sequence number orders the run's lines.
    pub async fn append_log(
        &self,
        run_id: &str,
        task_id: &str,
        attempt: u32,
        level: &str,
        message: &str,
    ) -> Result<LogLine> {
        let db = &self.db;
        let mut w = db.begin_write().await?;
        let seq: i64 = sqlx::query_scalar(sql!(
            db,
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM task_logs WHERE run_id = ?"
        ))
        .bind(run_id)
        .fetch_one(&mut *w.tx)
        .await?;
        let line = LogLine {
            seq,
            timestamp: now_ms(),
            task_id: task_id.to_owned(),
            attempt,
            level: level.to_owned(),
            message: message.to_owned(),
        };
        sqlx::query(sql!(
            db,
            "INSERT INTO task_logs (run_id, seq, ts, task_id, attempt, level, message) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(run_id)
        .bind(line.seq)
        .bind(line.timestamp)
        .bind(&line.task_id)
        .bind(i64::from(attempt))
        .bind(&line.level)
        .bind(&line.message)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(line)
    }

    pub async fn logs(
        &self,
        run_id: &str,
        task_id: Option<&str>,
        after_seq: i64,
    ) -> Result<Vec<LogLine>> {
        self.get_run(run_id).await?;
        let db = &self.db;
        let rows = match task_id {
            Some(task) => sqlx::query(sql!(
                db,
                "SELECT seq, ts, task_id, attempt, level, message FROM task_logs \
                 WHERE run_id = ? AND task_id = ? AND seq > ? ORDER BY seq"
            ))
            .bind(run_id)
            .bind(task)
            .bind(after_seq)
            .fetch_all(db.pool())
            .await?,
            None => sqlx::query(sql!(
                db,
                "SELECT seq, ts, task_id, attempt, level, message FROM task_logs WHERE run_id = ? AND seq > ? ORDER BY seq"
            ))
            .bind(run_id)
            .bind(after_seq)
            .fetch_all(db.pool())
            .await?,
        };
        rows.iter().map(log_from_row).collect()
    }

    pub async fn get_run(&self, run_id: &str) -> Result<DagRun> {
        let db = &self.db;
        let row = sqlx::query(sql!(
            db,
            "SELECT run_id, dag, state, trigger_kind, params, queued_at, started_at, ended_at, error \
             FROM dag_runs WHERE run_id = ?"
        ))
        .bind(run_id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
        let mut run = run_from_row(&row)?;
        run.tasks = sqlx::query(sql!(
            db,
            "SELECT task_id, kind, state, attempt, max_attempts, started_at, ended_at, error \
             FROM task_instances WHERE run_id = ? ORDER BY position"
        ))
        .bind(run_id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(task_from_row)
        .collect::<Result<_>>()?;
        Ok(run)
    }

    /// The newest runs first, of one DAG or of all.
    pub async fn list_runs(&self, dag: Option<&str>, limit: u32) -> Result<Vec<DagRun>> {
        let db = &self.db;
        let limit = i64::from(if limit == 0 { 50 } else { limit.min(1000) });
        let ids: Vec<String> = match dag {
            Some(dag) => sqlx::query_scalar(sql!(
                db,
                "SELECT run_id FROM dag_runs WHERE dag = ? ORDER BY queued_at DESC, run_id DESC LIMIT ?"
            ))
            .bind(dag)
            .bind(limit)
            .fetch_all(db.pool())
            .await?,
            None => sqlx::query_scalar(sql!(db, "SELECT run_id FROM dag_runs ORDER BY queued_at DESC, run_id DESC LIMIT ?"))
                .bind(limit)
                .fetch_all(db.pool())
                .await?,
        };
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            runs.push(self.get_run(&id).await?);
        }
        Ok(runs)
    }

    /// Says the active runs of `owner` are still being run, as of `now`.
    pub async fn heartbeat(&self, owner: &str, now: i64) -> Result<()> {
        let db = &self.db;
        sqlx::query(sql!(
            db,
            "UPDATE dag_runs SET heartbeat_at = ? \
             WHERE owner = ? AND state IN ('queued', 'running', 'up_for_retry')"
        ))
        .bind(now)
        .bind(owner)
        .execute(db.pool())
        .await?;
        Ok(())
    }

    /// Runs left queued or running by an agent that stopped: marked failed, with their
    /// unfinished tasks, so nothing stays "running" forever. Those are the runs of `owner`
    /// (this agent, starting again) and those whose agent's last heartbeat is older than
    /// `stale_before`; runs of other live agents sharing the database are left alone. Returns
    /// the failed runs' ids.
    pub async fn fail_interrupted(
        &self,
        reason: &str,
        owner: Option<&str>,
        stale_before: i64,
    ) -> Result<Vec<String>> {
        let db = &self.db;
        let ids: Vec<String> = sqlx::query_scalar(sql!(
            db,
            "SELECT run_id FROM dag_runs WHERE state IN ('queued', 'running', 'up_for_retry') \
             AND (owner = ? OR heartbeat_at IS NULL OR heartbeat_at < ?)"
        ))
        // No agent's id is empty: without an owner only staleness counts.
        .bind(owner.unwrap_or(""))
        .bind(stale_before)
        .fetch_all(db.pool())
        .await?;
        let now = now_ms();
        for id in &ids {
            let mut w = db.begin_write().await?;
            sqlx::query(sql!(
                db,
                "UPDATE task_instances SET state = ?, ended_at = ?, error = ? \
                 WHERE run_id = ? AND state IN ('running', 'up_for_retry')"
            ))
            .bind(RunState::Failed.as_str())
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
            sqlx::query(sql!(
                db,
                "UPDATE task_instances SET state = ? WHERE run_id = ? AND state = 'queued'"
            ))
            .bind(RunState::UpstreamFailed.as_str())
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
            sqlx::query(sql!(
                db,
                "UPDATE dag_runs SET state = ?, ended_at = ?, error = ? \
                 WHERE run_id = ? AND state IN ('queued', 'running', 'up_for_retry')"
            ))
            .bind(RunState::Failed.as_str())
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
            w.commit().await?;
        }
        Ok(ids)
    }
}

fn run_from_row(row: &AnyRow) -> Result<DagRun> {
    let params: String = row.try_get("params")?;
    Ok(DagRun {
        run_id: row.try_get("run_id")?,
        dag: row.try_get("dag")?,
        state: row.try_get::<String, _>("state")?.parse()?,
        trigger: row.try_get("trigger_kind")?,
        params: serde_json::from_str(&params)
            .map_err(|e| EtlError::Corrupt(format!("run params: {e}")))?,
        queued_at: row.try_get("queued_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        error: row.try_get("error")?,
        tasks: Vec::new(),
    })
}

fn task_from_row(row: &AnyRow) -> Result<TaskInstance> {
    Ok(TaskInstance {
        task_id: row.try_get("task_id")?,
        kind: row.try_get("kind")?,
        state: row.try_get::<String, _>("state")?.parse()?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        error: row.try_get("error")?,
    })
}

fn log_from_row(row: &AnyRow) -> Result<LogLine> {
    Ok(LogLine {
        seq: row.try_get("seq")?,
        timestamp: row.try_get("ts")?,
        task_id: row.try_get("task_id")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        level: row.try_get("level")?,
        message: row.try_get("message")?,
    })
}
