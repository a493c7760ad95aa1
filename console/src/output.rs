//! How results are printed: aligned tables for people, JSON for scripts, and errors that say
//! which agent failed and what to do about it.

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// A borderless table in the style of kubectl and k9s: a header row, then aligned columns.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(header);
    table
}

/// A table whose columns are only known at run time.
pub fn table_dyn(header: Vec<String>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(header);
    table
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A gRPC failure as one line naming the agent, with a hint where the cause is the caller's.
/// A typed call's failure, for a person: an agent's status as [`status_error`] words it, a
/// local file's error with its path, else what the agent sent that it should not have.
pub fn call_error(url: &str, error: &readmit_proto::CallError) -> String {
    match error {
        readmit_proto::CallError::Status { status, .. } => status_error(url, status),
        // A local file: its path and what went wrong say it all.
        io @ readmit_proto::CallError::Io { .. } => io.to_string(),
        other => format!("agent at {url}: {other}"),
    }
}

pub fn status_error(url: &str, status: &tonic::Status) -> String {
    use std::error::Error as _;
    let hint = match status.code() {
        tonic::Code::Unauthenticated => " (pass --token or set READMIT_TOKEN)",
        tonic::Code::Unimplemented => " (the agent does not run the role that serves this)",
        // Only when the connection failed (tonic then carries the transport error): an agent
        // that answers Unavailable is running, and its message says what it could not reach.
        tonic::Code::Unavailable if status.source().is_some() => " (is the agent running?)",
        _ => "",
    };
    // A failed connection says why only in its causes (a refused TLS handshake, say).
    let cause = status
        .source()
        .map(|e| format!(": {}", readmit_proto::error_chain(e)))
        .unwrap_or_default();
    let hint = if hint.is_empty() && cause.contains("certificate") {
        " (check --ca-cert, --tls-cert and --tls-key)"
    } else {
        hint
    };
    format!(
        "agent at {url}: {:?}: {}{cause}{hint}",
        status.code(),
        status.message()
    )
}

/// Bytes in binary units, as `free -h` prints them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration to the second, as `1h 2m 3s`.
pub fn duration(seconds: f64) -> String {
    let whole = std::time::Duration::from_secs(seconds.max(0.0) as u64);
    humantime::format_duration(whole).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_unix_tools() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(duration(3723.9), "1h 2m 3s");
        assert_eq!(duration(-1.0), "0s");
    }

    #[test]
    fn errors_name_the_agent_and_hint_at_the_fix() {
        let e = status_error(
            "http://a:1",
            &tonic::Status::unauthenticated("missing bearer token"),
        );
        assert!(e.contains("http://a:1") && e.contains("--token"), "{e}");
    }
}
