//! The ML benchmark: reads the UCI CSV, makes the `original` and `grouped` splits, fits the
//! pipeline and every candidate on the full training pool, and prints one JSON object with
//! the split fingerprints, timings and each model's metrics and tract serving cost.
//!
//! `--export DIR` also writes each model's bundle to `DIR/<split>/<name>/`, with a
//! `parity.json` of test rows as fed to `model.onnx` and the probabilities tract returned, so
//! that other runtimes (onnxruntime, MLflow's pyfunc) can be checked against the same numbers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;

use readmit_ml::bundle::Bundle;
use readmit_ml::data::{self, Splits, labels, read_csv, split_frame};
use readmit_ml::matrix::Matrix;
use readmit_ml::metrics::{Report, best_f1_threshold, report};
use readmit_ml::onnx::to_onnx;
use readmit_ml::pipeline::{Pipeline, PipelineParams};
use readmit_ml::reference::Reference;
use readmit_ml::runtime::LoadedModel;
use readmit_ml::schema;
use readmit_ml::split::{Fingerprints, ORIGINAL_SEED, SplitMethod};
use readmit_ml::training::{Candidate, candidates, fit};

/// Test rows written to each `parity.json`.
const PARITY_ROWS: usize = 200;
/// Raw records written as each bundle's input example.
const EXAMPLE_ROWS: usize = 5;
/// Rows scored one at a time to measure tract's batch-1 latency.
const LATENCY_ROWS: usize = 2000;

#[derive(Debug, Parser)]
#[command(about = "Train every candidate on the original and grouped splits; print one JSON")]
struct Args {
    /// The UCI diabetes CSV, plain or gzip.
    #[arg(long)]
    data: PathBuf,
    /// Write each model's bundle and parity.json under DIR/<split>/<name>/.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// The seed of the grouped split (the original split is always numpy's seed 42).
    #[arg(long, default_value_t = ORIGINAL_SEED)]
    seed: u32,
}

#[derive(Debug, Serialize)]
struct Output {
    data: String,
    splits: SplitsOutput,
}

/// A struct rather than a map, so that `original` prints first.
#[derive(Debug, Serialize)]
struct SplitsOutput {
    original: SplitOutput,
    grouped: SplitOutput,
}

#[derive(Debug, Serialize)]
struct SplitOutput {
    rows: Rows,
    fingerprints: Fingerprints,
    timings_s: Timings,
    n_features: usize,
    models: Vec<ModelOutput>,
}

#[derive(Debug, Serialize)]
struct Rows {
    train_pool: usize,
    validation: usize,
    test: usize,
}

#[derive(Debug, Serialize)]
struct Timings {
    read_csv: f64,
    split: f64,
    pipeline_fit: f64,
    /// Train pool, validation and test together.
    pipeline_transform: f64,
}

#[derive(Debug, Serialize)]
struct ModelOutput {
    name: String,
    family: &'static str,
    val_roc_auc: f64,
    test_roc_auc: f64,
    val_pr_auc: f64,
    test_pr_auc: f64,
    fit_s: f64,
    val_log_loss: f64,
    test_log_loss: f64,
    val_brier: f64,
    test_brier: f64,
    /// The best-F1 threshold on validation, applied unchanged to test.
    threshold: f32,
    val_f1: f64,
    test_f1: f64,
    test_precision: f64,
    test_recall: f64,
    onnx_bytes: usize,
    /// Largest |tract - in-memory| over the test rows.
    tract_max_abs_diff: f32,
    tract_us_per_row_batch1: f64,
    tract_us_per_row_batch1024: f64,
}

#[derive(Debug, Serialize)]
struct Parity<'a> {
    features: Vec<&'a [f32]>,
    probabilities: &'a [f32],
}

