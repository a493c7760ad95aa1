//! Scores of rows that differ from a base row in a few columns, for explanations: replacing one
//! raw field by its training reference changes one numeric column or one one-hot group, and
//! only the part of the model that reads those columns is evaluated again — the trees that
//! split on them, or their weights. The result is the model's own score of the changed row
//! (the same f64 sums as [`Model::predict_row`]), at a small fraction of scoring it whole.

use super::{Aggregation, Model, sigmoid};

/// A fitted model with, per feature column, the trees that split on it.
#[derive(Debug, Clone)]
pub struct Explainer {
    model: Model,
    /// `trees_reading[column]`: indices of the trees with a split on `column`, ascending.
    trees_reading: Vec<Vec<u32>>,
}

/// A base row as the model saw it: the row, and per tree the leaf it reached.
#[derive(Debug, Clone)]
pub struct Baseline {
    row: Vec<f32>,
    leaves: Vec<f32>,
    /// The sum of `leaves` (trees) or `w·x` (linear), in f64.
    sum: f64,
}

impl Explainer {
    pub fn new(model: Model) -> Self {
        let mut trees_reading = vec![Vec::new(); model.n_features()];
        if let Model::Trees(ensemble) = &model {
            for (t, tree) in ensemble.trees.iter().enumerate() {
                for node in &tree.nodes {
                    if let super::Node::Split { feature, .. } = *node {
                        let readers: &mut Vec<u32> = &mut trees_reading[feature as usize];
                        if readers.last() != Some(&(t as u32)) {
                            readers.push(t as u32);
                        }
                    }
                }
            }
        }
        Self {
            model,
            trees_reading,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Evaluates the whole model on `row` once.
    ///
    /// # Panics
    /// If `row` does not have the model's number of columns.
    pub fn baseline(&self, row: &[f32]) -> Baseline {
        assert_eq!(row.len(), self.model.n_features(), "feature columns");
        let (leaves, sum) = match &self.model {
            Model::Linear(m) => (Vec::new(), dot(&m.weights, row)),
            Model::Trees(e) => {
                let leaves: Vec<f32> = e.trees.iter().map(|t| t.leaf_value(row)).collect();
                let sum = leaves.iter().map(|&v| f64::from(v)).sum();
                (leaves, sum)
            }
        };
        Baseline {
            row: row.to_vec(),
            leaves,
            sum,
        }
    }

    /// P(positive) of the baseline's row.
    pub fn probability(&self, base: &Baseline) -> f32 {
        self.link(base.sum)
    }

    /// P(positive) of `variant`: the baseline's row with the columns in `changed` (and only
    /// those) set to other values.
    ///
    /// # Panics
    /// If `variant` does not have the model's number of columns or a changed column is out
    /// of range.
    pub fn probability_with(&self, base: &Baseline, variant: &[f32], changed: &[usize]) -> f32 {
        assert_eq!(variant.len(), base.row.len(), "feature columns");
        let sum = match &self.model {
            Model::Linear(m) => {
                base.sum
                    + changed
                        .iter()
                        .map(|&j| {
                            f64::from(m.weights[j])
                                * (f64::from(variant[j]) - f64::from(base.row[j]))
                        })
                        .sum::<f64>()
            }
            Model::Trees(e) => {
                let mut trees: Vec<u32> = changed
                    .iter()
                    .flat_map(|&j| self.trees_reading[j].iter().copied())
                    .collect();
                trees.sort_unstable();
                trees.dedup();
                base.sum
                    + trees
                        .iter()
                        .map(|&t| {
                            let t = t as usize;
                            f64::from(e.trees[t].leaf_value(variant)) - f64::from(base.leaves[t])
                        })
                        .sum::<f64>()
            }
        };
        self.link(sum)
    }

    fn link(&self, sum: f64) -> f32 {
        match &self.model {
            Model::Linear(m) => sigmoid(sum + f64::from(m.intercept)) as f32,
            Model::Trees(e) => match e.aggregation {
                Aggregation::Mean => (sum / e.trees.len() as f64) as f32,
                Aggregation::Logit { base } => sigmoid(f64::from(base) + sum) as f32,
            },
        }
    }
}

fn dot(w: &[f32], x: &[f32]) -> f64 {
    w.iter()
        .zip(x)
        .map(|(&w, &x)| f64::from(w) * f64::from(x))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::{LinearModel, Node, Tree, TreeEnsemble};
    use super::*;

    fn stump(feature: u32, threshold: f32, left: f32, right: f32) -> Tree {
        Tree {
            nodes: vec![
                Node::Split {
                    feature,
                    threshold,
                    left: 1,
                    right: 2,
                },
                Node::Leaf { value: left },
                Node::Leaf { value: right },
            ],
        }
    }

    /// Every one- and two-column change scores as the whole model scores the changed row.
    fn agrees(model: &Model, rows: &[Vec<f32>]) {
        let explainer = Explainer::new(model.clone());
        for row in rows {
            let base = explainer.baseline(row);
            assert_eq!(
                explainer.probability(&base),
                model.predict_row(row).unwrap()
            );
            for a in 0..row.len() {
                for b in a..row.len() {
                    let mut variant = row.clone();
                    variant[a] += 1.5;
                    variant[b] -= 0.25;
                    let changed: Vec<usize> = if a == b { vec![a] } else { vec![a, b] };
                    let got = explainer.probability_with(&base, &variant, &changed);
                    let want = model.predict_row(&variant).unwrap();
                    assert!((got - want).abs() < 1e-6, "{a},{b}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn tree_changes_rewalk_only_the_trees_that_read_them() {
        let trees = vec![
            stump(0, 0.5, -1.0, 1.0),
            stump(1, 0.0, 0.25, -0.25),
            stump(0, 2.0, 0.1, 0.3),
            stump(2, 1.0, 0.7, -0.7),
        ];
        let rows = vec![
            vec![0.0, -1.0, 0.5],
            vec![1.0, 1.0, 3.0],
            vec![2.5, 0.0, 0.9],
        ];
        for aggregation in [Aggregation::Logit { base: -0.3 }, Aggregation::Mean] {
            let model = Model::Trees(TreeEnsemble {
                n_features: 3,
                aggregation,
                trees: trees.clone(),
            });
            agrees(&model, &rows);
        }
        let explainer = Explainer::new(Model::Trees(TreeEnsemble {
            n_features: 3,
            aggregation: Aggregation::Mean,
            trees,
        }));
        assert_eq!(explainer.trees_reading, vec![vec![0, 2], vec![1], vec![3]]);
    }

    #[test]
    fn linear_changes_move_the_margin_by_their_weights() {
        let model = Model::Linear(LinearModel {
            weights: vec![0.5, -2.0, 1.25],
            intercept: 0.1,
        });
        agrees(&model, &[vec![0.0, 0.0, 0.0], vec![1.0, -0.5, 2.0]]);
    }
}
