//! MLflow's search language: `metrics.val_roc_auc > 0.6 and params.C = '1'`, and order-by
//! clauses such as `metrics.val_roc_auc DESC`, for runs, logged models, experiments and the
//! registry. `parse` turns text into the clauses below; `sql` turns clauses into SQL whose
//! every value is a bound parameter.

mod parse;
mod sql;

use super::entities::TrackingError;

pub use parse::{parse_filter, parse_order_by, parse_order_list};
pub use sql::{IdsQuery, PROMPT_TAG, RegistryQuery, SqlParts, ids_query, registry_query};

#[derive(Clone, Debug, PartialEq)]
pub enum Entity {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(Attribute),
}

/// What a search looks through: attributes differ, the language is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Runs,
    LoggedModels,
    Experiments,
    RegisteredModels,
    ModelVersions,
}

impl Target {
    fn is_registry(self) -> bool {
        matches!(self, Target::RegisteredModels | Target::ModelVersions)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute {
    RunId,
    Name,
    Status,
    UserId,
    StartTime,
    EndTime,
    ArtifactUri,
    ExperimentId,
    ModelId,
    ModelType,
    SourceRunId,
    CreationTime,
    LastUpdatedTime,
    SourcePath,
    VersionNumber,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Op {
    fn sql(&self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Like | Op::ILike => "LIKE",
            Op::In => "IN",
            Op::NotIn => "NOT IN",
            Op::IsNull => "IS NULL",
            Op::IsNotNull => "IS NOT NULL",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
    List(Vec<String>),
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    pub entity: Entity,
    pub op: Op,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderBy {
    pub entity: Entity,
    pub ascending: bool,
}

/// A value bound to a `?` in generated SQL.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
}

/// Binds the same value on SQLite's read path (`Db::read_sqlite`) as `bind_all` does on sqlx's.
impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Bind::Int(v) => ValueRef::Integer(*v),
            Bind::Float(v) => ValueRef::Real(*v),
            Bind::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

fn invalid(reason: impl Into<String>) -> TrackingError {
    TrackingError::invalid("filter", reason)
}
