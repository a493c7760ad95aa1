//! `readmit-agent bench …`: each role measured against what it replaces, printed as one JSON
//! object.

pub mod etl;
pub mod loadgen;
pub mod serve;
pub mod tracking;

pub use etl::{EtlBenchArgs, etl};
pub use loadgen::{LoadgenBenchArgs, loadgen};
pub use serve::{FloorArgs, ServeBenchArgs, floor, serve};
pub use tracking::{TrackingBenchArgs, tracking};
