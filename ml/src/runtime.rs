//! The tract runtime: an exported `model.onnx` loaded and optimised once, then shared (`Arc`) by
//! every prediction. tract types stay inside this module.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::matrix::Matrix;
use crate::onnx::{INPUT, OUTPUT};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    /// The bytes are not an ONNX model of the shape we export, or tract cannot optimise it.
    #[error("invalid ONNX model: {reason}")]
    Invalid { reason: String },
    /// The input has a different number of feature columns than the model reads.
    #[error("model expects {expected} feature columns, input has {got}")]
    Columns { expected: usize, got: usize },
    /// The input data does not hold `n_rows * n_cols` values.
    #[error("input has {got} values, expected {expected}")]
    Length { expected: usize, got: usize },
    /// tract failed while running the plan.
    #[error("inference failed: {reason}")]
    Run { reason: String },
}

/// Rows per tract run. Tree graphs hold several `[rows, trees]` intermediates; keeping them
/// cache-sized is much faster than one huge batch (measured on 20k rows, 300 boosted trees:
/// 21 µs per row in chunks of 256–1024, 71 µs in one run).
const CHUNK_ROWS: usize = 1024;

/// An optimised, runnable model with `features` float32 `[N, n_features]` in and
/// `probabilities` float32 `[N]` out.
#[derive(Clone)]
pub struct LoadedModel {
    plan: Arc<TypedRunnableModel>,
    n_features: usize,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("n_features", &self.n_features)
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// Loads and optimises `model.onnx` from a file.
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|e| RuntimeError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(&bytes)
    }

    /// Loads and optimises a serialised ONNX model.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RuntimeError> {
        let invalid = |e: TractError| RuntimeError::Invalid {
            reason: format!("{e:#}"),
        };
        let model = onnx().model_for_read(&mut &*bytes).map_err(invalid)?;
        let names_ok = model.input_outlets().map_err(invalid)?.len() == 1
            && model.output_outlets().map_err(invalid)?.len() == 1
            && model
                .node(model.input_outlets().map_err(invalid)?[0].node)
                .name
                == INPUT
            && model
                .node(model.output_outlets().map_err(invalid)?[0].node)
                .name
                == OUTPUT;
        if !names_ok {
            return Err(RuntimeError::Invalid {
                reason: format!("expected one input `{INPUT}` and one output `{OUTPUT}`"),
            });
        }
        let typed = model.into_typed().map_err(invalid)?;
        let n_features = {
            let fact = typed.input_fact(0).map_err(invalid)?;
            if fact.rank() == 2 {
                fact.shape[1].as_i64().and_then(|n| usize::try_from(n).ok())
            } else {
                None
            }
        }
        .ok_or_else(|| RuntimeError::Invalid {
            reason: format!("`{INPUT}` must be [N, n_features] with a fixed n_features"),
        })?;
        let plan = typed
            .into_optimized()
            .map_err(invalid)?
            .into_runnable()
            .map_err(invalid)?;
        Ok(Self { plan, n_features })
    }

    /// The number of feature columns the model reads.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// P(positive) for every row of `x`.
    pub fn predict(&self, x: &Matrix) -> Result<Vec<f32>, RuntimeError> {
        if x.n_cols != self.n_features {
            return Err(RuntimeError::Columns {
                expected: self.n_features,
                got: x.n_cols,
            });
        }
        self.predict_rows(&x.data, x.n_rows)
    }

    /// P(positive) for one row of features.
    pub fn predict_row(&self, row: &[f32]) -> Result<f32, RuntimeError> {
        if row.len() != self.n_features {
            return Err(RuntimeError::Columns {
                expected: self.n_features,
                got: row.len(),
            });
        }
        Ok(self.predict_rows(row, 1)?[0])
    }

    /// P(positive) for `n_rows` rows given row-major in `data`.
    pub fn predict_rows(&self, data: &[f32], n_rows: usize) -> Result<Vec<f32>, RuntimeError> {
        let expected = n_rows * self.n_features;
        if data.len() != expected {
            return Err(RuntimeError::Length {
                expected,
                got: data.len(),
            });
        }
        if n_rows == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(n_rows);
        for rows in data.chunks(CHUNK_ROWS * self.n_features) {
            self.run_chunk(rows, rows.len() / self.n_features, &mut out)?;
        }
        Ok(out)
    }

    fn run_chunk(
        &self,
        data: &[f32],
        n_rows: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), RuntimeError> {
        let run = |e: TractError| RuntimeError::Run {
            reason: format!("{e:#}"),
        };
        let input = Tensor::from_shape(&[n_rows, self.n_features], data).map_err(run)?;
        let outputs = self.plan.run(tvec!(input.into())).map_err(run)?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(run)?;
        out.extend(view.iter().copied());
        Ok(())
    }
}
