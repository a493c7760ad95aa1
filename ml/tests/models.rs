//! Training every candidate on seeded synthetic data with a planted signal: validation, the
//! scikit-learn meaning of `C`, probabilities, reproducibility and parallel forests.

#![cfg(feature = "train")]

mod common;

use readmit_ml::matrix::Matrix;
use readmit_ml::metrics::roc_auc;
use readmit_ml::models::{Aggregation, Model};
use readmit_ml::training::{
    BoostingParams, Candidate, ForestParams, LogisticParams, Params, TrainError, candidate,
    candidates, fit, fit_all,
};

use common::{rows, synthetic, synthetic_with_truth};

fn split() -> (Matrix, Vec<bool>, Matrix, Vec<bool>) {
    let (x, y) = synthetic(6000, 11);
    assert_eq!(x.n_rows, 6000);
    let train = rows(&x, 0..4000);
    let test = rows(&x, 4000..6000);
    (train, y[..4000].to_vec(), test, y[4000..].to_vec())
}

fn small_forest(n_trees: usize, max_depth: Option<usize>) -> Params {
    Params::Forest(ForestParams {
        n_trees,
        max_depth,
        ..ForestParams::default()
    })
}

/// The test split's AUC when scored by the true probabilities: no model can beat it.
fn oracle_auc() -> f64 {
    let (_, y, truth) = synthetic_with_truth(6000, 11);
    roc_auc(&truth[4000..], &y[4000..]).unwrap()
}

#[test]
fn candidate_names_are_the_original_runs_plus_boosting() {
    let names: Vec<String> = candidates().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names[..6],
        [
            "LR_C_0.01",
            "LR_C_0.1",
            "LR_C_1",
            "RF_100",
            "RF_200",
            "RF_depth10"
        ]
    );
    assert!(names[6].starts_with("GBM_"), "{names:?}");
    assert_eq!(names.len(), 7);
    let rf = candidate("RF_depth10").unwrap();
    assert_eq!(
        rf.params,
        Params::Forest(ForestParams {
            n_trees: 100,
            max_depth: Some(10),
            ..ForestParams::default()
        })
    );
    let logged = rf.params.describe();
    assert!(logged.contains(&("family", "random_forest".to_owned())));
    assert!(logged.contains(&("max_depth", "10".to_owned())));
    let json = serde_json::to_string(&rf).unwrap();
    assert_eq!(serde_json::from_str::<Candidate>(&json).unwrap(), rf);
    assert!(matches!(
        candidate("SVM"),
        Err(TrainError::UnknownCandidate { name }) if name == "SVM"
    ));
}

#[test]
fn invalid_params_are_rejected_before_work() {
    let bad = [
        Params::Logistic(LogisticParams::with_c(0.0)),
        Params::Logistic(LogisticParams::with_c(f64::NAN)),
        small_forest(0, None),
        small_forest(10, Some(0)),
        Params::Boosting(BoostingParams {
            learning_rate: -0.1,
            ..BoostingParams::default()
        }),
        Params::Boosting(BoostingParams {
            subsample: 1.5,
            ..BoostingParams::default()
        }),
    ];
    for p in bad {
        let err = p.clone().check().unwrap_err();
        assert!(
            matches!(err, TrainError::InvalidParam { .. }),
            "{p:?}: {err}"
        );
    }
}

#[test]
fn bad_data_is_rejected_with_the_row_and_column() {
    let (x, y) = synthetic(50, 1);
    let lr = Params::Logistic(LogisticParams::default()).check().unwrap();
    assert!(matches!(
        fit(&lr, &x, &y[..49]),
        Err(TrainError::LabelCount {
            rows: 50,
            labels: 49
        })
    ));
    assert!(matches!(
        fit(&lr, &x, &[false; 50]),
        Err(TrainError::OneClass { class: false })
    ));
    let mut nan = x;
    nan.data[3 * nan.n_cols + 2] = f32::NAN;
    match fit(&lr, &nan, &y) {
        Err(TrainError::NotFinite { row, column }) => assert_eq!((row, column.as_str()), (3, "x2")),
        other => panic!("expected NotFinite, got {other:?}"),
    }
}

