//! Every model family on real features: the UCI file in `../shared/data/`, the original split,
//! the feature pipeline fitted on the first training batch. Each model must find the signal, and
//! its ONNX export must score the validation rows the same in memory, in tract and in
//! onnxruntime. Without the file this skips, except under CI (env `CI` set), where it fails.

#![cfg(all(feature = "data", feature = "train", feature = "runtime"))]

mod common;

use std::path::PathBuf;

use readmit_ml::data::{labels, read_csv, split_frame, take_rows};
use readmit_ml::matrix::Matrix;
use readmit_ml::metrics::roc_auc;
use readmit_ml::models::Model;
use readmit_ml::onnx::to_onnx;
use readmit_ml::pipeline::{Pipeline, PipelineParams};
use readmit_ml::runtime::LoadedModel;
use readmit_ml::split::SplitMethod;
use readmit_ml::training::{BoostingParams, ForestParams, LogisticParams, Params, fit};

const TOLERANCE: f32 = 1e-5;

fn data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/diabetic_data.csv.gz")
}

#[test]
fn every_family_learns_real_features_and_exports_faithfully() {
    let path = data_path();
    if !path.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the data file {} is missing",
            path.display()
        );
        println!(
            "skipped: {} is missing (set CI to make this fail)",
            path.display()
        );
        return;
    }
    let df = read_csv(&path).unwrap();
    let splits = split_frame(&df, SplitMethod::Original, 42).unwrap();
    // One 15,000-row batch keeps a debug build quick; the benchmark trains on the full pool.
    let batch: Vec<usize> = (0..15_000).collect();
    let train = take_rows(&splits.train_pool, &batch).unwrap();
    let y = labels(&train).unwrap();
    let pipeline = Pipeline::fit(&train, &y, &PipelineParams::default()).unwrap();
    let x = pipeline.transform(&train).unwrap();
    let val_rows: Vec<usize> = (0..4_000).collect();
    let val = take_rows(&splits.validation, &val_rows).unwrap();
    let (x_val, y_val) = (pipeline.transform(&val).unwrap(), labels(&val).unwrap());

    let cases = [
        ("LR_C_0.1", Params::Logistic(LogisticParams::with_c(0.1))),
        (
            "RF_20_depth8",
            Params::Forest(ForestParams {
                n_trees: 20,
                max_depth: Some(8),
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
    let mut models: Vec<(&str, Model)> = Vec::new();
    for (name, params) in cases {
        let model = fit(&params.check().unwrap(), &x, &y).unwrap();
        let p = model.predict_proba(&x_val).unwrap();
        let auc = roc_auc(&p, &y_val).unwrap();
        println!("{name}: validation AUC {auc:.4} (15k training rows)");
        // The original system's models scored 0.64 on validation with four times the rows.
        assert!(auc > 0.62, "{name}: validation AUC {auc}");

        let loaded = LoadedModel::from_bytes(&to_onnx(&model).unwrap()).unwrap();
        let t = loaded.predict(&x_val).unwrap();
        let diff = p
            .iter()
            .zip(&t)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff <= TOLERANCE, "{name}: tract differs by {diff}");
        models.push((name, model));
    }
    let sample = Matrix::new(
        500,
        x_val.n_cols,
        x_val.data[..500 * x_val.n_cols].to_vec(),
        x_val.names.clone(),
    )
    .unwrap();
    let cases: Vec<(&str, &Model)> = models.iter().map(|(n, m)| (*n, m)).collect();
    common::check_with_onnxruntime(&cases, &sample, TOLERANCE);
}
