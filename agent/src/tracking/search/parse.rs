//! Parsing search text into clauses, checking each against what its target can compare.

use super::{Attribute, Clause, Entity, Op, OrderBy, Target, Value, invalid};
use crate::tracking::entities::{Result, TrackingError};

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

/// Parses a search's order-by clauses, skipping empty ones (clients send `[""]`).
pub fn parse_order_list(order_by: &[String], target: Target) -> Result<Vec<OrderBy>> {
    order_by
        .iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| parse_order_by(o, target))
        .collect()
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
}
