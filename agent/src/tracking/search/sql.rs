//! Compiling parsed clauses into SQL: the page of ids a search finds, every value bound.

use super::{Attribute, Bind, Clause, Entity, Op, OrderBy, Target, Value, invalid};
use crate::db::Dialect;
use crate::tracking::entities::{Result, TrackingError};

impl Attribute {
    /// The column in the search's main table, aliased `r`.
    fn column(self, target: Target) -> &'static str {
        match (target, self) {
            (Target::Runs, Attribute::RunId) => "r.run_id",
            (Target::Runs, Attribute::Name) => "r.run_name",
            (Target::Runs, Attribute::StartTime) => "r.start_time",
            (Target::Runs, Attribute::EndTime) => "r.end_time",
            (Target::Runs, Attribute::UserId) => "r.user_id",
            (Target::Runs, Attribute::ArtifactUri) => "r.artifact_uri",
            (Target::LoggedModels, Attribute::Name) => "r.name",
            (Target::LoggedModels, Attribute::ModelId) => "r.model_id",
            (Target::LoggedModels, Attribute::ModelType) => "r.model_type",
            (Target::LoggedModels, Attribute::SourceRunId) => "r.source_run_id",
            (Target::LoggedModels, Attribute::CreationTime) => "r.creation_time",
            (Target::LoggedModels, Attribute::LastUpdatedTime) => "r.last_updated_time",
            (Target::Experiments, Attribute::Name) => "r.name",
            (Target::Experiments, Attribute::CreationTime) => "r.creation_time",
            (Target::Experiments, Attribute::LastUpdatedTime) => "r.last_update_time",
            (Target::RegisteredModels | Target::ModelVersions, Attribute::Name) => "r.name",
            (Target::ModelVersions, Attribute::RunId) => "r.run_id",
            (Target::ModelVersions, Attribute::SourcePath) => "r.source",
            (Target::ModelVersions, Attribute::VersionNumber) => "r.version",
            (Target::RegisteredModels | Target::ModelVersions, Attribute::CreationTime) => {
                "r.creation_time"
            }
            (Target::RegisteredModels | Target::ModelVersions, Attribute::LastUpdatedTime) => {
                "r.last_updated_time"
            }
            (_, Attribute::Status) => "r.status",
            (_, Attribute::ExperimentId) => "r.experiment_id",
            // `Attribute::parse` only hands out attributes the target has.
            (_, _) => "NULL",
        }
    }
}

/// SQL text with `?` placeholders and the values to bind to them, in order.
#[derive(Debug, Default)]
pub struct SqlParts {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl SqlParts {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn bind(&mut self, value: Bind) {
        self.text.push('?');
        self.binds.push(value);
    }

    fn list(&mut self, items: impl IntoIterator<Item = Bind>) {
        self.push("(");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(item);
        }
        self.push(")");
    }
}

/// The tables a target's search reads.
struct Tables {
    main: &'static str,
    id: &'static str,
    params: Option<&'static str>,
    tags: &'static str,
    metrics: Option<&'static str>,
    newest_first: &'static str,
}

impl Target {
    fn tables(self) -> Tables {
        match self {
            Target::Runs => Tables {
                main: "runs",
                id: "run_id",
                params: Some("params"),
                tags: "tags",
                metrics: Some("latest_metrics"),
                newest_first: "r.start_time DESC, r.run_id ASC",
            },
            Target::LoggedModels => Tables {
                main: "logged_models",
                id: "model_id",
                params: Some("logged_model_params"),
                tags: "logged_model_tags",
                metrics: None,
                newest_first: "r.creation_time DESC, r.model_id ASC",
            },
            Target::Experiments => Tables {
                main: "experiments",
                id: "experiment_id",
                params: None,
                tags: "experiment_tags",
                metrics: None,
                newest_first: "r.creation_time DESC, r.experiment_id DESC",
            },
            // MLflow's natural orders: registered models by name, versions newest first.
            Target::RegisteredModels => Tables {
                main: "registered_models",
                id: "name",
                params: None,
                tags: "registered_model_tags",
                metrics: None,
                newest_first: "r.name ASC",
            },
            Target::ModelVersions => Tables {
                main: "model_versions",
                id: "name",
                params: None,
                tags: "model_version_tags",
                metrics: None,
                newest_first: "r.name ASC, r.version DESC",
            },
        }
    }
}

