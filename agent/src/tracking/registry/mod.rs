//! The model registry in the tracking store: registered models, numbered versions, stages
//! (moving a version to Production archives the one before), aliases, and an ordered log of
//! every change that the inference role follows. This file holds registered models and the
//! rules every part shares; `versions`, `aliases` (with the event log) and `watch` the rest.

mod aliases;
mod versions;
mod watch;

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::entities::*;
use super::search::{self, Bind};
use super::store::{TrackingStore, fetch_rows, page_size, page_token_for, parse_page_token};
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

/// What a registry search looks for: `filter` and `order_by` in MLflow's registry grammar.
#[derive(Clone, Debug, Default)]
pub struct RegistrySearch {
    pub filter: String,
    pub order_by: Vec<String>,
    pub max_results: u32,
    pub page_token: Option<String>,
}

impl TrackingStore {
    /// One page of a registry search's rows (`name`, and `version` for versions), and the
    /// token of the next page if there is one.
    async fn registry_page(
        &self,
        target: search::Target,
        query: &RegistrySearch,
    ) -> Result<(Vec<AnyRow>, Option<String>)> {
        let limit = page_size(query.max_results)?;
        let offset = parse_page_token(query.page_token.as_deref())?;
        let clauses = search::parse_filter(&query.filter, target)?;
        let order = search::parse_order_list(&query.order_by, target)?;
        let db = self.db();
        let q = search::registry_query(
            db.dialect(),
            &search::RegistryQuery {
                target,
                clauses: &clauses,
                order: &order,
                // One more than a page tells whether another page follows.
                limit: limit + 1,
                offset,
            },
        )?;
        let mut rows = fetch_rows(db, q.text, &q.binds).await?;
        let next = (rows.len() as i64 > limit).then(|| page_token_for(offset + limit));
        rows.truncate(limit as usize);
        Ok((rows, next))
    }

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

    pub(super) async fn upsert_registry_tag(
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

    pub async fn search_registered_models(
        &self,
        query: &RegistrySearch,
    ) -> Result<(Vec<RegisteredModel>, Option<String>)> {
        let (rows, next) = self
            .registry_page(search::Target::RegisteredModels, query)
            .await?;
        let names: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<Result<_, _>>()?;
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
}
