//! Transport security for the agent's two listeners: TLS from a certificate and key (rustls on
//! ring), mutual TLS when a client CA is set, the files re-read when they change, and the
//! accept loop that hands finished handshakes to the gRPC and HTTP servers.
//!
//! Every handshake takes the configuration current at that moment ([`ServerTls::acceptor`]):
//! a rotated certificate or client CA applies to the next connection, never cached per
//! connection or listener. A file that stops parsing (say a certificate written before its
//! key) keeps the previous configuration serving, with a warning, until it parses again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How often the certificate, key and client CA files are checked for a change.
pub const RELOAD_POLL: Duration = Duration::from_secs(1);
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress per listener; connections beyond are closed at once, so a flood
/// of idle sockets cannot hold unbounded tasks.
const MAX_HANDSHAKES: usize = 1024;

/// The agent's TLS files, as the settings name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain (`tls_cert`), the agent's own first.
    pub cert: PathBuf,
    /// PEM private key of that certificate (`tls_key`).
    pub key: PathBuf,
    /// PEM CA certificate(s) client certificates must chain to (`tls_client_ca`): mutual TLS.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("setting `{setting}`: cannot read {}: {reason}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("setting `{setting}`: {}: {reason}", path.display())]
    Invalid {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Which listener a configuration is for: they differ only in the protocols offered (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// HTTP/2 only, as gRPC needs.
    Grpc,
    /// HTTP/1.1, what the HTTP server speaks.
    Http,
}

/// The current TLS configuration of both listeners, swapped whole when the files change.
pub struct ServerTls {
    files: TlsFiles,
    grpc: ArcSwap<ServerConfig>,
    http: ArcSwap<ServerConfig>,
    /// Digest of the files as last loaded, and of the last contents that failed to load (so
    /// a bad file is warned about once, not every poll).
    seen: Mutex<(Digest32, Option<Digest32>)>,
}

type Digest32 = [u8; 32];

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files; every error names the setting and the file.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let (digest, config) = read_config(files)?;
        Ok(Self {
            files: files.clone(),
            grpc: ArcSwap::from_pointee(with_alpn(&config, Listener::Grpc)),
            http: ArcSwap::from_pointee(with_alpn(&config, Listener::Http)),
            seen: Mutex::new((digest, None)),
        })
    }

    /// Whether clients must present a certificate from the client CA.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// An acceptor for one handshake, with the configuration current now.
    pub fn acceptor(&self, listener: Listener) -> TlsAcceptor {
        let config = match listener {
            Listener::Grpc => self.grpc.load_full(),
            Listener::Http => self.http.load_full(),
        };
        TlsAcceptor::from(config)
    }

    /// Re-reads the files; swaps the configuration when their content changed and loads.
    /// `Ok(true)` when swapped. On an error the previous configuration stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let digest = digest_files(&self.files)?;
        {
            let seen = self.lock_seen();
            if seen.0 == digest || seen.1 == Some(digest) {
                return Ok(false);
            }
        }
        match read_config(&self.files) {
            Ok((digest, config)) => {
                self.grpc
                    .store(Arc::new(with_alpn(&config, Listener::Grpc)));
                self.http
                    .store(Arc::new(with_alpn(&config, Listener::Http)));
                *self.lock_seen() = (digest, None);
                Ok(true)
            }
            Err(e) => {
                self.lock_seen().1 = Some(digest);
                Err(e)
            }
        }
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, (Digest32, Option<Digest32>)> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Polls the files every [`RELOAD_POLL`] until `shutdown`, reloading on change.
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken) {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            let mut warned_missing = false;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RELOAD_POLL) => {}
                }
                let files = tls.files.clone();
                let reloaded = {
                    let tls = Arc::clone(&tls);
                    tokio::task::spawn_blocking(move || tls.reload_if_changed()).await
                };
                match reloaded {
                    Ok(Ok(true)) => {
                        warned_missing = false;
                        tracing::info!(
                            cert = %files.cert.display(),
                            client_ca = ?files.client_ca,
                            "TLS certificate reloaded; new connections use it"
                        );
                    }
                    Ok(Ok(false)) => warned_missing = false,
                    // A missing file (mid-rotation) is said once until it returns.
                    Ok(Err(e @ TlsError::Read { .. })) if !warned_missing => {
                        warned_missing = true;
                        tracing::warn!(error = %e, "TLS files unreadable; the previous certificate still serves");
                    }
                    Ok(Err(TlsError::Read { .. })) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "TLS files changed but do not load; the previous certificate still serves");
                    }
                    Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
                }
            }
        });
    }
}

