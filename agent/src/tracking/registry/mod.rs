//! The model registry in the tracking store: registered models, numbered versions, stages
//! (moving a version to Production archives the one before), aliases, and an ordered log of
//! every change that the inference role follows.

mod watch;

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::entities::*;
use super::search::{self, Bind};
use super::store::{
    TrackingStore, bind_all, fetch_rows, page_size, page_token_for, parse_page_token,
};
use crate::db::Dialect;
use crate::{now_ms, sql};

pub use watch::{Watch, Watched, watch};

const MAX_NAME_LEN: usize = 250;

fn model_not_found(name: &str) -> TrackingError {
    TrackingError::NotFound {
        what: "registered model",
        id: format!("{name:?}"),
    }
}

fn version_not_found(name: &str, version: i64) -> TrackingError {
    TrackingError::NotFound {
        what: "model version",
        id: format!("{name:?} version {version}"),
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(TrackingError::invalid(
            "name",
            "a registered model needs a non-empty name",
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(TrackingError::invalid(
            "name",
            format!("the limit is {MAX_NAME_LEN} characters"),
        ));
    }
    if name.contains('/') || name.contains(':') {
        return Err(TrackingError::invalid(
            "name",
            format!("{name:?} may not contain '/' or ':'"),
        ));
    }
    Ok(())
}

/// Parses MLflow's version number, which travels as a string.
pub fn parse_version(text: &str) -> Result<i64> {
    text.trim().parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        TrackingError::invalid("version", format!("{text:?} is not a version number"))
    })
}

/// The page of a registry search: `filter` and `order_by` in MLflow's registry grammar.
fn registry_page_query(
    dialect: Dialect,
    target: search::Target,
    filter: &str,
    order_by: &[String],
    limit: i64,
    offset: i64,
) -> Result<search::SqlParts> {
    let clauses = search::parse_filter(filter, target)?;
    let order = order_by
        .iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| search::parse_order_by(o, target))
        .collect::<Result<Vec<_>>>()?;
    search::registry_query(
        dialect,
        &search::RegistryQuery {
            target,
            clauses: &clauses,
            order: &order,
            // One more than a page tells whether another page follows.
            limit: limit + 1,
            offset,
        },
    )
}

