//! The task kinds over RawData and CleanData: `ingest_raw`, `append_batch`, and the
//! preprocessing steps `load_splits` → `clean_splits` → `select_features` → `save_processed`.
//!
//! Steps hand frames to each other through [`handoff`]: in memory to the next step, and as
//! Arrow IPC files in the run's directory, written atomically, so a retried step finds its
//! inputs whole; only `save_processed` writes CleanData, and it swaps all of it at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::{Column as PlColumn, DataFrame, NamedFrom, Series};
use readmit_ml::data::{labels, take_rows};
use readmit_ml::matrix::Matrix;
use readmit_ml::pipeline::{Pipeline, PipelineParams};
use readmit_ml::schema::{self, COLUMNS, Role};
use readmit_ml::split::SplitMethod;
use serde::{Deserialize, Serialize};

use super::clean::{CleanVersion, Processed};
use super::data::DataService;
use super::handoff;
use super::io::{blocking, write_atomic};
use super::raw::{self, DEFAULT_BATCH_SIZE};
use super::runs::EtlError;
use super::tasks::{TaskContext, TaskFuture, TaskKind, TaskKinds};

/// The splits, in the order every step handles them.
const SPLITS: [&str; 3] = ["train", "validation", "test"];
const SOURCE_FILE: &str = "source.json";
const PIPELINE_FILE: &str = "pipeline.json";

/// Adds the data kinds, bound to `data`.
pub fn add_data_kinds(kinds: &mut TaskKinds, data: &DataService) {
    type Step = fn(DataService, TaskContext) -> TaskFuture;
    let steps: [(&'static str, Step); 6] = [
        ("ingest_raw", |d, c| Box::pin(ingest_raw(d, c))),
        ("append_batch", |d, c| Box::pin(append_batch(d, c))),
        ("load_splits", |d, c| Box::pin(load_splits(d, c))),
        ("clean_splits", |_, c| Box::pin(clean_splits(c))),
        ("select_features", |_, c| Box::pin(select_features(c))),
        ("save_processed", |d, c| Box::pin(save_processed(d, c))),
    ];
    for (name, step) in steps {
        kinds.add(Arc::new(DataKind {
            name,
            data: data.clone(),
            step,
        }));
    }
}

struct DataKind {
    name: &'static str,
    data: DataService,
    step: fn(DataService, TaskContext) -> TaskFuture,
}

impl TaskKind for DataKind {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&self, ctx: TaskContext) -> TaskFuture {
        (self.step)(self.data.clone(), ctx)
    }
}

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn flag(ctx: &TaskContext, key: &str) -> Result<bool, String> {
    match ctx.params.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v.is_empty() || v == "false" || v == "0" || v == "no" => Ok(false),
        Some(v) if v == "true" || v == "1" || v == "yes" => Ok(true),
        Some(v) => Err(format!("parameter {key:?}: {v:?} is not true or false")),
    }
}

fn number<T: std::str::FromStr>(ctx: &TaskContext, key: &str, default: T) -> Result<T, String> {
    match ctx
        .params
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("parameter {key:?}: {v:?} is not a whole number")),
    }
}

pub fn parse_split(text: &str) -> Result<SplitMethod, String> {
    match text.trim() {
        "" | "original" => Ok(SplitMethod::Original),
        "grouped" => Ok(SplitMethod::Grouped),
        other => Err(format!("split {other:?} is not one of: original, grouped")),
    }
}

/// `ingest_raw`: ingests `path` (a CSV on the agent) with `split`; `replace` swaps out another
/// data set. The same file again is a no-op.
async fn ingest_raw(data: DataService, ctx: TaskContext) -> Result<(), String> {
    let path = ctx.param("path")?;
    let split = parse_split(ctx.param_or("split", ""))?;
    let replace = flag(&ctx, "replace")?;
    let report = data.ingest_file(path, split, replace).await.map_err(fail)?;
    ctx.info(&report.message).await;
    Ok(())
}

/// `append_batch`: appends `batch_size` pool rows (default 15,000) to `train_data`; with
/// `until_exhausted`, keeps appending until the pool is empty. Each append's request id is
/// derived from the run and task, so a retried attempt never appends twice.
async fn append_batch(data: DataService, ctx: TaskContext) -> Result<(), String> {
    let size = number(&ctx, "batch_size", DEFAULT_BATCH_SIZE)?;
    let all = flag(&ctx, "until_exhausted")?;
    for n in 1.. {
        let request = format!("{}/{}/{n}", ctx.run_id, ctx.task_id);
        let appended = data.append_batch(size, &request).await.map_err(fail)?;
        ctx.info(&appended.message()).await;
        if appended.exhausted {
            break;
        }
        if !all || appended.pool_remaining == 0 {
            break;
        }
    }
    Ok(())
}

/// Where the data came from, carried from `load_splits` to `save_processed`.
#[derive(Debug, Serialize, Deserialize)]
struct Source {
    ingest_id: String,
    sha256: String,
    train_rows: i64,
}

