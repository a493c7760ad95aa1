//! Random forests of CART trees with class probabilities, grown in parallel on binned features.
//!
//! Like scikit-learn's `RandomForestClassifier` (which the original system used): bootstrap
//! samples, Gini impurity, √(features) candidates per split, trees grown until pure unless a
//! depth is set, and each tree's leaf holds its positive-class frequency; the forest averages
//! them. Unlike it, split thresholds are searched over at most `max_bins` quantile cut points per
//! feature, which is exact for the pipeline's one-hot and small-integer columns and fast for the
//! rest. linfa-trees was not used because it only predicts hard labels.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::rng::SplitMix64;
use super::{TrainError, invalid};
use crate::matrix::Matrix;
use crate::models::{Aggregation, Model, Node, Tree, TreeEnsemble};

/// How many features each split may consider.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxFeatures {
    /// ⌊√n_features⌋, at least 1 (scikit-learn's classifier default).
    Sqrt,
    /// Every feature.
    All,
    /// A fixed count, capped at the number of features.
    Count(usize),
}

/// Hyper-parameters of a random forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub n_trees: usize,
    /// `None` grows every tree until its leaves are pure or too small to split.
    pub max_depth: Option<usize>,
    /// A node with fewer distinct samples than this is a leaf.
    pub min_samples_split: usize,
    /// Each child of a split keeps at least this many distinct samples.
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
    /// Draw each tree's rows with replacement (true) or use every row once.
    pub bootstrap: bool,
    /// Cut points per feature are at most `max_bins - 1`.
    pub max_bins: usize,
    pub seed: u64,
}

impl Default for ForestParams {
    /// scikit-learn's `RandomForestClassifier(random_state=42)` defaults.
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::Sqrt,
            bootstrap: true,
            max_bins: 256,
            seed: 42,
        }
    }
}

impl ForestParams {
    /// The parameters as (name, value) pairs, for a run's logged params.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let max_features = match self.max_features {
            MaxFeatures::Sqrt => "sqrt".to_owned(),
            MaxFeatures::All => "all".to_owned(),
            MaxFeatures::Count(k) => k.to_string(),
        };
        vec![
            ("n_trees", self.n_trees.to_string()),
            (
                "max_depth",
                self.max_depth.map_or("none".to_owned(), |d| d.to_string()),
            ),
            ("min_samples_split", self.min_samples_split.to_string()),
            ("min_samples_leaf", self.min_samples_leaf.to_string()),
            ("max_features", max_features),
            ("bootstrap", self.bootstrap.to_string()),
            ("max_bins", self.max_bins.to_string()),
            ("seed", self.seed.to_string()),
        ]
    }

    pub fn check(self) -> Result<ValidForestParams, TrainError> {
        if self.n_trees == 0 {
            return Err(invalid("n_trees", &0, "must be at least 1"));
        }
        if self.max_depth == Some(0) {
            return Err(invalid("max_depth", &0, "must be at least 1, or unset"));
        }
        if self.min_samples_split < 2 {
            return Err(invalid(
                "min_samples_split",
                &self.min_samples_split,
                "must be at least 2",
            ));
        }
        if self.min_samples_leaf == 0 {
            return Err(invalid("min_samples_leaf", &0, "must be at least 1"));
        }
        if self.max_features == MaxFeatures::Count(0) {
            return Err(invalid("max_features", &0, "must be at least 1"));
        }
        if !(2..=256).contains(&self.max_bins) {
            return Err(invalid(
                "max_bins",
                &self.max_bins,
                "must be within 2..=256",
            ));
        }
        Ok(ValidForestParams(self))
    }
}

/// Forest parameters that passed [`ForestParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidForestParams(ForestParams);

impl ValidForestParams {
    pub fn params(&self) -> &ForestParams {
        &self.0
    }
}

pub(super) fn fit(p: &ValidForestParams, x: &Matrix, y: &[bool]) -> Model {
    let p = &p.0;
    let binned = Binned::new(x, p.max_bins);
    let max_features = match p.max_features {
        MaxFeatures::Sqrt => ((x.n_cols as f64).sqrt() as usize).max(1),
        MaxFeatures::All => x.n_cols,
        MaxFeatures::Count(k) => k.min(x.n_cols),
    };
    let grower = Grower {
        binned: &binned,
        y,
        max_depth: p.max_depth.unwrap_or(usize::MAX),
        min_samples_split: p.min_samples_split,
        min_samples_leaf: p.min_samples_leaf,
        max_features,
    };
    // Each tree draws from its own generator derived from (seed, tree index), so the forest is
    // the same whatever the thread count or scheduling.
    let trees = (0..p.n_trees)
        .into_par_iter()
        .map(|t| {
            let mut rng = SplitMix64::derive(p.seed, t as u64);
            grower.grow(&mut rng, p.bootstrap)
        })
        .collect();
    Model::Trees(TreeEnsemble {
        n_features: x.n_cols,
        aggregation: Aggregation::Mean,
        trees,
    })
}

