//! Whole tables in and out: the ETL role writes a hundred thousand rows of fifty columns at a
//! time, where per-value overhead decides the speed.
//!
//! A write is a list of [`Step`]s run in one transaction. On MySQL and PostgreSQL the rows go
//! in multi-row INSERTs of bound values ([`BulkInsert`]). On a SQLite file they run on the
//! process's writer connection ([`SqliteWriter`]: rusqlite, on a blocking thread): each value
//! is bound straight into one prepared single-row INSERT, with none of the per-value copies a
//! generic driver makes — about twice as fast for RawData. The writer also serves other
//! transactions that must be quick (a metric logged), as one hop to its thread. Both hold the
//! process's one SQLite writer slot, so they queue with [`Db::begin_write`]'s transactions.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension as _, TransactionBehavior};

use super::{Db, Dialect};

/// One value of a row, typed even when NULL: PostgreSQL infers parameter types from the binds.
#[derive(Clone, Copy, Debug)]
pub enum BulkValue<'a> {
    Int(Option<i64>),
    Real(f64),
    Text(Option<&'a str>),
}

/// Rows made on demand from data already in memory (a frame's columns, a matrix), so that a
/// table never exists twice as values.
pub trait Rows: Send + Sync + 'static {
    fn height(&self) -> usize;
    /// Pushes row `index`'s values, in column order.
    fn row<'a>(&'a self, index: usize, out: &mut Vec<BulkValue<'a>>);
}

/// `rows` in another order: row `i` is `rows`' row `order[i]`. Loading a table in its key's
/// order appends to its B-tree instead of splitting pages all over it.
pub struct Ordered<R> {
    rows: R,
    order: Vec<usize>,
}

impl<R: Rows> Ordered<R> {
    /// `rows` sorted by `key` (stable).
    pub fn by_key<K: Ord>(rows: R, key: impl Fn(usize) -> K) -> Self {
        let mut order: Vec<usize> = (0..rows.height()).collect();
        order.sort_by_key(|&i| key(i));
        Self { rows, order }
    }
}

impl<R: Rows> Rows for Ordered<R> {
    fn height(&self) -> usize {
        self.order.len()
    }

    fn row<'a>(&'a self, index: usize, out: &mut Vec<BulkValue<'a>>) {
        self.rows.row(self.order[index], out);
    }
}

/// An owned value, for records written beside the data (a version row, a data set row).
#[derive(Clone, Debug)]
pub enum Owned {
    Int(Option<i64>),
    Real(f64),
    Text(Option<String>),
}

/// Rows of owned values, for small tables.
pub struct Records(pub Vec<Vec<Owned>>);

impl Rows for Records {
    fn height(&self) -> usize {
        self.0.len()
    }

    fn row<'a>(&'a self, index: usize, out: &mut Vec<BulkValue<'a>>) {
        out.extend(self.0[index].iter().map(|v| match v {
            Owned::Int(v) => BulkValue::Int(*v),
            Owned::Real(v) => BulkValue::Real(*v),
            Owned::Text(v) => BulkValue::Text(v.as_deref()),
        }));
    }
}

/// One step of a [`Db::write`].
pub enum Step {
    /// Statements without parameters, in the database's dialect.
    Sql(String),
    /// Rows into a table (its name and columns unquoted).
    Insert {
        table: String,
        columns: Vec<String>,
        rows: Box<dyn Rows>,
    },
    /// Ends the write with [`WriteError::Conflict`] unless `sql` (one text column, at most one
    /// row; no row or NULL read as `None`) reads `expected`: an optimistic check that what the
    /// caller read before the write still holds. On MySQL and PostgreSQL, end `sql` with
    /// `FOR UPDATE` to hold it.
    Expect {
        sql: String,
        expected: Option<String>,
        conflict: String,
    },
}

impl Step {
    pub fn insert(table: &str, columns: &[&str], rows: impl Rows) -> Self {
        Step::Insert {
            table: table.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Box::new(rows),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("a database worker thread failed: {0}")]
    Worker(String),
}

impl Db {
    /// The file of a SQLite database (not an in-memory one): what the bulk paths open.
    fn sqlite_file(&self) -> Option<PathBuf> {
        match self.dialect {
            Dialect::Sqlite if !self.url.contains("mode=memory") => {
                super::sqlite_path(&self.url).map(PathBuf::from)
            }
            Dialect::Sqlite | Dialect::MySql | Dialect::Postgres => None,
        }
    }

