//! DAGs as data: TOML files naming built-in task kinds, their dependencies, retries, timeouts,
//! declared parameters and a cron schedule. A file that does not load is reported with its line
//! and reason, and the other DAGs still load.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

pub use super::params::{ParamDef, ParamType};

/// Why a DAG file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct DagError {
    pub file: String,
    /// 1-based; 0 when the problem is not on one line.
    pub line: u32,
    pub reason: String,
}

/// A validated task of a DAG.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDef {
    pub id: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub timeout: Option<Duration>,
    pub params: BTreeMap<String, String>,
}

/// A validated DAG: tasks in an order where each comes after what it depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct DagDef {
    pub name: String,
    pub description: String,
    /// Five-field cron (minute hour day month weekday), as Airflow and crontab write it.
    pub schedule: Option<String>,
    pub max_active_runs: u32,
    pub paused_on_load: bool,
    /// The parameters a trigger may set, with their types and defaults; nothing else.
    pub params: BTreeMap<String, ParamDef>,
    /// Names of the agent's environment variables its shell tasks may see (besides PATH and
    /// HOME); every other variable, the token and cloud keys among them, is withheld.
    pub env: Vec<String>,
    pub tasks: Vec<TaskDef>,
    /// The file it came from; `None` for built-in DAGs.
    pub source: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDag {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default = "one")]
    max_active_runs: u32,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    tasks: Vec<RawTask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    kind: String,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    retry_delay: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
}

fn one() -> u32 {
    1
}

fn param_text(params: BTreeMap<String, toml::Value>) -> BTreeMap<String, String> {
    params
        .into_iter()
        .map(|(k, v)| (k, super::params::text(v)))
        .collect()
}

/// Turns a five-field cron into the seconds-first form the `cron` crate reads.
pub fn cron_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 | 7 => expr.to_owned(),
        n => {
            return Err(format!(
                "schedule {expr:?} has {n} fields; write five: minute hour day month weekday"
            ));
        }
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("schedule {expr:?}: {e}"))
}

fn line_of(text: &str, offset: usize) -> u32 {
    text[..offset.min(text.len())].matches('\n').count() as u32 + 1
}

/// The line where `needle` first appears after `after`, for pointing at a bad value.
fn line_containing(text: &str, needle: &str) -> u32 {
    text.find(needle).map_or(0, |at| line_of(text, at))
}

/// Parses and validates one DAG file's text. `known_kinds` are the task kinds the agent has.
pub fn parse(file: &str, text: &str, known_kinds: &[&str]) -> Result<DagDef, DagError> {
    let error = |line: u32, reason: String| DagError {
        file: file.to_owned(),
        line,
        reason,
    };
    let raw: RawDag = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(text, s.start));
        error(line, e.message().to_owned())
    })?;
    let name_line = line_containing(text, "name");
    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(error(
            name_line,
            format!("DAG name {:?}: use letters, digits, _ and -", raw.name),
        ));
    }
    if let Some(schedule) = &raw.schedule {
        cron_schedule(schedule)
            .map_err(|reason| error(line_containing(text, "schedule"), reason))?;
    }
    if raw.max_active_runs == 0 {
        return Err(error(
            line_containing(text, "max_active_runs"),
            "max_active_runs must be at least 1".into(),
        ));
    }
    if raw.tasks.is_empty() {
        return Err(error(0, "a DAG needs at least one [[tasks]] entry".into()));
    }
    let mut ids = HashSet::new();
    let mut tasks = Vec::with_capacity(raw.tasks.len());
    for t in raw.tasks {
        let line = line_containing(text, &format!("\"{}\"", t.id));
        if t.id.is_empty()
            || !t
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(error(
                line,
                format!("task id {:?}: use letters, digits, _ and -", t.id),
            ));
        }
        if !ids.insert(t.id.clone()) {
            return Err(error(line, format!("task id {:?} is used twice", t.id)));
        }
        if !known_kinds.contains(&t.kind.as_str()) {
            return Err(error(
                line_containing(text, &format!("\"{}\"", t.kind)),
                format!(
                    "task {:?}: unknown kind {:?}; the agent has {}",
                    t.id,
                    t.kind,
                    known_kinds.join(", ")
                ),
            ));
        }
        let duration =
            |field: &str, value: &Option<String>| -> Result<Option<Duration>, DagError> {
                value
                    .as_deref()
                    .map(|v| {
                        humantime::parse_duration(v).map_err(|e| {
                            error(
                                line_containing(text, v),
                                format!("task {:?}: {field} {v:?}: {e}", t.id),
                            )
                        })
                    })
                    .transpose()
            };
        let retry_delay =
            duration("retry_delay", &t.retry_delay)?.unwrap_or(Duration::from_secs(5));
        let timeout = duration("timeout", &t.timeout)?;
        tasks.push(TaskDef {
            id: t.id,
            kind: t.kind,
            depends_on: t.depends_on,
            retries: t.retries,
            retry_delay,
            timeout,
            params: param_text(t.params),
        });
    }
    let tasks = topological(&tasks).map_err(|reason| error(0, reason))?;
    let mut params = BTreeMap::new();
    for (name, value) in raw.params {
        let line = text.find(&format!("\n{name}")).map_or_else(
            || line_containing(text, "params"),
            |at| line_of(text, at + 1),
        );
        let def = super::params::declare(&name, value).map_err(|reason| error(line, reason))?;
        if raw.schedule.is_some() && def.default.is_none() {
            return Err(error(
                line,
                format!("parameter {name:?} has no default, so a scheduled run cannot start"),
            ));
        }
        params.insert(name, def);
    }
    for name in &raw.env {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(error(
                line_containing(text, "env"),
                format!("env {name:?} is not an environment variable name"),
            ));
        }
    }
    Ok(DagDef {
        name: raw.name,
        description: raw.description,
        schedule: raw.schedule,
        max_active_runs: raw.max_active_runs,
        paused_on_load: raw.paused,
        params,
        env: raw.env,
        tasks,
        source: None,
    })
}

