//! Experiments: created with the next free id, found by id or name, searched with MLflow's
//! filter language, deleted and restored with their runs, renamed and tagged.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{TrackingStore, page_size, parse_page_token};
use crate::db::{Dialect, is_unique_violation};
use crate::tracking::entities::*;
use crate::tracking::search;
use crate::tracking::store::ExperimentQuery;
use crate::{now_ms, sql};

impl TrackingStore {
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

    /// Experiments in a view matching an MLflow filter (`name LIKE 'diabetes%'`,
    /// `tags.team = 'ml'`, `creation_time > 1700000000000`), ordered (newest first by default),
    /// a page at a time.
    pub async fn search_experiments(
        &self,
        query: &ExperimentQuery,
    ) -> Result<(Vec<Experiment>, Option<String>)> {
        let target = search::Target::Experiments;
        let clauses = search::parse_filter(&query.filter, target)?;
        let order = search::parse_order_list(&query.order_by, target)?;
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
}