    /// Runs `steps` in one write transaction: all of them, or none when one fails.
    pub async fn write(&self, steps: Vec<Step>) -> Result<(), WriteError> {
        if let Some(writer) = self.sqlite_writer() {
            return writer.bulk().run(|tx| write_steps(tx, steps)).await;
        }
        let mut w = self.begin_write().await?;
        for step in steps {
            match step {
                Step::Sql(sql) => {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *w.tx)
                        .await?;
                }
                Step::Insert {
                    table,
                    columns,
                    rows,
                } => {
                    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
                    let mut bulk = BulkInsert::new(self.dialect, &table, &columns, &*rows);
                    for index in 0..rows.height() {
                        rows.row(index, &mut bulk.values);
                        bulk.flush_if_full(&mut w.tx).await?;
                    }
                    bulk.finish(&mut w.tx).await?;
                }
                Step::Expect {
                    sql,
                    expected,
                    conflict,
                } => {
                    let found: Option<String> =
                        sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql))
                            .fetch_optional(&mut *w.tx)
                            .await?
                            .flatten();
                    if found != expected {
                        return Err(WriteError::Conflict(conflict));
                    }
                }
            }
        }
        w.commit().await?;
        Ok(())
    }

    /// The process's SQLite writer, when this is a SQLite file (not an in-memory database).
    pub fn sqlite_writer(&self) -> Option<SqliteWriter<'_>> {
        Some(SqliteWriter {
            path: self.sqlite_file()?,
            slot: self.writer.as_ref()?,
            db: self,
            bulk: false,
        })
    }

    /// The writer connection leaves checkpoints to this: a committing writer would otherwise
    /// copy a whole load into the database file and sync it before returning. After a bulk
    /// write, or every [`COMMITS_PER_CHECKPOINT`] small ones, a passive checkpoint on a
    /// connection of its own moves the WAL over; it waits for no one, and what it moves is
    /// already durable in the WAL. One runs at a time.
    fn checkpoint_soon(&self, path: PathBuf, bulk: bool) {
        use std::sync::atomic::Ordering;
        let commits = self.commits.fetch_add(1, Ordering::AcqRel) + 1;
        if !bulk && commits < COMMITS_PER_CHECKPOINT
            || self.checkpointing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.commits.store(0, Ordering::Release);
        let busy = std::sync::Arc::clone(&self.checkpointing);
        tokio::task::spawn_blocking(move || {
            let done = open_sqlite(&path, false)
                .and_then(|conn| conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);"));
            if let Err(e) = done {
                tracing::warn!(error = %e, "checkpointing the SQLite WAL failed");
            }
            busy.store(false, Ordering::Release);
        });
    }

    /// Runs `read` on a read-only connection of its own on a blocking thread, when this is a
    /// SQLite file; `None` otherwise. For reading whole tables (or many rows) without sqlx's
    /// hand-off per row. A few idle connections are kept for the next read.
    pub async fn read_sqlite<T, E>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
    ) -> Option<Result<T, E>>
    where
        T: Send + 'static,
        E: From<WriteError> + Send + 'static,
    {
        const KEEP: usize = 4;
        let path = self.sqlite_file()?;
        let readers = std::sync::Arc::clone(&self.readers);
        let joined = tokio::task::spawn_blocking(move || {
            let idle = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_sqlite(&path, true).map_err(|e| E::from(e.into()))?,
            };
            let result = read(&conn);
            let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < KEEP {
                idle.push(conn);
            }
            result
        })
        .await;
        Some(joined.unwrap_or_else(|e| Err(E::from(WriteError::Worker(e.to_string())))))
    }
}

/// A SQLite file's one writer connection (rusqlite), kept in the [`Db`]'s writer slot: what
/// bulk writes and many small writes a second use instead of sqlx.
pub struct SqliteWriter<'a> {
    db: &'a Db,
    path: PathBuf,
    slot: &'a std::sync::Arc<tokio::sync::Mutex<Option<rusqlite::Connection>>>,
    bulk: bool,
}

/// Small writes between two checkpoints of the writer's WAL (a few MiB of pages at most).
const COMMITS_PER_CHECKPOINT: u32 = 500;

impl SqliteWriter<'_> {
    /// Marks the write as a bulk one: its WAL is checkpointed right after.
    fn bulk(self) -> Self {
        Self { bulk: true, ..self }
    }

    /// Runs `work` in one write transaction on a blocking thread: committed when `work`
    /// returns `Ok`, rolled back otherwise. One hop to one thread for the whole transaction,
    /// where sqlx makes one per statement. It holds the writer slot, so it queues with
    /// [`Db::begin_write`].
    pub async fn run<T, E>(
        self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<WriteError> + Send + 'static,
    {
        let mut slot = std::sync::Arc::clone(self.slot).lock_owned().await;
        let conn = slot.take();
        let path = self.path.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = match conn {
                Some(conn) => conn,
                None => match open_sqlite(&path, false) {
                    Ok(conn) => conn,
                    Err(e) => return (None, Err(E::from(WriteError::from(e)))),
                },
            };
            let result = in_transaction(&mut conn, work);
            (Some(conn), result)
        })
        .await;
        let (conn, result) =
            joined.unwrap_or_else(|e| (None, Err(E::from(WriteError::Worker(e.to_string())))));
        *slot = conn;
        drop(slot);
        if result.is_ok() {
            self.db.checkpoint_soon(self.path, self.bulk);
        }
        result
    }
}

