//! Model versions: numbered per model, tagged, searched, moved between stages (archiving
//! the ones before when asked), and where their files are.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{RegistrySearch, model_not_found, version_not_found};
use crate::tracking::entities::*;
use crate::tracking::search::{self, Bind};
use crate::tracking::store::{TrackingStore, fetch_rows};
use crate::{now_ms, sql};

impl TrackingStore {
    /// Versions of some models (or only `version` of them), with their tags and aliases.
    pub(super) async fn load_versions(
        &self,
        names: &[String],
        version: Option<i64>,
    ) -> Result<Vec<ModelVersion>> {
        let db = self.db();
        let list = vec!["?"; names.len()].join(", ");
        let mut binds: Vec<Bind> = names.iter().map(|n| Bind::Text(n.clone())).collect();
        let only = match version {
            Some(v) => {
                binds.push(Bind::Int(v));
                " AND version = ?"
            }
            None => "",
        };
        let fetch = |text: String| fetch_rows(db, text, &binds);
        let (rows, tags, aliases) = tokio::try_join!(
            fetch(format!(
                "SELECT name, version, creation_time, last_updated_time, description, user_id, current_stage, \
                 source, run_id, model_id, status FROM model_versions WHERE name IN ({list}){only} ORDER BY name, version"
            )),
            fetch(format!(
                "SELECT name, version, tag_key, value FROM model_version_tags WHERE name IN ({list}){only} ORDER BY tag_key"
            )),
            fetch(format!(
                "SELECT name, version, alias FROM registered_model_aliases WHERE name IN ({list}){only} ORDER BY alias"
            )),
        )?;
        let mut versions: Vec<ModelVersion> =
            rows.iter().map(version_from_row).collect::<Result<_>>()?;
        let mut index: HashMap<(String, i64), usize> = HashMap::new();
        for (i, v) in versions.iter().enumerate() {
            index.insert((v.name.clone(), v.version), i);
        }
        for row in &tags {
            let key = (
                row.try_get::<String, _>("name")?,
                row.try_get::<i64, _>("version")?,
            );
            if let Some(&i) = index.get(&key) {
                versions[i].tags.push(Tag {
                    key: row.try_get("tag_key")?,
                    value: row.try_get("value")?,
                });
            }
        }
        for row in &aliases {
            let key = (
                row.try_get::<String, _>("name")?,
                row.try_get::<i64, _>("version")?,
            );
            if let Some(&i) = index.get(&key) {
                versions[i].aliases.push(row.try_get("alias")?);
            }
        }
        Ok(versions)
    }

    pub async fn create_model_version(&self, new: NewModelVersion) -> Result<ModelVersion> {
        if new.source.trim().is_empty() {
            return Err(TrackingError::invalid(
                "source",
                "a model version needs the source of its files",
            ));
        }
        for t in &new.tags {
            check_key("tag", &t.key)?;
        }
        let run_id = new.run_id.filter(|r| !r.is_empty());
        let user_id = match &run_id {
            Some(id) => self.get_run(id).await?.info.user_id,
            None => String::new(),
        };
        let db = self.db();
        let mut w = db.begin_write().await?;
        let exists: Option<String> = sqlx::query_scalar(sql!(
            db,
            "SELECT name FROM registered_models WHERE name = ?"
        ))
        .bind(&new.name)
        .fetch_optional(&mut *w.tx)
        .await?;
        if exists.is_none() {
            return Err(model_not_found(&new.name));
        }
        let version: i64 = sqlx::query_scalar(sql!(
            db,
            "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?"
        ))
        .bind(&new.name)
        .fetch_one(&mut *w.tx)
        .await?;
        let now = now_ms();
        sqlx::query(sql!(
            db,
            "INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id, \
             current_stage, source, run_id, model_id, status, storage_location) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&new.name)
        .bind(version)
        .bind(now)
        .bind(now)
        .bind(new.description.unwrap_or_default())
        .bind(user_id)
        .bind(Stage::None.as_str())
        .bind(&new.source)
        .bind(run_id)
        .bind(new.model_id.filter(|m| !m.is_empty()))
        .bind("READY")
        .bind(&new.source)
        .execute(&mut *w.tx)
        .await?;
        for t in &new.tags {
            self.upsert_registry_tag(&mut w.tx, &new.name, Some(version), t)
                .await?;
        }
        sqlx::query(sql!(
            db,
            "UPDATE registered_models SET last_updated_time = ? WHERE name = ?"
        ))
        .bind(now)
        .bind(&new.name)
        .execute(&mut *w.tx)
        .await?;
        self.record_event(
            &mut w.tx,
            RegistryEventKind::VersionCreated,
            &new.name,
            version,
            None,
            None,
        )
        .await?;
        w.commit().await?;
        self.get_model_version(&new.name, version).await
    }

    /// Every version of a registered model, oldest first.
    pub async fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        self.get_registered_model(name).await?;
        self.load_versions(&[name.to_owned()], None).await
    }

    pub async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        self.load_versions(&[name.to_owned()], Some(version))
            .await?
            .pop()
            .ok_or_else(|| version_not_found(name, version))
    }

