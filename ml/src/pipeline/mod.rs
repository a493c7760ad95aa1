//! The feature pipeline: fitted on the training split only, then applied unchanged to
//! validation, test and live records, so that every split gets the same columns.
//!
//! Steps: each feature column is encoded (integers as numbers, categoricals one-hot over the
//! levels seen in training with an "other" bucket for unseen or rare levels and a "missing"
//! bucket, diagnosis codes also grouped into ICD-9 chapters, plus the patient's earlier
//! encounter count), the k best encoded columns by ANOVA F are kept, and those are scaled to zero
//! mean and unit variance. Batch and single-record transforms share one per-cell function, so
//! training and serving compute identical numbers. This module needs no polars: the data module
//! supplies DataFrames through [`Cells`].

mod encode;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;
use crate::record::RawRecord;
use crate::schema::{COLUMNS, Cell};

pub use encode::{Cells, MISSING, OTHER, Source};
use encode::{Encoder, Encoding, build_encoders};

/// Why a pipeline cannot be fitted, applied or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline parameter `{field}`: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("{rows} rows but {labels} labels")]
    LabelCount { rows: usize, labels: usize },
    #[error("the training rows hold only one class ({rows} rows): selection by ANOVA F needs both")]
    OneClass { rows: usize },
    #[error("the rows have no column `{column}`")]
    MissingColumn { column: String },
    #[error("column `{column}` holds {found}, expected {expected}")]
    ColumnType {
        column: String,
        expected: &'static str,
        found: String,
    },
    #[error("the saved pipeline is inconsistent: {reason}")]
    Inconsistent { reason: String },
    #[error("the saved pipeline is not valid JSON for this version: {0}")]
    Json(#[from] serde_json::Error),
}

/// How to fit a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineParams {
    /// How many encoded columns to keep, best ANOVA F first; `None` keeps every column that
    /// varies in training.
    pub k: Option<usize>,
    /// A level seen in fewer training rows than this joins the "other" bucket: a one-hot column
    /// for a handful of rows is noise, and may be all-zero on another split.
    pub min_level_rows: usize,
    /// One-hot the diagnosis codes themselves (the frequent ones).
    pub diag_codes: bool,
    /// One-hot the ICD-9 chapters of the diagnosis codes.
    pub icd9_chapters: bool,
    /// Use the patient's count of earlier encounters ([`schema::PRIOR_ENCOUNTERS`]).
    pub prior_encounters: bool,
}

impl Default for PipelineParams {
    fn default() -> Self {
        Self {
            k: Some(50),
            min_level_rows: 20,
            diag_codes: true,
            icd9_chapters: true,
            prior_encounters: true,
        }
    }
}

