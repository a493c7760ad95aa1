//! The inference role: serves one registered model — the version a stage, an alias or a number
//! picks — from the tracking role's registry, followed over gRPC and swapped in atomically
//! while requests keep flowing, with explanations, metrics and input drift.
//!
//! Requests in flight keep the `Arc<Served>` they started with, so a swap never fails one.
//! Every transport (`/predict`, MLflow's `/invocations`, KServe's Open Inference Protocol over
//! REST and gRPC, `readmit.v1.Inference`) parses its records through [`input`] and scores them
//! through [`Inference::predict`].

mod batch;
mod cache;
mod drift;
mod error;
mod follow;
pub mod input;
mod metrics;
mod served;
pub mod target;
pub mod tensors;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use readmit_ml::record::RawRecord;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use error::{InferenceError, Place};
pub use metrics::Endpoint;
pub use served::{Contribution, Scored, Served, ServedMeta};
pub use target::{ModelTarget, Pick};

use batch::Batcher;
use cache::Cache;
use metrics::InferenceMetrics;

/// The default registered model and stage, as the original system named them.
pub const DEFAULT_TARGET: &str = "models:/best_diabetes_readmission_model/Production";

/// Requests of up to this many rows are scored by the dynamic batcher, together with others
/// that arrive meanwhile; larger ones on a blocking thread of their own, so a big request
/// cannot hold up the small ones queued behind it.
const BATCHED_ROWS: usize = 64;

/// Most fields an explanation lists.
pub const MAX_EXPLAIN: usize = 50;

/// How the role is set up: what it follows, where it reaches tracking, its limits.
#[derive(Clone, Debug)]
pub struct InferenceConfig {
    pub target: ModelTarget,
    /// The tracking role's gRPC URL.
    pub tracking_url: String,
    pub token: Option<String>,
    /// How to verify the tracking role's certificate and which one to present.
    pub tls: readmit_proto::ClientTls,
    /// Where bundles are cached (`<data-dir>/models`).
    pub cache_dir: PathBuf,
    /// Most records in one request.
    pub max_records: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Recent records the drift gauges are computed over.
    pub drift_window: usize,
}

/// What the role serves now and how following the registry goes.
#[derive(Clone, Debug)]
pub struct Status {
    pub served: Option<Arc<Served>>,
    pub following: String,
    pub last_error: String,
}

/// Scores, with the model that produced them.
#[derive(Debug)]
pub struct Prediction {
    pub served: Arc<Served>,
    pub scored: Vec<Scored>,
}

/// The inference role of a running agent. Cheap to clone.
#[derive(Clone)]
pub struct Inference {
    inner: Arc<Inner>,
}

struct Inner {
    config: InferenceConfig,
    cache: Cache,
    served: Arc<ArcSwapOption<Served>>,
    ready: watch::Sender<bool>,
    last_error: Mutex<String>,
    /// Versions whose bundle failed a check, with why: not tried again until asked.
    refused: Mutex<HashMap<i64, String>>,
    /// One load at a time: the follower's and `reload`'s.
    loading: tokio::sync::Mutex<()>,
    metrics: InferenceMetrics,
    batcher: Batcher,
}