/// Orders tasks so each follows its dependencies; refuses unknown dependencies and cycles.
fn topological(tasks: &[TaskDef]) -> Result<Vec<TaskDef>, String> {
    let ids: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    for t in tasks {
        if let Some(missing) = t.depends_on.iter().find(|d| !ids.contains(d.as_str())) {
            return Err(format!(
                "task {:?} depends on {missing:?}, which is not a task of this DAG",
                t.id
            ));
        }
    }
    let mut remaining: HashMap<String, TaskDef> =
        tasks.iter().map(|t| (t.id.clone(), t.clone())).collect();
    let mut done: HashSet<String> = HashSet::new();
    let mut ordered = Vec::with_capacity(tasks.len());
    while !remaining.is_empty() {
        // Keep the file's order among tasks that are ready at the same time.
        let ready: Vec<String> = tasks
            .iter()
            .filter(|t| {
                remaining.contains_key(&t.id) && t.depends_on.iter().all(|d| done.contains(d))
            })
            .map(|t| t.id.clone())
            .collect();
        if ready.is_empty() {
            let mut stuck: Vec<&str> = remaining.keys().map(String::as_str).collect();
            stuck.sort();
            return Err(format!(
                "the dependencies form a cycle among {}",
                stuck.join(", ")
            ));
        }
        for id in ready {
            done.insert(id.clone());
            ordered.extend(remaining.remove(&id));
        }
    }
    Ok(ordered)
}

/// The DAGs every ETL agent has, as DAG files compiled in (`agent/dags`).
const BUILTIN: [(&str, &str); 4] = [
    (
        "ingest_raw.toml",
        include_str!("../../dags/ingest_raw.toml"),
    ),
    (
        "append_batch.toml",
        include_str!("../../dags/append_batch.toml"),
    ),
    (
        "preprocess_incremental.toml",
        include_str!("../../dags/preprocess_incremental.toml"),
    ),
    (
        "train_and_register.toml",
        include_str!("../../dags/train_and_register.toml"),
    ),
];

/// The built-in DAGs, then `dir`'s files; a file naming a built-in DAG replaces it, so
/// operators can retune one (retries, schedule, parameters) without recompiling.
pub fn load_all(dir: &Path, known_kinds: &[&str]) -> (Vec<DagDef>, Vec<DagError>) {
    let (files, errors) = load_dir(dir, known_kinds);
    let mut dags: Vec<DagDef> = BUILTIN
        .iter()
        .filter_map(
            |(file, text)| match parse(&format!("<built-in>/{file}"), text, known_kinds) {
                Ok(dag) => Some(dag),
                Err(e) => {
                    // The built-in files are tested; an agent built without a kind loses the DAG.
                    tracing::error!(file = %e.file, reason = %e.reason, "built-in DAG refused");
                    None
                }
            },
        )
        .filter(|d| !files.iter().any(|f| f.name == d.name))
        .collect();
    dags.extend(files);
    (dags, errors)
}