impl PipelineParams {
    /// Rejects parameters that cannot produce features.
    pub fn check(&self) -> Result<(), PipelineError> {
        if self.k == Some(0) {
            return Err(PipelineError::InvalidParams {
                field: "k",
                reason: "must keep at least one column".into(),
            });
        }
        if self.min_level_rows == 0 {
            return Err(PipelineError::InvalidParams {
                field: "min_level_rows",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// What is saved: enough to rebuild a [`Pipeline`] exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FittedState {
    params: PipelineParams,
    encoders: Vec<Encoder>,
    /// Encoded columns kept, ascending.
    selected: Vec<usize>,
    /// ANOVA F of each kept column on training.
    f_scores: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
}

/// A fitted feature pipeline. Serialises with serde and round-trips exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FittedState", into = "FittedState")]
pub struct Pipeline {
    state: FittedState,
    /// Names of the kept columns, in output order.
    names: Vec<String>,
    /// For every encoded column, its output position, or `None` if not kept.
    position_of: Vec<Option<u32>>,
    /// The output of a row whose every encoded column is zero.
    zero_row: Vec<f32>,
    /// Encoders with at least one kept column: the others need not be read at all.
    active: Vec<usize>,
}

impl From<Pipeline> for FittedState {
    fn from(p: Pipeline) -> Self {
        p.state
    }
}

impl TryFrom<FittedState> for Pipeline {
    type Error = PipelineError;

    fn try_from(state: FittedState) -> Result<Self, Self::Error> {
        let inconsistent = |reason: String| Err(PipelineError::Inconsistent { reason });
        let mut expected_first = 0;
        let mut all_names = Vec::new();
        for (i, e) in state.encoders.iter().enumerate() {
            if e.first != expected_first {
                return inconsistent(format!(
                    "encoder {i} starts at column {} instead of {expected_first}",
                    e.first
                ));
            }
            if let Source::Column(c) = e.source
                && c >= COLUMNS.len()
            {
                return inconsistent(format!("encoder {i} reads column {c} of 50"));
            }
            if let Encoding::OneHot { levels, .. } = &e.encoding
                && !levels.is_sorted_by(|a, b| a < b)
            {
                return inconsistent(format!("encoder {i}'s levels are not sorted and unique"));
            }
            expected_first += e.width();
            all_names.extend(e.names());
        }
        let k = state.selected.len();
        if k == 0 || state.mean.len() != k || state.std.len() != k || state.f_scores.len() != k {
            return inconsistent(format!(
                "{k} kept columns with {} means, {} deviations and {} scores",
                state.mean.len(),
                state.std.len(),
                state.f_scores.len()
            ));
        }
        if !state.selected.is_sorted_by(|a, b| a < b) || state.selected[k - 1] >= all_names.len() {
            return inconsistent(format!(
                "kept columns are not ascending within the {} encoded columns",
                all_names.len()
            ));
        }
        if let Some(s) = state.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return inconsistent(format!("standard deviation {s} is not positive"));
        }
        if let Some(m) = state.mean.iter().find(|m| !m.is_finite()) {
            return inconsistent(format!("mean {m} is not finite"));
        }
        let mut position_of = vec![None; all_names.len()];
        for (p, &j) in state.selected.iter().enumerate() {
            position_of[j] = Some(u32::try_from(p).map_err(|_| PipelineError::Inconsistent {
                reason: "more than 2^32 kept columns".into(),
            })?);
        }
        let names = state
            .selected
            .iter()
            .map(|&j| all_names[j].clone())
            .collect();
        let zero_row = (0..k).map(|p| scale(&state, p, 0.0)).collect();
        let active = state
            .encoders
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                position_of[e.first..e.first + e.width()]
                    .iter()
                    .any(Option::is_some)
            })
            .map(|(i, _)| i)
            .collect();
        Ok(Self {
            state,
            names,
            position_of,
            zero_row,
            active,
        })
    }
}

/// Standard scaling of kept column `p`: the one formula both transform paths use.
fn scale(state: &FittedState, p: usize, v: f64) -> f32 {
    // The f32 output is what models consume; the arithmetic stays in f64.
    #[allow(clippy::cast_possible_truncation)]
    let out = ((v - state.mean[p]) / state.std[p]) as f32;
    out
}

/// Per class sums over training of each encoded column: all ANOVA F and scaling need.
struct Moments {
    n: [f64; 2],
    sum: [Vec<f64>; 2],
    sum_sq: [Vec<f64>; 2],
}

impl Pipeline {
    /// Fits on the training rows and their labels (`true` = readmitted within 30 days).
    pub fn fit<C: Cells + ?Sized>(
        train: &C,
        labels: &[bool],
        params: &PipelineParams,
    ) -> Result<Self, PipelineError> {
        params.check()?;
        let rows = train.n_rows();
        if labels.len() != rows {
            return Err(PipelineError::LabelCount {
                rows,
                labels: labels.len(),
            });
        }
        let positives = labels.iter().filter(|&&y| y).count();
        if positives == 0 || positives == rows {
            return Err(PipelineError::OneClass { rows });
        }

        let encoders = build_encoders(train, params)?;
        let width: usize = encoders.iter().map(Encoder::width).sum();
        let moments = moments(train, labels, &encoders, width)?;

        // ANOVA F of each encoded column with two groups: between-class over within-class
        // variance. A column constant in training has no F and is never kept.
        let n = moments.n[0] + moments.n[1];
        let f_scores: Vec<f64> = (0..width)
            .map(|j| {
                let total = moments.sum[0][j] + moments.sum[1][j];
                let grand = total / n;
                let mut between = 0.0;
                let mut within = 0.0;
                for c in 0..2 {
                    let (nc, s, sq) = (moments.n[c], moments.sum[c][j], moments.sum_sq[c][j]);
                    between += nc * (s / nc - grand).powi(2);
                    within += (sq - s * s / nc).max(0.0);
                }
                if within <= f64::EPSILON * n {
                    // A column that separates the classes perfectly: the largest finite score
                    // (JSON has no infinity).
                    return if between > 0.0 { f64::MAX } else { f64::NAN };
                }
                between / (within / (n - 2.0))
            })
            .collect();
        let mut by_score: Vec<usize> = (0..width).filter(|&j| !f_scores[j].is_nan()).collect();
        // Best first; equal scores keep encoding order so the choice is deterministic.
        by_score.sort_by(|&a, &b| f_scores[b].total_cmp(&f_scores[a]).then(a.cmp(&b)));
        // A one-hot encoder with only two levels present in training yields two columns that
        // are exact complements (change=Ch / change=No) with equal F: keeping both wastes a slot
        // and makes the columns collinear for linear models, so the second one is skipped.
        let twin = complements(&encoders, &moments, width);
        let k = params.k.unwrap_or(usize::MAX);
        let mut kept = vec![false; width];
        let mut ranked = Vec::new();
        for j in by_score {
            if ranked.len() == k {
                break;
            }
            if twin[j].is_some_and(|t| kept[t]) {
                continue;
            }
            kept[j] = true;
            ranked.push(j);
        }
        if ranked.is_empty() {
            return Err(PipelineError::InvalidParams {
                field: "k",
                reason: "no encoded column varies in the training rows".into(),
            });
        }
        ranked.sort_unstable();

        let mut mean = Vec::with_capacity(ranked.len());
        let mut std = Vec::with_capacity(ranked.len());
        for &j in &ranked {
            let m = (moments.sum[0][j] + moments.sum[1][j]) / n;
            let var = ((moments.sum_sq[0][j] + moments.sum_sq[1][j]) / n - m * m).max(0.0);
            mean.push(m);
            // A zero deviation would divide by zero; scikit-learn scales such columns by 1.
            std.push(if var > 0.0 { var.sqrt() } else { 1.0 });
        }
        let state = FittedState {
            params: params.clone(),
            encoders,
            f_scores: ranked.iter().map(|&j| f_scores[j]).collect(),
            selected: ranked,
            mean,
            std,
        };
        Self::try_from(state)
    }

