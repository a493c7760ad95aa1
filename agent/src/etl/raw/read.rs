//! Reading RawData back: a table as a frame, and a table's fingerprint and class balance,
//! both built by the database's own ordered string aggregate.

use polars::prelude::{DataFrame, IntoColumn as _, StringChunkedBuilder};
use readmit_ml::schema;
use rusqlite::types::ValueRef;
use sha2::{Digest as _, Sha256};

use super::{RawStore, SPLIT_POSITION, SplitFacts, data_columns};
use crate::db::{Db, Dialect};
use crate::etl::io::{blocking, hex};
use crate::etl::runs::{EtlError, Result};

impl RawStore {
    /// A RawData table's fingerprint and class balance, read from the database itself in one
    /// statement (so one snapshot, even while a batch lands): the SQL joins the ids, so the
    /// rows never cross the connection one by one.
    pub async fn split_facts(&self, table: &'static str) -> Result<SplitFacts> {
        let db = &self.db;
        let dialect = db.dialect();
        let ids = in_split_order(
            dialect,
            &int_as_text(dialect, &dialect.quote_ident(schema::ENCOUNTER_ID)),
            ",",
        );
        let mut conn = concat_connection(db).await?;
        let (ids, rows, readmitted): (Option<String>, i64, i64) =
            sqlx::query_as(db.dynamic(&format!(
                "SELECT {ids}, COUNT(*), COUNT(CASE WHEN {} = ? THEN 1 END) FROM {}",
                dialect.quote_ident(schema::TARGET),
                dialect.quote_ident(table),
            )))
            .bind(schema::POSITIVE_LEVEL)
            .fetch_one(&mut *conn)
            .await?;
        let fingerprint =
            blocking(move || Ok(hex(&Sha256::digest(ids.unwrap_or_default().as_bytes())))).await?;
        Ok(SplitFacts {
            rows,
            fingerprint,
            readmitted,
        })
    }

    /// A RawData table as a frame in `ml::data::read_csv`'s layout, in split order.
    ///
    /// A SQLite file is read on a connection of its own, each value straight into its column.
    /// MySQL and PostgreSQL write the rows as CSV text, a chunk of positions per query, and the
    /// validated CSV reader parses it: row-by-row fetching through sqlx costs a hand-off per
    /// row, which is most of the time for a whole table.
    pub async fn read_table(&self, table: &'static str) -> Result<DataFrame> {
        const CHUNK: i64 = 20_000;
        let db = &self.db;
        let source = format!("{}#{table}", db.url());
        if let Some(frame) = db
            .read_sqlite(move |conn| read_sqlite_table(conn, table, &source))
            .await
        {
            return frame;
        }
        let dialect = db.dialect();
        let names: Vec<&str> = data_columns().map(|(name, _, _)| name).collect();
        let mut text = names.join(",").into_bytes();
        let mut conn = concat_connection(db).await?;
        let end: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(dialect.requote(&format!(
            "SELECT MAX(\"{SPLIT_POSITION}\") FROM \"{table}\""
        ))))
        .fetch_one(&mut *conn)
        .await?;
        let query = chunk_query(dialect, table);
        let mut start = 0;
        while let Some(end) = end.filter(|end| start <= *end) {
            let chunk: Option<String> = sqlx::query_scalar(db.dynamic(&query))
                .bind(start)
                .bind(start + CHUNK)
                .fetch_one(&mut *conn)
                .await?;
            if let Some(chunk) = chunk {
                text.push(b'\n');
                text.extend_from_slice(chunk.as_bytes());
            }
            start = (start + CHUNK).min(end + 1);
        }
        drop(conn);
        text.push(b'\n');
        let name = std::path::PathBuf::from(format!("{}#{table}", db.url()));
        blocking(move || Ok(readmit_ml::data::read_stored_csv(text, &name)?)).await
    }
}

/// The query writing one chunk of a table's rows (positions `?` to `?`, exclusive) as CSV
/// lines: text quoted with `"` doubled, missing values as `?`, lines joined by newlines.
fn chunk_query(dialect: Dialect, table: &str) -> String {
    let fields: Vec<String> = data_columns()
        .map(|(name, integer, _)| {
            let column = dialect.quote_ident(name);
            match (integer, dialect) {
                (true, _) => int_as_text(dialect, &column),
                (false, Dialect::MySql) => {
                    format!("COALESCE(CONCAT('\"', REPLACE({column}, '\"', '\"\"'), '\"'), '?')")
                }
                (false, Dialect::Sqlite | Dialect::Postgres) => {
                    format!("COALESCE('\"' || REPLACE({column}, '\"', '\"\"') || '\"', '?')")
                }
            }
        })
        .collect();
    let line = match dialect {
        Dialect::MySql => format!("CONCAT_WS(',', {})", fields.join(", ")),
        Dialect::Sqlite | Dialect::Postgres => fields.join(" || ',' || "),
    };
    let position = dialect.quote_ident(SPLIT_POSITION);
    // The separator is a newline inside the string literal, which every dialect reads as is.
    format!(
        "SELECT {} FROM {} WHERE {position} >= ? AND {position} < ?",
        in_split_order(dialect, &line, "\n"),
        dialect.quote_ident(table)
    )
}

