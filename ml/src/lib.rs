//! The readmission model's domain as a library: the schema of the UCI diabetes CSV, reading and
//! splitting it, the feature pipeline, training, metrics, ONNX export and the tract runtime.
//!
//! Invariant: this crate does no network or database I/O; it reads and writes files only.

#[cfg(feature = "runtime")]
pub mod bundle;
#[cfg(feature = "data")]
pub mod data;
pub mod matrix;
pub mod metrics;
pub mod models;
#[cfg(feature = "runtime")]
pub mod onnx;
pub mod pipeline;
pub mod record;
pub mod reference;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod schema;
pub mod split;
pub mod synth;
#[cfg(feature = "train")]
pub mod training;