    /// The names of the output columns, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many features each row becomes.
    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    /// The parameters it was fitted with.
    pub fn params(&self) -> &PipelineParams {
        &self.state.params
    }

    /// Each output column's ANOVA F on training, in output order.
    pub fn f_scores(&self) -> &[f64] {
        &self.state.f_scores
    }

    /// The raw inputs the kept columns depend on: what a serving client must send.
    pub fn inputs(&self) -> Vec<&'static str> {
        let mut inputs: Vec<&'static str> = self
            .active
            .iter()
            .map(|&e| self.state.encoders[e].source.name())
            .collect();
        inputs.dedup();
        inputs
    }

    /// The levels of a raw column that got their own one-hot column in training (those seen in
    /// at least `min_level_rows` rows), sorted; `None` for a column that is not one-hot encoded.
    /// Input forms offer these; any other level still scores, through the "other" bucket.
    pub fn levels(&self, column: &str) -> Option<&[String]> {
        self.state.encoders.iter().find_map(|e| match &e.encoding {
            Encoding::OneHot { levels, .. } if e.source.name() == column => Some(&levels[..]),
            _ => None,
        })
    }

    /// The sources of the raw inputs the kept columns depend on, in [`Pipeline::inputs`] order.
    pub fn input_sources(&self) -> Vec<Source> {
        let mut sources: Vec<Source> = self
            .active
            .iter()
            .map(|&e| self.state.encoders[e].source)
            .collect();
        sources.dedup();
        sources
    }

