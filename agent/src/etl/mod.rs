//! The ETL role: RawData and CleanData in SQL, and the DAG runner that replaces Airflow.

pub mod dag;
pub mod metrics;
pub mod model;
pub mod runner;
pub mod store;
pub mod tasks;
