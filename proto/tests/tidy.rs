//! The tidy test (rust-analyzer's habit): the rules of ARCHITECTURE.md that can be checked by
//! reading the tree, checked on every test run. Each failure names the file and the rule.
//!
//! - every `.rs` file opens with a `//!` comment saying what it is for;
//! - no source file is over 800 lines (split it along its seams);
//! - generated protobuf types (`readmit_proto::v1`) are used only in `proto/`, the agent's
//!   gRPC layer (`grpc/`), the load-test engine's wire clients, benchmarks and tests — and in
//!   the files still to move onto the typed client, listed in [`NOT_YET_TYPED`], a list that
//!   may only shrink (a listed file that no longer needs its entry fails too);
//! - no database driver (`sqlx`, `rusqlite`) in the transport layers (`grpc/`, `http/`);
//! - the `ml` crate depends on no network or database crate.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Where generated types belong: the contract, the transport layers, the engine's wire
/// clients (they build the requests they send), benchmarks and tests.
const GENERATED_TYPES_ALLOWED: &[&str] = &[
    "proto/",
    "agent/src/grpc/",
    "agent/src/loadtest/targets.rs",
    "agent/src/loadtest/payloads.rs",
    "agent/src/bench/",
    "agent/tests/",
    "console/tests/",
    "console/src/tui/tests/",
];

/// Callers that still build `v1` requests themselves, to move onto `readmit_proto::Client`'s
/// typed operations (issue 11). Remove an entry when its file is moved.
const NOT_YET_TYPED: &[&str] = &[
    "console/src/cli/loadtest.rs",
    "console/src/cli/predict.rs",
    "console/src/cli/runs.rs",
    "console/src/cli/up/summary.rs",
    // The TUI (issue 14) keeps the agents' answers in its state as they arrive; it moves onto
    // typed operations with the CLI.
    "console/src/tui/action.rs",
    "console/src/tui/app.rs",
    "console/src/tui/backend.rs",
    "console/src/tui/fixtures.rs",
    "console/src/tui/requests.rs",
    "console/src/tui/screens/experiments.rs",
    "console/src/tui/screens/loadtest.rs",
    "console/src/tui/screens/models.rs",
    "console/src/tui/screens/predict.rs",
];

/// Crates that mean the network or a database: none of them in `ml`.
const NOT_IN_ML: &[&str] = &[
    "sqlx",
    "rusqlite",
    "tokio",
    "tonic",
    "hyper",
    "axum",
    "reqwest",
    "object_store",
    "readmit-proto",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto/ sits in the workspace")
        .to_owned()
}

/// Every `.rs` file of the workspace's crates, as (path relative to the root, text).
fn sources() -> Vec<(String, String)> {
    let root = root();
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["proto", "ml", "agent", "console"]
        .iter()
        .map(|c| root.join(c))
        .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "snapshots" {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let relative = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((relative, text));
            }
        }
    }
    out.sort();
    assert!(out.len() > 50, "found only {} source files", out.len());
    out
}

fn failures(found: &[String], rule: &str) {
    assert!(found.is_empty(), "{rule}:\n  {}", found.join("\n  "));
}

#[test]
fn every_file_says_what_it_is_for() {
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    failures(&found, "these files do not open with a `//!` comment");
}

#[test]
fn no_file_is_over_800_lines() {
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(path, text)| format!("{path}: {} lines", text.lines().count()))
        .collect();
    failures(&found, "these files are over 800 lines: split them");
}

/// Whether a file names the generated types: a path through `readmit_proto::v1`, or `v1`
/// imported from `readmit_proto` (a `use` statement may span lines).
fn uses_generated_types(text: &str) -> bool {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    code.contains("readmit_proto::v1")
        || code.match_indices("use readmit_proto::").any(|(at, _)| {
            let statement = code[at..].split(';').next().unwrap_or("");
            statement
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "v1")
        })
}

#[test]
fn generated_types_stay_in_their_layers() {
    let sources = sources();
    let users: Vec<&str> = sources
        .iter()
        .filter(|(_, text)| uses_generated_types(text))
        .map(|(path, _)| path.as_str())
        .collect();
    let outside: Vec<String> = users
        .iter()
        .filter(|p| !GENERATED_TYPES_ALLOWED.iter().any(|a| p.starts_with(a)))
        .filter(|p| !NOT_YET_TYPED.contains(p))
        .map(|p| format!("{p} uses readmit_proto::v1: call the typed client instead"))
        .collect();
    failures(&outside, "generated types outside proto/, grpc/ and tests");
    let moved: Vec<String> = NOT_YET_TYPED
        .iter()
        .filter(|p| !users.contains(p))
        .map(|p| format!("{p} no longer uses generated types: drop it from NOT_YET_TYPED"))
        .collect();
    failures(&moved, "the list of files still to move is stale");
}

#[test]
fn no_database_driver_in_the_transport_layers() {
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(path, _)| {
            path.starts_with("agent/src/grpc/") || path.starts_with("agent/src/http/")
        })
        .filter(|(_, text)| {
            text.lines().any(|l| {
                let code = l.trim_start();
                !code.starts_with("//") && (code.contains("sqlx") || code.contains("rusqlite"))
            })
        })
        .map(|(path, _)| format!("{path}: reaches the database driver; go through the role"))
        .collect();
    failures(&found, "database drivers in grpc/ or http/");
}

#[test]
fn ml_depends_on_no_network_or_database_crate() {
    let manifest = std::fs::read_to_string(root().join("ml/Cargo.toml")).unwrap();
    let found: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .filter(|name| NOT_IN_ML.contains(name))
        .map(|name| format!("ml/Cargo.toml depends on {name}"))
        .collect();
    failures(
        &found,
        "the ml crate must stay free of network and database crates",
    );
}
