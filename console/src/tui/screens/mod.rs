//! One module per screen: its state, what its keys do, how it takes the agents' answers, and
//! how it draws.

pub mod dags;
pub mod data;
pub mod experiments;
pub mod loadtest;
pub mod metrics;
pub mod models;
pub mod overview;
pub mod predict;
