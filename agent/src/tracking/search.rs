//! MLflow's run search language: `metrics.val_roc_auc > 0.6 and params.C = '1'`, and order-by
//! clauses such as `metrics.val_roc_auc DESC`, parsed into clauses and turned into SQL whose
//! every value is a bound parameter.

use super::entities::{Result, TrackingError};
use crate::db::Dialect;

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

impl Attribute {
    fn parse(name: &str, target: Target) -> Result<Self> {
        let attribute = match (target, name) {
            (Target::Runs, "run_id" | "run_uuid") => Attribute::RunId,
            (Target::Runs, "run_name" | "name") => Attribute::Name,
            (Target::Runs, "status") => Attribute::Status,
            (Target::Runs, "user_id") => Attribute::UserId,
            (Target::Runs, "start_time" | "created") => Attribute::StartTime,
            (Target::Runs, "end_time") => Attribute::EndTime,
            (Target::Runs, "artifact_uri") => Attribute::ArtifactUri,
            (Target::Runs | Target::LoggedModels | Target::Experiments, "experiment_id") => {
                Attribute::ExperimentId
            }
            (Target::LoggedModels, "model_id") => Attribute::ModelId,
            (Target::LoggedModels, "name") => Attribute::Name,
            (Target::LoggedModels, "model_type") => Attribute::ModelType,
            (Target::LoggedModels, "status") => Attribute::Status,
            (Target::LoggedModels, "source_run_id") => Attribute::SourceRunId,
            (Target::LoggedModels, "creation_time" | "creation_timestamp") => {
                Attribute::CreationTime
            }
            (Target::LoggedModels, "last_updated_timestamp") => Attribute::LastUpdatedTime,
            (Target::Experiments, "name") => Attribute::Name,
            (Target::Experiments, "creation_time") => Attribute::CreationTime,
            (Target::Experiments, "last_update_time") => Attribute::LastUpdatedTime,
            (Target::RegisteredModels | Target::ModelVersions, "name") => Attribute::Name,
            (Target::ModelVersions, "run_id") => Attribute::RunId,
            (Target::ModelVersions, "source_path") => Attribute::SourcePath,
            (Target::ModelVersions, "version_number") => Attribute::VersionNumber,
            (Target::RegisteredModels | Target::ModelVersions, "creation_timestamp") => {
                Attribute::CreationTime
            }
            (
                Target::RegisteredModels | Target::ModelVersions,
                "last_updated_timestamp" | "timestamp",
            ) => Attribute::LastUpdatedTime,
            _ => {
                let known = match target {
                    Target::Runs => {
                        "run_id, run_name, status, user_id, start_time, end_time, artifact_uri or \
                         experiment_id"
                    }
                    Target::LoggedModels => {
                        "model_id, name, model_type, status, source_run_id, creation_timestamp, \
                         last_updated_timestamp or experiment_id"
                    }
                    Target::Experiments => "name, creation_time, last_update_time or experiment_id",
                    Target::RegisteredModels => {
                        "name, creation_timestamp or last_updated_timestamp"
                    }
                    Target::ModelVersions => {
                        "name, run_id, source_path, version_number, creation_timestamp or \
                         last_updated_timestamp"
                    }
                };
                return Err(invalid(format!("unknown attribute {name:?}; use {known}")));
            }
        };
        Ok(attribute)
    }

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

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Attribute::StartTime
                | Attribute::EndTime
                | Attribute::ExperimentId
                | Attribute::CreationTime
                | Attribute::LastUpdatedTime
                | Attribute::VersionNumber
        )
    }
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

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A bare word: `metrics.val_roc_auc`, `and`, `LIKE`.
    Word(String),
    /// A key in backticks or double quotes, after `metrics.` and the like.
    Quoted(String),
    Str(String),
    Number(f64),
    Cmp(&'static str),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' | '"' | '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .ok_or_else(|| invalid(format!("unclosed {c} at character {}", i + 1)))?;
                let inner: String = chars[i + 1..i + 1 + end].iter().collect();
                tokens.push(if c == '\'' {
                    Token::Str(inner)
                } else {
                    Token::Quoted(inner)
                });
                i += end + 2;
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let (op, len) = match two.as_str() {
                    "!=" | "<>" => ("!=", 2),
                    ">=" => (">=", 2),
                    "<=" => ("<=", 2),
                    "==" => ("=", 2),
                    _ if c == '=' => ("=", 1),
                    _ if c == '<' => ("<", 1),
                    _ if c == '>' => (">", 1),
                    _ => return Err(invalid(format!("unexpected '!' at character {}", i + 1))),
                };
                tokens.push(Token::Cmp(op));
                i += len;
            }
            c if c.is_ascii_digit() || ((c == '-' || c == '.') && i + 1 < chars.len()) => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '+' | '-'))
                {
                    // An exponent's sign belongs to the number; any other sign ends it.
                    if matches!(chars[i], '+' | '-') && !matches!(chars[i - 1], 'e' | 'E') {
                        break;
                    }
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse()
                    .map_err(|_| invalid(format!("{text:?} is not a number")))?;
                tokens.push(Token::Number(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '-' | ':'))
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            _ => return Err(invalid(format!("unexpected {c:?} at character {}", i + 1))),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    target: Target,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn entity(&mut self) -> Result<Entity> {
        let Some(Token::Word(word)) = self.next() else {
            return Err(invalid(
                "expected an identifier such as metrics.val_roc_auc",
            ));
        };
        let (kind, key) = match word.split_once('.') {
            Some((kind, "")) => match self.next() {
                Some(Token::Quoted(key)) => (kind.to_owned(), key),
                _ => return Err(invalid(format!("expected a quoted key after {word:?}"))),
            },
            Some((kind, key)) => (kind.to_owned(), key.to_owned()),
            // A bare name is an attribute, as in MLflow.
            None => ("attributes".to_owned(), word.clone()),
        };
        Ok(match kind.to_ascii_lowercase().as_str() {
            "metric" | "metrics" => Entity::Metric(key),
            "param" | "params" | "parameter" | "parameters" => Entity::Param(key),
            "tag" | "tags" => Entity::Tag(key),
            "attribute" | "attributes" | "attr" | "run" => {
                Entity::Attribute(Attribute::parse(&key, self.target)?)
            }
            other => {
                return Err(invalid(format!(
                    "unknown entity {other:?} in {word:?}; use metrics., params., tags. or \
                     attributes."
                )));
            }
        })
    }

    fn clause(&mut self) -> Result<Clause> {
        let entity = self.entity()?;
        let op = match self.next() {
            Some(Token::Cmp(c)) => match c {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                _ => Op::Le,
            },
            Some(Token::Word(w)) => match w.to_ascii_uppercase().as_str() {
                "LIKE" => Op::Like,
                "ILIKE" => Op::ILike,
                "IN" => Op::In,
                "NOT" if self.peek_word("in") => {
                    self.at += 1;
                    Op::NotIn
                }
                "IS" if self.peek_word("null") => {
                    self.at += 1;
                    Op::IsNull
                }
                "IS" if self.peek_word("not") => {
                    self.at += 1;
                    if !self.peek_word("null") {
                        return Err(invalid("expected NULL after IS NOT"));
                    }
                    self.at += 1;
                    Op::IsNotNull
                }
                _ => return Err(invalid(format!("{w:?} is not a comparator"))),
            },
            other => return Err(invalid(format!("expected a comparator, found {other:?}"))),
        };
        let value = match op {
            Op::IsNull | Op::IsNotNull => Value::None,
            Op::In | Op::NotIn => self.list()?,
            _ => match self.next() {
                Some(Token::Number(n)) => Value::Number(n),
                Some(Token::Str(s) | Token::Quoted(s)) => Value::Text(s),
                other => return Err(invalid(format!("expected a value, found {other:?}"))),
            },
        };
        check_clause(&entity, &op, &value)?;
        if self.target.is_registry() {
            check_registry_clause(&entity, &op, &value)?;
        }
        Ok(Clause { entity, op, value })
    }

    fn list(&mut self) -> Result<Value> {
        if self.next() != Some(Token::Open) {
            return Err(invalid("IN needs a list in parentheses: IN ('a', 'b')"));
        }
        let mut items = Vec::new();
        loop {
            match self.next() {
                Some(Token::Str(s) | Token::Quoted(s)) => items.push(s),
                Some(Token::Number(n)) => items.push(n.to_string()),
                other => return Err(invalid(format!("expected a list item, found {other:?}"))),
            }
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => break,
                other => return Err(invalid(format!("expected , or ), found {other:?}"))),
            }
        }
        Ok(Value::List(items))
    }
}

