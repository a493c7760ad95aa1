//! Dynamic batching, as Triton's dynamic batcher does it: small requests that arrive while the
//! model is busy are scored together in one tract run on the scoring thread; an idle model
//! scores a request at once, so batching never adds a wait of its own.
//!
//! tract's cost at batch 1 is mostly per op (a 300-tree, depth-5 ensemble: ~55 µs a row alone,
//! ~17 µs a row in runs of 16), so under concurrent load this is most of serving's throughput.
//! A row's score does not depend on the rows beside it: batched and single answers are equal.

use std::sync::Arc;
use std::sync::mpsc;

use prometheus::{Histogram, HistogramOpts, Registry};
use tokio::sync::oneshot;

use super::error::InferenceError;
use super::served::Served;

/// Most rows one run scores: larger runs lose the cache (see `readmit_ml::runtime`).
pub const MAX_BATCH_ROWS: usize = 256;

struct Job {
    served: Arc<Served>,
    data: Vec<f32>,
    n_rows: usize,
    reply: oneshot::Sender<Result<Vec<f32>, InferenceError>>,
}

/// The queue to the scoring thread; the thread ends when the last handle is dropped.
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the scoring thread and registers `inference_batch_rows`.
    pub fn start(registry: &Registry) -> Result<Self, prometheus::Error> {
        let rows = Histogram::with_opts(
            HistogramOpts::new(
                "inference_batch_rows",
                "Rows scored per model run: requests that arrived together are batched.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        registry.register(Box::new(rows.clone()))?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("readmit-score".into())
            .spawn(move || work(&queue, &rows))
            .map_err(|e| prometheus::Error::Msg(format!("cannot start the scoring thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Scores `n_rows` rows (row-major in `data`) with `served`, batched with whatever else is
    /// waiting for the same model.
    pub async fn score(
        &self,
        served: Arc<Served>,
        data: Vec<f32>,
        n_rows: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        let stopped = || InferenceError::Internal {
            reason: "the scoring thread has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                served,
                data,
                n_rows,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn work(queue: &mpsc::Receiver<Job>, rows_metric: &Histogram) {
    // A job for another model than the batch being gathered starts the next batch.
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut rows = first.n_rows;
        let mut batch = vec![first];
        while rows < MAX_BATCH_ROWS {
            match queue.try_recv() {
                Ok(job)
                    if Arc::ptr_eq(&job.served, &batch[0].served)
                        && rows + job.n_rows <= MAX_BATCH_ROWS =>
                {
                    rows += job.n_rows;
                    batch.push(job);
                }
                Ok(job) => {
                    next = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        rows_metric.observe(rows as f64);
        run(batch, rows);
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

/// Runs the model, turning a panic in it into an error, so one bad run cannot stop the thread
/// every later request waits on.
fn guarded(
    run: impl FnOnce() -> Result<Vec<f32>, InferenceError>,
) -> Result<Vec<f32>, InferenceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(InferenceError::Internal {
            reason: "the model panicked while scoring".into(),
        })
    })
}
