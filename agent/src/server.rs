//! The agent chassis: shared state, and serving the gRPC and HTTP listeners together until a
//! shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Guard;
use crate::etl::Etl;
use crate::etl::model::EtlError;
use crate::inference::{Inference, InferenceConfig};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::status::{self, HostFacts, Sample};
use crate::tracking::artifacts::{ArtifactError, ArtifactStore};
use crate::tracking::{Tracking, TrackingError, TrackingStore};
use crate::{Role, db};

/// What every transport handler of one agent shares.
pub struct Shared {
    pub settings: Settings,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub host: HostFacts,
    pub started_at_ms: i64,
    started: Instant,
    pub guard: Guard,
    pub metrics: Metrics,
    /// The tracking role's state, when the agent runs that role.
    pub tracking: Option<Tracking>,
    /// The ETL role's data and DAG runner, when the agent runs that role.
    pub etl: Option<Etl>,
    /// The inference role's served model and registry follower, when the agent runs that role.
    pub inference: Option<Inference>,
    /// Both listeners' TLS configuration, reloaded when its files change; none for plain TCP.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// The load-test engine, on agents that run the inference role.
    pub loadtest: Option<crate::loadtest::LoadTests>,
    status: watch::Receiver<Sample>,
    ready: AtomicBool,
    /// Cancelled when the agent begins to shut down; long-lived streams end on it.
    pub shutdown: CancellationToken,
}

impl Shared {
    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn latest_sample(&self) -> Sample {
        *self.status.borrow()
    }

