//! The agent's Prometheus registry: process and host gauges from the status sampler, and
//! request counters and latency histograms that the gRPC and HTTP layers record.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::status::Sample;

/// Latency buckets in seconds, from 100 µs (a cached prediction) to 10 s (a large upload).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    uptime: Gauge,
    host_cpu: Gauge,
    host_memory_used: IntGauge,
    host_memory_total: IntGauge,
    process_cpu: Gauge,
    process_rss: IntGauge,
}

impl Metrics {
    pub fn new(version: &str, roles: &str, started_at_ms: i64) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let build = IntGauge::with_opts(
            Opts::new(
                "readmit_build_info",
                "Always 1; labels say what this agent runs.",
            )
            .const_label("version", version)
            .const_label("roles", roles),
        )?;
        build.set(1);
        let start = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
        )?;
        start.set(started_at_ms as f64 / 1000.0);
        let metrics = Self {
            grpc_requests: IntCounterVec::new(
                Opts::new(
                    "readmit_grpc_requests_total",
                    "gRPC calls by method and status code.",
                ),
                &["method", "code"],
            )?,
            grpc_duration: HistogramVec::new(
                HistogramOpts::new(
                    "readmit_grpc_request_duration_seconds",
                    "Time from a gRPC call's arrival to its response headers.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["method"],
            )?,
            http_requests: IntCounterVec::new(
                Opts::new(
                    "readmit_http_requests_total",
                    "HTTP requests by route, method, status.",
                ),
                &["route", "method", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "readmit_http_request_duration_seconds",
                    "Time from an HTTP request's arrival to its response headers.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "method"],
            )?,
            uptime: Gauge::new("readmit_uptime_seconds", "Seconds since the agent started.")?,
            host_cpu: Gauge::new("readmit_host_cpu_percent", "Host-wide CPU use, 0 to 100.")?,
            host_memory_used: IntGauge::new(
                "readmit_host_memory_used_bytes",
                "Memory in use on the host.",
            )?,
            host_memory_total: IntGauge::new(
                "readmit_host_memory_total_bytes",
                "Total memory of the host.",
            )?,
            process_cpu: Gauge::new(
                "readmit_process_cpu_percent",
                "CPU use of the agent process; 100 is one full core.",
            )?,
            process_rss: IntGauge::new(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(build))?;
        r.register(Box::new(start))?;
        r.register(Box::new(metrics.grpc_requests.clone()))?;
        r.register(Box::new(metrics.grpc_duration.clone()))?;
        r.register(Box::new(metrics.http_requests.clone()))?;
        r.register(Box::new(metrics.http_duration.clone()))?;
        r.register(Box::new(metrics.uptime.clone()))?;
        r.register(Box::new(metrics.host_cpu.clone()))?;
        r.register(Box::new(metrics.host_memory_used.clone()))?;
        r.register(Box::new(metrics.host_memory_total.clone()))?;
        r.register(Box::new(metrics.process_cpu.clone()))?;
        r.register(Box::new(metrics.process_rss.clone()))?;
        Ok(metrics)
    }

    /// The registry roles add their own collectors to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn observe_grpc(&self, method: &str, code: &str, seconds: f64) {
        self.grpc_requests.with_label_values(&[method, code]).inc();
        self.grpc_duration
            .with_label_values(&[method])
            .observe(seconds);
    }

    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// The Prometheus text exposition of every metric, with gauges set from `sample`.
    pub fn render(&self, sample: &Sample, uptime_s: f64) -> String {
        self.uptime.set(uptime_s);
        self.host_cpu.set(f64::from(sample.cpu_percent));
        self.host_memory_used
            .set(saturating_i64(sample.memory_used_bytes));
        self.host_memory_total
            .set(saturating_i64(sample.memory_total_bytes));
        self.process_cpu.set(f64::from(sample.process_cpu_percent));
        self.process_rss
            .set(saturating_i64(sample.process_rss_bytes));
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec only fails on a metric with invalid labels, which
        // registration has already ruled out.
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .unwrap_or_default();
        String::from_utf8(out).unwrap_or_default()
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