impl TrackingStore {
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel> {
        check_name(name)?;
        for t in tags {
            check_key("tag", &t.key)?;
        }
        let db = self.db();
        let mut w = db.begin_write().await?;
        let exists: Option<String> = sqlx::query_scalar(sql!(
            db,
            "SELECT name FROM registered_models WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(&mut *w.tx)
        .await?;
        if exists.is_some() {
            return Err(TrackingError::AlreadyExists {
                what: "registered model",
                id: format!("(name={name})"),
            });
        }
        let now = now_ms();
        sqlx::query(sql!(
            db,
            "INSERT INTO registered_models (name, creation_time, last_updated_time, description) VALUES (?, ?, ?, ?)"
        ))
        .bind(name)
        .bind(now)
        .bind(now)
        .bind(description)
        .execute(&mut *w.tx)
        .await?;
        for t in tags {
            self.upsert_registry_tag(&mut w.tx, name, None, t).await?;
        }
        w.commit().await?;
        self.get_registered_model(name).await
    }

    async fn upsert_registry_tag(
        &self,
        conn: &mut sqlx::AnyConnection,
        name: &str,
        version: Option<i64>,
        tag: &Tag,
    ) -> Result<()> {
        let db = self.db();
        let query = match (version, db.dialect()) {
            (None, Dialect::MySql) => sqlx::query(sql!(
                db,
                "INSERT INTO registered_model_tags (name, tag_key, value) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE value = VALUES(value)"
            ))
            .bind(name),
            (None, _) => sqlx::query(sql!(
                db,
                "INSERT INTO registered_model_tags (name, tag_key, value) VALUES (?, ?, ?) \
                 ON CONFLICT (name, tag_key) DO UPDATE SET value = excluded.value"
            ))
            .bind(name),
            (Some(v), Dialect::MySql) => sqlx::query(sql!(
                db,
                "INSERT INTO model_version_tags (name, version, tag_key, value) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE value = VALUES(value)"
            ))
            .bind(name)
            .bind(v),
            (Some(v), _) => sqlx::query(sql!(
                db,
                "INSERT INTO model_version_tags (name, version, tag_key, value) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (name, version, tag_key) DO UPDATE SET value = excluded.value"
            ))
            .bind(name)
            .bind(v),
        };
        query.bind(&tag.key).bind(&tag.value).execute(conn).await?;
        Ok(())
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        self.load_registered_models(&[name.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| model_not_found(name))
    }

    async fn load_registered_models(&self, names: &[String]) -> Result<Vec<RegisteredModel>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db();
        let list = vec!["?"; names.len()].join(", ");
        let binds: Vec<Bind> = names.iter().map(|n| Bind::Text(n.clone())).collect();
        let fetch = |text: String| fetch_rows(db, text, &binds);
        let (models, tags, aliases) = tokio::try_join!(
            fetch(format!(
                "SELECT name, creation_time, last_updated_time, description FROM registered_models WHERE name IN ({list})"
            )),
            fetch(format!(
                "SELECT name, tag_key, value FROM registered_model_tags WHERE name IN ({list}) ORDER BY tag_key"
            )),
            fetch(format!(
                "SELECT name, alias, version FROM registered_model_aliases WHERE name IN ({list}) ORDER BY alias"
            )),
        )?;
        let versions = self.load_versions(names, None).await?;
        let mut by_name: HashMap<String, RegisteredModel> = HashMap::new();
        for row in &models {
            let m = RegisteredModel {
                name: row.try_get("name")?,
                creation_time: row.try_get("creation_time")?,
                last_updated_time: row.try_get("last_updated_time")?,
                description: row.try_get("description")?,
                latest_versions: Vec::new(),
                aliases: Vec::new(),
                tags: Vec::new(),
            };
            by_name.insert(m.name.clone(), m);
        }
        for row in &tags {
            if let Some(m) = by_name.get_mut(&row.try_get::<String, _>("name")?) {
                m.tags.push(Tag {
                    key: row.try_get("tag_key")?,
                    value: row.try_get("value")?,
                });
            }
        }
        for row in &aliases {
            if let Some(m) = by_name.get_mut(&row.try_get::<String, _>("name")?) {
                m.aliases
                    .push((row.try_get("alias")?, row.try_get("version")?));
            }
        }
        for v in versions {
            if let Some(m) = by_name.get_mut(&v.name) {
                match m.latest_versions.iter_mut().find(|l| l.stage == v.stage) {
                    Some(l) if l.version < v.version => *l = v,
                    Some(_) => {}
                    None => m.latest_versions.push(v),
                }
            }
        }
        Ok(names
            .iter()
            .filter_map(|n| by_name.remove(n))
            .map(|mut m| {
                m.latest_versions.sort_by_key(|v| v.version);
                m
            })
            .collect())
    }

    /// Versions of some models (or only `version` of them), with their tags and aliases.
    async fn load_versions(
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

    pub async fn search_registered_models(
        &self,
        filter: &str,
        order_by: &[String],
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<(Vec<RegisteredModel>, Option<String>)> {
        let limit = page_size(max_results)?;
        let offset = parse_page_token(page_token)?;
        let db = self.db();
        let q = registry_page_query(
            db.dialect(),
            search::Target::RegisteredModels,
            filter,
            order_by,
            limit,
            offset,
        )?;
        let mut names: Vec<String> = bind_all(sqlx::query(db.dynamic(&q.text)), &q.binds)
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<Result<_, _>>()?;
        let next = (names.len() as i64 > limit).then(|| page_token_for(offset + limit));
        names.truncate(limit as usize);
        Ok((self.load_registered_models(&names).await?, next))
    }

    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<RegisteredModel> {
        check_name(new_name)?;
        self.get_registered_model(name).await?;
        if name != new_name && self.get_registered_model(new_name).await.is_ok() {
            return Err(TrackingError::AlreadyExists {
                what: "registered model",
                id: format!("(name={new_name})"),
            });
        }
        let db = self.db();
        let mut w = db.begin_write().await?;
        // Create the new name, move the children, drop the old name: works with or without
        // cascading foreign keys on every backend.
        sqlx::query(sql!(
            db,
            "INSERT INTO registered_models (name, creation_time, last_updated_time, description) \
             SELECT ?, creation_time, ?, description FROM registered_models WHERE name = ?"
        ))
        .bind(new_name)
        .bind(now_ms())
        .bind(name)
        .execute(&mut *w.tx)
        .await?;
        for text in [
            sql!(
                db,
                "UPDATE registered_model_tags SET name = ? WHERE name = ?"
            ),
            sql!(db, "UPDATE model_versions SET name = ? WHERE name = ?"),
            sql!(db, "UPDATE model_version_tags SET name = ? WHERE name = ?"),
            sql!(
                db,
                "UPDATE registered_model_aliases SET name = ? WHERE name = ?"
            ),
        ] {
            sqlx::query(text)
                .bind(new_name)
                .bind(name)
                .execute(&mut *w.tx)
                .await?;
        }
        sqlx::query(sql!(db, "DELETE FROM registered_models WHERE name = ?"))
            .bind(name)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        self.get_registered_model(new_name).await
    }

    pub async fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RegisteredModel> {
        self.get_registered_model(name).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "UPDATE registered_models SET description = ?, last_updated_time = ? WHERE name = ?"
        ))
        .bind(description)
        .bind(now_ms())
        .bind(name)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        self.get_registered_model(name).await
    }

    pub async fn delete_registered_model(&self, name: &str) -> Result<()> {
        self.get_registered_model(name).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        for text in [
            sql!(db, "DELETE FROM model_version_tags WHERE name = ?"),
            sql!(db, "DELETE FROM registered_model_aliases WHERE name = ?"),
            sql!(db, "DELETE FROM model_versions WHERE name = ?"),
            sql!(db, "DELETE FROM registered_model_tags WHERE name = ?"),
            sql!(db, "DELETE FROM registered_models WHERE name = ?"),
        ] {
            sqlx::query(text).bind(name).execute(&mut *w.tx).await?;
        }
        self.record_event(
            &mut w.tx,
            RegistryEventKind::ModelDeleted,
            name,
            0,
            None,
            None,
        )
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> Result<()> {
        check_key("tag", &tag.key)?;
        self.get_registered_model(name).await?;
        let mut w = self.db().begin_write().await?;
        self.upsert_registry_tag(&mut w.tx, name, None, tag).await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<()> {
        let db = self.db();
        let query = sqlx::query(sql!(
            db,
            "DELETE FROM registered_model_tags WHERE name = ? AND tag_key = ?"
        ))
        .bind(name)
        .bind(key);
        self.delete_tag_row(query, format!("{key:?} of model {name:?}"))
            .await
    }

    // ---- versions ----------------------------------------------------------------------

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
        filter: &str,
        order_by: &[String],
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<(Vec<ModelVersion>, Option<String>)> {
        let limit = page_size(max_results)?;
        let offset = parse_page_token(page_token)?;
        let q = registry_page_query(
            self.db().dialect(),
            search::Target::ModelVersions,
            filter,
            order_by,
            limit,
            offset,
        )?;
        let db = self.db();
        let rows = bind_all(sqlx::query(db.dynamic(&q.text)), &q.binds)
            .fetch_all(db.pool())
            .await?;
        let next = (rows.len() as i64 > limit).then(|| page_token_for(offset + limit));
        let mut versions = Vec::new();
        for row in rows.iter().take(limit as usize) {
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

    pub async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()> {
        check_key("alias", alias)?;
        if alias.eq_ignore_ascii_case("latest")
            || (alias.starts_with(['v', 'V']) && alias[1..].parse::<u64>().is_ok())
        {
            return Err(TrackingError::invalid(
                "alias",
                format!("{alias:?} is reserved"),
            ));
        }
        self.get_model_version(name, version).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "DELETE FROM registered_model_aliases WHERE name = ? AND alias = ?"
        ))
        .bind(name)
        .bind(alias)
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(sql!(
            db,
            "INSERT INTO registered_model_aliases (name, alias, version) VALUES (?, ?, ?)"
        ))
        .bind(name)
        .bind(alias)
        .bind(version)
        .execute(&mut *w.tx)
        .await?;
        self.record_event(
            &mut w.tx,
            RegistryEventKind::AliasSet,
            name,
            version,
            None,
            Some(alias),
        )
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let version = self.version_by_alias(name, alias).await?;
        let db = self.db();
        let mut w = db.begin_write().await?;
        sqlx::query(sql!(
            db,
            "DELETE FROM registered_model_aliases WHERE name = ? AND alias = ?"
        ))
        .bind(name)
        .bind(alias)
        .execute(&mut *w.tx)
        .await?;
        self.record_event(
            &mut w.tx,
            RegistryEventKind::AliasDeleted,
            name,
            version,
            None,
            Some(alias),
        )
        .await?;
        w.commit().await?;
        Ok(())
    }

    async fn version_by_alias(&self, name: &str, alias: &str) -> Result<i64> {
        let db = self.db();
        sqlx::query_scalar(sql!(
            db,
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?"
        ))
        .bind(name)
        .bind(alias)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| TrackingError::NotFound {
            what: "alias",
            id: format!("{alias:?} of model {name:?}"),
        })
    }

    pub async fn get_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        let version = self.version_by_alias(name, alias).await?;
        self.get_model_version(name, version).await
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

    async fn record_event(
        &self,
        conn: &mut sqlx::AnyConnection,
        kind: RegistryEventKind,
        name: &str,
        version: i64,
        from_stage: Option<Stage>,
        alias: Option<&str>,
    ) -> Result<()> {
        let db = self.db();
        // Writers are serialised (SQLite) or conflict on the key (MySQL, PostgreSQL), so the
        // sequence has no gaps or repeats within a commit order.
        let seq: i64 = sqlx::query_scalar(sql!(
            db,
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM registry_events"
        ))
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(sql!(
            db,
            "INSERT INTO registry_events (seq, ts, kind, name, version, from_stage, alias) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(seq)
        .bind(now_ms())
        .bind(kind.as_str())
        .bind(name)
        .bind(version)
        .bind(from_stage.map_or("", Stage::as_str))
        .bind(alias.unwrap_or_default())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The sequence number of the newest registry event, 0 when there is none.
    pub async fn latest_registry_seq(&self) -> Result<i64> {
        let db = self.db();
        Ok(sqlx::query_scalar(sql!(
            db,
            "SELECT COALESCE(MAX(seq), 0) FROM registry_events"
        ))
        .fetch_one(db.pool())
        .await?)
    }

    /// Registry events after `seq`, oldest first.
    pub async fn registry_events_after(&self, seq: i64, limit: i64) -> Result<Vec<RegistryEvent>> {
        let db = self.db();
        sqlx::query(sql!(
            db,
            "SELECT seq, ts, kind, name, version, from_stage, alias FROM registry_events WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(seq)
        .bind(limit)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| {
            let from: String = row.try_get("from_stage")?;
            let alias: String = row.try_get("alias")?;
            Ok(RegistryEvent {
                seq: row.try_get("seq")?,
                timestamp: row.try_get("ts")?,
                kind: row.try_get::<String, _>("kind")?.parse()?,
                name: row.try_get("name")?,
                version: row.try_get("version")?,
                from_stage: if from.is_empty() { None } else { Some(from.parse()?) },
                alias: (!alias.is_empty()).then_some(alias),
            })
        })
        .collect()
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