/// Opens the file as the pool's connections are set up (see `Db::connect`).
fn open_sqlite(path: &Path, read_only: bool) -> Result<rusqlite::Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // A whole table's pages fit in the cache (256 MiB at most, only as used): a bulk write
    // that spills pages to the WAL mid-transaction reads and writes them twice.
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -262144; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA case_sensitive_like = ON;",
    )?;
    Ok(conn)
}

/// `work` in an immediate transaction on `conn`, committed when it returns `Ok`.
fn in_transaction<T, E: From<WriteError>>(
    conn: &mut rusqlite::Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let sqlite = |e: rusqlite::Error| E::from(WriteError::from(e));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let value = work(&tx)?;
    tx.commit().map_err(sqlite)?;
    Ok(value)
}

fn write_steps(tx: &rusqlite::Transaction<'_>, steps: Vec<Step>) -> Result<(), WriteError> {
    for step in steps {
        match step {
            Step::Sql(sql) => tx.execute_batch(&sql)?,
            Step::Insert {
                table,
                columns,
                rows,
            } => {
                let quoted: Vec<String> = columns
                    .iter()
                    .map(|c| Dialect::Sqlite.quote_ident(c))
                    .collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    Dialect::Sqlite.quote_ident(&table),
                    quoted.join(", "),
                    vec!["?"; columns.len()].join(", ")
                );
                let mut statement = tx.prepare(&sql)?;
                let mut values = Vec::with_capacity(columns.len());
                for index in 0..rows.height() {
                    values.clear();
                    rows.row(index, &mut values);
                    for (i, value) in values.iter().enumerate() {
                        match *value {
                            BulkValue::Int(Some(v)) => statement.raw_bind_parameter(i + 1, v)?,
                            BulkValue::Real(v) => statement.raw_bind_parameter(i + 1, v)?,
                            BulkValue::Text(Some(v)) => statement.raw_bind_parameter(i + 1, v)?,
                            BulkValue::Int(None) | BulkValue::Text(None) => {
                                statement.raw_bind_parameter(i + 1, rusqlite::types::Null)?
                            }
                        }
                    }
                    statement.raw_execute()?;
                }
            }
            Step::Expect {
                sql,
                expected,
                conflict,
            } => {
                let found: Option<String> = tx
                    .query_row(&sql, [], |r| r.get::<_, Option<String>>(0))
                    .optional()?
                    .flatten();
                if found != expected {
                    return Err(WriteError::Conflict(conflict));
                }
            }
        }
    }
    Ok(())
}

/// The bytes the widest of a sample of `rows` takes on the wire, bound: a value with its type
/// and length, roughly as MySQL's protocol carries it, plus half again for rows wider than the
/// sample.
fn widest_row(rows: &dyn Rows) -> usize {
    let height = rows.height();
    let step = (height / 256).max(1);
    let mut values = Vec::new();
    let mut widest = 0;
    for index in (0..height).step_by(step) {
        values.clear();
        rows.row(index, &mut values);
        let bytes: usize = values
            .iter()
            .map(|v| match v {
                BulkValue::Int(_) | BulkValue::Real(_) => 12,
                BulkValue::Text(v) => 6 + v.map_or(0, str::len),
            })
            .sum();
        widest = widest.max(bytes);
    }
    widest + widest / 2
}

/// Multi-row INSERTs with bound values: tens of thousands of rows cost a few dozen round trips
/// of one prepared statement, reused, instead of one statement per row, with no value ever
/// spliced into SQL text.
pub struct BulkInsert<'v> {
    dialect: Dialect,
    head: String,
    columns: usize,
    rows_per_statement: usize,
    /// The statement for a full batch of rows, made once.
    full: Option<String>,
    values: Vec<BulkValue<'v>>,
}

