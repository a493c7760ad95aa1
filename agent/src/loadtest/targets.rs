//! The real clients a simulated user sends with: one HTTP/1.1 keep-alive connection (hyper,
//! TCP_NODELAY) to `/predict`, `/invocations` or the OIP `infer`, or one gRPC channel to
//! `readmit.v1.Inference/Predict` through `proto::Client`. A broken or timed-out connection is
//! dropped and made again on the next request. `bench serve` sends with the same connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use readmit_proto::Svc;
use readmit_proto::v1::inference_client::InferenceClient;

use super::payloads::Bodies;
use super::stats::ErrorKind;

/// What every connection of one test shares: where to send, the bodies, the timeout.
pub struct Prepared {
    /// `host:port`.
    pub authority: String,
    /// `http://host:port`.
    pub url: String,
    pub bodies: Bodies,
    pub timeout: Duration,
    /// `Bearer <token>` when the engine's agent has a token.
    pub authorization: Option<http::HeaderValue>,
    pub token: Option<String>,
}

impl Prepared {
    pub fn new(url: &str, bodies: Bodies, timeout: Duration, token: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            authority: url.trim_start_matches("http://").to_owned(),
            url: url.to_owned(),
            bodies,
            timeout,
            authorization: token
                .and_then(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).ok()),
            token: token.map(str::to_owned),
        })
    }
}

/// One user's connection, made on first use.
pub struct Conn {
    prepared: Arc<Prepared>,
    http: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
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
                    let client =
                        readmit_proto::Client::connect(&prepared.url, prepared.token.as_deref())
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
            self.http = Some(connect_http(&self.prepared.authority).await?);
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

/// One HTTP/1.1 connection with TCP_NODELAY (without it small requests stall 40 ms).
pub async fn connect_http(
    authority: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ErrorKind> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    stream.set_nodelay(true).map_err(|_| ErrorKind::Connect)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Connect)?;
    tokio::spawn(conn);
    Ok(sender)
}