/// What a search asks for, already parsed.
pub struct IdsQuery<'a> {
    pub target: Target,
    pub experiment_ids: &'a [i64],
    pub stages: &'a [&'a str],
    pub clauses: &'a [Clause],
    pub order: &'a [OrderBy],
    pub limit: i64,
    pub offset: i64,
}

/// The query that finds one page of ids of the target's rows.
pub fn ids_query(dialect: Dialect, query: &IdsQuery<'_>) -> Result<SqlParts> {
    let target = query.target;
    if target.is_registry() {
        return Err(invalid(format!(
            "{target:?} is searched by registry_query: it has no experiments"
        )));
    }
    let t = target.tables();
    let joined = |entity: &Entity| -> Result<Option<(&'static str, &'static str, String)>> {
        Ok(match entity {
            Entity::Metric(k) => {
                let table = t.metrics.ok_or_else(|| {
                    invalid(format!("metrics.{k}: this search does not look at metrics"))
                })?;
                Some((table, "metric_key", k.clone()))
            }
            Entity::Param(k) => {
                let table = t.params.ok_or_else(|| {
                    invalid(format!("params.{k}: this search does not look at params"))
                })?;
                Some((table, "param_key", k.clone()))
            }
            Entity::Tag(k) => Some((t.tags, "tag_key", k.clone())),
            Entity::Attribute(_) => None,
        })
    };
    let mut q = SqlParts::default();
    q.push(&format!(
        "SELECT r.{id} FROM {main} r",
        id = t.id,
        main = t.main
    ));
    for (i, o) in query.order.iter().enumerate() {
        if let Some((table, key_column, key)) = joined(&o.entity)? {
            q.push(&format!(
                " LEFT JOIN {table} o{i} ON o{i}.{id} = r.{id} AND o{i}.{key_column} = ",
                id = t.id
            ));
            q.bind(Bind::Text(key));
        }
    }
    // Experiments are what the other searches are scoped to; they are searched whole.
    if target == Target::Experiments {
        q.push(" WHERE 1 = 1");
    } else {
        q.push(" WHERE r.experiment_id IN ");
        q.list(query.experiment_ids.iter().map(|id| Bind::Int(*id)));
    }
    q.push(" AND r.lifecycle_stage IN ");
    q.list(query.stages.iter().map(|s| Bind::Text((*s).to_owned())));
    for clause in query.clauses {
        q.push(" AND ");
        match (&clause.entity, joined(&clause.entity)?) {
            (Entity::Attribute(a), _) => push_comparison(&mut q, dialect, a.column(target), clause),
            (_, Some((table, key_column, key))) => {
                let exists = if clause.op == Op::IsNull {
                    "NOT EXISTS"
                } else {
                    "EXISTS"
                };
                q.push(&format!(
                    "{exists} (SELECT 1 FROM {table} x WHERE x.{id} = r.{id} AND x.{key_column} = ",
                    id = t.id
                ));
                q.bind(Bind::Text(key));
                if !matches!(clause.op, Op::IsNull | Op::IsNotNull) {
                    q.push(" AND ");
                    push_comparison(&mut q, dialect, "x.value", clause);
                }
                q.push(")");
            }
            (_, None) => unreachable!("only attributes have no joined table"),
        }
    }
    q.push(" ORDER BY ");
    for (i, o) in query.order.iter().enumerate() {
        let column = match &o.entity {
            Entity::Attribute(a) => a.column(target).to_owned(),
            _ => format!("o{i}.value"),
        };
        // Rows without the key sort last whichever way the order goes, as in MLflow.
        let dir = if o.ascending { "ASC" } else { "DESC" };
        q.push(&format!(
            "CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column} {dir}, "
        ));
    }
    q.push(t.newest_first);
    q.push(" LIMIT ");
    q.bind(Bind::Int(query.limit));
    q.push(" OFFSET ");
    q.bind(Bind::Int(query.offset));
    Ok(q)
}

