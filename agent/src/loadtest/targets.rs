//! The real clients a simulated user sends with: one HTTP/1.1 keep-alive connection (hyper,
//! TCP_NODELAY, over rustls for `https://` targets) to `/predict`, `/invocations` or the OIP
//! `infer`, or one gRPC channel to `readmit.v1.Inference/Predict` through `proto::Client`. A
//! broken or timed-out connection is dropped and made again on the next request. `bench serve`
//! sends with the same connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use readmit_proto::v1::inference_client::InferenceClient;
use readmit_proto::{ClientTls, Svc};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::LoadTestError;
use super::payloads::Bodies;
use super::stats::ErrorKind;
use crate::tls::TlsFiles;

/// How the engine's clients secure `https://` targets: the CA their certificates chain to
/// (setting `tls_ca`; without one, the public web roots) and the agent's own certificate, for
/// targets that require mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct TargetTls {
    pub ca: Option<std::path::PathBuf>,
    pub identity: Option<TlsFiles>,
}

impl TargetTls {
    /// As a client's options: gRPC's, and HTTP/1.1's through `ClientTls::rustls_config`.
    pub fn client(&self) -> ClientTls {
        ClientTls {
            ca_cert: self.ca.clone(),
            cert: self.identity.as_ref().map(|f| f.cert.clone()),
            key: self.identity.as_ref().map(|f| f.key.clone()),
        }
    }
}

/// An `https://` HTTP target: the connector and the name its certificate must carry.
struct Https {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// What every connection of one test shares: where to send, the bodies, the timeout.
pub struct Prepared {
    /// `host:port`.
    pub authority: String,
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    pub bodies: Bodies,
    pub timeout: Duration,
    /// `Bearer <token>` when the engine's agent has a token.
    pub authorization: Option<http::HeaderValue>,
    pub token: Option<String>,
    https: Option<Https>,
    grpc_tls: ClientTls,
}

impl Prepared {
    /// `url` is a checked base URL (`safety::check_target`); TLS files are read now, so a
    /// bad one refuses the test instead of failing every request.
    pub fn new(
        url: &str,
        bodies: Bodies,
        timeout: Duration,
        token: Option<&str>,
        tls: &TargetTls,
    ) -> Result<Arc<Self>, LoadTestError> {
        let (secure, authority) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some((_, rest)) => (false, rest),
            None => (false, url),
        };
        let mut https = None;
        let mut grpc_tls = ClientTls::default();
        if secure {
            if matches!(bodies, Bodies::Grpc { .. }) {
                grpc_tls = tls.client();
            } else {
                let config =
                    tls.client()
                        .rustls_config(url)
                        .map_err(|e| LoadTestError::Unavailable {
                            reason: format!("cannot call {url} over TLS: {e}"),
                        })?;
                let host = http::uri::Authority::try_from(authority)
                    .map(|a| a.host().trim_matches(['[', ']']).to_owned())
                    .unwrap_or_default();
                let name = ServerName::try_from(host).map_err(|e| LoadTestError::Invalid {
                    field: "target.url",
                    reason: format!("{url}: not a name a certificate can carry: {e}"),
                })?;
                https = Some(Https {
                    connector: TlsConnector::from(Arc::new(config)),
                    name,
                });
            }
        }
        Ok(Arc::new(Self {
            authority: authority.to_owned(),
            url: url.to_owned(),
            bodies,
            timeout,
            authorization: token
                .and_then(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).ok()),
            token: token.map(str::to_owned),
            https,
            grpc_tls,
        }))
    }
}

/// One user's connection, made on first use.
pub struct Conn {
    prepared: Arc<Prepared>,
    http: Option<Sender>,
    grpc: Option<InferenceClient<Svc>>,
}

impl Conn {
    pub fn new(prepared: Arc<Prepared>) -> Self {
        Self {
            prepared,
            http: None,
            grpc: None,
        }
    }

    /// Sends request `index` (of the bodies, wrapping) and waits for the whole answer.
    pub async fn send(&mut self, index: usize) -> Result<(), ErrorKind> {
        let timeout = self.prepared.timeout;
        match tokio::time::timeout(timeout, self.send_inner(index)).await {
            Ok(result) => result,
            Err(_) => {
                // The connection's state is unknown after an abandoned request.
                self.http = None;
                self.grpc = None;
                Err(ErrorKind::Timeout)
            }
        }
    }

    async fn send_inner(&mut self, index: usize) -> Result<(), ErrorKind> {
        let prepared = Arc::clone(&self.prepared);
        match &prepared.bodies {
            Bodies::Http {
                path,
                content_type,
                bodies,
            } => {
                let body = bodies[index % bodies.len()].clone();
                let result = self.http_request(path, content_type, body).await;
                if matches!(result, Err(ErrorKind::Io | ErrorKind::Connect)) {
                    self.http = None;
                }
                result
            }
            Bodies::Grpc { requests } => {
                let request = requests[index % requests.len()].clone();
                if self.grpc.is_none() {
                    let client = readmit_proto::Client::connect_with(
                        &prepared.url,
                        prepared.token.as_deref(),
                        &prepared.grpc_tls,
                    )
                    .await
                    .map_err(|_| ErrorKind::Connect)?;
                    self.grpc = Some(client.inference());
                }
                let Some(grpc) = self.grpc.as_mut() else {
                    return Err(ErrorKind::Connect);
                };
                match grpc.predict(request).await {
                    Ok(_) => Ok(()),
                    Err(status) => Err(ErrorKind::Grpc(status.code() as i32)),
                }
            }
        }
    }

    async fn http_request(
        &mut self,
        path: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<(), ErrorKind> {
        if self.http.is_none() {
            self.http = Some(match &self.prepared.https {
                None => connect_http(&self.prepared.authority).await?,
                Some(https) => connect_https(&self.prepared.authority, https).await?,
            });
        }
        let Some(sender) = self.http.as_mut() else {
            return Err(ErrorKind::Connect);
        };
        sender.ready().await.map_err(|_| ErrorKind::Io)?;
        let mut request = http::Request::post(path)
            .header(http::header::HOST, self.prepared.authority.as_str())
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some(auth) = &self.prepared.authorization {
            request = request.header(http::header::AUTHORIZATION, auth.clone());
        }
        let request = request.body(Full::new(body)).map_err(|_| ErrorKind::Io)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| ErrorKind::Io)?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|_| ErrorKind::Io)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(ErrorKind::Status(status.as_u16()))
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A TCP connection with TCP_NODELAY (without it small requests stall 40 ms).
async fn connect_tcp(authority: &str) -> Result<tokio::net::TcpStream, ErrorKind> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    stream.set_nodelay(true).map_err(|_| ErrorKind::Connect)?;
    Ok(stream)
}

/// HTTP/1.1 over `io`, its connection driven on its own task.
async fn handshake<T>(io: T) -> Result<Sender, ErrorKind>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One plain HTTP/1.1 connection.
pub async fn connect_http(authority: &str) -> Result<Sender, ErrorKind> {
    handshake(connect_tcp(authority).await?).await
}

/// One HTTP/1.1 connection over TLS; a refused handshake counts as a connect error.
async fn connect_https(authority: &str, https: &Https) -> Result<Sender, ErrorKind> {
    let tcp = connect_tcp(authority).await?;
    let tls = https
        .connector
        .connect(https.name.clone(), tcp)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    handshake(tls).await
}
