//! ONNX export checked end to end: tract equals the in-memory model, onnxruntime equals tract,
//! and the per-row serving cost is printed.

#![cfg(all(feature = "train", feature = "runtime"))]

mod common;

use std::path::Path;
use std::time::Instant;

use readmit_ml::matrix::Matrix;
use readmit_ml::models::{Aggregation, Model, Node, Tree, TreeEnsemble};
use readmit_ml::onnx::{ExportError, to_onnx};
use readmit_ml::runtime::{LoadedModel, RuntimeError};
use readmit_ml::training::{BoostingParams, ForestParams, LogisticParams, Params, fit};

use common::{rows, synthetic};

const TOLERANCE: f32 = 1e-5;

/// One model of each kind and shape, small enough for a debug build.
fn models(x: &Matrix, y: &[bool]) -> Vec<(String, Model)> {
    let cases = [
        ("LR_C_0.1", Params::Logistic(LogisticParams::with_c(0.1))),
        (
            "RF_30",
            Params::Forest(ForestParams {
                n_trees: 30,
                ..ForestParams::default()
            }),
        ),
        (
            "RF_depth10",
            Params::Forest(ForestParams {
                n_trees: 30,
                max_depth: Some(10),
                ..ForestParams::default()
            }),
        ),
        (
            "GBM_60_d5",
            Params::Boosting(BoostingParams {
                iterations: 60,
                ..BoostingParams::default()
            }),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, p)| (name.to_owned(), fit(&p.check().unwrap(), x, y).unwrap()))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tract_equals_the_in_memory_model() {
    let (x, y) = synthetic(3000, 21);
    let train = rows(&x, 0..2500);
    let test = rows(&x, 2500..3000);
    for (name, model) in models(&train, &y[..2500]) {
        let bytes = to_onnx(&model).unwrap();
        let loaded = LoadedModel::from_bytes(&bytes).unwrap();
        assert_eq!(loaded.n_features(), x.n_cols);
        let expected = model.predict_proba(&test).unwrap();
        let got = loaded.predict(&test).unwrap();
        let diff = max_diff(&expected, &got);
        println!(
            "{name}: {} bytes, max |tract - model| = {diff:.2e}",
            bytes.len()
        );
        assert!(diff <= TOLERANCE, "{name}: tract differs by {diff}");
        for i in [0, 17, 499] {
            let one = loaded.predict_row(test.row(i)).unwrap();
            assert!((one - expected[i]).abs() <= TOLERANCE, "{name} row {i}");
        }
    }
}

/// Thresholds sit exactly on feature values, NaN goes right, and shallow trees wait at their
/// leaves while deeper ones finish: all the same in tract as in memory.
#[test]
fn tree_routing_edge_cases_survive_export() {
    let tree = |threshold: f32| Tree {
        nodes: vec![
            Node::Split {
                feature: 1,
                threshold,
                left: 1,
                right: 2,
            },
            Node::Leaf { value: 0.25 },
            Node::Split {
                feature: 0,
                threshold: -1.0,
                left: 3,
                right: 4,
            },
            Node::Leaf { value: 0.5 },
            Node::Leaf { value: 1.0 },
        ],
    };
    let stump = Tree {
        nodes: vec![Node::Leaf { value: 0.125 }],
    };
    for aggregation in [Aggregation::Mean, Aggregation::Logit { base: -0.5 }] {
        let model = Model::Trees(TreeEnsemble {
            n_features: 2,
            aggregation,
            trees: vec![tree(0.5), tree(0.5f32.next_up()), stump.clone()],
        });
        let data = vec![
            0.0,
            0.5, // on the threshold: right in the first tree, left in the second
            -2.0,
            0.6, //
            f32::NAN,
            0.0, // NaN in an unused feature
            0.0,
            f32::NAN, // NaN in a split feature goes right
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let x = Matrix::new(5, 2, data, vec!["a".into(), "b".into()]).unwrap();
        let loaded = LoadedModel::from_bytes(&to_onnx(&model).unwrap()).unwrap();
        let expected = model.predict_proba(&x).unwrap();
        let got = loaded.predict(&x).unwrap();
        assert!(
            max_diff(&expected, &got) <= TOLERANCE,
            "{expected:?} vs {got:?}"
        );
    }
    // A forest of single leaves still yields one probability per row.
    let model = Model::Trees(TreeEnsemble {
        n_features: 3,
        aggregation: Aggregation::Mean,
        trees: vec![stump.clone(), stump],
    });
    let loaded = LoadedModel::from_bytes(&to_onnx(&model).unwrap()).unwrap();
    assert_eq!(
        loaded.predict_rows(&[0.0; 6], 2).unwrap(),
        vec![0.125, 0.125]
    );
}

/// Serving shares one loaded model across threads behind an `Arc`.
#[test]
fn loaded_model_is_shareable_across_threads() {
    fn shareable<T: Send + Sync + 'static>(_: &T) {}
    let (x, y) = synthetic(400, 4);
    let model = fit(
        &Params::Logistic(LogisticParams::default()).check().unwrap(),
        &x,
        &y,
    )
    .unwrap();
    let loaded = std::sync::Arc::new(LoadedModel::from_bytes(&to_onnx(&model).unwrap()).unwrap());
    shareable(&loaded);
    let expected = model.predict_proba(&x).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let loaded = std::sync::Arc::clone(&loaded);
            let x = x.clone();
            std::thread::spawn(move || {
                (t..x.n_rows)
                    .step_by(2)
                    .map(|i| (i, loaded.predict_row(x.row(i)).unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for (i, p) in h.join().unwrap() {
            assert!((p - expected[i]).abs() <= TOLERANCE);
        }
    }
}

#[test]
fn malformed_models_and_inputs_are_errors() {
    let bad = Model::Trees(TreeEnsemble {
        n_features: 2,
        aggregation: Aggregation::Mean,
        trees: vec![],
    });
    assert!(matches!(to_onnx(&bad), Err(ExportError::Trees(_))));
    assert!(matches!(
        LoadedModel::from_bytes(b"not a model"),
        Err(RuntimeError::Invalid { .. })
    ));
    let (x, y) = synthetic(400, 2);
    let model = fit(
        &Params::Logistic(LogisticParams::default()).check().unwrap(),
        &x,
        &y,
    )
    .unwrap();
    let loaded = LoadedModel::from_bytes(&to_onnx(&model).unwrap()).unwrap();
    assert_eq!(
        loaded.predict_row(&[0.0; 3]),
        Err(RuntimeError::Columns {
            expected: x.n_cols,
            got: 3
        })
    );
    assert!(matches!(
        loaded.predict_rows(&[0.0; 5], 1),
        Err(RuntimeError::Length { .. })
    ));
    assert_eq!(loaded.predict_rows(&[], 0).unwrap(), Vec::<f32>::new());
    assert!(matches!(
        LoadedModel::load(Path::new("/nonexistent/model.onnx")),
        Err(RuntimeError::Read { .. })
    ));
}

/// Prints tract's per-row latency at batch 1 and batch 1024 (never asserted: timings depend on
/// the machine and the build profile; run with `--release --nocapture` for serving figures).
#[test]
fn tract_latency_is_printed() {
    let (x, y) = synthetic(3000, 8);
    let loaded_models = models(&x, &y);
    let batch = rows(&x, 0..1024);
    for (name, model) in loaded_models {
        let loaded = LoadedModel::from_bytes(&to_onnx(&model).unwrap()).unwrap();
        let row = x.row(0).to_vec();
        for _ in 0..50 {
            loaded.predict_row(&row).unwrap();
        }
        let n = 500;
        let start = Instant::now();
        for i in 0..n {
            std::hint::black_box(loaded.predict_row(x.row(i % x.n_rows)).unwrap());
        }
        let single = start.elapsed().as_secs_f64() / n as f64 * 1e6;
        let start = Instant::now();
        let reps = 5;
        for _ in 0..reps {
            std::hint::black_box(loaded.predict(&batch).unwrap());
        }
        let batched = start.elapsed().as_secs_f64() / (reps * batch.n_rows) as f64 * 1e6;
        println!(
            "latency {name}: {single:.1} µs/row at batch 1, {batched:.2} µs/row at batch 1024"
        );
    }
}

#[test]
fn onnxruntime_agrees_with_tract() {
    let (x, y) = synthetic(2500, 33);
    let train = rows(&x, 0..2000);
    let test = rows(&x, 2000..2500);
    let models = models(&train, &y[..2000]);
    let cases: Vec<(&str, &Model)> = models.iter().map(|(n, m)| (n.as_str(), m)).collect();
    common::check_with_onnxruntime(&cases, &test, TOLERANCE);
}