/// An integer column as decimal text, which string aggregates need.
fn int_as_text(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::MySql => format!("CAST({column} AS CHAR)"),
        Dialect::Sqlite | Dialect::Postgres => format!("CAST({column} AS TEXT)"),
    }
}

/// An aggregate joining `expr` over a table's rows in split order with `separator` (SQL text
/// without quotes in it): NULL when there are no rows.
fn in_split_order(dialect: Dialect, expr: &str, separator: &str) -> String {
    let position = dialect.quote_ident(SPLIT_POSITION);
    match dialect {
        Dialect::MySql => {
            format!("GROUP_CONCAT({expr} ORDER BY {position} SEPARATOR '{separator}')")
        }
        Dialect::Sqlite => format!("group_concat({expr}, '{separator}' ORDER BY {position})"),
        Dialect::Postgres => format!("string_agg({expr}, '{separator}' ORDER BY {position})"),
    }
}

/// A connection whose aggregates may join whole tables: MySQL's GROUP_CONCAT stops at 1 KiB
/// by default, and a table's ids or a chunk of its rows are megabytes.
async fn concat_connection(db: &Db) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
    let mut conn = db.pool().acquire().await?;
    if db.dialect() == Dialect::MySql {
        sqlx::raw_sql("SET SESSION group_concat_max_len = 1073741824")
            .execute(&mut *conn)
            .await?;
    }
    Ok(conn)
}

/// A RawData table read whole from a SQLite file, typed as the schema says: what
/// [`RawStore::read_table`] returns, without the CSV round trip.
fn read_sqlite_table(conn: &rusqlite::Connection, table: &str, source: &str) -> Result<DataFrame> {
    let names: Vec<(&str, bool, bool)> = data_columns().collect();
    let quoted: Vec<String> = names
        .iter()
        .map(|(name, _, _)| Dialect::Sqlite.quote_ident(name))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        quoted.join(", "),
        Dialect::Sqlite.quote_ident(table),
        Dialect::Sqlite.quote_ident(SPLIT_POSITION)
    );
    enum Builder {
        Int(Vec<i64>),
        Text(StringChunkedBuilder),
    }
    let rows: i64 = conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM {}",
            Dialect::Sqlite.quote_ident(table)
        ),
        [],
        |r| r.get(0),
    )?;
    let capacity = usize::try_from(rows).unwrap_or(0);
    let mut builders: Vec<Builder> = names
        .iter()
        .map(|(name, integer, _)| {
            if *integer {
                Builder::Int(Vec::with_capacity(capacity))
            } else {
                Builder::Text(StringChunkedBuilder::new((*name).into(), capacity))
            }
        })
        .collect();
    let mut statement = conn.prepare(&sql)?;
    let mut cursor = statement.raw_query();
    let mut position = 0usize;
    while let Some(row) = cursor.next()? {
        for (i, builder) in builders.iter_mut().enumerate() {
            let (name, _, nullable) = names[i];
            let bad = |what: &str| {
                EtlError::Corrupt(format!("{source}: row {position} column {name}: {what}"))
            };
            let value = row.get_ref(i)?;
            match (builder, value) {
                (Builder::Int(v), ValueRef::Integer(n)) => v.push(n),
                (Builder::Text(b), ValueRef::Text(t)) => b.append_value(
                    std::str::from_utf8(t).map_err(|_| bad("text that is not UTF-8"))?,
                ),
                (Builder::Text(b), ValueRef::Null) if nullable => b.append_null(),
                (_, ValueRef::Null) => return Err(bad("NULL where a value is required")),
                (Builder::Int(_), _) => return Err(bad("not an integer")),
                (Builder::Text(_), _) => return Err(bad("not text")),
            }
        }
        position += 1;
    }
    let columns: Vec<polars::prelude::Column> = builders
        .into_iter()
        .zip(&names)
        .map(|(builder, (name, _, _))| match builder {
            Builder::Int(v) => polars::prelude::Column::new((*name).into(), v),
            Builder::Text(b) => b.finish().into_column(),
        })
        .collect();
    DataFrame::new(position, columns).map_err(|e| EtlError::Corrupt(format!("{source}: {e}")))
}
