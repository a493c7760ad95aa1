//! `readmit-agent bench …`: each role measured against what it replaces, printed as one JSON
//! object.

pub mod etl;
pub mod tracking;

pub use etl::{EtlBenchArgs, etl};
pub use tracking::{TrackingBenchArgs, tracking};
