//! The typed client facade: one connection to an agent, one token, a client per service.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

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
        let url = normalize_url(url)?;
        let auth = TokenInterceptor::new(token)?;
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ClientError::InvalidUrl {
                url: url.clone(),
                reason: error_chain(&e),
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
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
