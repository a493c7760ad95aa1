//! The tracking role: experiments, runs, artifacts and the model registry, served over gRPC
//! and as MLflow's REST API.

pub mod model;
pub mod search;
pub mod store;

pub use model::TrackingError;
pub use store::{RunQuery, TrackingStore};