impl<'v> BulkInsert<'v> {
    /// Statements carry up to 32,000 values on SQLite (its limit is 32,766) and 65,000 on
    /// PostgreSQL (65,535). On MySQL they also stay under one TCP segment (64 KiB on loopback):
    /// sqlx leaves Nagle's algorithm on, so the tail of a longer message waits for the server's
    /// delayed ACK, 40 ms a statement, which made loading RawData take half again as long.
    /// (PostgreSQL is the other way round: statements that small made loading ten times
    /// slower.)
    fn new(dialect: Dialect, table: &str, columns: &[&str], rows: &'v dyn Rows) -> Self {
        const SEGMENT_BYTES: usize = 56 * 1024;
        let names: Vec<String> = columns.iter().map(|c| dialect.quote_ident(c)).collect();
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            dialect.quote_ident(table),
            names.join(", ")
        );
        let width = columns.len().max(1);
        let rows_per_statement = match dialect {
            Dialect::Sqlite => 32_000 / width,
            Dialect::Postgres => 65_000 / width,
            Dialect::MySql => (65_000 / width).min(SEGMENT_BYTES / widest_row(rows).max(1)),
        }
        .max(1);
        Self {
            dialect,
            head,
            columns: columns.len(),
            rows_per_statement,
            full: None,
            values: Vec::with_capacity(rows_per_statement * columns.len()),
        }
    }

    /// The INSERT text for `rows` rows.
    fn statement(&self, rows: usize) -> String {
        let mut sql = String::with_capacity(self.head.len() + rows * self.columns * 6);
        sql.push_str(&self.head);
        let mut n = 0;
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ",(" });
            for c in 0..self.columns {
                if c > 0 {
                    sql.push(',');
                }
                n += 1;
                match self.dialect {
                    Dialect::Postgres => {
                        sql.push('$');
                        sql.push_str(&n.to_string());
                    }
                    Dialect::Sqlite | Dialect::MySql => sql.push('?'),
                }
            }
            sql.push(')');
        }
        sql
    }

    /// Sends a full batch of rows when there is one; call after each row.
    async fn flush_if_full(&mut self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        if self.values.len() >= self.rows_per_statement * self.columns {
            let text = match &self.full {
                Some(text) => text.clone(),
                None => {
                    let text = self.statement(self.rows_per_statement);
                    self.full = Some(text.clone());
                    text
                }
            };
            self.send(conn, text).await?;
        }
        Ok(())
    }

    async fn send(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        text: String,
    ) -> Result<(), sqlx::Error> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
        for value in self.values.drain(..) {
            query = match value {
                BulkValue::Int(v) => query.bind(v),
                BulkValue::Real(v) => query.bind(v),
                BulkValue::Text(v) => query.bind(v),
            };
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }

    /// Sends what is left.
    async fn finish(mut self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        self.flush_if_full(conn).await?;
        let rows = self.values.len() / self.columns.max(1);
        if rows > 0 {
            let text = self.statement(rows);
            self.send(conn, text).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(n: i64) -> Records {
        Records(
            (0..n)
                .map(|i| {
                    vec![
                        Owned::Int(Some((i * 7) % n)),
                        Owned::Text((i % 3 != 0).then(|| format!("v{i}"))),
                        Owned::Real(i as f64 / 2.0),
                    ]
                })
                .collect(),
        )
    }

    async fn table(db: &Db) {
        db.write(vec![Step::Sql(
            "CREATE TABLE t (k BIGINT PRIMARY KEY, s VARCHAR(20), x DOUBLE PRECISION NOT NULL)"
                .into(),
        )])
        .await
        .unwrap();
    }

    async fn rows(db: &Db) -> Vec<(i64, Option<String>, f64)> {
        sqlx::query_as("SELECT k, s, x FROM t ORDER BY k")
            .fetch_all(db.pool())
            .await
            .unwrap()
    }

    /// A SQLite file's writer connection writes rows as bound, in the order given, and a
    /// failed expectation writes none of a write's steps. (The sqlx path is the one the ETL
    /// suite runs on MySQL and PostgreSQL.)
    #[tokio::test]
    async fn sqlite_writes_are_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = super::super::sqlite_url(&dir.path().join("t.db"));
        let url = file.as_str();
        let db = Db::connect(url).await.unwrap();
        table(&db).await;
        let refused = db
            .write(vec![
                Step::insert("t", &["k", "s", "x"], numbers(10)),
                Step::Expect {
                    sql: "SELECT s FROM t WHERE k = 1".into(),
                    expected: Some("nothing like it".into()),
                    conflict: "changed meanwhile".into(),
                },
            ])
            .await;
        assert!(
            matches!(&refused, Err(WriteError::Conflict(m)) if m == "changed meanwhile"),
            "{url}: {refused:?}"
        );
        assert!(
            rows(&db).await.is_empty(),
            "{url}: a refused write left rows"
        );

        let sorted = Ordered::by_key(numbers(1000), |i| {
            std::cmp::Reverse((i64::try_from(i).unwrap() * 7) % 1000)
        });
        db.write(vec![
            Step::insert("t", &["k", "s", "x"], sorted),
            Step::Expect {
                sql: "SELECT s FROM t WHERE k = 7".into(),
                expected: Some("v1".into()),
                conflict: "unexpected".into(),
            },
        ])
        .await
        .unwrap();
        let read = rows(&db).await;
        assert_eq!(read.len(), 1000, "{url}");
        assert_eq!(read[7], (7, Some("v1".into()), 0.5), "{url}");
        assert_eq!(read[0], (0, None, 0.0), "{url}");
    }
}