fn check_clause(entity: &Entity, op: &Op, value: &Value) -> Result<()> {
    let numeric = match entity {
        Entity::Metric(_) => true,
        Entity::Attribute(a) => a.is_numeric(),
        Entity::Param(_) | Entity::Tag(_) => false,
    };
    let ok = match (numeric, op, value) {
        (_, Op::IsNull | Op::IsNotNull, _) => !matches!(entity, Entity::Metric(_)),
        (true, Op::Eq | Op::Ne | Op::Gt | Op::Ge | Op::Lt | Op::Le, Value::Number(_)) => true,
        (false, Op::Eq | Op::Ne | Op::Like | Op::ILike, Value::Text(_)) => true,
        (false, Op::Gt | Op::Ge | Op::Lt | Op::Le, Value::Text(_)) => {
            matches!(entity, Entity::Param(_) | Entity::Tag(_))
        }
        (_, Op::In | Op::NotIn, Value::List(_)) => {
            matches!(
                entity,
                Entity::Attribute(
                    Attribute::RunId
                        | Attribute::Status
                        | Attribute::Name
                        | Attribute::UserId
                        | Attribute::ModelId
                        | Attribute::SourceRunId
                )
            ) || matches!(entity, Entity::Param(_) | Entity::Tag(_))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{entity:?} cannot be compared with {} to {value:?}{}",
            op.sql(),
            if numeric {
                " (it takes numbers)"
            } else {
                " (it takes quoted strings)"
            }
        )))
    }
}

