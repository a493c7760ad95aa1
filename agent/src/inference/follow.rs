//! Following the registry: serve the cached model at once, then watch the tracking role's
//! registry stream, resolve the target after every change, and download, check and swap in
//! a new version when the target moves. Reconnects with backoff; never stops serving what it
//! has.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use readmit_ml::bundle::LoadedBundle;
use readmit_proto::{Client, VersionInfo};
use tokio_util::sync::CancellationToken;

use super::metrics::LoadOutcome;
use super::served::{Served, ServedMeta};
use super::target::Pick;
use super::{Inference, lock};

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Largest bundle the role downloads.
const MAX_BUNDLE_BYTES: u64 = 1 << 30;

pub(super) async fn run(inference: Inference, shutdown: CancellationToken) {
    inference.serve_cached().await;
    let mut backoff = BACKOFF_MIN;
    loop {
        let ended = tokio::select! {
            () = shutdown.cancelled() => return,
            ended = inference.follow(&mut backoff) => ended,
        };
        inference.set_error(ended);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// `runs:/<run_id>/<path>` as its parts.
fn run_source(source: &str) -> Option<(&str, &str)> {
    let (run_id, path) = source.strip_prefix("runs:/")?.split_once('/')?;
    (!run_id.is_empty() && !path.is_empty()).then_some((run_id, path))
}

impl Inference {
    pub(super) async fn connect(&self) -> Result<Client, String> {
        let config = &self.inner.config;
        if config.tracking_url.is_empty() {
            return Err(
                "no tracking role to follow: run this agent with the tracking role \
                        or set --tracking-url"
                    .into(),
            );
        }
        Client::connect_with(&config.tracking_url, config.token.as_deref(), &config.tls)
            .await
            .map_err(|e| format!("tracking at {}: {e}", config.tracking_url))
    }

    /// Serves the version that served last, from the cache, if it still loads.
    async fn serve_cached(&self) {
        let name = self.inner.config.target.name.clone();
        let cache = self.inner.cache.clone();
        let cached = tokio::task::spawn_blocking(move || {
            cache.clear_partial(&name);
            let (meta, dir) = cache.current(&name)?;
            match LoadedBundle::load(&dir) {
                Ok(bundle) => Some((meta, bundle)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "the cached model does not load");
                    None
                }
            }
        })
        .await
        .ok()
        .flatten();
        if let Some((meta, bundle)) = cached {
            tracing::info!(name = %meta.name, version = meta.version, "serving the cached model");
            self.swap(bundle, meta);
        }
    }

    /// One connection's worth of following; returns why it ended.
    async fn follow(&self, backoff: &mut Duration) -> String {
        let client = match self.connect().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        // Watch before resolving, so no change between the two is missed.
        let mut changes = match client.watch_registry(&self.inner.config.target.name).await {
            Ok(s) => Box::pin(s),
            // With its causes: a refused TLS handshake says why only below "transport error".
            Err(e) => return readmit_proto::error_chain(&e),
        };
        *backoff = BACKOFF_MIN;
        self.sync(&client).await;
        loop {
            match changes.next().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return e.to_string(),
                None => return "the tracking agent ended the registry stream".into(),
            }
            // Changes that arrived together (a promotion archives the old version) are one.
            loop {
                match changes.next().now_or_never() {
                    Some(Some(Ok(_))) => {}
                    Some(Some(Err(e))) => return e.to_string(),
                    Some(None) => return "the tracking agent ended the registry stream".into(),
                    None => break,
                }
            }
            self.sync(&client).await;
        }
    }

    /// Resolves the target and loads it if it is not what serves.
    async fn sync(&self, client: &Client) {
        let wanted = match self.resolve(client).await {
            Ok(w) => w,
            Err(e) => return self.set_error(e),
        };
        let serving = self.served().map(|s| s.meta.version);
        // The served version's stage moves while it serves (promoted, archived).
        if let Some(version) = serving {
            let stage = match &wanted {
                Some(w) if w.version == version => Some(w.stage.clone()),
                _ => client
                    .model_version(&self.inner.config.target.name, version)
                    .await
                    .ok()
                    .flatten()
                    .map(|v| v.stage),
            };
            if let Some(stage) = stage {
                self.note_stage(version, &stage);
            }
        }
        let Some(wanted) = wanted else {
            let still = serving.map_or(String::new(), |v| format!("; still serving version {v}"));
            return self.set_error(format!(
                "{} resolves to no version{still}",
                self.inner.config.target
            ));
        };
        if serving == Some(wanted.version) {
            return self.set_error(String::new());
        }
        if let Some(reason) = lock(&self.inner.refused).get(&wanted.version) {
            return self.set_error(format!("version {} was refused: {reason}", wanted.version));
        }
        if let Err(e) = self.load(client, wanted).await {
            self.set_error(e);
        }
    }

    /// The version the target picks now; `None` when it picks none.
    pub(super) async fn resolve(&self, client: &Client) -> Result<Option<VersionInfo>, String> {
        let target = &self.inner.config.target;
        let found = match &target.pick {
            Pick::Stage(stage) => client.model_versions(&target.name).await.map(|versions| {
                versions
                    .into_iter()
                    .filter(|v| v.stage == *stage)
                    .max_by_key(|v| v.version)
            }),
            Pick::Alias(alias) => client.version_by_alias(&target.name, alias).await,
            Pick::Version(v) => client.model_version(&target.name, *v).await,
        };
        found.map_err(|e| e.to_string())
    }

    /// Downloads a version into the cache, checks it and swaps it in. A bundle that fails a
    /// check is refused (and remembered) while the previous model keeps serving.
    pub(super) async fn load(
        &self,
        client: &Client,
        version: VersionInfo,
    ) -> Result<ServedMeta, String> {
        let _one_at_a_time = self.inner.loading.lock().await;
        let name = self.inner.config.target.name.clone();
        if let Some(served) = self.served().filter(|s| s.meta.version == version.version) {
            return Ok(served.meta.clone());
        }
        let label = format!("{name} version {}", version.version);
        let Some((run_id, path)) = run_source(&version.source) else {
            return Err(self.refuse(
                version.version,
                format!(
                    "{label}: its source {:?} is not runs:/RUN_ID/PATH, the only kind this \
                     role downloads",
                    version.source
                ),
            ));
        };
        let cache = &self.inner.cache;
        let staging = cache
            .staging_dir(&name, version.version)
            .map_err(|e| format!("{label}: cannot create its cache directory: {e}"))?;
        let downloaded = client
            .download_dir(run_id, path, &staging, MAX_BUNDLE_BYTES)
            .await;
        if let Err(e) = downloaded {
            let _ = std::fs::remove_dir_all(&staging);
            self.inner.metrics.load(LoadOutcome::DownloadFailed);
            return Err(format!("{label}: download failed: {e}"));
        }
        let checked = {
            let staging = staging.clone();
            tokio::task::spawn_blocking(move || LoadedBundle::load(&staging))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let bundle = match checked {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(self.refuse(version.version, format!("{label} refused: {e}")));
            }
        };
        cache
            .accept(&staging, &name, version.version)
            .map_err(|e| format!("{label}: cannot keep it in the cache: {e}"))?;
        let meta = ServedMeta {
            name,
            version: version.version,
            stage: version.stage,
            run_id: version.run_id,
            source: version.source,
            loaded_at_ms: crate::now_ms(),
        };
        if let Err(e) = cache.set_current(&meta) {
            tracing::warn!(error = %e, "cannot record the served version in the cache");
        }
        self.swap(bundle, meta.clone());
        self.set_error(String::new());
        Ok(meta)
    }

    fn refuse(&self, version: i64, reason: String) -> String {
        self.inner.metrics.load(LoadOutcome::Refused);
        tracing::error!(version, reason = %reason, "model refused; the previous one keeps serving");
        lock(&self.inner.refused).insert(version, reason.clone());
        reason
    }

    fn swap(&self, bundle: LoadedBundle, meta: ServedMeta) {
        tracing::info!(name = %meta.name, version = meta.version, stage = %meta.stage, "model serving");
        let served = Served::new(bundle, meta, self.inner.config.drift_window);
        self.inner.served.store(Some(Arc::new(served)));
        self.inner.metrics.load(LoadOutcome::Loaded);
        self.inner.metrics.swapped();
        self.inner.ready.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_run_sources_download() {
        assert_eq!(run_source("runs:/abc/model"), Some(("abc", "model")));
        assert_eq!(run_source("runs:/abc/a/b"), Some(("abc", "a/b")));
        assert_eq!(run_source("models:/m-1"), None);
        assert_eq!(run_source("runs:/abc"), None);
        assert_eq!(run_source("runs://model"), None);
    }
}
