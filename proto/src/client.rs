//! The typed client facade: one connection to an agent, one token, a client per service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::v1::agent_client::AgentClient;
use crate::v1::etl_client::EtlClient;
use crate::v1::inference_client::InferenceClient;
use crate::v1::load_test_client::LoadTestClient;
use crate::v1::tracking_client::TrackingClient;

/// The transport every generated client runs over: a channel that adds the bearer token.
pub type Svc = InterceptedService<Channel, TokenInterceptor>;

/// Largest message a client accepts; artifacts and uploads travel in smaller chunks.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid agent URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach agent at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the token is not valid in an HTTP header (it must be visible ASCII)")]
    InvalidToken,
    #[error("TLS {what} {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS for {url}: {reason}")]
    Tls { url: String, reason: String },
}

/// How a client secures `https://` connections: the CA that signed the agents' certificates
/// (without one, the public web roots), and a client certificate for agents that ask for one
/// (mutual TLS). All default to none; a URL without a scheme is `https://` when any is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) the agent's certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// PEM file of this client's certificate chain, presented when the agent asks.
    pub cert: Option<PathBuf>,
    /// PEM file of that certificate's private key.
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// Whether any TLS option is set.
    pub fn is_set(&self) -> bool {
        self.ca_cert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// A rustls client configuration (on ring) for HTTP/1.1 callers — the load-test engine's
    /// `https://` targets, the console's `/metrics` scrapes: the CA file's certificates, else the
    /// public web roots, and the client certificate when both its files are set. Files are read
    /// now; errors name the file, never a key's content.
    pub fn rustls_config(&self, url: &str) -> Result<rustls::ClientConfig, ClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let file_error = |what: &'static str, path: &Path, reason: String| ClientError::TlsFile {
            what,
            path: path.to_owned(),
            reason,
        };
        let certificates = |what: &'static str, path: &Path| {
            let bytes = read_pem(what, path, "CERTIFICATE")?;
            CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(what, path, e.to_string()))
        };
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_cert {
            Some(path) => {
                for cert in certificates("CA certificate", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| file_error("CA certificate", path, e.to_string()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls {
            url: url.to_owned(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
        let mut config = match self.identity_files(url)? {
            Some((cert, key)) => {
                let chain = certificates("client certificate", cert)?;
                let key_der =
                    PrivateKeyDer::from_pem_slice(&read_pem("client key", key, "PRIVATE KEY")?)
                        .map_err(|_| {
                            file_error("client key", key, "not a PEM private key".into())
                        })?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| file_error("client certificate", cert, e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The tonic TLS configuration, its files read now (so a rotated file is used by the
    /// next connection).
    fn config(&self, url: &str) -> Result<ClientTlsConfig, ClientError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_cert {
            Some(path) => config.ca_certificate(Certificate::from_pem(read_pem(
                "CA certificate",
                path,
                "CERTIFICATE",
            )?)),
            None => config.trust_anchors(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        };
        if let Some((cert, key)) = self.identity_files(url)? {
            let cert = read_pem("client certificate", cert, "CERTIFICATE")?;
            let key = read_pem("client key", key, "PRIVATE KEY")?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(config)
    }

    /// The client certificate's and key's files, when both are set; one without the other is
    /// an error.
    fn identity_files(&self, url: &str) -> Result<Option<(&Path, &Path)>, ClientError> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((cert.as_path(), key.as_path()))),
            (None, None) => Ok(None),
            _ => Err(ClientError::Tls {
                url: url.to_owned(),
                reason: "a client certificate needs both its certificate and its key file".into(),
            }),
        }
    }
}

/// A PEM file's bytes, checked to hold a `-----BEGIN ...<label>-----` block (the key's content
/// never appears in an error).
fn read_pem(what: &'static str, path: &Path, label: &str) -> Result<Vec<u8>, ClientError> {
    let bytes = std::fs::read(path).map_err(|e| ClientError::TlsFile {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{label}-----")));
    if !found {
        return Err(ClientError::TlsFile {
            what,
            path: path.to_owned(),
            reason: format!("no PEM {label} block in it"),
        });
    }
    Ok(bytes)
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Debug, Default)]
pub struct TokenInterceptor {
    header: Option<AsciiMetadataValue>,
}

impl TokenInterceptor {
    pub fn new(token: Option<&str>) -> Result<Self, ClientError> {
        let header = token
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
            .transpose()
            .map_err(|_| ClientError::InvalidToken)?;
        Ok(Self { header })
    }
}

impl Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// A connection to one agent. Cheap to clone; every accessor shares the one HTTP/2 channel.
#[derive(Clone, Debug)]
pub struct Client {
    url: String,
    channel: Channel,
    auth: TokenInterceptor,
}

impl Client {
    /// Connects to an agent's gRPC listener. `url` may omit the scheme (`127.0.0.1:50051`).
    pub async fn connect(url: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::connect_with(url, token, &ClientTls::default()).await
    }

    /// Connects with TLS options for `https://` URLs (a scheme-less URL is `https://` when
    /// any is set). TLS options with an explicit `http://` URL are refused rather than
    /// ignored, so a typo never sends the token in clear text.
    pub async fn connect_with(
        url: &str,
        token: Option<&str>,
        tls: &ClientTls,
    ) -> Result<Self, ClientError> {
        let url = if tls.is_set() && !url.contains("://") {
            normalize_url(&format!("https://{}", url.trim()))?
        } else {
            normalize_url(url)?
        };
        let auth = TokenInterceptor::new(token)?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ClientError::InvalidUrl {
                url: url.clone(),
                reason: error_chain(&e),
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(tls.config(&url)?)
                .map_err(|e| ClientError::Tls {
                    url: url.clone(),
                    reason: error_chain(&e),
                })?;
        } else if tls.is_set() {
            return Err(ClientError::Tls {
                url,
                reason: "TLS options were given for a plain http:// URL; use https://".into(),
            });
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
        Ok(Self { url, channel, auth })
    }

    /// The agent's URL as connected to, with its scheme.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    pub fn agent(&self) -> AgentClient<Svc> {
        AgentClient::new(self.svc()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn etl(&self) -> EtlClient<Svc> {
        EtlClient::new(self.svc()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn tracking(&self) -> TrackingClient<Svc> {
        TrackingClient::new(self.svc()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn inference(&self) -> InferenceClient<Svc> {
        InferenceClient::new(self.svc()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn load_test(&self) -> LoadTestClient<Svc> {
        LoadTestClient::new(self.svc()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn health(&self) -> crate::health::health_client::HealthClient<Svc> {
        crate::health::health_client::HealthClient::new(self.svc())
    }

    pub fn reflection(
        &self,
    ) -> crate::reflection::server_reflection_client::ServerReflectionClient<Svc> {
        crate::reflection::server_reflection_client::ServerReflectionClient::new(self.svc())
    }
}

/// An agent URL with its scheme: `127.0.0.1:50051` becomes `http://127.0.0.1:50051`.
pub fn normalize_url(url: &str) -> Result<String, ClientError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(ClientError::InvalidUrl {
            url: url.into(),
            reason: "it is empty".into(),
        });
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_owned())
    } else if url.contains("://") {
        Err(ClientError::InvalidUrl {
            url: url.into(),
            reason: "the scheme must be http:// or https://".into(),
        })
    } else {
        Ok(format!("http://{url}"))
    }
}

/// An error and its causes on one line: transport errors (tonic's, reqwest's) say little at
/// the top ("error sending request"); their causes say why ("Connection refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme_and_bad_ones_name_themselves() {
        assert_eq!(
            normalize_url("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(normalize_url(" https://a:1 ").unwrap(), "https://a:1");
        let err = normalize_url("grpc://a:1").unwrap_err().to_string();
        assert!(
            err.contains("grpc://a:1") && err.contains("scheme"),
            "{err}"
        );
        assert!(normalize_url("").is_err());
    }

    #[test]
    fn tokens_must_fit_in_a_header() {
        assert!(TokenInterceptor::new(Some("s3cret-token")).is_ok());
        assert!(matches!(
            TokenInterceptor::new(Some("bad\ntoken")),
            Err(ClientError::InvalidToken)
        ));
    }
}
