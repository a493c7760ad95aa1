//! The ETL role: RawData and CleanData in SQL, and the DAG runner that replaces Airflow.

pub mod clean;
pub mod dag;
pub mod data;
pub mod data_tasks;
pub mod fetch;
mod frontier;
pub mod handoff;
pub mod io;
mod logger;
pub mod metrics;
pub mod params;
pub mod paths;
pub mod raw;
pub mod runner;
pub mod runs;
pub mod store;
pub mod tasks;
pub mod train_tasks;

/// The ETL role of a running agent: its data and its DAG runner.
#[derive(Clone)]
pub struct Etl {
    pub data: data::DataService,
    pub runner: runner::Runner,
}

/// Opens RawData and CleanData, loads the DAG files and starts the runner.
pub async fn start(
    settings: &crate::settings::Settings,
    listeners: crate::roles::Listeners,
    shutdown: &tokio_util::sync::CancellationToken,
    registry: &prometheus::Registry,
) -> Result<Etl, crate::roles::StartError> {
    use crate::db;
    use data::{DataLimits, DataService};
    use metrics::{DataMetrics, EtlMetrics};
    use store::EtlStore;
    use tasks::TaskKinds;
    let db = db::Db::connect(&settings.raw_db).await?;
    tracing::info!(db = db.url(), "RawData and ETL store open");
    let clean_db = db::Db::connect(&settings.clean_db).await?;
    tracing::info!(db = clean_db.url(), "CleanData open");
    let data = DataService::open(
        db.clone(),
        clean_db,
        &settings.data_dir,
        DataLimits::from_settings(settings),
        DataMetrics::new(registry)?,
    )
    .await?;
    let store = EtlStore::open(db).await?;
    let mut kinds = TaskKinds::builtin();
    data_tasks::add_data_kinds(&mut kinds, &data);
    let url = settings.tracking_target(listeners.grpc);
    train_tasks::add_train_kinds(
        &mut kinds,
        &data,
        &train_tasks::TrackingTarget {
            tls: settings.client_tls(&url),
            url,
            token: settings.token.clone(),
        },
    );
    let (dags, errors) = dag::load_all(&settings.dags_dir, &kinds.names());
    tracing::info!(dir = %settings.dags_dir.display(), dags = dags.len(), refused = errors.len(), "DAG files loaded");
    let runs_dir = settings.data_dir.join("runs");
    let metrics = EtlMetrics::new(registry)?;
    let runner = runner::Runner::start(
        store,
        dags,
        errors,
        kinds,
        runs_dir,
        shutdown.clone(),
        metrics,
    )
    .await?;
    Ok(Etl { data, runner })
}