impl Inference {
    /// Registers the role's metrics and starts following the registry; the last cached model
    /// serves as soon as it is loaded, before tracking has answered.
    pub fn start(
        config: InferenceConfig,
        registry: &prometheus::Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, prometheus::Error> {
        let served = Arc::new(ArcSwapOption::empty());
        let metrics = InferenceMetrics::new(registry, Arc::clone(&served))?;
        let batcher = Batcher::new(registry)?;
        let inference = Self {
            inner: Arc::new(Inner {
                cache: Cache::new(config.cache_dir.clone()),
                config,
                served,
                ready: watch::channel(false).0,
                last_error: Mutex::new(String::new()),
                refused: Mutex::new(HashMap::new()),
                loading: tokio::sync::Mutex::new(()),
                metrics,
                batcher,
            }),
        };
        tokio::spawn(follow::run(inference.clone(), shutdown));
        Ok(inference)
    }

    pub fn config(&self) -> &InferenceConfig {
        &self.inner.config
    }

    /// The model serving now, if any.
    pub fn served(&self) -> Option<Arc<Served>> {
        self.inner.served.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.inner.served.load().is_some()
    }

    /// Turns true when the first model is loaded (and stays true: a model, once served, is
    /// only ever replaced).
    pub fn ready_watch(&self) -> watch::Receiver<bool> {
        self.inner.ready.subscribe()
    }

    pub fn status(&self) -> Status {
        Status {
            served: self.served(),
            following: self.inner.config.target.to_string(),
            last_error: lock(&self.inner.last_error).clone(),
        }
    }

    /// The served model when `name` (and `version`, if given and not empty) name it, as the
    /// Open Inference Protocol addresses models.
    pub fn served_as(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<Served>, InferenceError> {
        let target = &self.inner.config.target.name;
        if name != target {
            return Err(InferenceError::UnknownModel {
                reason: format!("model {name:?} is not served here; this server serves {target:?}"),
            });
        }
        let served = self.served().ok_or_else(|| self.not_ready())?;
        if let Some(v) = version.filter(|v| !v.is_empty())
            && v != served.meta.version.to_string()
        {
            return Err(InferenceError::UnknownModel {
                reason: format!(
                    "{name} version {v:?} is not served; version {} is",
                    served.meta.version
                ),
            });
        }
        Ok(served)
    }

    fn not_ready(&self) -> InferenceError {
        InferenceError::NotReady {
            following: self.inner.config.target.to_string(),
            reason: lock(&self.inner.last_error).clone(),
        }
    }

    /// Scores records that came through `endpoint` with the model serving now, with the
    /// `explain` fields that moved each score most (0 for none).
    pub async fn predict(
        &self,
        endpoint: Endpoint,
        records: Vec<RawRecord>,
        explain: usize,
    ) -> Result<Prediction, InferenceError> {
        input::check_count(records.len(), self.inner.config.max_records)?;
        if explain > MAX_EXPLAIN {
            return Err(InferenceError::invalid(
                Place::field("explain"),
                format!("{explain} is more than the {MAX_EXPLAIN} fields an explanation lists"),
            ));
        }
        let served = self.served().ok_or_else(|| self.not_ready())?;
        // The work, in rows: each record, and with an explanation up to one variant per field
        // the model reads (re-walked in part, but still work on this thread).
        let rows = records.len()
            * if explain > 0 {
                1 + served.explained_fields()
            } else {
                1
            };
        let (scored, records) = if rows <= BATCHED_ROWS {
            let mut rows = served.rows(&records, explain);
            let data = std::mem::take(&mut rows.data);
            let scores = self
                .inner
                .batcher
                .score(
                    Arc::clone(&served),
                    data,
                    rows.n_rows,
                    endpoint.batch_turns(),
                )
                .await?;
            (served.finish(rows, &scores), records)
        } else {
            let model = Arc::clone(&served);
            tokio::task::spawn_blocking(move || {
                model.score(&records, explain).map(|s| (s, records))
            })
            .await
            .map_err(|e| InferenceError::Internal {
                reason: format!("a scoring thread failed: {e}"),
            })??
        };
        served.drift.observe(&records);
        self.inner
            .metrics
            .probabilities(scored.iter().map(|s| s.probability));
        Ok(Prediction { served, scored })
    }

    /// Counts one answered request of an interface.
    pub fn observe(&self, endpoint: Endpoint, error: Option<&InferenceError>, seconds: f64) {
        self.inner.metrics.request(endpoint, error, seconds);
    }

    /// Loads a version now: `None` resolves what the role follows, `Some(v)` that version of
    /// the followed model, which then serves until the registry changes again. A version
    /// refused earlier is tried again.
    pub async fn reload(&self, version: Option<i64>) -> Result<ServedMeta, InferenceError> {
        let reload = |reason: String| InferenceError::Reload { reason };
        let client = self.connect().await.map_err(reload)?;
        let name = &self.inner.config.target.name;
        let found = match version {
            Some(v) => client
                .model_version(name, v)
                .await
                .map_err(|e| reload(e.to_string()))?,
            None => self.resolve(&client).await.map_err(reload)?,
        };
        let Some(found) = found else {
            return Err(InferenceError::UnknownModel {
                reason: match version {
                    Some(v) => format!("{name} has no version {v}"),
                    None => format!("{} resolves to no version", self.inner.config.target),
                },
            });
        };
        lock(&self.inner.refused).remove(&found.version);
        self.load(&client, found).await.map_err(reload)
    }

    fn set_error(&self, error: String) {
        if !error.is_empty() {
            tracing::warn!(error = %error, following = %self.inner.config.target, "inference");
        }
        *lock(&self.inner.last_error) = error;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the inference role the settings describe: it follows its model through the tracking
/// role (the configured one, else this agent's own).
pub fn start(
    settings: &crate::settings::Settings,
    listeners: crate::roles::Listeners,
    registry: &prometheus::Registry,
    shutdown: &CancellationToken,
) -> Result<Inference, prometheus::Error> {
    let tracking_url = settings.tracking_target(listeners.grpc);
    let config = InferenceConfig {
        target: settings.model.clone(),
        tls: settings.client_tls(&tracking_url),
        tracking_url,
        token: settings.token.clone(),
        cache_dir: settings.data_dir.join("models"),
        max_records: settings.inference_max_records,
        max_body_bytes: settings.inference_max_body_bytes,
        drift_window: settings.drift_window,
    };
    Inference::start(config, registry, shutdown.clone())
}