/// Features quantised to bins: `bins[f * n_rows + i]` is row `i`'s bin of feature `f`, where bin
/// `b` holds the values `edges[f][b-1] <= v < edges[f][b]`.
struct Binned {
    n_rows: usize,
    n_cols: usize,
    bins: Vec<u8>,
    edges: Vec<Vec<f32>>,
}

impl Binned {
    fn new(x: &Matrix, max_bins: usize) -> Self {
        let edges: Vec<Vec<f32>> = (0..x.n_cols)
            .into_par_iter()
            .map(|j| cut_points(x.column(j), max_bins))
            .collect();
        let bins = edges
            .par_iter()
            .enumerate()
            .flat_map_iter(|(j, e)| (0..x.n_rows).map(move |i| bin_of(e, x.data[i * x.n_cols + j])))
            .collect();
        Self {
            n_rows: x.n_rows,
            n_cols: x.n_cols,
            bins,
            edges,
        }
    }

    fn column(&self, f: usize) -> &[u8] {
        &self.bins[f * self.n_rows..(f + 1) * self.n_rows]
    }
}

/// The bin of `v`: how many cut points are at or below it. Using the same `<` as prediction keeps
/// the training partition and the fitted thresholds in exact agreement.
fn bin_of(edges: &[f32], v: f32) -> u8 {
    edges.partition_point(|&e| e <= v) as u8
}

/// At most `max_bins - 1` strictly increasing cut points, midway between distinct values at the
/// column's quantiles (every distinct value gets its own bin when there are few).
fn cut_points(mut col: Vec<f32>, max_bins: usize) -> Vec<f32> {
    col.sort_unstable_by(f32::total_cmp);
    let mut distinct = col.clone();
    distinct.dedup();
    let between: Vec<usize> = if distinct.len() <= max_bins {
        (0..distinct.len().saturating_sub(1)).collect()
    } else {
        let mut idx: Vec<usize> = (1..max_bins)
            .map(|k| {
                let q = col[k * col.len() / max_bins];
                distinct.partition_point(|&d| d < q)
            })
            .filter(|&j| j + 1 < distinct.len())
            .collect();
        idx.dedup();
        idx
    };
    let mut edges: Vec<f32> = between
        .into_iter()
        .map(|j| {
            let (a, b) = (distinct[j], distinct[j + 1]);
            let mid = a + (b - a) / 2.0;
            // Adjacent floats have no midpoint; the upper value still separates them.
            if mid > a { mid } else { b }
        })
        .collect();
    edges.dedup();
    edges
}

struct Grower<'a> {
    binned: &'a Binned,
    y: &'a [bool],
    max_depth: usize,
    min_samples_split: usize,
    min_samples_leaf: usize,
    max_features: usize,
}

/// Per-bin sums for one feature at one node.
#[derive(Clone, Copy, Default)]
struct BinStats {
    /// Bootstrap weight.
    weight: f64,
    /// Bootstrap weight of positive rows.
    positive: f64,
    /// Distinct rows.
    count: usize,
}

struct Split {
    feature: usize,
    /// Bins `0..=bin` go left.
    bin: usize,
}

