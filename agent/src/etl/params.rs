//! A DAG's declared parameters: the only values a trigger may set. Each has a type, an optional
//! default and optional choices; a trigger's values are checked against them before a run is
//! queued, so a task never sees an undeclared or ill-typed value.

use std::collections::BTreeMap;

/// The longest text value a trigger may give; values travel as environment variables.
pub const MAX_VALUE_BYTES: usize = 4096;

/// What a declared parameter's values must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Float,
    Bool,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "string" => Some(Self::String),
            "int" => Some(Self::Int),
            "float" => Some(Self::Float),
            "bool" => Some(Self::Bool),
            _ => None,
        }
    }
}

/// One declared parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDef {
    pub kind: ParamType,
    /// `None`: every trigger must give a value.
    pub default: Option<String>,
    /// When not empty, the only values allowed.
    pub choices: Vec<String>,
    pub description: String,
}

/// Reads one `[params]` entry: a bare value is a default whose TOML type is the parameter's
/// type; a table declares `type`, and optionally `default`, `choices` and `description`.
pub fn declare(name: &str, value: toml::Value) -> Result<ParamDef, String> {
    check_name(name)?;
    let def = match value {
        toml::Value::Table(table) => declared(name, table)?,
        scalar => {
            let kind = type_of(name, &scalar)?;
            ParamDef {
                kind,
                default: Some(text(scalar)),
                choices: Vec::new(),
                description: String::new(),
            }
        }
    };
    // The default and every choice must themselves be valid values.
    for value in def.default.iter().chain(&def.choices) {
        check_value(name, &def, value)?;
    }
    if let Some(default) = &def.default
        && !def.choices.is_empty()
        && !def.choices.contains(default)
    {
        return Err(format!(
            "parameter {name:?}: default {default:?} is not one of its choices"
        ));
    }
    Ok(def)
}

fn declared(name: &str, table: toml::Table) -> Result<ParamDef, String> {
    let mut kind = None;
    let mut default = None;
    let mut choices = Vec::new();
    let mut description = String::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("type", toml::Value::String(t)) => {
                kind = Some(ParamType::parse(&t).ok_or_else(|| {
                    format!("parameter {name:?}: type {t:?} is not one of string, int, float, bool")
                })?);
            }
            ("default", v) => default = Some(v),
            ("choices", toml::Value::Array(values)) => {
                choices = values.into_iter().map(text).collect();
            }
            ("description", toml::Value::String(d)) => description = d,
            (key, _) => {
                return Err(format!(
                    "parameter {name:?}: unknown or ill-typed key {key:?}; a declaration has \
                     type, default, choices and description"
                ));
            }
        }
    }
    let kind = match (kind, &default) {
        (Some(kind), _) => kind,
        (None, Some(v)) => type_of(name, v)?,
        (None, None) => return Err(format!("parameter {name:?}: give its type or a default")),
    };
    Ok(ParamDef {
        kind,
        default: default.map(text),
        choices,
        description,
    })
}

fn type_of(name: &str, value: &toml::Value) -> Result<ParamType, String> {
    match value {
        toml::Value::String(_) => Ok(ParamType::String),
        toml::Value::Integer(_) => Ok(ParamType::Int),
        toml::Value::Float(_) => Ok(ParamType::Float),
        toml::Value::Boolean(_) => Ok(ParamType::Bool),
        other => Err(format!(
            "parameter {name:?}: a {} cannot be a parameter value",
            other.type_str()
        )),
    }
}

/// Parameters are strings to the tasks; TOML numbers and booleans are written as text.
pub fn text(value: toml::Value) -> String {
    match value {
        toml::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Parameter names become environment variable names, so they keep to letters, digits and _.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "parameter name {name:?}: use letters, digits and _"
        ));
    }
    Ok(())
}

