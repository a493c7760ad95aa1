//! The inference role's Prometheus metrics: the original FastAPI server's names
//! (`inference_requests_total`, `inference_request_latency_seconds`), errors by kind, model
//! loads and swaps, the predicted probabilities, and input drift per raw field. Every label
//! value comes from a fixed set or from the served model, never from a request.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use super::InferenceError;
use super::served::Served;

/// The `outcome` label's values.
const OUTCOMES: [&str; 4] = ["ok", "client_error", "unavailable", "server_error"];

fn outcome(e: &InferenceError) -> &'static str {
    match e {
        InferenceError::NotReady { .. } | InferenceError::Reload { .. } => "unavailable",
        InferenceError::Internal { .. } => "server_error",
        InferenceError::Invalid { .. }
        | InferenceError::Malformed { .. }
        | InferenceError::Empty
        | InferenceError::TooLarge { .. }
        | InferenceError::UnknownModel { .. }
        | InferenceError::Unsupported { .. } => "client_error",
    }
}

/// The interfaces predictions arrive through: the `endpoint` label's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Predict,
    Invocations,
    OipRest,
    OipGrpc,
    GrpcPredict,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Predict,
        Endpoint::Invocations,
        Endpoint::OipRest,
        Endpoint::OipGrpc,
        Endpoint::GrpcPredict,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Predict => "predict",
            Endpoint::Invocations => "invocations",
            Endpoint::OipRest => "oip_rest",
            Endpoint::OipGrpc => "oip_grpc",
            Endpoint::GrpcPredict => "grpc_predict",
        }
    }
}

/// How a load of a registry version ended: the `outcome` label of model loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Checked and serving.
    Loaded,
    /// Downloaded but failed a check; the previous model keeps serving.
    Refused,
    /// Could not be fetched from tracking.
    DownloadFailed,
}

impl LoadOutcome {
    fn label(self) -> &'static str {
        match self {
            LoadOutcome::Loaded => "loaded",
            LoadOutcome::Refused => "refused",
            LoadOutcome::DownloadFailed => "download_failed",
        }
    }
}

const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

#[derive(Clone)]
pub struct InferenceMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    errors: IntCounterVec,
    loads: IntCounterVec,
    swaps: IntCounter,
    probability: Histogram,
}

impl InferenceMetrics {
    /// Registers every inference metric; the per-model gauges read `served` at each scrape.
    pub fn new(
        registry: &Registry,
        served: Arc<ArcSwapOption<Served>>,
    ) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "inference_requests_total",
                    "Prediction requests by endpoint and outcome (ok, client_error, unavailable, server_error).",
                ),
                &["endpoint", "outcome"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "inference_request_latency_seconds",
                    "Time to answer a prediction request, parsing and scoring included.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["endpoint"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "inference_errors_total",
                    "Refused or failed prediction requests by endpoint and kind.",
                ),
                &["endpoint", "kind"],
            )?,
            loads: IntCounterVec::new(
                Opts::new(
                    "inference_model_loads_total",
                    "Registry versions fetched and checked, by outcome.",
                ),
                &["outcome"],
            )?,
            swaps: IntCounter::new(
                "inference_model_swaps_total",
                "Times a newly loaded model replaced the one serving (the first load included).",
            )?,
            probability: Histogram::with_opts(
                HistogramOpts::new(
                    "inference_predicted_probability",
                    "Predicted probabilities of readmission within 30 days.",
                )
                .buckets((1..=20).map(|i| f64::from(i) * 0.05).collect()),
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.latency.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.loads.clone()))?;
        registry.register(Box::new(metrics.swaps.clone()))?;
        registry.register(Box::new(metrics.probability.clone()))?;
        registry.register(Box::new(ModelGauges::new(served)?))?;
        // Zero series for every endpoint, so dashboards and rate() see them before traffic.
        for endpoint in Endpoint::ALL {
            for outcome in OUTCOMES {
                metrics
                    .requests
                    .with_label_values(&[endpoint.label(), outcome]);
            }
        }
        Ok(metrics)
    }

    /// One answered request.
    pub fn request(&self, endpoint: Endpoint, error: Option<&InferenceError>, seconds: f64) {
        let outcome = match error {
            None => "ok",
            Some(e) => {
                self.errors
                    .with_label_values(&[endpoint.label(), e.kind()])
                    .inc();
                outcome(e)
            }
        };
        self.requests
            .with_label_values(&[endpoint.label(), outcome])
            .inc();
        self.latency
            .with_label_values(&[endpoint.label()])
            .observe(seconds);
    }

    pub fn probabilities(&self, values: impl IntoIterator<Item = f32>) {
        for p in values {
            self.probability.observe(f64::from(p));
        }
    }

    pub fn load(&self, outcome: LoadOutcome) {
        self.loads.with_label_values(&[outcome.label()]).inc();
    }

    pub fn swapped(&self) {
        self.swaps.inc();
    }
}

/// Gauges read from the served model when Prometheus scrapes: which model serves, and each
/// raw field's drift over the window of recent records.
struct ModelGauges {
    served: Arc<ArcSwapOption<Served>>,
    info: IntGaugeVec,
    psi: GaugeVec,
    window: IntGauge,
    descs: Vec<Desc>,
}

impl ModelGauges {
    fn new(served: Arc<ArcSwapOption<Served>>) -> Result<Self, prometheus::Error> {
        let info = IntGaugeVec::new(
            Opts::new(
                "inference_model_info",
                "1 for the model version being served.",
            ),
            &["name", "version"],
        )?;
        let psi = GaugeVec::new(
            Opts::new(
                "inference_input_psi",
                "Population stability index of each raw field over the recent records against \
                 training (above 0.25: the population has shifted).",
            ),
            &["field"],
        )?;
        let window = IntGauge::new(
            "inference_drift_window_records",
            "Recent records the drift gauges are computed over.",
        )?;
        let descs = info
            .desc()
            .into_iter()
            .chain(psi.desc())
            .chain(window.desc())
            .cloned()
            .collect();
        Ok(Self {
            served,
            info,
            psi,
            window,
            descs,
        })
    }
}

impl Collector for ModelGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.info.reset();
        self.psi.reset();
        self.window.set(0);
        if let Some(served) = self.served.load_full() {
            let version = served.meta.version.to_string();
            self.info
                .with_label_values(&[served.meta.name.as_str(), version.as_str()])
                .set(1);
            for (field, psi) in served.drift.psi() {
                self.psi.with_label_values(&[field]).set(psi);
            }
            self.window
                .set(i64::try_from(served.drift.records()).unwrap_or(i64::MAX));
        }
        let mut out = self.info.collect();
        out.extend(self.psi.collect());
        out.extend(self.window.collect());
        out
    }
}
