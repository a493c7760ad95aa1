//! Gradient-boosted trees through forust-ml, converted into our [`TreeEnsemble`] so they are
//! evaluated and exported to ONNX exactly like the forests.

use std::collections::VecDeque;

use forust_ml::GradientBooster;
use forust_ml::objective::ObjectiveType;
use forust_ml::sampler::SampleMethod;
use serde::{Deserialize, Serialize};

use super::{TrainError, invalid};
use crate::matrix::Matrix;
use crate::models::{Aggregation, Model, Node, Tree, TreeEnsemble};

/// Hyper-parameters of log-loss gradient boosting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostingParams {
    pub iterations: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    /// L2 penalty on leaf weights.
    pub l2: f32,
    /// Minimum hessian sum in a leaf.
    pub min_leaf_weight: f32,
    /// Histogram bins per feature.
    pub nbins: u16,
    /// Share of rows sampled for each tree (1 = all).
    pub subsample: f32,
    /// Share of columns sampled for each tree (1 = all). Parameters saved before this field
    /// existed were fitted on every column, hence that default when it is absent.
    #[serde(default = "every_column")]
    pub colsample: f32,
    pub seed: u64,
}

fn every_column() -> f32 {
    1.0
}

impl Default for BoostingParams {
    fn default() -> Self {
        Self {
            iterations: 300,
            learning_rate: 0.05,
            max_depth: 5,
            l2: 1.0,
            min_leaf_weight: 1.0,
            nbins: 256,
            subsample: 1.0,
            colsample: 1.0,
            seed: 42,
        }
    }
}

impl BoostingParams {
    /// The parameters as (name, value) pairs, for a run's logged params.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("iterations", self.iterations.to_string()),
            ("learning_rate", self.learning_rate.to_string()),
            ("max_depth", self.max_depth.to_string()),
            ("l2", self.l2.to_string()),
            ("min_leaf_weight", self.min_leaf_weight.to_string()),
            ("nbins", self.nbins.to_string()),
            ("subsample", self.subsample.to_string()),
            ("colsample", self.colsample.to_string()),
            ("seed", self.seed.to_string()),
        ]
    }

    /// The run name, `GBM_<iterations>_d<depth>`.
    pub fn run_name(&self) -> String {
        format!("GBM_{}_d{}", self.iterations, self.max_depth)
    }

    pub fn check(self) -> Result<ValidBoostingParams, TrainError> {
        if self.iterations == 0 {
            return Err(invalid("iterations", &0, "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid(
                "learning_rate",
                &self.learning_rate,
                "must be positive and finite",
            ));
        }
        if self.max_depth == 0 {
            return Err(invalid("max_depth", &0, "must be at least 1"));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(invalid("l2", &self.l2, "must be zero or more and finite"));
        }
        if !(self.min_leaf_weight.is_finite() && self.min_leaf_weight >= 0.0) {
            return Err(invalid(
                "min_leaf_weight",
                &self.min_leaf_weight,
                "must be zero or more and finite",
            ));
        }
        if self.nbins < 2 {
            return Err(invalid("nbins", &self.nbins, "must be at least 2"));
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return Err(invalid(
                "subsample",
                &self.subsample,
                "must be within (0, 1]",
            ));
        }
        if !(self.colsample > 0.0 && self.colsample <= 1.0) {
            return Err(invalid(
                "colsample",
                &self.colsample,
                "must be within (0, 1]",
            ));
        }
        Ok(ValidBoostingParams(self))
    }
}

/// Boosting parameters that passed [`BoostingParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidBoostingParams(BoostingParams);

impl ValidBoostingParams {
    pub fn params(&self) -> &BoostingParams {
        &self.0
    }
}

pub(super) fn fit(p: &ValidBoostingParams, x: &Matrix, y: &[bool]) -> Result<Model, TrainError> {
    let (booster, kept) = fit_booster(&p.0, x, y)?;
    let base = match &booster {
        Some(b) => b.base_score,
        None => {
            // Nothing to split on: the model is the base rate's log-odds.
            let rate = y.iter().filter(|&&v| v).count() as f64 / y.len() as f64;
            (rate / (1.0 - rate)).ln()
        }
    };
    let mut trees: Vec<Tree> = booster
        .iter()
        .flat_map(|b| &b.trees)
        .map(|t| convert(t, &kept))
        .collect();
    if trees.is_empty() {
        // A zero-valued stump keeps the ensemble well-formed when there was nothing to fit.
        trees.push(Tree {
            nodes: vec![Node::Leaf { value: 0.0 }],
        });
    }
    Ok(Model::Trees(TreeEnsemble {
        n_features: x.n_cols,
        aggregation: Aggregation::Logit { base: base as f32 },
        trees,
    }))
}

