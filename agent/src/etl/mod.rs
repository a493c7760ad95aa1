//! The ETL role: RawData and CleanData in SQL, and the DAG runner that replaces Airflow.

pub mod dag;
