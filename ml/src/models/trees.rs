//! Tree ensembles in one flat, serialisable form shared by the random forest and gradient
//! boosting, so both are evaluated, validated and compiled to ONNX by the same code.

use serde::{Deserialize, Serialize};

use super::sigmoid;

/// A node of a binary decision tree.
///
/// A row goes left when `x[feature] < threshold` and right otherwise; a NaN feature therefore
/// goes right, here and in the exported ONNX graph alike.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Node {
    Split {
        feature: u32,
        threshold: f32,
        left: u32,
        right: u32,
    },
    Leaf {
        value: f32,
    },
}

/// One tree; node 0 is the root.
///
/// Invariant (checked by [`TreeEnsemble::validate`]): every child index is greater than its
/// parent's, so the tree has no cycles and every walk ends at a leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// How the trees' leaf values become a probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Aggregation {
    /// The mean of the leaves' positive-class frequencies (a random forest).
    Mean,
    /// `sigmoid(base + sum of leaves)`: leaves hold log-odds increments (gradient boosting).
    Logit { base: f32 },
}

/// Trees over `n_features` columns and the rule that combines their leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    pub n_features: usize,
    pub aggregation: Aggregation,
    pub trees: Vec<Tree>,
}

/// Why a tree ensemble is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("the ensemble has no trees")]
    NoTrees,
    #[error("tree {tree} has no nodes")]
    EmptyTree { tree: usize },
    #[error(
        "tree {tree} node {node} points to child {child}, which is not after it and within the tree"
    )]
    BadChild {
        tree: usize,
        node: usize,
        child: usize,
    },
    #[error("tree {tree} node {node} splits on feature {feature} of {n_features}")]
    BadFeature {
        tree: usize,
        node: usize,
        feature: usize,
        n_features: usize,
    },
    #[error("tree {tree} node {node} has a NaN threshold or a non-finite leaf value")]
    NotFinite { tree: usize, node: usize },
}

impl Tree {
    /// The number of splits on the longest root-to-leaf path.
    pub fn depth(&self) -> usize {
        // Children come after their parents, so one forward pass settles every node's depth.
        let mut depth = vec![0usize; self.nodes.len()];
        let mut max = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if let Node::Split { left, right, .. } = *node {
                for child in [left, right] {
                    depth[child as usize] = depth[i] + 1;
                }
                max = max.max(depth[i] + 1);
            }
        }
        max
    }

    /// The leaf value reached by `row`.
    pub fn leaf_value(&self, row: &[f32]) -> f32 {
        let mut i = 0usize;
        loop {
            match self.nodes[i] {
                Node::Leaf { value } => return value,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if row[feature as usize] < threshold {
                        left as usize
                    } else {
                        right as usize
                    };
                }
            }
        }
    }

    /// The number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n, Node::Leaf { .. }))
            .count()
    }
}

impl TreeEnsemble {
    /// Checks the invariants that evaluation and ONNX compilation rely on.
    pub fn validate(&self) -> Result<(), TreeError> {
        if self.trees.is_empty() {
            return Err(TreeError::NoTrees);
        }
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(TreeError::EmptyTree { tree: t });
            }
            for (i, node) in tree.nodes.iter().enumerate() {
                match *node {
                    Node::Leaf { value } if !value.is_finite() => {
                        return Err(TreeError::NotFinite { tree: t, node: i });
                    }
                    Node::Leaf { .. } => {}
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        if feature as usize >= self.n_features {
                            return Err(TreeError::BadFeature {
                                tree: t,
                                node: i,
                                feature: feature as usize,
                                n_features: self.n_features,
                            });
                        }
                        if threshold.is_nan() {
                            return Err(TreeError::NotFinite { tree: t, node: i });
                        }
                        for child in [left as usize, right as usize] {
                            if child <= i || child >= tree.nodes.len() {
                                return Err(TreeError::BadChild {
                                    tree: t,
                                    node: i,
                                    child,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The deepest tree's depth.
    pub fn max_depth(&self) -> usize {
        self.trees.iter().map(Tree::depth).max().unwrap_or(0)
    }

    /// The total number of nodes over all trees.
    pub fn n_nodes(&self) -> usize {
        self.trees.iter().map(|t| t.nodes.len()).sum()
    }

    pub(super) fn score(&self, row: &[f32]) -> f32 {
        let sum: f64 = self
            .trees
            .iter()
            .map(|t| f64::from(t.leaf_value(row)))
            .sum();
        match self.aggregation {
            Aggregation::Mean => (sum / self.trees.len() as f64) as f32,
            Aggregation::Logit { base } => sigmoid(f64::from(base) + sum) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 < 0.5 → 0.1; else x1 < 2 → 0.6 else 0.9.
    fn stump_pair() -> Tree {
        Tree {
            nodes: vec![
                Node::Split {
                    feature: 0,
                    threshold: 0.5,
                    left: 1,
                    right: 2,
                },
                Node::Leaf { value: 0.1 },
                Node::Split {
                    feature: 1,
                    threshold: 2.0,
                    left: 3,
                    right: 4,
                },
                Node::Leaf { value: 0.6 },
                Node::Leaf { value: 0.9 },
            ],
        }
    }

    #[test]
    fn walks_left_on_less_and_right_otherwise() {
        let t = stump_pair();
        assert_eq!(t.leaf_value(&[0.0, 9.0]), 0.1);
        assert_eq!(t.leaf_value(&[0.5, 1.0]), 0.6);
        assert_eq!(t.leaf_value(&[0.7, 2.0]), 0.9);
        assert_eq!(t.leaf_value(&[f32::NAN, 2.0]), 0.9);
        assert_eq!(t.depth(), 2);
        assert_eq!(t.n_leaves(), 3);
    }

    #[test]
    fn aggregations_mean_and_logit() {
        let mut e = TreeEnsemble {
            n_features: 2,
            aggregation: Aggregation::Mean,
            trees: vec![stump_pair(), stump_pair()],
        };
        e.validate().unwrap();
        assert!((e.score(&[0.0, 0.0]) - 0.1).abs() < 1e-7);
        e.aggregation = Aggregation::Logit { base: -1.0 };
        let expected = sigmoid(-1.0 + 0.2) as f32;
        assert!((e.score(&[0.0, 0.0]) - expected).abs() < 1e-7);
    }

    #[test]
    fn validate_rejects_cycles_and_bad_features() {
        let mut t = stump_pair();
        t.nodes[2] = Node::Split {
            feature: 1,
            threshold: 2.0,
            left: 0,
            right: 4,
        };
        let e = TreeEnsemble {
            n_features: 2,
            aggregation: Aggregation::Mean,
            trees: vec![t],
        };
        assert_eq!(
            e.validate(),
            Err(TreeError::BadChild {
                tree: 0,
                node: 2,
                child: 0
            })
        );
        let e = TreeEnsemble {
            n_features: 1,
            aggregation: Aggregation::Mean,
            trees: vec![stump_pair()],
        };
        assert!(matches!(e.validate(), Err(TreeError::BadFeature { .. })));
        let e = TreeEnsemble {
            n_features: 1,
            aggregation: Aggregation::Mean,
            trees: vec![],
        };
        assert_eq!(e.validate(), Err(TreeError::NoTrees));
    }
}