/// Fits forust on the non-constant columns (forust rejects constant ones, which carry no
/// information anyway) and returns the booster, if any column varied, and the kept columns.
fn fit_booster(
    p: &BoostingParams,
    x: &Matrix,
    y: &[bool],
) -> Result<(Option<GradientBooster>, Vec<usize>), TrainError> {
    let kept: Vec<usize> = (0..x.n_cols)
        .filter(|&j| {
            let first = x.data[j];
            (0..x.n_rows).any(|i| x.data[i * x.n_cols + j] != first)
        })
        .collect();
    if kept.is_empty() {
        return Ok((None, kept));
    }
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::LogLoss)
        .set_iterations(p.iterations)
        .set_learning_rate(p.learning_rate)
        .set_max_depth(p.max_depth)
        .set_l2(p.l2)
        .set_min_leaf_weight(p.min_leaf_weight)
        .set_nbins(p.nbins)
        .set_subsample(p.subsample)
        .set_seed(p.seed)
        .set_initialize_base_score(true)
        .set_parallel(true);
    if p.subsample < 1.0 {
        booster = booster.set_sample_method(SampleMethod::Random);
    }
    // forust samples `floor(share * columns)` columns per tree; when that would be none (very
    // few varying columns) every tree sees them all instead.
    let colsample = f64::from(p.colsample);
    if colsample < 1.0 && (kept.len() as f64 * colsample).floor() >= 1.0 {
        booster = booster.set_colsample_bytree(colsample);
    }
    let data = column_major(x, &kept);
    let matrix = forust_ml::Matrix::new(&data, x.n_rows, kept.len());
    let labels: Vec<f64> = y.iter().map(|&v| f64::from(u8::from(v))).collect();
    booster.fit_unweighted(&matrix, &labels, None)?;
    Ok((Some(booster), kept))
}

/// The `kept` columns of `x` as forust's column-major f64.
fn column_major(x: &Matrix, kept: &[usize]) -> Vec<f64> {
    let mut data = Vec::with_capacity(kept.len() * x.n_rows);
    for &j in kept {
        data.extend((0..x.n_rows).map(|i| f64::from(x.data[i * x.n_cols + j])));
    }
    data
}

/// Re-lays a forust tree breadth-first (so children follow parents) with our column indices.
fn convert(tree: &forust_ml::tree::Tree, kept: &[usize]) -> Tree {
    let mut nodes = Vec::with_capacity(tree.nodes.len());
    let mut queue = VecDeque::from([(0usize, None::<(usize, bool)>)]);
    while let Some((src, parent)) = queue.pop_front() {
        let at = nodes.len();
        if let Some((p, is_left)) = parent
            && let Node::Split { left, right, .. } = &mut nodes[p]
        {
            *if is_left { left } else { right } = at as u32;
        }
        let n = &tree.nodes[src];
        if n.is_leaf {
            nodes.push(Node::Leaf {
                value: n.weight_value,
            });
        } else {
            nodes.push(Node::Split {
                feature: kept[n.split_feature] as u32,
                threshold: f32_at_or_above(n.split_value),
                left: 0,
                right: 0,
            });
            queue.push_back((n.left_child, Some((at, true))));
            queue.push_back((n.right_child, Some((at, false))));
        }
    }
    Tree { nodes }
}

/// The smallest f32 not below `t`: for every f32 `x`, `x < t` (in f64) iff `x < result`, so the
/// f32 threshold routes every f32 input exactly as forust's f64 threshold does.
fn f32_at_or_above(t: f64) -> f32 {
    let c = t as f32;
    if f64::from(c) < t { c.next_up() } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_threshold_routes_like_the_f64_one() {
        let one_up = 1.0f32.next_up();
        let t = (1.0f64 + f64::from(one_up)) / 2.0;
        let t32 = f32_at_or_above(t);
        for x in [1.0f32, one_up, 1.0f32.next_down()] {
            assert_eq!(f64::from(x) < t, x < t32, "x = {x}");
        }
        assert_eq!(f32_at_or_above(0.5), 0.5);
        assert_eq!(f32_at_or_above(f64::INFINITY), f32::INFINITY);
    }

    #[test]
    fn params_saved_without_colsample_load_as_every_column() {
        let mut json = serde_json::to_value(BoostingParams {
            colsample: 0.5,
            ..BoostingParams::default()
        })
        .unwrap();
        json.as_object_mut().unwrap().remove("colsample");
        let old: BoostingParams = serde_json::from_value(json).unwrap();
        assert_eq!(old.colsample, 1.0);
        let zero = BoostingParams {
            colsample: 0.0,
            ..BoostingParams::default()
        };
        assert!(matches!(
            zero.check(),
            Err(TrainError::InvalidParam {
                param: "colsample",
                ..
            })
        ));
    }

    #[test]
    fn converted_trees_predict_what_forust_predicts() {
        // Two informative columns, one constant column (dropped and re-indexed), one noise.
        let mut rng = crate::training::rng::SplitMix64::new(3);
        let n = 2000;
        let mut data = Vec::with_capacity(n * 4);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let a = rng.below(1000) as f32 / 100.0;
            let b = rng.below(7) as f32;
            let noise = rng.below(1000) as f32 / 1000.0;
            data.extend([7.0, a, b, noise]);
            y.push(a + b + 3.0 * noise > 9.0);
        }
        let names = (0..4).map(|j| format!("x{j}")).collect();
        let x = Matrix::new(n, 4, data, names).unwrap();
        // Column sampling too: each tree's features must still map back to our columns.
        let params = BoostingParams {
            iterations: 20,
            max_depth: 3,
            colsample: 0.7,
            ..BoostingParams::default()
        };
        let (booster, kept) = fit_booster(&params, &x, &y).unwrap();
        let booster = booster.unwrap();
        assert_eq!(kept, vec![1, 2, 3]);
        let data = column_major(&x, &kept);
        let theirs = booster.predict(&forust_ml::Matrix::new(&data, n, kept.len()), false);
        let ours = fit(&params.check().unwrap(), &x, &y).unwrap();
        let ours = ours.predict_proba(&x).unwrap();
        for (o, t) in ours.iter().zip(&theirs) {
            let t = crate::models::sigmoid(*t) as f32;
            assert!((o - t).abs() < 1e-5, "ours {o} forust {t}");
        }
    }
}
