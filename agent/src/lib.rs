//! readmit-agent: one binary that runs any set of roles (etl, tracking, inference) behind one
//! gRPC listener and one HTTP listener.
//!
//! Domain modules hold the logic; `grpc` and `http` only convert and delegate.

pub mod auth;
pub mod bench;
pub mod db;
pub mod etl;
mod grpc;
mod http;
pub mod inference;
pub mod loadtest;
pub mod metrics;
pub mod roles;
pub mod server;
pub mod settings;
mod state;
pub mod status;
pub mod text_enum;
pub mod tls;
pub mod tracking;

pub use roles::Role;
pub use server::{RunningAgent, ServeError, bind, serve};
pub use settings::{Settings, SettingsFlags};

/// The agent's version, as `AgentInfo` and `/metrics` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, the unit every timestamp on the wire uses.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A timestamp in milliseconds as UTC RFC 3339 (`2026-11-27T20:10:00Z`), for messages.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}
