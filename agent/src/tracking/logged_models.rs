//! MLflow 3's logged models in the tracking store: created by a run, finalized once their files
//! are uploaded, searchable by name, source run, params and tags.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::entities::*;
use super::search::{self, Bind};
use super::store::{
    KeyValues, TrackingStore, fetch_rows, page_size, parse_page_token, write_key_values,
};
use crate::db::Dialect;
use crate::{now_ms, sql};

/// What `search_logged_models` looks for.
#[derive(Clone, Debug, Default)]
pub struct LoggedModelQuery {
    pub experiment_ids: Vec<i64>,
    pub filter: String,
    /// `(field, ascending)`, e.g. `("creation_timestamp", false)`.
    pub order_by: Vec<(String, bool)>,
    pub max_results: u32,
    pub page_token: Option<String>,
}

fn model_not_found(id: &str) -> TrackingError {
    TrackingError::NotFound {
        what: "logged model",
        id: format!("with id={id}"),
    }
}

impl TrackingStore {
    pub async fn create_logged_model(&self, new: NewLoggedModel) -> Result<LoggedModel> {
        let experiment = self.get_experiment(new.experiment_id).await?;
        if experiment.lifecycle_stage != Lifecycle::Active {
            return Err(TrackingError::InvalidState(format!(
                "experiment {} is deleted: restore it before logging models",
                new.experiment_id
            )));
        }
        for t in &new.tags {
            check_key("tag", &t.key)?;
        }
        for p in &new.params {
            check_key("param", &p.key)?;
        }
        if let Some(run_id) = &new.source_run_id {
            self.get_run(run_id).await?;
        }
        let model_id = format!("m-{}", uuid::Uuid::new_v4().simple());
        let now = now_ms();
        let model = LoggedModel {
            artifact_location: format!(
                "{}/models/{model_id}/artifacts",
                experiment.artifact_location
            ),
            name: new
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "model".into()),
            model_id,
            experiment_id: new.experiment_id,
            creation_time: now,
            last_updated_time: now,
            model_type: new.model_type.filter(|t| !t.is_empty()),
            source_run_id: new.source_run_id.filter(|r| !r.is_empty()),
            status: LoggedModelStatus::Pending,
            lifecycle_stage: Lifecycle::Active,
            tags: new.tags,
            params: new.params,
        };
        let db = self.db();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, \
             creation_time, last_updated_time, model_type, source_run_id, status, lifecycle_stage) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&model.model_id)
        .bind(model.experiment_id)
        .bind(&model.name)
        .bind(&model.artifact_location)
        .bind(model.creation_time)
        .bind(model.last_updated_time)
        .bind(model.model_type.clone())
        .bind(model.source_run_id.clone())
        .bind(model.status.as_str())
        .bind(model.lifecycle_stage.as_str())
        .execute(&mut *w.tx)
        .await?;
        let rows: Vec<(&str, &str)> = model.tags.iter().map(Tag::pair).collect();
        write_key_values(
            self.db(),
            &mut w.tx,
            KeyValues::MODEL_TAGS,
            &model.model_id,
            &rows,
            true,
        )
        .await?;
        let rows: Vec<(&str, &str)> = model.params.iter().map(Param::pair).collect();
        write_key_values(
            self.db(),
            &mut w.tx,
            KeyValues::MODEL_PARAMS,
            &model.model_id,
            &rows,
            true,
        )
        .await?;
        w.commit().await?;
        Ok(model)
    }

    pub async fn get_logged_model(
        &self,
        model_id: &str,
        allow_deleted: bool,
    ) -> Result<LoggedModel> {
        let model = self
            .load_logged_models(&[model_id.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| model_not_found(model_id))?;
        if model.lifecycle_stage == Lifecycle::Deleted && !allow_deleted {
            return Err(model_not_found(model_id));
        }
        Ok(model)
    }

    /// The newest active logged model named `name` that run `run_id` produced.
    pub async fn logged_model_of_run(
        &self,
        run_id: &str,
        name: &str,
    ) -> Result<Option<LoggedModel>> {
        let db = self.db();
        let id: Option<String> = sqlx::query_scalar(sql!(
            db,
            "SELECT model_id FROM logged_models WHERE source_run_id = ? AND name = ? AND lifecycle_stage = ? \
             ORDER BY creation_time DESC LIMIT 1"
        ))
        .bind(run_id)
        .bind(name)
        .bind(Lifecycle::Active.as_str())
        .fetch_optional(db.pool())
        .await?;
        match id {
            Some(id) => Ok(self.load_logged_models(&[id]).await?.pop()),
            None => Ok(None),
        }
    }

    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        self.get_logged_model(model_id, false).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "UPDATE logged_models SET status = ?, last_updated_time = ? WHERE model_id = ?"
        ))
        .bind(status.as_str())
        .bind(now_ms())
        .bind(model_id)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        self.get_logged_model(model_id, false).await
    }

    pub async fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        self.get_logged_model(model_id, false).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "UPDATE logged_models SET lifecycle_stage = ?, last_updated_time = ? WHERE model_id = ?"
        ))
        .bind(Lifecycle::Deleted.as_str())
        .bind(now_ms())
        .bind(model_id)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> Result<()> {
        for t in tags {
            check_key("tag", &t.key)?;
        }
        self.get_logged_model(model_id, false).await?;
        let mut w = self.db().begin_write().await?;
        let rows: Vec<(&str, &str)> = tags.iter().map(Tag::pair).collect();
        write_key_values(
            self.db(),
            &mut w.tx,
            KeyValues::MODEL_TAGS,
            model_id,
            &rows,
            true,
        )
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        self.get_logged_model(model_id, false).await?;
        let db = self.db();
        let query = sqlx::query(sql!(
            db,
            "DELETE FROM logged_model_tags WHERE model_id = ? AND tag_key = ?"
        ))
        .bind(model_id)
        .bind(key);
        self.delete_tag_row(query, format!("{key:?} of model {model_id}"))
            .await
    }

    /// Params are write-once, as on runs.
    pub async fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> Result<()> {
        for p in params {
            check_key("param", &p.key)?;
        }
        let model = self.get_logged_model(model_id, false).await?;
        for p in params {
            if let Some(old) = model.params.iter().find(|o| o.key == p.key)
                && old.value != p.value
            {
                return Err(TrackingError::invalid(
                    format!("params[{}]", p.key),
                    format!(
                        "changing param values is not allowed: model {model_id} already has {}={:?}",
                        p.key, old.value
                    ),
                ));
            }
        }
        let mut w = self.db().begin_write().await?;
        let rows: Vec<(&str, &str)> = params.iter().map(Param::pair).collect();
        write_key_values(
            self.db(),
            &mut w.tx,
            KeyValues::MODEL_PARAMS,
            model_id,
            &rows,
            true,
        )
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// Records that a run produced these models (MLflow's `runs/outputs`).
    pub async fn log_outputs(&self, run_id: &str, models: &[(String, i64)]) -> Result<()> {
        let db = self.db();
        for (model_id, _) in models {
            self.get_logged_model(model_id, false).await?;
        }
        let mut w = db.begin_write().await?;
        self.get_run(run_id).await?;
        for (model_id, step) in models {
            let text = match db.dialect() {
                Dialect::MySql => sql!(
                    db,
                    "INSERT IGNORE INTO run_outputs (run_id, model_id, step) VALUES (?, ?, ?)"
                ),
                Dialect::Sqlite => sql!(
                    db,
                    "INSERT OR IGNORE INTO run_outputs (run_id, model_id, step) VALUES (?, ?, ?)"
                ),
                Dialect::Postgres => {
                    sql!(
                        db,
                        "INSERT INTO run_outputs (run_id, model_id, step) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
                    )
                }
            };
            sqlx::query(text)
                .bind(run_id)
                .bind(model_id)
                .bind(*step)
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(())
    }

    pub async fn search_logged_models(
        &self,
        query: &LoggedModelQuery,
    ) -> Result<(Vec<LoggedModel>, Option<String>)> {
        if query.experiment_ids.is_empty() {
            return Err(TrackingError::invalid(
                "experiment_ids",
                "name at least one experiment",
            ));
        }
        let target = search::Target::LoggedModels;
        let clauses = search::parse_filter(&query.filter, target)?;
        let order: Vec<search::OrderBy> = query
            .order_by
            .iter()
            .map(|(field, ascending)| {
                search::parse_order_by(field, target).map(|o| search::OrderBy {
                    ascending: *ascending,
                    ..o
                })
            })
            .collect::<Result<_>>()?;
        let limit = page_size(query.max_results)?;
        let offset = parse_page_token(query.page_token.as_deref())?;
        let (ids, next) = self
            .page_of_ids::<String>(search::IdsQuery {
                target,
                experiment_ids: &query.experiment_ids,
                stages: ViewType::ActiveOnly.stages(),
                clauses: &clauses,
                order: &order,
                limit,
                offset,
            })
            .await?;
        Ok((self.load_logged_models(&ids).await?, next))
    }

    async fn load_logged_models(&self, ids: &[String]) -> Result<Vec<LoggedModel>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db();
        let list = vec!["?"; ids.len()].join(", ");
        let binds: Vec<Bind> = ids.iter().map(|i| Bind::Text(i.clone())).collect();
        let fetch = |text: String| fetch_rows(db, text, &binds);
        let (models, tags, params) = tokio::try_join!(
            fetch(format!(
                "SELECT model_id, experiment_id, name, artifact_location, creation_time, last_updated_time, \
                 model_type, source_run_id, status, lifecycle_stage FROM logged_models WHERE model_id IN ({list})"
            )),
            fetch(format!(
                "SELECT model_id, tag_key, value FROM logged_model_tags WHERE model_id IN ({list}) ORDER BY tag_key"
            )),
            fetch(format!(
                "SELECT model_id, param_key, value FROM logged_model_params WHERE model_id IN ({list}) ORDER BY param_key"
            )),
        )?;
        let mut by_id: HashMap<String, LoggedModel> = HashMap::new();
        for row in &models {
            let m = logged_model_from_row(row)?;
            by_id.insert(m.model_id.clone(), m);
        }
        for row in &tags {
            if let Some(m) = by_id.get_mut(&row.try_get::<String, _>("model_id")?) {
                m.tags.push(Tag {
                    key: row.try_get("tag_key")?,
                    value: row.try_get("value")?,
                });
            }
        }
        for row in &params {
            if let Some(m) = by_id.get_mut(&row.try_get::<String, _>("model_id")?) {
                m.params.push(Param {
                    key: row.try_get("param_key")?,
                    value: row.try_get("value")?,
                });
            }
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }
}

fn logged_model_from_row(row: &AnyRow) -> Result<LoggedModel> {
    Ok(LoggedModel {
        model_id: row.try_get("model_id")?,
        experiment_id: row.try_get("experiment_id")?,
        name: row.try_get("name")?,
        artifact_location: row.try_get("artifact_location")?,
        creation_time: row.try_get("creation_time")?,
        last_updated_time: row.try_get("last_updated_time")?,
        model_type: row.try_get("model_type")?,
        source_run_id: row.try_get("source_run_id")?,
        status: row.try_get::<String, _>("status")?.parse()?,
        lifecycle_stage: row.try_get::<String, _>("lifecycle_stage")?.parse()?,
        tags: Vec::new(),
        params: Vec::new(),
    })
}