/// The tag that marks a registered model (and its versions) as one of MLflow's prompts.
pub const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

/// A registry search, already parsed: registered models or model versions.
pub struct RegistryQuery<'a> {
    pub target: Target,
    pub clauses: &'a [Clause],
    pub order: &'a [OrderBy],
    pub limit: i64,
    pub offset: i64,
}

/// Whether a filter asks for prompts, as MLflow decides it: by its first clause on the prompt
/// tag, `= 'true'` or `!= 'false'`. Any other filter leaves prompts out.
fn asks_for_prompts(clauses: &[Clause]) -> bool {
    clauses
        .iter()
        .find(|c| matches!(&c.entity, Entity::Tag(k) if k == PROMPT_TAG))
        .is_some_and(|c| match (&c.op, &c.value) {
            (Op::Eq, Value::Text(v)) => v.eq_ignore_ascii_case("true"),
            (Op::Ne, Value::Text(v)) => v.eq_ignore_ascii_case("false"),
            _ => false,
        })
}

/// The query that finds one page of registered-model names, or of (name, version) pairs.
///
/// A tag clause needs the tag to exist, as in MLflow. The prompt tag is the exception: prompts
/// are models too, and unless the filter asks for them they are left out whole, since plain
/// models carry no prompt tag for `!= 'true'` to compare (3.x clients add that clause to
/// every registered-model search).
pub fn registry_query(dialect: Dialect, query: &RegistryQuery<'_>) -> Result<SqlParts> {
    let target = query.target;
    let (select, owner) = match target {
        Target::RegisteredModels => ("r.name", "x.name = r.name"),
        Target::ModelVersions => (
            "r.name, r.version",
            "x.name = r.name AND x.version = r.version",
        ),
        Target::Runs | Target::LoggedModels | Target::Experiments => {
            return Err(invalid(format!("{target:?} is not a registry search")));
        }
    };
    let Tables {
        main,
        tags,
        newest_first: natural,
        ..
    } = target.tables();
    let prompts = asks_for_prompts(query.clauses);
    let mut q = SqlParts::default();
    q.push(&format!("SELECT {select} FROM {main} r WHERE 1 = 1"));
    for clause in query.clauses {
        match &clause.entity {
            Entity::Attribute(a) => {
                q.push(" AND ");
                push_comparison(&mut q, dialect, a.column(target), clause);
            }
            Entity::Tag(key) if key == PROMPT_TAG && !prompts => {}
            Entity::Tag(key) => {
                q.push(&format!(
                    " AND EXISTS (SELECT 1 FROM {tags} x WHERE {owner} AND x.tag_key = "
                ));
                q.bind(Bind::Text(key.clone()));
                q.push(" AND ");
                push_comparison(&mut q, dialect, "x.value", clause);
                q.push(")");
            }
            other => {
                return Err(invalid(format!(
                    "{other:?}: registry searches filter on attributes and tags"
                )));
            }
        }
    }
    if !prompts {
        q.push(&format!(
            " AND NOT EXISTS (SELECT 1 FROM {tags} p WHERE p.name = r.name AND p.tag_key = "
        ));
        q.bind(Bind::Text(PROMPT_TAG.to_owned()));
        q.push(" AND p.value = ");
        q.bind(Bind::Text("true".to_owned()));
        q.push(")");
    }
    q.push(" ORDER BY ");
    for o in query.order {
        let Entity::Attribute(a) = &o.entity else {
            return Err(TrackingError::invalid(
                "order_by",
                format!("{:?}: registry searches order by attributes", o.entity),
            ));
        };
        let dir = if o.ascending { "ASC" } else { "DESC" };
        q.push(&format!("{} {dir}, ", a.column(target)));
    }
    q.push(natural);
    q.push(" LIMIT ");
    q.bind(Bind::Int(query.limit));
    q.push(" OFFSET ");
    q.bind(Bind::Int(query.offset));
    Ok(q)
}

fn value_bind(value: &Value) -> Bind {
    match value {
        Value::Number(n) => Bind::Float(*n),
        Value::Text(s) => Bind::Text(s.clone()),
        Value::List(_) | Value::None => Bind::Text(String::new()),
    }
}

