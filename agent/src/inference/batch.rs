//! Dynamic batching, as Triton's dynamic batcher does it: small requests that arrive while the
//! model is busy are scored together in one tract run; an idle model scores a request at once,
//! so batching never adds a wait of its own.
//!
//! tract's cost at batch 1 is mostly per op (a 300-tree, depth-5 ensemble: ~55 µs a row alone,
//! ~17 µs a row in runs of 16), so under concurrent load this is most of serving's throughput.
//! A row's score does not depend on the rows beside it: batched and single answers are equal.
//!
//! There is no scoring thread to hand requests to (on one core that cost two context switches a
//! batch). A request queues its rows and lets the other ready tasks run (`yield_now`, again
//! while that brings more), so requests already read join the queue; then it scores what is queued, oldest first, a batch
//! at a time, on its own task, answering each request in the batch, until its own rows have
//! been scored — by itself or by another task that got there first. Nothing is held across an
//! await, so a request dropped while it waits leaves no batch stranded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{Histogram, HistogramOpts, Registry};
use tokio::sync::oneshot;

use super::error::InferenceError;
use super::metrics::Endpoint;
use super::served::Served;

/// Most rows one run scores: larger runs lose the cache (see `readmit_ml::runtime`).
pub const MAX_BATCH_ROWS: usize = 256;

impl Endpoint {
    /// How many scheduler turns a request waits, at most, for others to join its batch: a
    /// gRPC call needs its connection's task and its own to arrive, an HTTP/1 request one.
    /// Measured (`bench serve`, 16 connections): four turns lift gRPC `Predict` from 14,400
    /// to 17,400 req/s; given to `/predict` too they cost it 27,600 → 22,600.
    pub fn batch_turns(self) -> usize {
        match self {
            Endpoint::OipGrpc | Endpoint::GrpcPredict => 4,
            Endpoint::Predict | Endpoint::Invocations | Endpoint::OipRest => 1,
        }
    }
}

struct Job {
    id: u64,
    served: Arc<Served>,
    data: Vec<f32>,
    n_rows: usize,
    reply: oneshot::Sender<Result<Vec<f32>, InferenceError>>,
}

/// The queue of rows waiting for the model.
pub struct Batcher {
    queue: Mutex<Vec<Job>>,
    next_id: AtomicU64,
    rows: Histogram,
}

impl Batcher {
    /// Registers `inference_batch_rows`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let rows = Histogram::with_opts(
            HistogramOpts::new(
                "inference_batch_rows",
                "Rows scored per model run: requests that arrived together are batched.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        registry.register(Box::new(rows.clone()))?;
        Ok(Self {
            queue: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            rows,
        })
    }

    /// Scores `n_rows` rows (row-major in `data`) with `served`, batched with whatever else is
    /// waiting for the same model, or arrives within `turns` turns of the scheduler.
    pub async fn score(
        &self,
        served: Arc<Served>,
        data: Vec<f32>,
        n_rows: usize,
        turns: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        let (reply, answer) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push(Job {
            id,
            served,
            data,
            n_rows,
            reply,
        });
        // Let the requests already here (and those the driver has just read) join first, for
        // as long as each turn brings more, `turns` at most (at least one).
        for _ in 0..turns.max(1) {
            let queued = self.lock().len();
            tokio::task::yield_now().await;
            if self.lock().len() <= queued {
                break;
            }
        }
        while let Some(batch) = self.next_batch() {
            let mine = batch.iter().any(|j| j.id == id);
            let rows = batch.iter().map(|j| j.n_rows).sum();
            self.rows.observe(rows as f64);
            run(batch, rows);
            if mine {
                break;
            }
        }
        // Scored here, or by the task that took this request's rows before it looked.
        answer.await.map_err(|_| InferenceError::Internal {
            reason: "the request's batch was dropped before it was scored".into(),
        })?
    }

    /// The oldest jobs for one model, up to [`MAX_BATCH_ROWS`] rows (a larger job alone).
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut queue = self.lock();
        let first = queue.first()?;
        let served = Arc::clone(&first.served);
        let mut rows = 0;
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for job in queue.drain(..) {
            if Arc::ptr_eq(&job.served, &served)
                && (taken.is_empty() || rows + job.n_rows <= MAX_BATCH_ROWS)
            {
                rows += job.n_rows;
                taken.push(job);
            } else {
                kept.push(job);
            }
        }
        *queue = kept;
        Some(taken)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One tract run for the whole batch; each job gets its own rows' scores.
fn run(mut batch: Vec<Job>, rows: usize) {
    let served = Arc::clone(&batch[0].served);
    let scores = if batch.len() == 1 {
        let job = &batch[0];
        guarded(|| served.run(&job.data, job.n_rows))
    } else {
        let mut data = Vec::with_capacity(batch.iter().map(|j| j.data.len()).sum());
        for job in &batch {
            data.extend_from_slice(&job.data);
        }
        guarded(|| served.run(&data, rows))
    };
    match scores {
        Ok(scores) if batch.len() == 1 => {
            let job = batch.pop().expect("one job");
            let _ = job.reply.send(Ok(scores));
        }
        Ok(scores) => {
            let mut at = 0;
            for job in batch {
                let mine = scores[at..at + job.n_rows].to_vec();
                at += job.n_rows;
                // A client that went away no longer waits for its answer.
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(InferenceError::Internal {
                    reason: e.to_string(),
                }));
            }
        }
    }
}

/// Runs the model, turning a panic in it into an error, so one bad run cannot leave the
/// batcher without a leader.
fn guarded(
    run: impl FnOnce() -> Result<Vec<f32>, InferenceError>,
) -> Result<Vec<f32>, InferenceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(InferenceError::Internal {
            reason: "the model panicked while scoring".into(),
        })
    })
}