/// The gradient of scikit-learn's objective `C·Σ logloss + ½‖w‖²` divided by `C·n` (its own
/// scaling), largest component, at the fitted weights.
fn scaled_sklearn_gradient(model: &Model, c: f64, x: &Matrix, y: &[bool]) -> f64 {
    let Model::Linear(m) = model else {
        panic!("logistic regression must fit a linear model");
    };
    let p = model.predict_proba(x).unwrap();
    let mut grad: Vec<f64> = m.weights.iter().map(|&w| f64::from(w)).collect();
    let mut grad_b = 0.0;
    for i in 0..x.n_rows {
        let r = f64::from(p[i]) - f64::from(u8::from(y[i]));
        grad_b += c * r;
        for (g, &v) in grad.iter_mut().zip(x.row(i)) {
            *g += c * r * f64::from(v);
        }
    }
    let scale = c * x.n_rows as f64;
    grad.iter()
        .chain([&grad_b])
        .map(|g| (g / scale).abs())
        .fold(0.0, f64::max)
}

/// linfa's `alpha` is `1/C`: solved tightly, the weights zero the gradient of scikit-learn's
/// objective for that `C`, and a larger C fits larger weights. The default stopping rule lands
/// next to the tight solution.
#[test]
fn logistic_regression_solves_scikit_learns_objective() {
    let (x, y, test, y_test) = split();
    let mut norms = Vec::new();
    for c in [0.01, 0.1, 1.0] {
        let tight = LogisticParams {
            c,
            max_iterations: 1000,
            tolerance: 1e-9,
        };
        let tight = fit(&Params::Logistic(tight).check().unwrap(), &x, &y).unwrap();
        let worst = scaled_sklearn_gradient(&tight, c, &x, &y);
        assert!(worst < 1e-5, "C={c}: scaled gradient {worst}");
        let Model::Linear(m) = &tight else {
            unreachable!()
        };
        norms.push(m.weights.iter().map(|w| f64::from(w * w)).sum::<f64>());

        let default = Params::Logistic(LogisticParams::with_c(c)).check().unwrap();
        let default = fit(&default, &x, &y).unwrap();
        let (p, q) = (
            default.predict_proba(&test).unwrap(),
            tight.predict_proba(&test).unwrap(),
        );
        let gap = p
            .iter()
            .zip(&q)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(gap < 5e-3, "C={c}: default fit is {gap} from the tight one");
        let (auc, tight_auc) = (roc_auc(&p, &y_test).unwrap(), roc_auc(&q, &y_test).unwrap());
        assert!(
            (auc - tight_auc).abs() < 1e-3,
            "C={c}: AUC {auc} vs {tight_auc}"
        );
        assert!(auc > 0.70, "C={c}: test AUC {auc}");
    }
    assert!(norms[0] < norms[1] && norms[1] < norms[2], "{norms:?}");
}

#[test]
fn logistic_regression_scores_the_positive_class_whichever_is_rarer() {
    let (x, y, _, _) = split();
    let params = Params::Logistic(LogisticParams::default()).check().unwrap();
    let p = fit(&params, &x, &y).unwrap().predict_proba(&x).unwrap();
    let flipped: Vec<bool> = y.iter().map(|v| !v).collect();
    let q = fit(&params, &x, &flipped)
        .unwrap()
        .predict_proba(&x)
        .unwrap();
    let mean = |v: &[f32], label: &[bool]| {
        let pos: Vec<f32> = v
            .iter()
            .zip(label)
            .filter(|(_, l)| **l)
            .map(|(p, _)| *p)
            .collect();
        pos.iter().sum::<f32>() / pos.len() as f32
    };
    // P(true) is larger on the rows that are true, for either labelling.
    assert!(mean(&p, &y) > mean(&p, &flipped));
    assert!(mean(&q, &flipped) > mean(&q, &y));
    for (a, b) in p.iter().zip(&q) {
        assert!((a + b - 1.0).abs() < 1e-3, "{a} + {b}");
    }
}

