//! The ETL role: RawData and CleanData in SQL, and the DAG runner that replaces Airflow.

pub mod clean;
pub mod dag;
pub mod data;
pub mod data_tasks;
pub mod fetch;
pub mod handoff;
pub mod metrics;
pub mod model;
pub mod params;
pub mod paths;
pub mod raw;
pub mod runner;
pub mod store;
pub mod tasks;
pub mod train_tasks;

/// The ETL role of a running agent: its data and its DAG runner.
#[derive(Clone)]
pub struct Etl {
    pub data: data::DataService,
    pub runner: runner::Runner,
}
