//! What every transport handler of one agent shares: its settings, listeners' addresses, host
//! facts, auth guard, metrics, the roles it runs, TLS, the status sampler, readiness and the
//! shutdown token. Built once by `server` after the roles have started.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::Guard;
use crate::metrics::Metrics;
use crate::roles::Roles;
use crate::settings::Settings;
use crate::status::{self, HostFacts, Sample};

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
    /// The roles this agent runs, each `None` when it does not.
    pub roles: Roles,
    /// Both listeners' TLS configuration, reloaded when its files change; none for plain TCP.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    status: watch::Receiver<Sample>,
    ready: AtomicBool,
    /// Cancelled when the agent begins to shut down; long-lived streams end on it.
    pub shutdown: CancellationToken,
}

/// The parts `Shared` is made of, as the server gathered them.
pub struct Parts {
    pub settings: Settings,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub started_at_ms: i64,
    pub metrics: Metrics,
    pub roles: Roles,
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    pub shutdown: CancellationToken,
}

impl Shared {
    /// Starts the status sampler; not ready until [`Shared::set_ready`].
    pub fn new(parts: Parts) -> Result<Self, status::SamplerError> {
        Ok(Self {
            guard: Guard::from_settings(&parts.settings, &parts.shutdown),
            status: status::spawn(parts.shutdown.clone())?,
            settings: parts.settings,
            grpc_addr: parts.grpc_addr,
            http_addr: parts.http_addr,
            host: HostFacts::read(),
            started_at_ms: parts.started_at_ms,
            started: Instant::now(),
            metrics: parts.metrics,
            roles: parts.roles,
            tls: parts.tls,
            ready: AtomicBool::new(false),
            shutdown: parts.shutdown,
        })
    }

    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn latest_sample(&self) -> Sample {
        *self.status.borrow()
    }

    /// Both listeners serve.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// True once both listeners serve, false again as soon as shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }
}