impl Grower<'_> {
    fn grow(&self, rng: &mut SplitMix64, bootstrap: bool) -> Tree {
        let n = self.binned.n_rows;
        let mut weight = vec![0u32; n];
        if bootstrap {
            for _ in 0..n {
                weight[rng.below(n)] += 1;
            }
        } else {
            weight.fill(1);
        }
        let mut rows: Vec<u32> = (0..n as u32).filter(|&i| weight[i as usize] > 0).collect();
        let mut nodes = Vec::new();
        let mut scratch = Scratch {
            features: (0..self.binned.n_cols).collect(),
            hist: vec![BinStats::default(); 256],
        };
        self.grow_node(&mut rows, &weight, 0, rng, &mut nodes, &mut scratch);
        Tree { nodes }
    }

    /// Appends the subtree for `rows` to `nodes` (parent before children) and returns its index.
    fn grow_node(
        &self,
        rows: &mut [u32],
        weight: &[u32],
        depth: usize,
        rng: &mut SplitMix64,
        nodes: &mut Vec<Node>,
        scratch: &mut Scratch,
    ) -> u32 {
        let index = nodes.len() as u32;
        let (total, positive) = rows.iter().fold((0.0, 0.0), |(t, p), &r| {
            let w = f64::from(weight[r as usize]);
            (t + w, if self.y[r as usize] { p + w } else { p })
        });
        let value = (positive / total) as f32;
        nodes.push(Node::Leaf { value });
        let pure = positive == 0.0 || positive == total;
        if pure || depth >= self.max_depth || rows.len() < self.min_samples_split {
            return index;
        }
        let Some(split) = self.best_split(rows, weight, total, positive, rng, scratch) else {
            return index;
        };
        let column = self.binned.column(split.feature);
        let n_left = partition(rows, |r| usize::from(column[r as usize]) <= split.bin);
        let (left_rows, right_rows) = rows.split_at_mut(n_left);
        let left = self.grow_node(left_rows, weight, depth + 1, rng, nodes, scratch);
        let right = self.grow_node(right_rows, weight, depth + 1, rng, nodes, scratch);
        nodes[index as usize] = Node::Split {
            feature: split.feature as u32,
            threshold: self.binned.edges[split.feature][split.bin],
            left,
            right,
        };
        index
    }

    /// The split with the lowest weighted Gini impurity among `max_features` randomly drawn
    /// features that are not constant here (drawing on past constant ones, as scikit-learn does).
    fn best_split(
        &self,
        rows: &[u32],
        weight: &[u32],
        total: f64,
        positive: f64,
        rng: &mut SplitMix64,
        scratch: &mut Scratch,
    ) -> Option<Split> {
        let n_cols = self.binned.n_cols;
        let mut best: Option<(f64, Split)> = None;
        let mut visited = 0;
        for k in 0..n_cols {
            if visited == self.max_features {
                break;
            }
            // A partial Fisher–Yates shuffle draws features without replacement.
            let pick = k + rng.below(n_cols - k);
            scratch.features.swap(k, pick);
            let f = scratch.features[k];
            let n_bins = self.binned.edges[f].len() + 1;
            let hist = &mut scratch.hist[..n_bins];
            hist.fill(BinStats::default());
            let column = self.binned.column(f);
            for &r in rows {
                let w = f64::from(weight[r as usize]);
                let s = &mut hist[usize::from(column[r as usize])];
                s.weight += w;
                s.count += 1;
                if self.y[r as usize] {
                    s.positive += w;
                }
            }
            if hist.iter().filter(|s| s.count > 0).count() < 2 {
                continue;
            }
            visited += 1;
            let (mut lw, mut lp, mut lc) = (0.0, 0.0, 0usize);
            for (b, s) in hist[..n_bins - 1].iter().enumerate() {
                lw += s.weight;
                lp += s.positive;
                lc += s.count;
                let rc = rows.len() - lc;
                if s.count == 0 || lc < self.min_samples_leaf || rc < self.min_samples_leaf {
                    continue;
                }
                let (rw, rp) = (total - lw, positive - lp);
                if rw <= 0.0 {
                    break;
                }
                // Minimising Σ W·gini(child) is maximising Σ (pos² + neg²) / W over children.
                let score =
                    (lp * lp + (lw - lp) * (lw - lp)) / lw + (rp * rp + (rw - rp) * (rw - rp)) / rw;
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    best = Some((score, Split { feature: f, bin: b }));
                }
            }
        }
        best.map(|(_, split)| split)
    }
}

struct Scratch {
    features: Vec<usize>,
    hist: Vec<BinStats>,
}

/// Moves the rows satisfying `go_left` to the front and returns how many there are.
fn partition(rows: &mut [u32], go_left: impl Fn(u32) -> bool) -> usize {
    let mut n_left = 0;
    for i in 0..rows.len() {
        if go_left(rows[i]) {
            rows.swap(i, n_left);
            n_left += 1;
        }
    }
    n_left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_separate_distinct_values_and_agree_with_thresholds() {
        let edges = cut_points(vec![3.0, 1.0, 1.0, 2.0], 256);
        assert_eq!(edges, vec![1.5, 2.5]);
        assert_eq!(bin_of(&edges, 1.0), 0);
        assert_eq!(bin_of(&edges, 2.0), 1);
        assert_eq!(bin_of(&edges, 3.0), 2);
        let many: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let edges = cut_points(many, 16);
        assert_eq!(edges.len(), 15);
        assert!(edges.windows(2).all(|w| w[0] < w[1]));
        let tight = cut_points(vec![1.0, f32::from_bits(1.0f32.to_bits() + 1)], 256);
        assert_eq!(bin_of(&tight, 1.0), 0);
        assert_eq!(bin_of(&tight, f32::from_bits(1.0f32.to_bits() + 1)), 1);
    }

    #[test]
    fn partition_keeps_both_sides() {
        let mut rows = vec![5, 2, 8, 1, 9];
        let n = partition(&mut rows, |r| r < 5);
        assert_eq!(n, 2);
        let (mut l, mut r) = (rows[..n].to_vec(), rows[n..].to_vec());
        l.sort();
        r.sort();
        assert_eq!((l, r), (vec![1, 2], vec![5, 8, 9]));
    }
}