/// The hand-off file of one stage's output for one split, in the run's directory.
fn handoff_path(dir: &Path, stage: &str, split: &str) -> PathBuf {
    dir.join(format!("{stage}_{split}.arrow"))
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (did the step before this one run?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(fail)?;
    write_atomic(path, text.as_bytes()).map_err(fail)
}

/// `load_splits`: reads `train_data`, `validation_data` and `test_data` from RawData.
async fn load_splits(data: DataService, ctx: TaskContext) -> Result<(), String> {
    let dataset = data.raw().dataset().await.map_err(fail)?.ok_or(
        "RawData is empty: ingest a file first (the ingest_raw DAG or readmit data ingest FILE)",
    )?;
    if dataset.train_rows == 0 {
        return Err("train_data is empty: append a batch first (the append_batch DAG or readmit data append-batch)".into());
    }
    // The three tables at once, each on a connection and a thread of its own.
    let loads = SPLITS
        .into_iter()
        .zip([raw::TRAIN_DATA, raw::VALIDATION_DATA, raw::TEST_DATA])
        .map(|(split, table)| {
            let data = data.clone();
            let path = handoff_path(&ctx.dir, "raw", split);
            async move {
                let frame = data.raw().read_table(table).await?;
                let rows = frame.height();
                // Off the async threads: a retry waits here for the earlier attempt's write.
                blocking(move || handoff::keep(path, frame)).await?;
                Ok::<_, EtlError>(format!("loaded {rows} rows from {table}"))
            }
        });
    for line in futures_util::future::try_join_all(loads)
        .await
        .map_err(fail)?
    {
        ctx.info(&line).await;
    }
    write_json(
        &ctx.dir.join(SOURCE_FILE),
        &Source {
            ingest_id: dataset.ingest_id,
            sha256: dataset.sha256,
            train_rows: dataset.train_rows,
        },
    )
}

/// `clean_splits`: keeps one row per encounter, drops the columns the schema marks as never
/// used, and checks every row has a label.
async fn clean_splits(ctx: TaskContext) -> Result<(), String> {
    let dir = ctx.dir.clone();
    let lines = tokio::task::spawn_blocking(move || {
        each_split(|_, split| {
            let frame = handoff::take(&handoff_path(&dir, "raw", split)).map_err(fail)?;
            let before = frame.height();
            let ids = readmit_ml::data::int_column(&frame, schema::ENCOUNTER_ID).map_err(fail)?;
            let mut seen = HashSet::with_capacity(ids.len());
            let keep: Vec<usize> = (0..ids.len()).filter(|&i| seen.insert(ids[i])).collect();
            let mut frame = if keep.len() == before {
                frame
            } else {
                take_rows(&frame, &keep).map_err(fail)?
            };
            let dropped: Vec<&str> = COLUMNS
                .iter()
                .filter(|c| c.role == Role::Dropped)
                .map(|c| c.name)
                .collect();
            frame = frame.drop_many(dropped.iter().copied());
            labels(&frame).map_err(fail)?;
            let rows = frame.height();
            handoff::keep(handoff_path(&dir, "clean", split), frame).map_err(fail)?;
            Ok(format!(
                "{split}: {rows} rows ({} duplicate encounters removed), dropped columns {}",
                before - keep.len(),
                dropped.join(", ")
            ))
        })
    })
    .await
    .map_err(fail)??;
    for line in lines {
        ctx.info(&line).await;
    }
    Ok(())
}

/// `select_features`: fits the feature pipeline on the training split only (encoding, the `k`
/// best columns by ANOVA F, default 50, or `all`; scaling), then transforms every split with it.
async fn select_features(ctx: TaskContext) -> Result<(), String> {
    let k = match ctx.params.get("k").map(|v| v.trim()) {
        Some("all") => None,
        Some(v) if !v.is_empty() => Some(
            v.parse::<usize>()
                .map_err(|_| format!("parameter \"k\": {v:?} is not a whole number or all"))?,
        ),
        _ => PipelineParams::default().k,
    };
    let params = PipelineParams {
        k,
        ..PipelineParams::default()
    };
    params.check().map_err(fail)?;
    let dir = ctx.dir.clone();
    let message = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let frames: Vec<DataFrame> = SPLITS
            .iter()
            .map(|s| handoff::take(&handoff_path(&dir, "clean", s)).map_err(fail))
            .collect::<Result<_, _>>()?;
        let y_train = labels(&frames[0]).map_err(fail)?;
        let pipeline = Pipeline::fit(&frames[0], &y_train, &params).map_err(fail)?;
        each_split(|i, split| {
            let frame = &frames[i];
            let x = pipeline.transform(frame).map_err(fail)?;
            let ids = readmit_ml::data::int_column(frame, schema::ENCOUNTER_ID).map_err(fail)?;
            let y = labels(frame).map_err(fail)?;
            handoff::keep(
                handoff_path(&dir, "features", split),
                features_frame(&ids, &x, &y)?,
            )
            .map_err(fail)
        })?;
        let json = pipeline.to_json().map_err(fail)?;
        write_atomic(&dir.join(PIPELINE_FILE), json.as_bytes()).map_err(fail)?;
        Ok(format!(
            "fitted on {} training rows: kept {} features, best {}",
            y_train.len(),
            pipeline.n_features(),
            pipeline
                .names()
                .iter()
                .zip(pipeline.f_scores())
                .take(3)
                .map(|(n, f)| format!("{n} (F={f:.1})"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
    .await
    .map_err(fail)??;
    ctx.info(&message).await;
    Ok(())
}

/// `work(index, split)` for each split at once, on threads of their own; the results in split
/// order, or the first split's error.
fn each_split<T: Send>(
    work: impl Fn(usize, &'static str) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = SPLITS
            .into_iter()
            .enumerate()
            .map(|(i, split)| scope.spawn(move || work(i, split)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

const ID_COLUMN: &str = "encounter_id";
const LABEL_COLUMN: &str = "readmitted";

/// A processed split as a frame: `encounter_id`, `readmitted` (0/1), then one Float32 column
/// per feature, named by position (feature names may repeat characters SQL and Arrow dislike;
/// `pipeline.json` names them).
fn features_frame(ids: &[i64], x: &Matrix, y: &[bool]) -> Result<DataFrame, String> {
    let mut columns = Vec::with_capacity(x.n_cols + 2);
    columns.push(PlColumn::new(ID_COLUMN.into(), ids));
    let labels: Vec<i32> = y.iter().map(|&v| i32::from(v)).collect();
    columns.push(PlColumn::new(LABEL_COLUMN.into(), labels));
    for c in 0..x.n_cols {
        let values: Vec<f32> = (0..x.n_rows).map(|r| x.data[r * x.n_cols + c]).collect();
        columns.push(Series::new(format!("f{c}").into(), values).into());
    }
    DataFrame::new(ids.len(), columns).map_err(fail)
}

fn processed_from_frame(frame: &DataFrame, names: &[String]) -> Result<Processed, String> {
    let ids = readmit_ml::data::int_column(frame, ID_COLUMN).map_err(fail)?;
    let y: Vec<bool> = frame
        .column(LABEL_COLUMN)
        .and_then(|c| c.i32().cloned())
        .map_err(fail)?
        .into_no_null_iter()
        .map(|v| v != 0)
        .collect();
    let n_rows = ids.len();
    let n_cols = names.len();
    let mut data = vec![0.0f32; n_rows * n_cols];
    for c in 0..n_cols {
        let column = frame
            .column(&format!("f{c}"))
            .and_then(|c| c.f32().cloned())
            .map_err(fail)?;
        for (r, v) in column.into_no_null_iter().enumerate() {
            data[r * n_cols + c] = v;
        }
    }
    let x = Matrix::new(n_rows, n_cols, data, names.to_vec()).map_err(fail)?;
    Ok(Processed {
        encounter_ids: ids,
        x,
        y,
    })
}

/// `save_processed`: replaces CleanData with the processed splits and their pipeline, at once.
async fn save_processed(data: DataService, ctx: TaskContext) -> Result<(), String> {
    let source: Source = read_json(&ctx.dir.join(SOURCE_FILE))?;
    let dir = ctx.dir.clone();
    let (pipeline, splits) = blocking(move || {
        let json = std::fs::read_to_string(dir.join(PIPELINE_FILE))
            .map_err(EtlError::io(&dir.join(PIPELINE_FILE)))?;
        let pipeline = Pipeline::from_json(&json).map_err(|e| EtlError::Ml(e.to_string()))?;
        let mut splits = Vec::with_capacity(3);
        for split in SPLITS {
            let frame = handoff::take(&handoff_path(&dir, "features", split))?;
            splits.push(processed_from_frame(&frame, pipeline.names()).map_err(EtlError::Ml)?);
        }
        Ok((pipeline, splits))
    })
    .await
    .map_err(fail)?;
    let rows: Vec<usize> = splits.iter().map(|s| s.y.len()).collect();
    let splits: [Processed; 3] = splits
        .try_into()
        .map_err(|_| "expected three processed splits".to_owned())?;
    let version = data
        .clean()
        .save(
            &pipeline,
            splits,
            CleanVersion {
                version: 0,
                dag_run_id: ctx.run_id.clone(),
                ingest_id: source.ingest_id,
                dataset_sha256: source.sha256,
                train_rows: source.train_rows,
                created_at: 0,
            },
        )
        .await
        .map_err(fail)?;
    data.counts().await.map_err(fail)?;
    ctx.info(&format!(
        "CleanData version {}: {} train, {} validation, {} test rows of {} features",
        version.version,
        rows[0],
        rows[1],
        rows[2],
        pipeline.n_features()
    ))
    .await;
    Ok(())
}