    /// True once both listeners serve, false again as soon as shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind the {which} listener to {addr}: {source}")]
    Bind {
        which: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read a listener's address: {0}")]
    LocalAddr(std::io::Error),
    #[error(transparent)]
    Sampler(#[from] status::SamplerError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Grpc(#[from] crate::grpc::GrpcError),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("cannot open the tracking store: {0}")]
    Tracking(#[from] TrackingError),
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    #[error("cannot start the DAG runner: {0}")]
    Etl(#[from] EtlError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Binds the listeners the settings name (port 0 picks a free port).
pub async fn bind(settings: &Settings) -> Result<(TcpListener, TcpListener), ServeError> {
    let grpc = TcpListener::bind(settings.grpc_addr)
        .await
        .map_err(|source| ServeError::Bind {
            which: "gRPC",
            addr: settings.grpc_addr,
            source,
        })?;
    let http = TcpListener::bind(settings.http_addr)
        .await
        .map_err(|source| ServeError::Bind {
            which: "HTTP",
            addr: settings.http_addr,
            source,
        })?;
    Ok((grpc, http))
}

/// Serves both listeners until `shutdown` completes, then drains in-flight calls and returns.
pub async fn serve(
    settings: Settings,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let shared = shared(settings, &grpc, &http, token).await?;
    run(shared, grpc, http).await
}

async fn shared(
    settings: Settings,
    grpc: &TcpListener,
    http: &TcpListener,
    shutdown: CancellationToken,
) -> Result<Arc<Shared>, ServeError> {
    let tls = match &settings.tls {
        Some(files) => {
            let tls = Arc::new(crate::tls::ServerTls::load(files)?);
            tls.watch(shutdown.clone());
            Some(tls)
        }
        None => None,
    };
    let started_at_ms = crate::now_ms();
    let roles: Vec<&str> = settings.roles.iter().map(|r| r.name()).collect();
    let metrics = Metrics::new(crate::VERSION, &roles.join(","), started_at_ms)?;
    let tracking = if settings.roles.contains(&Role::Tracking) {
        let db = db::Db::connect(&settings.tracking_db).await?;
        tracing::info!(db = db.url(), "tracking store open");
        let store = TrackingStore::open(db).await?;
        let artifacts = ArtifactStore::open(&settings.artifact_root, &settings.data_dir)?;
        tracing::info!(root = artifacts.root(), "artifact store open");
        Some(Tracking { store, artifacts })
    } else {
        None
    };
    let own = grpc.local_addr().map_err(ServeError::LocalAddr)?;
    let etl = if settings.roles.contains(&Role::Etl) {
        Some(start_etl(&settings, own, &shutdown, metrics.registry()).await?)
    } else {
        None
    };
    let inference = if settings.roles.contains(&Role::Inference) {
        let config = InferenceConfig {
            target: settings.model.clone(),
            tracking_url: tracking_url(&settings, own),
            token: settings.token.clone(),
            tls: settings.client_tls(&tracking_url(&settings, own)),
            cache_dir: settings.data_dir.join("models"),
            max_records: settings.inference_max_records,
            max_body_bytes: settings.inference_max_body_bytes,
            drift_window: settings.drift_window,
        };
        Some(Inference::start(
            config,
            metrics.registry(),
            shutdown.clone(),
        )?)
    } else {
        None
    };
    let loadtest = inference.as_ref().map(|_| {
        let listeners = [grpc.local_addr(), http.local_addr()]
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        crate::loadtest::LoadTests::new(
            crate::loadtest::Limits::from_settings(&settings, listeners),
            etl.clone(),
            tracking_url(&settings, own),
            settings.token.clone(),
            shutdown.clone(),
        )
    });
    Ok(Arc::new(Shared {
        tracking,
        etl,
        inference,
        tls,
        loadtest,
        grpc_addr: grpc.local_addr().map_err(ServeError::LocalAddr)?,
        http_addr: http.local_addr().map_err(ServeError::LocalAddr)?,
        host: HostFacts::read(),
        started_at_ms,
        started: Instant::now(),
        guard: Guard::from_settings(&settings, &shutdown),
        metrics,
        status: status::spawn(shutdown.clone())?,
        ready: AtomicBool::new(false),
        shutdown,
        settings,
    }))
}

/// Opens RawData and CleanData, loads the DAG files and starts the runner.
pub(crate) async fn start_etl(
    settings: &Settings,
    own_grpc: SocketAddr,
    shutdown: &CancellationToken,
    registry: &prometheus::Registry,
) -> Result<Etl, ServeError> {
    use crate::etl::{
        dag, data::DataLimits, data::DataService, data_tasks, metrics::DataMetrics,
        metrics::EtlMetrics, store::EtlStore, tasks::TaskKinds, train_tasks,
    };
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
    let url = tracking_url(settings, own_grpc);
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
    let runner = crate::etl::runner::Runner::start(
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

/// The tracking role the other roles talk to: the configured one, else this agent's own (over
/// its gRPC listener, as between machines, on loopback when it listens on every address),
/// else none.
fn tracking_url(settings: &Settings, own_grpc: SocketAddr) -> String {
    if !settings.tracking_url.is_empty() {
        settings.tracking_url.clone()
    } else if settings.roles.contains(&Role::Tracking) {
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", loopback_if_unspecified(own_grpc))
    } else {
        String::new()
    }
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn run(shared: Arc<Shared>, grpc: TcpListener, http: TcpListener) -> Result<(), ServeError> {
    tracing::info!(
        grpc = %shared.grpc_addr,
        http = %shared.http_addr,
        roles = ?shared.settings.roles,
        auth = shared.guard.required(),
        tls = match &shared.tls {
            Some(tls) if tls.mutual() => "mutual",
            Some(_) => "server",
            None => "off",
        },
        "agent serving"
    );
    let grpc_task = tokio::spawn(crate::grpc::serve(Arc::clone(&shared), grpc));
    let http_task = tokio::spawn(crate::http::serve(Arc::clone(&shared), http));
    shared.ready.store(true, Ordering::Release);
    // If one server dies, stop the other instead of serving half an agent.
    let stop_other = shared.shutdown.clone();
    let (grpc_result, http_result) = tokio::join!(
        async {
            let r = grpc_task.await;
            stop_other.cancel();
            r
        },
        async {
            let r = http_task.await;
            shared.shutdown.cancel();
            r
        }
    );
    grpc_result??;
    http_result?.map_err(ServeError::Http)?;
    tracing::info!("agent stopped");
    Ok(())
}

/// An agent serving in the background of this process: what tests and `readmit up` start.
pub struct RunningAgent {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Whether the listeners speak TLS (`https://` URLs).
    pub tls: bool,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningAgent {
    /// Binds the settings' addresses and serves in a background task.
    pub async fn start(settings: Settings) -> Result<Self, ServeError> {
        let (grpc, http) = bind(&settings).await?;
        let shutdown = CancellationToken::new();
        let shared = shared(settings, &grpc, &http, shutdown.clone()).await?;
        let (grpc_addr, http_addr) = (shared.grpc_addr, shared.http_addr);
        let tls = shared.tls.is_some();
        let task = tokio::spawn(run(shared, grpc, http));
        Ok(Self {
            grpc_addr,
            http_addr,
            tls,
            shutdown,
            task,
        })
    }

    pub fn grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.grpc_addr)
    }

    pub fn http_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.http_addr)
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Starts a graceful shutdown and waits for both servers to finish.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.task.await?
    }
}