/// Checks one value against its declaration; returns it as the tasks will see it (booleans
/// spelled `true`/`false`, numbers trimmed).
pub fn check_value(name: &str, def: &ParamDef, value: &str) -> Result<String, String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "parameter {name:?}: longer than {MAX_VALUE_BYTES} bytes"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "parameter {name:?}: control characters are not allowed"
        ));
    }
    let wrong = || {
        format!(
            "parameter {name:?}: {value:?} is not a valid {}",
            def.kind.name()
        )
    };
    let normal = match def.kind {
        ParamType::String => value.to_owned(),
        ParamType::Int => value
            .trim()
            .parse::<i64>()
            .map_err(|_| wrong())?
            .to_string(),
        ParamType::Float => {
            let v: f64 = value.trim().parse().map_err(|_| wrong())?;
            if !v.is_finite() {
                return Err(wrong());
            }
            value.trim().to_owned()
        }
        ParamType::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => "true".to_owned(),
            "false" | "0" | "no" => "false".to_owned(),
            _ => return Err(wrong()),
        },
    };
    if !def.choices.is_empty() && !def.choices.contains(&normal) {
        return Err(format!(
            "parameter {name:?}: {value:?} is not one of {}",
            def.choices.join(", ")
        ));
    }
    Ok(normal)
}

/// A trigger's values checked against the DAG's declarations: an undeclared name, a missing
/// required value or an ill-typed one is refused, naming the parameter. Returns every declared
/// parameter's value for this run (the trigger's, else the default).
pub fn resolve(
    dag: &str,
    declared: &BTreeMap<String, ParamDef>,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, (String, String)> {
    for name in given.keys() {
        if !declared.contains_key(name) {
            let known = if declared.is_empty() {
                "it declares none".to_owned()
            } else {
                format!(
                    "it declares {}",
                    declared.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            return Err((
                name.clone(),
                format!("DAG {dag:?} has no parameter {name:?}; {known}"),
            ));
        }
    }
    let mut out = BTreeMap::new();
    for (name, def) in declared {
        let value = match (given.get(name), &def.default) {
            (Some(v), _) => check_value(name, def, v).map_err(|e| (name.clone(), e))?,
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err((
                    name.clone(),
                    format!("parameter {name:?} is required by DAG {dag:?}"),
                ));
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(text: &str) -> BTreeMap<String, ParamDef> {
        let table: toml::Table = toml::from_str(text).unwrap();
        table
            .into_iter()
            .map(|(k, v)| {
                let d = declare(&k, v).unwrap();
                (k, d)
            })
            .collect()
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn values_are_checked_against_their_declared_types() {
        let d = decl(
            r#"
batch = 15000
ratio = 0.5
all = false
path = { type = "string", description = "a CSV" }
split = { type = "string", default = "original", choices = ["original", "grouped"] }
"#,
        );
        let ok = resolve("x", &d, &given(&[("path", "a.csv"), ("all", "YES")])).unwrap();
        assert_eq!(ok["batch"], "15000");
        assert_eq!(ok["all"], "true");
        assert_eq!(ok["split"], "original");
        for (pairs, names) in [
            (vec![("path", "a"), ("batch", "many")], "batch"),
            (vec![("path", "a"), ("ratio", "NaN")], "ratio"),
            (vec![("path", "a"), ("all", "maybe")], "all"),
            (vec![("path", "a"), ("split", "random")], "split"),
            (vec![("path", "a\nb")], "path"),
            (vec![], "path"),
            (vec![("path", "a"), ("command", "touch /tmp/x")], "command"),
        ] {
            let (name, reason) = resolve("x", &d, &given(&pairs)).unwrap_err();
            assert_eq!(name, names, "{pairs:?}: {reason}");
            assert!(reason.contains(names), "{reason}");
        }
    }

    #[test]
    fn bad_declarations_are_refused() {
        for text in [
            "a = { type = \"colour\" }",
            "a = { }",
            "a = { type = \"int\", default = \"x\" }",
            "a = { type = \"string\", default = \"z\", choices = [\"x\"] }",
            "a = [1, 2]",
            "a = { type = \"int\", secret = true }",
        ] {
            let table: toml::Table = toml::from_str(text).unwrap();
            let (k, v) = table.into_iter().next().unwrap();
            assert!(declare(&k, v).is_err(), "{text}");
        }
    }
}