    /// The features of `record` with one raw input's cell replaced by `cell`, written over
    /// `row`, which must hold [`Pipeline::transform_record`] of the same record: only the
    /// columns that input feeds are rewritten. Explanations score many such variants.
    pub fn rewrite_input(&self, row: &mut [f32], source: Source, cell: Cell<'_>) {
        for &e in &self.active {
            let encoder = &self.state.encoders[e];
            if encoder.source != source {
                continue;
            }
            for offset in 0..encoder.width() {
                if let Some(p) = self.position_of[encoder.first + offset] {
                    row[p as usize] = self.zero_row[p as usize];
                }
            }
            self.write(encoder, cell, row);
        }
    }

    /// One record's features, without polars: what serving calls.
    pub fn transform_record(&self, record: &RawRecord) -> Vec<f32> {
        let mut out = self.zero_row.clone();
        for &e in &self.active {
            let encoder = &self.state.encoders[e];
            self.write(encoder, encoder.source.cell(record), &mut out);
        }
        out
    }

    /// Writes the kept columns of one cell into one output row.
    fn write(&self, encoder: &Encoder, cell: Cell<'_>, row: &mut [f32]) {
        let (offset, value) = encoder.hot(cell);
        if let Some(p) = self.position_of[encoder.first + offset] {
            let p = p as usize;
            row[p] = scale(&self.state, p, value);
        }
    }

    /// Features of many rows, column by column; equal to [`Pipeline::transform_record`] on each.
    pub fn transform<C: Cells + ?Sized>(&self, rows: &C) -> Result<Matrix, PipelineError> {
        let n_rows = rows.n_rows();
        let k = self.n_features();
        let mut data = Vec::with_capacity(n_rows * k);
        for _ in 0..n_rows {
            data.extend_from_slice(&self.zero_row);
        }
        for &e in &self.active {
            let encoder = &self.state.encoders[e];
            rows.for_each_cell(encoder.source, &mut |i, cell| {
                self.write(encoder, cell, &mut data[i * k..(i + 1) * k]);
            })?;
        }
        Matrix::new(n_rows, k, data, self.names.clone()).map_err(|e| PipelineError::Inconsistent {
            reason: e.to_string(),
        })
    }

    /// The pipeline as JSON, for the model bundle.
    pub fn to_json(&self) -> Result<String, PipelineError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// A pipeline saved by [`Pipeline::to_json`], checked for consistency.
    pub fn from_json(json: &str) -> Result<Self, PipelineError> {
        // Through the state, so that an inconsistency keeps its own error variant.
        let state: FittedState = serde_json::from_str(json)?;
        Self::try_from(state)
    }
}
/// For each encoded column, its complement when its one-hot encoder has exactly two columns
/// that are non-zero anywhere in training (every row is then hot in exactly one of them).
fn complements(encoders: &[Encoder], moments: &Moments, width: usize) -> Vec<Option<usize>> {
    let mut twin = vec![None; width];
    for e in encoders {
        if matches!(e.encoding, Encoding::Numeric { .. }) {
            continue;
        }
        let live: Vec<usize> = (e.first..e.first + e.width())
            .filter(|&j| moments.sum[0][j] + moments.sum[1][j] > 0.0)
            .collect();
        if let [a, b] = live[..] {
            twin[a] = Some(b);
            twin[b] = Some(a);
        }
    }
    twin
}

fn moments<C: Cells + ?Sized>(
    train: &C,
    labels: &[bool],
    encoders: &[Encoder],
    width: usize,
) -> Result<Moments, PipelineError> {
    let positives = labels.iter().filter(|&&y| y).count();
    // Row counts are far below 2^52: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let n = [(labels.len() - positives) as f64, positives as f64];
    let mut m = Moments {
        n,
        sum: [vec![0.0; width], vec![0.0; width]],
        sum_sq: [vec![0.0; width], vec![0.0; width]],
    };
    for encoder in encoders {
        train.for_each_cell(encoder.source, &mut |i, cell| {
            let (offset, v) = encoder.hot(cell);
            let c = usize::from(labels[i]);
            m.sum[c][encoder.first + offset] += v;
            m.sum_sq[c][encoder.first + offset] += v * v;
        })?;
    }
    Ok(m)
}