/// MLflow's registry searches take fewer forms than run search: attributes and tags only,
/// tags compared with =, !=, LIKE and ILIKE, no NULL checks, and whole version numbers.
fn check_registry_clause(entity: &Entity, op: &Op, value: &Value) -> Result<()> {
    match entity {
        Entity::Metric(_) | Entity::Param(_) => Err(invalid(format!(
            "{entity:?}: registry searches filter on attributes and tags"
        ))),
        Entity::Tag(key) if !matches!(op, Op::Eq | Op::Ne | Op::Like | Op::ILike) => Err(invalid(
            format!("tags.{key} takes =, !=, LIKE or ILIKE, not {}", op.sql()),
        )),
        Entity::Attribute(_) if matches!(op, Op::IsNull | Op::IsNotNull) => {
            Err(invalid(format!("{entity:?} is never NULL in the registry")))
        }
        Entity::Attribute(Attribute::VersionNumber) => match value {
            Value::Number(n) if n.fract() == 0.0 => Ok(()),
            _ => Err(invalid(format!(
                "version_number takes a whole number, not {value:?}"
            ))),
        },
        _ => Ok(()),
    }
}

/// Parses a filter: clauses joined by AND. An empty filter has no clauses.
pub fn parse_filter(text: &str, target: Target) -> Result<Vec<Clause>> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let mut parser = Parser {
        tokens,
        at: 0,
        target,
    };
    let mut clauses = vec![parser.clause()?];
    while parser.at < parser.tokens.len() {
        match parser.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("and") => clauses.push(parser.clause()?),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("or") => {
                return Err(invalid(
                    "OR is not supported; MLflow filters join clauses with AND",
                ));
            }
            other => return Err(invalid(format!("expected AND, found {other:?}"))),
        }
    }
    Ok(clauses)
}