/// Checks the files load into a server configuration, for settings validation.
pub fn check(files: &TlsFiles) -> Result<(), TlsError> {
    read_config(files).map(|_| ())
}

fn digest_files(files: &TlsFiles) -> Result<Digest32, TlsError> {
    let mut hash = Sha256::new();
    for (setting, path) in named(files) {
        let bytes = read(setting, path)?;
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(hash.finalize().into())
}

fn named(files: &TlsFiles) -> impl Iterator<Item = (&'static str, &Path)> {
    [
        ("tls_cert", files.cert.as_path()),
        ("tls_key", files.key.as_path()),
    ]
    .into_iter()
    .chain(files.client_ca.as_deref().map(|p| ("tls_client_ca", p)))
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        setting,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The files' digest and the configuration they make (without ALPN).
fn read_config(files: &TlsFiles) -> Result<(Digest32, ServerConfig), TlsError> {
    let digest = digest_files(files)?;
    let certs = certificates("tls_cert", &files.cert)?;
    let key = private_key("tls_key", &files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls_cert", &files.cert, &e))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let roots = root_store("tls_client_ca", path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("tls_client_ca", path, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Invalid {
            setting: "tls_key",
            path: files.key.clone(),
            reason: format!(
                "does not go with the certificate in {}: {e}",
                files.cert.display()
            ),
        })?;
    Ok((digest, config))
}

fn with_alpn(config: &ServerConfig, listener: Listener) -> ServerConfig {
    let mut config = config.clone();
    config.alpn_protocols = match listener {
        Listener::Grpc => vec![b"h2".to_vec()],
        Listener::Http => vec![b"http/1.1".to_vec()],
    };
    config
}

fn invalid(setting: &'static str, path: &Path, error: &dyn std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        setting,
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(setting, path, &format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(setting, path, &"no PEM CERTIFICATE block in it"));
    }
    Ok(certs)
}

/// A PEM file's CA certificates as a trust store, each checked to be usable as one.
pub fn root_store(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(setting, path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(setting, path, &format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The one private key of a PEM file (PKCS#8, PKCS#1 or SEC1). Its content never appears in
/// an error.
fn private_key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let reason = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM PRIVATE KEY block in it".into(),
            _ => "not a PEM private key".to_owned(),
        };
        invalid(setting, path, &reason)
    })
}

/// A TLS connection whose handshake finished, and its peer's address.
pub type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// Accepts TCP connections on `listener` until `shutdown` and hands each to the server once
/// its TLS handshake finishes. Handshakes run on their own tasks with a timeout, so a slow or
/// failed one neither stops the loop nor delays other clients.
pub fn accept(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    which: Listener,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Accepted> {
    let (tx, rx) = mpsc::channel(64);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = ?which, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                tracing::warn!(listener = ?which, %peer, "too many TLS handshakes in progress; connection closed");
                continue;
            };
            // Nagle's algorithm stalls small keep-alive responses by ~40 ms.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let acceptor = tls.acceptor(which);
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        // The server may have stopped meanwhile; the connection just closes.
                        let _ = tx.send((stream, peer)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(listener = ?which, %peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        tracing::debug!(listener = ?which, %peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    rx
}

/// The HTTP server's listener over [`accept`]'s finished handshakes.
pub struct HttpListener {
    incoming: mpsc::Receiver<Accepted>,
    local: SocketAddr,
}

impl HttpListener {
    pub fn new(incoming: mpsc::Receiver<Accepted>, local: SocketAddr) -> Self {
        Self { incoming, local }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (shutdown): nothing more comes, and the server's graceful
            // shutdown ends this wait.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