#[test]
fn forests_give_probabilities_find_the_signal_and_respect_depth() {
    let (x, y, test, y_test) = split();
    let full = fit(&small_forest(40, None).check().unwrap(), &x, &y).unwrap();
    let shallow = fit(&small_forest(40, Some(4)).check().unwrap(), &x, &y).unwrap();
    // Trees lose some AUC to the smooth linear and interaction terms; shallow ones average better.
    let oracle = oracle_auc();
    for (model, min_auc) in [(&full, oracle - 0.07), (&shallow, oracle - 0.05)] {
        let Model::Trees(e) = model else {
            panic!("a forest is a tree ensemble")
        };
        e.validate().unwrap();
        assert_eq!(e.aggregation, Aggregation::Mean);
        assert_eq!(e.trees.len(), 40);
        let p = model.predict_proba(&test).unwrap();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        let auc = roc_auc(&p, &y_test).unwrap();
        println!("forest test AUC {auc:.4}, oracle {oracle:.4}");
        assert!(auc > min_auc, "test AUC {auc}");
    }
    let Model::Trees(s) = &shallow else {
        unreachable!()
    };
    assert!(s.max_depth() <= 4);
    let Model::Trees(f) = &full else {
        unreachable!()
    };
    assert!(f.max_depth() > 4);
    // Unlimited trees grow until pure: on their own bootstrap rows they are near-perfect.
    let train_auc = roc_auc(&full.predict_proba(&x).unwrap(), &y).unwrap();
    assert!(train_auc > 0.95, "train AUC {train_auc}");
}

#[test]
fn every_fit_is_reproducible_from_its_seed() {
    let (x, y, _, _) = split();
    for params in [
        small_forest(16, None),
        Params::Boosting(BoostingParams {
            iterations: 30,
            subsample: 0.8,
            ..BoostingParams::default()
        }),
        Params::Logistic(LogisticParams::with_c(0.1)),
    ] {
        let valid = params.check().unwrap();
        assert_eq!(fit(&valid, &x, &y).unwrap(), fit(&valid, &x, &y).unwrap());
    }
    let a = fit(&small_forest(8, None).check().unwrap(), &x, &y).unwrap();
    let b = fit(
        &Params::Forest(ForestParams {
            n_trees: 8,
            seed: 7,
            ..ForestParams::default()
        })
        .check()
        .unwrap(),
        &x,
        &y,
    )
    .unwrap();
    assert_ne!(a, b, "a different seed must grow a different forest");
}

#[test]
fn forest_does_not_depend_on_the_thread_count() {
    let (x, y, _, _) = split();
    let params = small_forest(12, Some(8)).check().unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let many = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let a = one.install(|| fit(&params, &x, &y).unwrap());
    let b = many.install(|| fit(&params, &x, &y).unwrap());
    assert_eq!(a, b);
}

#[test]
fn boosting_finds_the_signal() {
    let (x, y, test, y_test) = split();
    let params = Params::Boosting(BoostingParams {
        iterations: 100,
        max_depth: 3,
        ..BoostingParams::default()
    });
    let model = fit(&params.check().unwrap(), &x, &y).unwrap();
    let Model::Trees(e) = &model else {
        panic!("boosting is a tree ensemble")
    };
    assert!(matches!(e.aggregation, Aggregation::Logit { .. }));
    assert_eq!(e.trees.len(), 100);
    assert!(e.max_depth() <= 3);
    let auc = roc_auc(&model.predict_proba(&test).unwrap(), &y_test).unwrap();
    let oracle = oracle_auc();
    println!("boosting test AUC {auc:.4}, oracle {oracle:.4}");
    assert!(auc > oracle - 0.04, "test AUC {auc}, oracle {oracle}");
}

#[test]
fn fit_all_trains_every_default_candidate_by_name() {
    let (x, y) = synthetic(1500, 5);
    let trained = fit_all(candidates(), &x, &y).unwrap();
    let names: Vec<&str> = trained.iter().map(|t| t.name.as_str()).collect();
    let expected: Vec<String> = candidates().into_iter().map(|c| c.name).collect();
    assert_eq!(names, expected);
    for t in &trained {
        let p = t.model.predict_proba(&x).unwrap();
        let auc = roc_auc(&p, &y).unwrap();
        println!(
            "{}: fit {:.3} s, train AUC {auc:.3}",
            t.name,
            t.fit_time.as_secs_f64()
        );
        assert!(auc > 0.7, "{}: train AUC {auc}", t.name);
    }
}
