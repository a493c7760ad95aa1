//! The TUI's tests: every screen drawn from realistic state into a `TestBackend` and compared
//! with its committed snapshot, and the headless app driven through a scenario against real
//! agents.

mod events;
mod scenario;
mod snapshots;