    pub async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<ModelVersion> {
        self.get_model_version(name, version).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "UPDATE model_versions SET description = ?, last_updated_time = ? WHERE name = ? AND version = ?"
        ))
        .bind(description)
        .bind(now_ms())
        .bind(name)
        .bind(version)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        self.get_model_version(name, version).await
    }

    pub async fn delete_model_version(&self, name: &str, version: i64) -> Result<()> {
        self.get_model_version(name, version).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        for text in [
            sql!(
                db,
                "DELETE FROM model_version_tags WHERE name = ? AND version = ?"
            ),
            sql!(
                db,
                "DELETE FROM registered_model_aliases WHERE name = ? AND version = ?"
            ),
            sql!(
                db,
                "DELETE FROM model_versions WHERE name = ? AND version = ?"
            ),
        ] {
            sqlx::query(text)
                .bind(name)
                .bind(version)
                .execute(&mut *w.tx)
                .await?;
        }
        self.record_event(
            &mut w.tx,
            RegistryEventKind::VersionDeleted,
            name,
            version,
            None,
            None,
        )
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> Result<()> {
        check_key("tag", &tag.key)?;
        self.get_model_version(name, version).await?;
        let mut w = self.db().begin_write().await?;
        self.upsert_registry_tag(&mut w.tx, name, Some(version), tag)
            .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
    ) -> Result<()> {
        let db = self.db();
        let query = sqlx::query(sql!(
            db,
            "DELETE FROM model_version_tags WHERE name = ? AND version = ? AND tag_key = ?"
        ))
        .bind(name)
        .bind(version)
        .bind(key);
        self.delete_tag_row(query, format!("{key:?} of {name:?} version {version}"))
            .await
    }

    pub async fn search_model_versions(
        &self,
        query: &RegistrySearch,
    ) -> Result<(Vec<ModelVersion>, Option<String>)> {
        let (rows, next) = self
            .registry_page(search::Target::ModelVersions, query)
            .await?;
        let mut versions = Vec::with_capacity(rows.len());
        for row in &rows {
            versions.push(
                self.get_model_version(&row.try_get::<String, _>("name")?, row.try_get("version")?)
                    .await?,
            );
        }
        Ok((versions, next))
    }

    /// The newest version in each of `stages` (every stage when empty).
    pub async fn latest_versions(&self, name: &str, stages: &[Stage]) -> Result<Vec<ModelVersion>> {
        let model = self.get_registered_model(name).await?;
        Ok(model
            .latest_versions
            .into_iter()
            .filter(|v| stages.is_empty() || stages.contains(&v.stage))
            .collect())
    }

    /// Moves a version to `stage`. With `archive_existing`, the other versions in Staging or
    /// Production move to Archived in the same transaction. Returns the moved version and the
    /// archived ones.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing: bool,
    ) -> Result<(ModelVersion, Vec<ModelVersion>)> {
        let current = self.get_model_version(name, version).await?;
        let db = self.db();
        let now = now_ms();
        let mut w = db.begin_write().await?;
        let mut archived: Vec<i64> = Vec::new();
        if archive_existing && matches!(stage, Stage::Staging | Stage::Production) {
            archived = sqlx::query_scalar(sql!(
                db,
                "SELECT version FROM model_versions WHERE name = ? AND current_stage = ? AND version <> ?"
            ))
            .bind(name)
            .bind(stage.as_str())
            .bind(version)
            .fetch_all(&mut *w.tx)
            .await?;
            for &other in &archived {
                self.move_stage(&mut w.tx, name, other, Stage::Archived, stage, now)
                    .await?;
            }
        }
        self.move_stage(&mut w.tx, name, version, stage, current.stage, now)
            .await?;
        sqlx::query(sql!(
            db,
            "UPDATE registered_models SET last_updated_time = ? WHERE name = ?"
        ))
        .bind(now)
        .bind(name)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        let mut archived_versions = Vec::with_capacity(archived.len());
        for v in archived {
            archived_versions.push(self.get_model_version(name, v).await?);
        }
        Ok((
            self.get_model_version(name, version).await?,
            archived_versions,
        ))
    }

    /// One version's stage change and its registry event, inside the caller's transaction.
    async fn move_stage(
        &self,
        conn: &mut sqlx::AnyConnection,
        name: &str,
        version: i64,
        to: Stage,
        from: Stage,
        now: i64,
    ) -> Result<()> {
        let db = self.db();
        sqlx::query(sql!(
            db,
            "UPDATE model_versions SET current_stage = ?, last_updated_time = ? WHERE name = ? AND version = ?"
        ))
        .bind(to.as_str())
        .bind(now)
        .bind(name)
        .bind(version)
        .execute(&mut *conn)
        .await?;
        self.record_event(
            conn,
            RegistryEventKind::StageChanged,
            name,
            version,
            Some(from),
            None,
        )
        .await
    }

    /// Where a version's files are. A `runs:/<run>/<path>` source whose run logged an MLflow 3
    /// model named `<path>` resolves to that model's artifact directory, since MLflow 3 keeps
    /// no files under the run: this is what lets `models:/<name>/<stage>` load with clients
    /// from 3.9 on.
    pub async fn download_uri(&self, name: &str, version: i64) -> Result<String> {
        let v = self.get_model_version(name, version).await?;
        if let Some(model_id) = &v.model_id
            && let Ok(model) = self.get_logged_model(model_id, false).await
        {
            return Ok(model.artifact_location);
        }
        if let Some(rest) = v.source.strip_prefix("runs:/")
            && let Some((run_id, path)) = rest.split_once('/')
        {
            let run = self.get_run(run_id).await?;
            if let Some(model) = self
                .logged_model_of_run(run_id, path.trim_end_matches('/'))
                .await?
            {
                return Ok(model.artifact_location);
            }
            return Ok(format!("{}/{}", run.info.artifact_uri, path));
        }
        Ok(v.source)
    }
}

fn version_from_row(row: &AnyRow) -> Result<ModelVersion> {
    Ok(ModelVersion {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        creation_time: row.try_get("creation_time")?,
        last_updated_time: row.try_get("last_updated_time")?,
        description: row.try_get("description")?,
        user_id: row.try_get("user_id")?,
        stage: row.try_get::<String, _>("current_stage")?.parse()?,
        source: row.try_get("source")?,
        run_id: row.try_get("run_id")?,
        model_id: row.try_get("model_id")?,
        status: row.try_get("status")?,
        aliases: Vec::new(),
        tags: Vec::new(),
    })
}