fn push_comparison(q: &mut SqlParts, dialect: Dialect, column: &str, clause: &Clause) {
    match (&clause.op, &clause.value) {
        (Op::IsNull | Op::IsNotNull, _) => q.push(&format!("{column} {}", clause.op.sql())),
        (Op::In | Op::NotIn, Value::List(items)) => {
            q.push(&format!("{column} {} ", clause.op.sql()));
            q.list(items.iter().map(|s| Bind::Text(s.clone())));
        }
        (Op::ILike, value) => {
            q.push(&format!("LOWER({column}) LIKE LOWER("));
            q.bind(value_bind(value));
            q.push(")");
        }
        (Op::Like, value) => {
            // LIKE is case-sensitive in MLflow. SQLite's is made so per connection (see db.rs);
            // MySQL's follows the binary collation of our tables.
            let _ = dialect;
            q.push(&format!("{column} LIKE "));
            q.bind(value_bind(value));
        }
        (op, value) => {
            q.push(&format!("{column} {} ", op.sql()));
            q.bind(value_bind(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_filter, parse_order_by};
    use super::*;

    #[test]
    fn every_value_is_bound_never_spliced() {
        let clauses = parse_filter("params.C = '); DROP TABLE runs; --'", Target::Runs).unwrap();
        let query = |clauses, order| IdsQuery {
            target: Target::Runs,
            experiment_ids: &[1, 2],
            stages: &["active"],
            clauses,
            order,
            limit: 100,
            offset: 0,
        };
        let q = ids_query(Dialect::Sqlite, &query(&clauses, &[])).unwrap();
        assert!(!q.text.contains("DROP"), "{}", q.text);
        assert!(
            q.binds
                .contains(&Bind::Text("); DROP TABLE runs; --".into()))
        );
        let clauses = parse_filter("params.C = 'a' and metrics.m >= 2", Target::Runs).unwrap();
        let order = [parse_order_by("metrics.val_roc_auc DESC", Target::Runs).unwrap()];
        let q = ids_query(Dialect::Postgres, &query(&clauses, &order)).unwrap();
        assert_eq!(q.text.matches('?').count(), q.binds.len());
        assert_eq!(
            q.binds[0],
            Bind::Text("val_roc_auc".into()),
            "join binds come first"
        );
    }

    #[test]
    fn registry_filters_follow_mlflows_registry_grammar() {
        let c = parse_filter(
            "name='M' and run_id='R' AND tag.`mlflow.prompt.is_prompt` != 'true' \
             and version_number >= 2 and source_path LIKE 'runs:/%'",
            Target::ModelVersions,
        )
        .unwrap();
        assert_eq!(c[1].entity, Entity::Attribute(Attribute::RunId));
        assert_eq!(c[2].entity, Entity::Tag(PROMPT_TAG.into()));
        assert_eq!(c[3].entity, Entity::Attribute(Attribute::VersionNumber));
        assert!(parse_filter("run_id = 'R'", Target::RegisteredModels).is_err());
        assert!(parse_filter("experiment_id = 1", Target::ModelVersions).is_err());
        assert!(!asks_for_prompts(&c));
        let q = registry_query(
            Dialect::Sqlite,
            &RegistryQuery {
                target: Target::ModelVersions,
                clauses: &c,
                order: &[parse_order_by("version_number ASC", Target::ModelVersions).unwrap()],
                limit: 10,
                offset: 0,
            },
        )
        .unwrap();
        assert_eq!(q.text.matches('?').count(), q.binds.len());
        assert!(!q.text.contains("'"), "values are bound: {}", q.text);
        assert!(
            q.text.contains("NOT EXISTS"),
            "prompts are left out: {}",
            q.text
        );
        assert!(
            q.text.contains("ORDER BY r.version ASC, r.name ASC"),
            "{}",
            q.text
        );
        let asking = parse_filter(
            "tags.`mlflow.prompt.is_prompt` = 'TRUE'",
            Target::ModelVersions,
        )
        .unwrap();
        assert!(asks_for_prompts(&asking));
    }
}
