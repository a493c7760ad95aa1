//! Decoding result rows into the tracking entities, the same code for sqlx's rows and for
//! rusqlite's (SQLite's fast read path).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::tracking::entities::*;

/// The columns of a result row by name, whichever driver read it.
pub(super) trait Cells {
    fn text(&self, name: &str) -> Result<String>;
    fn int(&self, name: &str) -> Result<i64>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>>;
    fn real(&self, name: &str) -> Result<f64>;
}

/// `Cells` for a driver's row type, through its by-name getter.
macro_rules! cells_by_name {
    ($row:ty, $get:ident) => {
        impl Cells for $row {
            fn text(&self, name: &str) -> Result<String> {
                Ok(self.$get(name)?)
            }
            fn int(&self, name: &str) -> Result<i64> {
                Ok(self.$get(name)?)
            }
            fn opt_int(&self, name: &str) -> Result<Option<i64>> {
                Ok(self.$get(name)?)
            }
            fn real(&self, name: &str) -> Result<f64> {
                Ok(self.$get(name)?)
            }
        }
    };
}
cells_by_name!(AnyRow, try_get);
cells_by_name!(rusqlite::Row<'_>, get);

/// A run's key-value row (a param or a tag, keyed by `key_column`) and the run it belongs to.
fn key_value_from_row<T>(
    row: &impl Cells,
    key_column: &str,
    make: fn(String, String) -> T,
) -> Result<(String, T)> {
    Ok((
        row.text("run_id")?,
        make(row.text(key_column)?, row.text("value")?),
    ))
}

pub(super) fn param_from_row(row: &impl Cells) -> Result<(String, Param)> {
    key_value_from_row(row, "param_key", |key, value| Param { key, value })
}

pub(super) fn tag_from_row(row: &impl Cells) -> Result<(String, Tag)> {
    key_value_from_row(row, "tag_key", |key, value| Tag { key, value })
}

pub(super) fn owned_metric_from_row(row: &impl Cells) -> Result<(String, Metric)> {
    Ok((row.text("run_id")?, metric_from_row(row)?))
}

pub(super) fn run_info_from_row(row: &impl Cells) -> Result<RunInfo> {
    Ok(RunInfo {
        run_id: row.text("run_id")?,
        run_name: row.text("run_name")?,
        experiment_id: row.int("experiment_id")?,
        user_id: row.text("user_id")?,
        status: row.text("status")?.parse()?,
        start_time: row.int("start_time")?,
        end_time: row.opt_int("end_time")?,
        artifact_uri: row.text("artifact_uri")?,
        lifecycle_stage: row.text("lifecycle_stage")?.parse()?,
    })
}

pub(super) fn metric_from_row(row: &impl Cells) -> Result<Metric> {
    Ok(Metric {
        key: row.text("metric_key")?,
        value: loaded_value(row.real("value")?, row.int("is_nan")?),
        timestamp: row.int("ts")?,
        step: row.int("step")?,
    })
}

fn loaded_value(value: f64, is_nan: i64) -> f64 {
    if is_nan != 0 { f64::NAN } else { value }
}
