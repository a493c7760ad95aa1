//! Aliases (`champion` → version 3) and the registry's event log, in which every change
//! takes the next sequence number inside its own transaction.

use sqlx::Row;

use crate::tracking::entities::*;
use crate::tracking::store::TrackingStore;
use crate::{now_ms, sql};

impl TrackingStore {
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

    pub(super) async fn record_event(
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
