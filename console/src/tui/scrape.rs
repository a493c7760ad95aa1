//! The Metrics and Overview screens' scrapes of an agent's `/metrics`: one HTTP client per
//! agent, over TLS when the agent serves it — verified with that agent's CA file (else the
//! public roots) and presenting its client certificate for mutual TLS — and with its token,
//! for agents that set `metrics_auth`.

use std::sync::Arc;
use std::time::Duration;

use readmit_proto::ClientTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::fleet::AgentSpec;

/// A scrape answered in this time or counts as failed.
const TIMEOUT: Duration = Duration::from_secs(3);

/// How one agent's `/metrics` is fetched.
#[derive(Clone)]
pub struct Scraper {
    http: reqwest_tls::Client,
    token: Option<String>,
}

impl Scraper {
    /// The client for `spec`'s agent; an unreadable TLS file is an error naming it.
    pub fn new(spec: &AgentSpec) -> Result<Self, String> {
        let tls = client_config(&spec.tls)?;
        let http = reqwest_tls::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| readmit_proto::error_chain(&e))?;
        Ok(Self {
            http,
            token: spec.token.clone(),
        })
    }

    /// The Prometheus text at `{base}/metrics`.
    pub async fn metrics(&self, base: &str) -> Result<String, String> {
        let mut request = self.http.get(format!("{base}/metrics"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Err(e) => Err(readmit_proto::error_chain(&e)),
            Ok(r) if !r.status().is_success() => {
                Err(format!("{base}/metrics answered {}", r.status()))
            }
            Ok(r) => r.text().await.map_err(|e| readmit_proto::error_chain(&e)),
        }
    }
}

fn read_error(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// rustls on ring: the agent's CA file or the public roots, and its client certificate.
fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_cert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| read_error("CA certificate", path, e))?
            {
                let cert = cert.map_err(|e| read_error("CA certificate", path, e))?;
                roots
                    .add(cert)
                    .map_err(|e| read_error("CA certificate", path, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots);
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| read_error("client certificate", cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read_error("client certificate", cert, e))?;
            // The key's content never appears in an error.
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|_| format!("client key {}: not a PEM private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| read_error("client certificate", cert, e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use readmit_agent::settings::RawSettings;

    #[tokio::test(flavor = "multi_thread")]
    async fn an_agent_behind_mutual_tls_and_metrics_auth_is_scraped_with_its_files_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::cli::certs::init(&["localhost".into()], 1).unwrap();
        crate::cli::certs::write_all(dir.path(), &files, false).unwrap();
        let file = |name: &str| dir.path().join(name);
        let token = "a-scrape-token-of-thirty-two-chars";
        let settings = RawSettings {
            tls_cert: Some(file("localhost.pem")),
            tls_key: Some(file("localhost-key.pem")),
            tls_client_ca: Some(file("ca.pem")),
            token: Some(token.into()),
            metrics_auth: true,
            ..RawSettings::loopback(&dir.path().join("data"), &[readmit_agent::Role::Tracking])
        }
        .validate()
        .unwrap();
        let agent = readmit_agent::RunningAgent::start(settings).await.unwrap();
        let base = format!("https://localhost:{}", agent.http_addr.port());
        let spec = |token: Option<&str>, cert: bool| AgentSpec {
            name: "a".into(),
            url: agent.grpc_url(),
            token: token.map(str::to_owned),
            tls: ClientTls {
                ca_cert: Some(file("ca.pem")),
                cert: cert.then(|| file("console.pem")),
                key: cert.then(|| file("console-key.pem")),
            },
        };
        let text = Scraper::new(&spec(Some(token), true))
            .unwrap()
            .metrics(&base)
            .await
            .unwrap();
        assert!(text.contains("# TYPE"), "{text}");
        // Without the token metrics_auth refuses; without the client certificate TLS does.
        let refused = Scraper::new(&spec(None, true))
            .unwrap()
            .metrics(&base)
            .await
            .unwrap_err();
        assert!(refused.contains("401"), "{refused}");
        assert!(
            Scraper::new(&spec(Some(token), false))
                .unwrap()
                .metrics(&base)
                .await
                .is_err()
        );
        agent.stop().await.unwrap();
    }
}