/// Every `*.toml` file of `dir`: the DAGs that load and the errors of those that do not.
pub fn load_dir(dir: &Path, known_kinds: &[&str]) -> (Vec<DagDef>, Vec<DagError>) {
    let mut dags = Vec::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (dags, errors);
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for path in files {
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&file, &text, known_kinds) {
                Ok(mut dag) => {
                    dag.source = Some(path);
                    dags.push(dag);
                }
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(DagError {
                file,
                line: 0,
                reason: e.to_string(),
            }),
        }
    }
    (dags, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: &[&str] = &["shell", "empty"];

    #[test]
    fn a_dag_loads_in_dependency_order() {
        let text = r#"
name = "nightly"
schedule = "0 2 * * *"
[params]
batch = 15000
[[tasks]]
id = "b"
kind = "shell"
depends_on = ["a"]
retries = 2
retry_delay = "1s"
timeout = "10m"
params = { command = "true" }
[[tasks]]
id = "a"
kind = "empty"
"#;
        let dag = parse("nightly.toml", text, KINDS).unwrap();
        assert_eq!(
            dag.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(dag.params["batch"].default.as_deref(), Some("15000"));
        assert_eq!(dag.params["batch"].kind, ParamType::Int);
        assert_eq!(dag.tasks[1].retries, 2);
        assert_eq!(dag.tasks[1].timeout, Some(Duration::from_secs(600)));
        assert_eq!(dag.max_active_runs, 1);
    }

    #[test]
    fn bad_files_name_the_line_and_reason() {
        let cases: &[(&str, u32, &str)] = &[
            (
                "name = \"x\"\n[[tasks]]\nid = \"a\"\nkind = \"shell\"\nretries = \"two\"\n",
                5,
                "invalid type",
            ),
            (
                "name = \"x\"\n[[tasks]]\nid = \"a\"\nkind = \"teleport\"\n",
                4,
                "unknown kind",
            ),
            (
                "name = \"x\"\nschedule = \"every day\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n",
                2,
                "fields",
            ),
            (
                "name = \"x\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\ndepends_on = [\"b\"]\n[[tasks]]\nid = \"b\"\nkind = \"empty\"\ndepends_on = [\"a\"]\n",
                0,
                "cycle",
            ),
            (
                "name = \"x\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\ndepends_on = [\"zz\"]\n",
                0,
                "not a task",
            ),
            (
                "name = \"x\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\ntimeout = \"soon\"\n",
                5,
                "timeout",
            ),
            (
                "name = \"x\"\ncolour = \"red\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n",
                2,
                "unknown field",
            ),
            (
                "name = \"x\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n",
                3,
                "twice",
            ),
            ("name = \"x\"\n", 0, "at least one"),
            (
                "name = \"x\"\nschedule = \"0 2 * * *\"\n[params]\npath = { type = \"string\" }\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n",
                4,
                "no default",
            ),
            (
                "name = \"x\"\n[params]\nn = { type = \"int\", default = \"many\" }\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n",
                3,
                "not a valid int",
            ),
            (
                "name = \"x\"\nenv = [\"LANG\", \"A B\"]\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n",
                2,
                "environment variable",
            ),
            ("name = \"x\"\n[[tasks]\n", 2, ""),
        ];
        for (text, line, says) in cases {
            let err = parse("bad.toml", text, KINDS).unwrap_err();
            assert_eq!(err.line, *line, "{text:?}: {err}");
            assert!(err.reason.contains(says), "{text:?}: {err}");
            assert!(err.to_string().starts_with("bad.toml:"), "{err}");
        }
    }

    #[test]
    fn a_broken_file_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.toml"),
            "name = \"good\"\n[[tasks]]\nid = \"a\"\nkind = \"empty\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "name = \"bad\"\n[[tasks]]\nid = \"a\"\nkind = \"nope\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a dag").unwrap();
        let (dags, errors) = load_dir(dir.path(), KINDS);
        assert_eq!(
            dags.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["good"]
        );
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].file.ends_with("bad.toml") && errors[0].line == 4,
            "{}",
            errors[0]
        );
    }

    #[test]
    fn five_field_cron_is_accepted() {
        assert!(cron_schedule("*/15 * * * *").is_ok());
        assert!(cron_schedule("0 0 2 * * *").is_ok());
        assert!(cron_schedule("61 * * * *").is_err());
    }
}
