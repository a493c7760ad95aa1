//! MLflow's run search language: `metrics.val_roc_auc > 0.6 and params.C = '1'`, and order-by
//! clauses such as `metrics.val_roc_auc DESC`, parsed into clauses and turned into SQL whose
//! every value is a bound parameter.

use super::model::{Result, TrackingError};
use crate::db::Dialect;

#[derive(Clone, Debug, PartialEq)]
pub enum Entity {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(Attribute),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute {
    RunId,
    RunName,
    Status,
    UserId,
    StartTime,
    EndTime,
    ArtifactUri,
    ExperimentId,
}

impl Attribute {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "run_id" | "run_uuid" => Attribute::RunId,
            "run_name" | "name" => Attribute::RunName,
            "status" => Attribute::Status,
            "user_id" => Attribute::UserId,
            "start_time" | "created" => Attribute::StartTime,
            "end_time" => Attribute::EndTime,
            "artifact_uri" => Attribute::ArtifactUri,
            "experiment_id" => Attribute::ExperimentId,
            _ => {
                return Err(invalid(format!(
                    "unknown attribute {name:?}; use run_id, run_name, status, user_id, \
                     start_time, end_time, artifact_uri or experiment_id"
                )));
            }
        })
    }

    fn column(self) -> &'static str {
        match self {
            Attribute::RunId => "r.run_id",
            Attribute::RunName => "r.run_name",
            Attribute::Status => "r.status",
            Attribute::UserId => "r.user_id",
            Attribute::StartTime => "r.start_time",
            Attribute::EndTime => "r.end_time",
            Attribute::ArtifactUri => "r.artifact_uri",
            Attribute::ExperimentId => "r.experiment_id",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Attribute::StartTime | Attribute::EndTime | Attribute::ExperimentId
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
                Entity::Attribute(Attribute::parse(&key)?)
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
                    Attribute::RunId | Attribute::Status | Attribute::RunName | Attribute::UserId
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

/// Parses a filter: clauses joined by AND. An empty filter has no clauses.
pub fn parse_filter(text: &str) -> Result<Vec<Clause>> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let mut parser = Parser { tokens, at: 0 };
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
pub fn parse_order_by(text: &str) -> Result<OrderBy> {
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
    let mut parser = Parser { tokens, at: 0 };
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

/// The query that finds one page of run ids.
pub fn run_ids_query(
    dialect: Dialect,
    experiment_ids: &[i64],
    stages: &[&str],
    clauses: &[Clause],
    order: &[OrderBy],
    limit: i64,
    offset: i64,
) -> SqlParts {
    let mut q = SqlParts::default();
    q.push("SELECT r.run_id FROM runs r");
    for (i, o) in order.iter().enumerate() {
        let (table, key_column, key) = match &o.entity {
            Entity::Metric(k) => ("latest_metrics", "metric_key", k),
            Entity::Param(k) => ("params", "param_key", k),
            Entity::Tag(k) => ("tags", "tag_key", k),
            Entity::Attribute(_) => continue,
        };
        q.push(&format!(
            " LEFT JOIN {table} o{i} ON o{i}.run_id = r.run_id AND o{i}.{key_column} = "
        ));
        q.bind(Bind::Text(key.clone()));
    }
    q.push(" WHERE r.experiment_id IN ");
    q.list(experiment_ids.iter().map(|id| Bind::Int(*id)));
    q.push(" AND r.lifecycle_stage IN ");
    q.list(stages.iter().map(|s| Bind::Text((*s).to_owned())));
    for clause in clauses {
        q.push(" AND ");
        push_clause(&mut q, dialect, clause);
    }
    q.push(" ORDER BY ");
    for (i, o) in order.iter().enumerate() {
        let column = match &o.entity {
            Entity::Attribute(a) => a.column().to_owned(),
            _ => format!("o{i}.value"),
        };
        // Runs without the key sort last whichever way the order goes, as in MLflow.
        let dir = if o.ascending { "ASC" } else { "DESC" };
        q.push(&format!(
            "CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column} {dir}, "
        ));
    }
    q.push("r.start_time DESC, r.run_id ASC LIMIT ");
    q.bind(Bind::Int(limit));
    q.push(" OFFSET ");
    q.bind(Bind::Int(offset));
    q
}

fn value_bind(value: &Value) -> Bind {
    match value {
        Value::Number(n) => Bind::Float(*n),
        Value::Text(s) => Bind::Text(s.clone()),
        Value::List(_) | Value::None => Bind::Text(String::new()),
    }
}

fn push_clause(q: &mut SqlParts, dialect: Dialect, clause: &Clause) {
    let (table, key_column, key, alias) = match &clause.entity {
        Entity::Metric(k) => ("latest_metrics", "metric_key", k, "m"),
        Entity::Param(k) => ("params", "param_key", k, "p"),
        Entity::Tag(k) => ("tags", "tag_key", k, "t"),
        Entity::Attribute(a) => {
            push_comparison(q, dialect, a.column(), clause);
            return;
        }
    };
    let exists = if clause.op == Op::IsNull {
        "NOT EXISTS"
    } else {
        "EXISTS"
    };
    q.push(&format!(
        "{exists} (SELECT 1 FROM {table} {alias} WHERE {alias}.run_id = r.run_id AND {alias}.{key_column} = "
    ));
    q.bind(Bind::Text(key.clone()));
    if !matches!(clause.op, Op::IsNull | Op::IsNotNull) {
        q.push(" AND ");
        push_comparison(q, dialect, &format!("{alias}.value"), clause);
    }
    q.push(")");
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
        let clauses = parse_filter("metrics.val_roc_auc > 0.6 and params.C = '1'").unwrap();
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
        let order = parse_order_by("metrics.val_roc_auc DESC").unwrap();
        assert_eq!(
            order,
            OrderBy {
                entity: Entity::Metric("val_roc_auc".into()),
                ascending: false
            }
        );
        assert!(parse_order_by("start_time").unwrap().ascending);
    }

    #[test]
    fn parses_quoted_keys_lists_and_null_checks() {
        let c = parse_filter(
            "tags.`mlflow.runName` LIKE 'LR%' AND attributes.status IN ('FINISHED', 'FAILED') \
             AND metrics.\"my metric\" <= -1e-3 and tags.note IS NOT NULL and run_name != 'x'",
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
        assert_eq!(c[4].entity, Entity::Attribute(Attribute::RunName));
        assert!(parse_filter("").unwrap().is_empty());
        assert_eq!(
            parse_filter("tags.mlflow.runName = 'a'").unwrap()[0].entity,
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
            let err = parse_filter(filter).unwrap_err().to_string();
            assert!(err.contains(says), "{filter:?}: {err}");
        }
        assert!(parse_order_by("metrics.a DESC extra").is_err());
    }

    #[test]
    fn every_value_is_bound_never_spliced() {
        let clauses = parse_filter("params.C = '); DROP TABLE runs; --'").unwrap();
        let q = run_ids_query(Dialect::Sqlite, &[1], &["active"], &clauses, &[], 10, 0);
        assert!(!q.text.contains("DROP"), "{}", q.text);
        assert!(
            q.binds
                .contains(&Bind::Text("); DROP TABLE runs; --".into()))
        );
        let clauses = parse_filter("params.C = 'a' and metrics.m >= 2").unwrap();
        let order = [parse_order_by("metrics.val_roc_auc DESC").unwrap()];
        let q = run_ids_query(
            Dialect::Postgres,
            &[1, 2],
            &["active"],
            &clauses,
            &order,
            100,
            0,
        );
        assert_eq!(q.text.matches('?').count(), q.binds.len());
        assert_eq!(
            q.binds[0],
            Bind::Text("val_roc_auc".into()),
            "join binds come first"
        );
    }
}
