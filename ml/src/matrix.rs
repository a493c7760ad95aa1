//! A dense row-major feature matrix: the hand-off type between the feature pipeline and models.

use serde::{Deserialize, Serialize};

/// Why a [`Matrix`] could not be built from its parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatrixError {
    /// `data.len()` is not `n_rows * n_cols`.
    #[error("matrix data has {got} values, expected {n_rows} rows x {n_cols} columns = {expected}")]
    DataLength {
        n_rows: usize,
        n_cols: usize,
        expected: usize,
        got: usize,
    },
    /// There is not one name per column.
    #[error("matrix has {n_cols} columns but {got} column names")]
    NamesLength { n_cols: usize, got: usize },
}

/// Row-major `f32` features with one name per column.
///
/// Invariant: `data.len() == n_rows * n_cols` and `names.len() == n_cols` when built through
/// [`Matrix::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub n_rows: usize,
    pub n_cols: usize,
    pub data: Vec<f32>,
    pub names: Vec<String>,
}

impl Matrix {
    /// Builds a matrix after checking that the parts agree in size.
    pub fn new(
        n_rows: usize,
        n_cols: usize,
        data: Vec<f32>,
        names: Vec<String>,
    ) -> Result<Self, MatrixError> {
        let expected = n_rows * n_cols;
        if data.len() != expected {
            return Err(MatrixError::DataLength {
                n_rows,
                n_cols,
                expected,
                got: data.len(),
            });
        }
        if names.len() != n_cols {
            return Err(MatrixError::NamesLength {
                n_cols,
                got: names.len(),
            });
        }
        Ok(Self {
            n_rows,
            n_cols,
            data,
            names,
        })
    }

    /// Row `i` as a slice of `n_cols` values.
    ///
    /// # Panics
    /// If `i >= n_rows`.
    pub fn row(&self, i: usize) -> &[f32] {
        assert!(
            i < self.n_rows,
            "row {i} out of range ({} rows)",
            self.n_rows
        );
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// Column `j` copied out, for per-feature statistics.
    ///
    /// # Panics
    /// If `j >= n_cols`.
    pub fn column(&self, j: usize) -> Vec<f32> {
        assert!(
            j < self.n_cols,
            "column {j} out of range ({} columns)",
            self.n_cols
        );
        (0..self.n_rows)
            .map(|i| self.data[i * self.n_cols + j])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_mismatched_sizes() {
        let err = Matrix::new(2, 2, vec![0.0; 3], vec!["a".into(), "b".into()]).unwrap_err();
        assert_eq!(
            err,
            MatrixError::DataLength {
                n_rows: 2,
                n_cols: 2,
                expected: 4,
                got: 3
            }
        );
        let err = Matrix::new(1, 2, vec![0.0; 2], vec!["a".into()]).unwrap_err();
        assert_eq!(err, MatrixError::NamesLength { n_cols: 2, got: 1 });
    }

    #[test]
    fn row_and_column_index_row_major() {
        let m = Matrix::new(
            2,
            3,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vec!["a".into(), "b".into(), "c".into()],
        )
        .unwrap();
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        assert_eq!(m.column(2), vec![3.0, 6.0]);
    }
}
