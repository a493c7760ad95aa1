//! A test's figures: HDR histograms of latency (microseconds), counts and errors by kind,
//! recorded into a few locked shards by the users and drained once a second into a sample and
//! the running total.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub type Histogram = hdrhistogram::Histogram<u64>;

/// Latencies from 1 µs to 10 minutes at three significant digits; longer ones saturate.
pub fn histogram() -> Histogram {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        // Fixed, valid bounds: this cannot fail, but a panic here would take a test down.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Why one request failed, as a label from code: never text from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Answered with this HTTP status (not 2xx).
    Status(u16),
    /// Answered with this gRPC status code (not OK), as its number.
    Grpc(i32),
    /// Not answered within the target's timeout.
    Timeout,
    /// No connection could be made.
    Connect,
    /// The connection broke during the request.
    Io,
}

impl ErrorKind {
    pub fn label(self) -> String {
        match self {
            ErrorKind::Status(code) => format!("http_{code}"),
            ErrorKind::Grpc(code) => format!("grpc_{}", grpc_name(tonic::Code::from(code))),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Io => "io".into(),
        }
    }
}

fn grpc_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// What was measured over some span: the basis of samples, totals and threshold verdicts.
#[derive(Clone, Debug)]
pub struct Window {
    /// Every answered or timed-out request's latency. In an open loop, from the request's
    /// intended send time (coordinated omission corrected).
    pub latency: Histogram,
    /// Open loop only: the same requests from their actual send (service time alone).
    pub service: Histogram,
    pub ok: u64,
    pub failed: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Open loop: requests sent later than due (their latency still counts from when due).
    pub late: u64,
    /// Open loop: requests due before the test ended that were never sent.
    pub missed: u64,
    pub seconds: f64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            latency: histogram(),
            service: histogram(),
            ok: 0,
            failed: 0,
            errors: BTreeMap::new(),
            late: 0,
            missed: 0,
            seconds: 0.0,
        }
    }
}

impl Window {
    pub fn requests(&self) -> u64 {
        self.ok + self.failed
    }

    /// Failures as a share of requests due: sent ones and, in an open loop, missed ones.
    pub fn error_rate(&self) -> f64 {
        let due = self.requests() + self.missed;
        if due == 0 {
            0.0
        } else {
            (self.failed + self.missed) as f64 / due as f64
        }
    }

    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests() as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        ms(self.latency.value_at_quantile(q))
    }

    /// Adds `other` (a later or a parallel span) to this one.
    pub fn add(&mut self, other: &Window, seconds_too: bool) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.ok += other.ok;
        self.failed += other.failed;
        self.late += other.late;
        self.missed += other.missed;
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_default() += n;
        }
        if seconds_too {
            self.seconds += other.seconds;
        }
    }

    fn record(&mut self, outcome: Result<(), ErrorKind>, latency: Duration, service: Duration) {
        self.latency.saturating_record(us(latency));
        self.service.saturating_record(us(service));
        match outcome {
            Ok(()) => self.ok += 1,
            Err(kind) => {
                self.failed += 1;
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    pub fn figures(&self, open_loop: bool) -> Figures {
        Figures {
            requests: self.requests(),
            failures: self.failed,
            late: self.late,
            missed: self.missed,
            seconds: round3(self.seconds),
            rps: round3(self.rps()),
            error_rate: round6(self.error_rate()),
            latency: Latency::of(&self.latency),
            service: open_loop.then(|| Latency::of(&self.service)),
            errors: self.errors.iter().map(|(k, n)| (k.label(), *n)).collect(),
        }
    }
}

fn ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            mean_ms: round3(h.mean() / 1000.0),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// A window's figures as reported: samples, totals, steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub requests: u64,
    pub failures: u64,
    pub late: u64,
    pub missed: u64,
    pub seconds: f64,
    pub rps: f64,
    /// Failed and missed requests as a fraction of those due.
    pub error_rate: f64,
    pub latency: Latency,
    /// Open loop only: latency from each request's actual send, without the correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Latency>,
    pub errors: BTreeMap<String, u64>,
}

impl Figures {
    /// Whether requests were sent and not one of them got a connection: the target is down
    /// or refuses the engine (a test that then "fails its thresholds" would hide why).
    pub fn none_connected(&self) -> bool {
        self.requests > 0
            && self.failures == self.requests
            && self.errors.keys().all(|kind| kind == "connect")
    }
}

/// One second of a test, as `WatchLoadTest` streams it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub elapsed_s: f64,
    /// Users running now (closed loop) or connections busy (open loop).
    pub users: u32,
    /// The open loop's rate due now; the capacity step's level.
    pub target_rate: f64,
    /// The capacity search's step, from 1; 0 outside a search.
    pub step: u32,
    /// The last second.
    pub interval: Figures,
    pub total_requests: u64,
    pub total_failures: u64,
    /// Since the start (or the step's start, in a capacity search): p50/p95/p99 as judged.
    pub total_latency: Latency,
}

/// Where users record their requests: a few shards, so users seldom wait on each other.
#[derive(Clone)]
pub struct Recorder {
    shards: Arc<Vec<Mutex<Window>>>,
}

impl Recorder {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: Arc::new((0..shards.max(1)).map(|_| Mutex::default()).collect()),
        }
    }

    /// The user's handle: records into the shard for `user`.
    pub fn shard(&self, user: usize) -> Shard {
        Shard {
            recorder: self.clone(),
            index: user % self.shards.len(),
        }
    }

    /// Everything recorded since the last drain, leaving the shards empty.
    pub fn drain(&self) -> Window {
        let mut out = Window::default();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            out.add(&taken, false);
        }
        out
    }
}

pub struct Shard {
    recorder: Recorder,
    index: usize,
}

impl Shard {
    fn with(&self, f: impl FnOnce(&mut Window)) {
        let mut w = self.recorder.shards[self.index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut w);
    }

    pub fn record(&self, outcome: Result<(), ErrorKind>, latency: Duration, service: Duration) {
        self.with(|w| w.record(outcome, latency, service));
    }

    pub fn late(&self) {
        self.with(|w| w.late += 1);
    }

    pub fn missed(&self, n: u64) {
        self.with(|w| w.missed += n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_drain_into_one_window() {
        let r = Recorder::new(4);
        for user in 0..10 {
            let s = r.shard(user);
            s.record(Ok(()), Duration::from_millis(10), Duration::from_millis(1));
        }
        r.shard(3).record(
            Err(ErrorKind::Status(503)),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        r.shard(2).missed(2);
        let mut w = r.drain();
        w.seconds = 2.0;
        assert_eq!((w.ok, w.failed, w.missed), (10, 1, 2));
        let f = w.figures(true);
        assert_eq!(f.requests, 11);
        assert_eq!(f.rps, 5.5);
        assert_eq!(f.errors["http_503"], 1);
        assert!((f.error_rate - 3.0 / 13.0).abs() < 1e-6);
        assert!((f.latency.p50_ms - 10.0).abs() < 0.05, "{f:?}");
        assert!((f.latency.max_ms - 1000.0).abs() < 1.0, "{f:?}");
        assert_eq!(r.drain().requests(), 0);
    }
}
