//! One SQL layer for every role's store: a pool over SQLite, MySQL/MariaDB or PostgreSQL chosen
//! by URL, the few places their SQL differs, and versioned migrations applied at start-up.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

mod bulk;
pub use bulk::{BulkValue, Ordered, Owned, Records, Rows, SqliteWriter, Step, WriteError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    MySql,
    Postgres,
}

impl Dialect {
    fn index(self) -> usize {
        match self {
            Dialect::Sqlite => 0,
            Dialect::MySql => 1,
            Dialect::Postgres => 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migrating {component} in {url}: {source}")]
    Migrate {
        component: &'static str,
        url: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// A connection pool and the dialect of the server behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    /// The URL with any password replaced, for messages and logs.
    url: String,
    /// SQLite only: one writer at a time, see [`Db::begin_write`]; the slot keeps the
    /// rusqlite connection of [`Db::sqlite_writer`] once one has been made.
    writer: Option<Arc<Mutex<Option<rusqlite::Connection>>>>,
    /// SQLite only: idle read-only connections of [`Db::read_sqlite`], kept for the next read.
    readers: Arc<std::sync::Mutex<Vec<rusqlite::Connection>>>,
    /// SQLite only: a checkpoint of the writer's WAL is under way, and the writer's commits
    /// since the last one (see `Db::checkpoint_soon`).
    checkpointing: Arc<std::sync::atomic::AtomicBool>,
    commits: Arc<std::sync::atomic::AtomicU32>,
}

/// A write transaction, holding SQLite's in-process writer lock until commit or drop.
pub struct WriteTx {
    pub tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<Option<rusqlite::Connection>>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// One schema change in SQL all three servers read (BIGINT, SMALLINT, VARCHAR(n), TEXT,
/// DOUBLE PRECISION, identifiers in double quotes); MySQL's table options and its backquoted
/// identifiers are made here, in one place.
pub struct SchemaChange {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// MySQL tables: transactional, and case-sensitive like SQLite's and PostgreSQL's text, so
/// keys `C` and `c` are two keys and LIKE matches case.
const MYSQL_TABLE_OPTIONS: &str = "ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin";

impl SchemaChange {
    fn sql_for(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite | Dialect::Postgres => self.sql.to_owned(),
            Dialect::MySql => dialect.requote(
                &self
                    .sql
                    .replace("\n);", &format!("\n) {MYSQL_TABLE_OPTIONS};")),
            ),
        }
    }
}

impl Db {
    /// Connects to `url`: `sqlite:PATH` (created if missing), `mysql://…`, `mariadb://…` or
    /// `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        static DRIVERS: OnceLock<()> = OnceLock::new();
        DRIVERS.get_or_init(sqlx::any::install_default_drivers);

        let (dialect, url) = normalize(url)?;
        let shown = redact(&url);
        if dialect == Dialect::Sqlite {
            create_sqlite_parent(&url, &shown)?;
        }
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| DbError::Url {
                url: shown.clone(),
                reason: e.to_string(),
            })?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; a few readers beside the writer are plenty.
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            // A pooled connection to a local file cannot have gone stale; pinging it before
            // every use would add a round trip to the database thread per call.
            .test_before_acquire(dialect != Dialect::Sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // busy_timeout comes first: switching to WAL takes a lock, and a
                        // connection opened while another one writes must wait for it rather
                        // than fail with "database is locked". WAL lets readers run beside the
                        // writer; NORMAL syncs the WAL at checkpoints, so a committed write
                        // survives a crash of the process (not necessarily a power loss). LIKE
                        // is case-sensitive in MLflow's filters and on PostgreSQL.
                        conn.execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                             PRAGMA case_sensitive_like = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect {
                url: shown.clone(),
                source,
            })?;
        let writer = (dialect == Dialect::Sqlite).then(|| Arc::new(Mutex::new(None)));
        Ok(Self {
            pool,
            dialect,
            url: shown,
            writer,
            readers: Arc::default(),
            checkpointing: Arc::default(),
            commits: Arc::default(),
        })
    }

    /// Begins a transaction that will write. On SQLite, writers queue here, in the process, and
    /// the transaction takes the database's write lock at once (`BEGIN IMMEDIATE`): one that
    /// read first and wrote later would otherwise fail with SQLITE_BUSY_SNAPSHOT when any other
    /// write (a single statement, another process) committed in between, instead of waiting.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let guard = match &self.writer {
            Some(lock) => Some(Arc::clone(lock).lock_owned().await),
            None => None,
        };
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::MySql | Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies `changes` not yet applied, recording them in `_readmit_<component>_migrations`
    /// so several components can share one database.
    pub async fn migrate(
        &self,
        component: &'static str,
        changes: &[SchemaChange],
    ) -> Result<(), DbError> {
        let migrations: Vec<Migration> = changes
            .iter()
            .map(|c| {
                Migration::new(
                    c.version,
                    Cow::Borrowed(c.description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(c.sql_for(self.dialect))),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        migrator.dangerous_set_table_name(format!("_readmit_{component}_migrations"));
        // SQLite has no advisory lock: two processes opening a new file at once can both try
        // the same change. Each change commits with its record, so the loser finds it applied
        // when it tries again.
        let mut attempt = 0;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(_) if self.dialect == Dialect::Sqlite && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(source) => {
                    return Err(DbError::Migrate {
                        component,
                        url: self.url.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// A query's text per dialect, computed once per call site: queries are written with `?`
/// placeholders, which PostgreSQL spells `$1`, `$2`, ….
pub struct Sql {
    text: &'static str,
    cache: [OnceLock<Box<str>>; 3],
}

impl Sql {
    pub const fn new(text: &'static str) -> Self {
        Self {
            text,
            cache: [OnceLock::new(), OnceLock::new(), OnceLock::new()],
        }
    }

    pub fn get(&'static self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite | Dialect::MySql => self.text,
            Dialect::Postgres => {
                self.cache[dialect.index()].get_or_init(|| numbered_placeholders(self.text).into())
            }
        }
    }
}

impl Db {
    /// Generated SQL (built from bound placeholders only, never from values) in this dialect.
    pub fn dynamic(&self, text: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(match self.dialect {
            Dialect::Postgres => numbered_placeholders(text),
            Dialect::Sqlite | Dialect::MySql => text.to_owned(),
        })
    }
}

impl Dialect {
    /// SQL written with `"` around identifiers (and no `"` in its string literals) in this
    /// dialect's quoting: MySQL's default mode reads `"` as a string quote, so it gets backquotes.
    pub fn requote(self, text: &str) -> String {
        match self {
            Dialect::MySql => text.replace('"', "`"),
            Dialect::Sqlite | Dialect::Postgres => text.to_owned(),
        }
    }

    /// `name` as a quoted identifier: `"name"`, or `` `name` `` on MySQL (whose default mode
    /// reads double quotes as strings). Names like `glyburide-metformin` need it.
    pub fn quote_ident(self, name: &str) -> String {
        let q = match self {
            Dialect::MySql => '`',
            Dialect::Sqlite | Dialect::Postgres => '"',
        };
        let mut out = String::with_capacity(name.len() + 2);
        out.push(q);
        for c in name.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        out
    }
}

/// True when `error` is a unique or primary key violation.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// `sql!(db, "SELECT … WHERE id = ?")`: the query's text for `db`'s dialect, as `&'static str`.
#[macro_export]
macro_rules! sql {
    ($db:expr, $text:literal) => {{
        static SQL: $crate::db::Sql = $crate::db::Sql::new($text);
        SQL.get($db.dialect())
    }};
}

/// Rewrites `?` outside quotes to `$1`, `$2`, … for PostgreSQL.
pub fn numbered_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
            (None, _) => {}
        }
        out.push(c);
    }
    out
}

fn normalize(url: &str) -> Result<(Dialect, String), DbError> {
    let url = url.trim();
    let bad = |reason: &str| DbError::Url {
        url: redact(url),
        reason: reason.into(),
    };
    if let Some(rest) = url.strip_prefix("mariadb://") {
        return Ok((Dialect::MySql, format!("mysql://{rest}")));
    }
    let dialect = match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Dialect::Sqlite,
        Some("mysql") => Dialect::MySql,
        Some("postgres" | "postgresql") => Dialect::Postgres,
        _ => {
            return Err(bad(
                "expected sqlite:PATH, mysql://, mariadb:// or postgres://",
            ));
        }
    };
    if dialect == Dialect::Sqlite && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        return Ok((dialect, format!("{url}{sep}mode=rwc")));
    }
    Ok((dialect, url.to_owned()))
}

/// A SQLite URL's file path, for creating its directory.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

fn create_sqlite_parent(url: &str, shown: &str) -> Result<(), DbError> {
    if let Some(parent) = sqlite_path(url).and_then(|p| Path::new(p).parent())
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| DbError::Url {
            url: shown.to_owned(),
            reason: format!("cannot create {}: {e}", parent.display()),
        })?;
    }
    Ok(())
}

/// The URL with the password (between `user:` and `@`) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The SQLite URL of a file under the data dir, the embedded default for every store.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT a FROM t WHERE b = ? AND c = '?' AND d IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"
        );
    }

    #[test]
    fn urls_pick_the_dialect_and_hide_passwords() {
        assert_eq!(
            normalize("sqlite:/tmp/a.db").unwrap(),
            (Dialect::Sqlite, "sqlite:/tmp/a.db?mode=rwc".into())
        );
        assert_eq!(
            normalize("mariadb://root@localhost/test").unwrap().0,
            Dialect::MySql
        );
        assert_eq!(
            normalize("postgresql://u@h/db").unwrap().0,
            Dialect::Postgres
        );
        let err = normalize("oracle://scott:tiger@db")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("oracle://scott:***@db") && !err.contains("tiger"),
            "{err}"
        );
        assert_eq!(
            redact("mysql://root:pw@h:3306/db"),
            "mysql://root:***@h:3306/db"
        );
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(
            sqlite_path("sqlite:///var/x/t.db?mode=rwc"),
            Some("/var/x/t.db")
        );
        assert_eq!(sqlite_path("sqlite:data/t.db"), Some("data/t.db"));
    }
}
