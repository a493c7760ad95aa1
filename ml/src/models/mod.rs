//! Fitted models as plain values: what training produces, what ONNX export compiles and what the
//! runtime must agree with. No training crate is needed to hold or evaluate one.

mod explain;
mod trees;

pub use explain::{Baseline, Explainer};
pub use trees::{Aggregation, Node, Tree, TreeEnsemble, TreeError};

use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;

/// Why a fitted model cannot score the given input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PredictError {
    /// The input has a different number of feature columns than the model was fitted on.
    #[error("model expects {expected} feature columns, input has {got}")]
    Columns { expected: usize, got: usize },
}

/// A fitted binary classifier scoring P(readmitted within 30 days).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Model {
    /// Logistic regression: `sigmoid(w·x + b)`.
    Linear(LinearModel),
    /// A random forest (mean of leaf class frequencies) or boosted trees (sigmoid of a logit sum).
    Trees(TreeEnsemble),
}

impl Model {
    /// The number of feature columns the model reads.
    pub fn n_features(&self) -> usize {
        match self {
            Model::Linear(m) => m.weights.len(),
            Model::Trees(m) => m.n_features,
        }
    }

    /// P(positive) for every row of `x`.
    pub fn predict_proba(&self, x: &Matrix) -> Result<Vec<f32>, PredictError> {
        self.check_columns(x.n_cols)?;
        if x.n_cols == 0 {
            // A model without features scores every row the same; `chunks_exact(0)` would panic.
            return Ok(vec![self.score(&[]); x.n_rows]);
        }
        Ok(x.data
            .chunks_exact(x.n_cols)
            .map(|row| self.score(row))
            .collect())
    }

    /// P(positive) for one row of features.
    pub fn predict_row(&self, row: &[f32]) -> Result<f32, PredictError> {
        self.check_columns(row.len())?;
        Ok(self.score(row))
    }

    fn check_columns(&self, got: usize) -> Result<(), PredictError> {
        let expected = self.n_features();
        if got == expected {
            Ok(())
        } else {
            Err(PredictError::Columns { expected, got })
        }
    }

    fn score(&self, row: &[f32]) -> f32 {
        match self {
            Model::Linear(m) => m.score(row),
            Model::Trees(m) => m.score(row),
        }
    }
}

/// Logistic regression weights, oriented so that `sigmoid(w·x + b)` is P(positive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub weights: Vec<f32>,
    pub intercept: f32,
}

impl LinearModel {
    fn score(&self, row: &[f32]) -> f32 {
        // f64 accumulation keeps the in-memory score the reference the ONNX graph is checked
        // against; the graph's f32 MatMul differs from it by far less than 1e-5.
        let z: f64 = self
            .weights
            .iter()
            .zip(row)
            .map(|(&w, &x)| f64::from(w) * f64::from(x))
            .sum::<f64>()
            + f64::from(self.intercept);
        sigmoid(z) as f32
    }
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(n_rows: usize, n_cols: usize, data: Vec<f32>) -> Matrix {
        let names = (0..n_cols).map(|j| format!("x{j}")).collect();
        Matrix::new(n_rows, n_cols, data, names).unwrap()
    }

    #[test]
    fn linear_scores_are_sigmoid_of_the_margin() {
        let model = Model::Linear(LinearModel {
            weights: vec![2.0, -1.0],
            intercept: 0.5,
        });
        let x = matrix(2, 2, vec![0.0, 0.0, 1.0, 3.0]);
        let p = model.predict_proba(&x).unwrap();
        assert!((p[0] - sigmoid(0.5) as f32).abs() < 1e-7);
        assert!((p[1] - sigmoid(-0.5) as f32).abs() < 1e-7);
        assert_eq!(model.predict_row(&[1.0, 3.0]).unwrap(), p[1]);
    }

    #[test]
    fn wrong_column_count_is_an_error() {
        let model = Model::Linear(LinearModel {
            weights: vec![1.0; 3],
            intercept: 0.0,
        });
        let err = model
            .predict_proba(&matrix(1, 2, vec![0.0; 2]))
            .unwrap_err();
        assert_eq!(
            err,
            PredictError::Columns {
                expected: 3,
                got: 2
            }
        );
        assert!(model.predict_row(&[0.0; 4]).is_err());
    }
}
