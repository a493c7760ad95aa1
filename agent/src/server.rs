//! The agent chassis: binding the listeners, starting the roles the settings name, and
//! serving the gRPC and HTTP listeners together until a shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::roles::{Listeners, Roles, StartError};
use crate::settings::Settings;
use crate::state::{Parts, Shared};
use crate::status;

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
    #[error(transparent)]
    Roles(#[from] StartError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    let names: Vec<&str> = settings.roles.iter().map(|r| r.name()).collect();
    let metrics = Metrics::new(crate::VERSION, &names.join(","), started_at_ms)?;
    let listeners = Listeners {
        grpc: grpc.local_addr().map_err(ServeError::LocalAddr)?,
        http: http.local_addr().map_err(ServeError::LocalAddr)?,
    };
    let roles = Roles::start(&settings, listeners, metrics.registry(), &shutdown).await?;
    Ok(Arc::new(Shared::new(Parts {
        settings,
        grpc_addr: listeners.grpc,
        http_addr: listeners.http,
        started_at_ms,
        metrics,
        roles,
        tls,
        shutdown,
    })?))
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
    shared.set_ready();
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