/// Parses one order-by clause: `metrics.val_roc_auc DESC`, `start_time`, `params.C ASC`.
pub fn parse_order_by(text: &str, target: Target) -> Result<OrderBy> {
    let bad = |reason: String| TrackingError::invalid("order_by", reason);
    let mut tokens = tokenize(text).map_err(|e| bad(e.to_string()))?;
    let ascending = match tokens.last() {
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("desc") => {
            tokens.pop();
            false
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("asc") => {
            tokens.pop();
            true
        }
        _ => true,
    };
    let len = tokens.len();
    let mut parser = Parser {
        tokens,
        at: 0,
        target,
    };
    let entity = parser.entity().map_err(|e| bad(e.to_string()))?;
    if parser.at != len {
        return Err(bad(format!("{text:?} is not `<entity>.<key> [ASC|DESC]`")));
    }
    Ok(OrderBy { entity, ascending })
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
    use super::*;

    #[test]
    fn parses_the_original_systems_queries() {
        let clauses =
            parse_filter("metrics.val_roc_auc > 0.6 and params.C = '1'", Target::Runs).unwrap();
        assert_eq!(
            clauses,
            vec![
                Clause {
                    entity: Entity::Metric("val_roc_auc".into()),
                    op: Op::Gt,
                    value: Value::Number(0.6)
                },
                Clause {
                    entity: Entity::Param("C".into()),
                    op: Op::Eq,
                    value: Value::Text("1".into())
                },
            ]
        );
        let order = parse_order_by("metrics.val_roc_auc DESC", Target::Runs).unwrap();
        assert_eq!(
            order,
            OrderBy {
                entity: Entity::Metric("val_roc_auc".into()),
                ascending: false
            }
        );
        assert!(
            parse_order_by("start_time", Target::Runs)
                .unwrap()
                .ascending
        );
    }

    #[test]
    fn parses_quoted_keys_lists_and_null_checks() {
        let c = parse_filter(
            "tags.`mlflow.runName` LIKE 'LR%' AND attributes.status IN ('FINISHED', 'FAILED') \
             AND metrics.\"my metric\" <= -1e-3 and tags.note IS NOT NULL and run_name != 'x'",
            Target::Runs,
        )
        .unwrap();
        assert_eq!(c[0].entity, Entity::Tag("mlflow.runName".into()));
        assert_eq!(
            c[1].value,
            Value::List(vec!["FINISHED".into(), "FAILED".into()])
        );
        assert_eq!(c[2].entity, Entity::Metric("my metric".into()));
        assert_eq!(c[2].value, Value::Number(-1e-3));
        assert_eq!(c[3].op, Op::IsNotNull);
        assert_eq!(c[4].entity, Entity::Attribute(Attribute::Name));
        assert!(parse_filter("", Target::Runs).unwrap().is_empty());
        assert_eq!(
            parse_filter("tags.mlflow.runName = 'a'", Target::Runs).unwrap()[0].entity,
            Entity::Tag("mlflow.runName".into())
        );
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        for (filter, says) in [
            ("metrics.auc > 'high'", "takes numbers"),
            ("params.C > ", "expected a value"),
            ("metrics.a > 1 or metrics.b > 2", "OR is not supported"),
            ("colour.x = 'a'", "unknown entity"),
            ("attributes.colour = 'a'", "unknown attribute"),
            ("params.C = 'unclosed", "unclosed"),
            ("metrics.a ~ 1", "unexpected"),
        ] {
            let err = parse_filter(filter, Target::Runs).unwrap_err().to_string();
            assert!(err.contains(says), "{filter:?}: {err}");
        }
        assert!(parse_order_by("metrics.a DESC extra", Target::Runs).is_err());
        assert!(parse_filter("source_run_id = 'x'", Target::Runs).is_err());
        let c = parse_filter(
            "name = 'model' and source_run_id = 'abc'",
            Target::LoggedModels,
        )
        .unwrap();
        assert_eq!(c[1].entity, Entity::Attribute(Attribute::SourceRunId));
    }

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