fn main() -> Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    // Its errors name the file (and the line and column at fault).
    let df = read_csv(&args.data)?;
    let read_s = start.elapsed().as_secs_f64();
    let encounter_ids = data::int_column(&df, schema::ENCOUNTER_ID)?;

    let run = |label: &str, method: SplitMethod| -> Result<SplitOutput> {
        let start = Instant::now();
        let frames = split_frame(&df, method, args.seed)?;
        let timings = Timings {
            read_csv: read_s,
            split: start.elapsed().as_secs_f64(),
            pipeline_fit: 0.0,
            pipeline_transform: 0.0,
        };
        let export = args.export.as_ref().map(|d| d.join(label));
        let fingerprints = frames.indices.fingerprints(&encounter_ids);
        run_split(label, &frames, export.as_deref(), fingerprints, timings)
    };
    let splits = SplitsOutput {
        original: run("original", SplitMethod::Original)?,
        grouped: run("grouped", SplitMethod::Grouped)?,
    };
    let output = Output {
        data: args.data.display().to_string(),
        splits,
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// Fits and scores everything on one split; `timings` arrives with the read and split times
/// filled in.
fn run_split(
    label: &str,
    frames: &Splits,
    export: Option<&Path>,
    fingerprints: Fingerprints,
    mut timings: Timings,
) -> Result<SplitOutput> {
    let y_train = labels(&frames.train_pool)?;
    let y_val = labels(&frames.validation)?;
    let y_test = labels(&frames.test)?;

    let start = Instant::now();
    let pipeline = Pipeline::fit(&frames.train_pool, &y_train, &PipelineParams::default())?;
    timings.pipeline_fit = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let x_train = pipeline.transform(&frames.train_pool)?;
    let x_val = pipeline.transform(&frames.validation)?;
    let x_test = pipeline.transform(&frames.test)?;
    timings.pipeline_transform = start.elapsed().as_secs_f64();
    let example = data::records(&frames.test, 0..EXAMPLE_ROWS)?;
    let reference = Reference::fit(&frames.train_pool, &pipeline.input_sources())?;

    let mut models = Vec::new();
    for candidate in candidates() {
        eprintln!("{label}: fitting {}", candidate.name);
        let params = candidate.params.clone().check()?;
        let start = Instant::now();
        let model = fit(&params, &x_train, &y_train)
            .with_context(|| format!("{label}: fitting {}", candidate.name))?;
        let fit_s = start.elapsed().as_secs_f64();

        let p_val = model.predict_proba(&x_val)?;
        let p_test = model.predict_proba(&x_test)?;
        let threshold = best_f1_threshold(&p_val, &y_val)?.threshold;
        let val = report(&p_val, &y_val, threshold)?;
        let test = report(&p_test, &y_test, threshold)?;

        let onnx = to_onnx(&model)?;
        let loaded = LoadedModel::from_bytes(&onnx)?;
        let tract = loaded.predict(&x_test)?;
        let tract_max_abs_diff = tract
            .iter()
            .zip(&p_test)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let (batch1, batch1024) = latency(&loaded, &x_test)?;

        if let Some(root) = export {
            let dir = root.join(&candidate.name);
            write_bundle(
                &dir,
                &candidate,
                &model,
                threshold,
                [("validation", val), ("test", test)],
                &Shipped {
                    pipeline: &pipeline,
                    example: &example,
                    reference: &reference,
                },
            )?;
            write_parity(&dir, &x_test, &tract)?;
        }

        models.push(ModelOutput {
            name: candidate.name.clone(),
            family: candidate.params.family(),
            val_roc_auc: val.roc_auc,
            test_roc_auc: test.roc_auc,
            val_pr_auc: val.pr_auc,
            test_pr_auc: test.pr_auc,
            fit_s,
            val_log_loss: val.log_loss,
            test_log_loss: test.log_loss,
            val_brier: val.brier,
            test_brier: test.brier,
            threshold,
            val_f1: val.decision.f1,
            test_f1: test.decision.f1,
            test_precision: test.decision.precision,
            test_recall: test.decision.recall,
            onnx_bytes: onnx.len(),
            tract_max_abs_diff,
            tract_us_per_row_batch1: batch1,
            tract_us_per_row_batch1024: batch1024,
        });
    }
    Ok(SplitOutput {
        rows: Rows {
            train_pool: x_train.n_rows,
            validation: x_val.n_rows,
            test: x_test.n_rows,
        },
        fingerprints,
        timings_s: timings,
        n_features: pipeline.n_features(),
        models,
    })
}

/// Microseconds per row scoring one row at a time, and in batches of 1024.
fn latency(loaded: &LoadedModel, x: &Matrix) -> Result<(f64, f64)> {
    let n = LATENCY_ROWS.min(x.n_rows);
    for i in 0..n.min(100) {
        loaded.predict_row(x.row(i))?;
    }
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(loaded.predict_row(x.row(i))?);
    }
    let single = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let rows = 1024.min(x.n_rows);
    let start = Instant::now();
    let reps = 5;
    for _ in 0..reps {
        std::hint::black_box(loaded.predict_rows(&x.data[..rows * x.n_cols], rows)?);
    }
    let batched = start.elapsed().as_secs_f64() * 1e6 / (reps * rows) as f64;
    Ok((single, batched))
}

/// What every candidate's bundle ships besides its model.
struct Shipped<'a> {
    pipeline: &'a Pipeline,
    example: &'a [readmit_ml::record::RawRecord],
    reference: &'a Reference,
}

fn write_bundle(
    dir: &Path,
    candidate: &Candidate,
    model: &readmit_ml::models::Model,
    threshold: f32,
    metrics: [(&str, Report); 2],
    shipped: &Shipped<'_>,
) -> Result<()> {
    let metrics = metrics
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let params = candidate
        .params
        .describe()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Bundle {
        name: &candidate.name,
        model,
        pipeline: shipped.pipeline,
        threshold,
        metrics: &metrics,
        input_example: shipped.example,
        params: &params,
        reference: shipped.reference,
    }
    .write(dir)?;
    Ok(())
}

fn write_parity(dir: &Path, x: &Matrix, probabilities: &[f32]) -> Result<()> {
    let n = PARITY_ROWS.min(x.n_rows);
    let parity = Parity {
        features: (0..n).map(|i| x.row(i)).collect(),
        probabilities: &probabilities[..n],
    };
    let path = dir.join("parity.json");
    std::fs::write(&path, serde_json::to_vec(&parity)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
