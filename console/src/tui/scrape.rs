//! The Metrics and Overview screens' scrapes of an agent's `/metrics`: one HTTP client per
//! agent, over TLS when the agent serves it — verified with that agent's CA file (else the
//! public roots) and presenting its client certificate for mutual TLS — and with its token,
//! for agents that set `metrics_auth`.

use std::time::Duration;

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
        let tls = spec
            .tls
            .rustls_config(&spec.url)
            .map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use readmit_agent::settings::RawSettings;
    use readmit_proto::ClientTls;

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
