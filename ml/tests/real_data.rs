//! Tests on the real UCI file in `../shared/data/` beside the checkout: the original split's
//! fingerprints, the grouped split's disjointness, and the feature pipeline on every split.
//! Without the file they skip, except under CI (env `CI` set), where they fail.
#![cfg(feature = "data")]

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use polars::prelude::DataFrame;
use readmit_ml::data::{self, Splits};
use readmit_ml::pipeline::{Pipeline, PipelineParams};
use readmit_ml::split::{BATCH_ROWS, SplitMethod};

fn data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/diabetic_data.csv.gz")
}

/// The real file, or `None` (with the reason printed) when it is absent outside CI.
fn real_frame() -> Option<DataFrame> {
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
        return None;
    }
    let start = Instant::now();
    let df = data::read_csv(&path).unwrap();
    println!("read_csv: {:.3} s", start.elapsed().as_secs_f64());
    Some(df)
}

#[test]
fn original_split_reproduces_the_fingerprints() {
    let Some(df) = real_frame() else { return };
    assert_eq!((df.height(), df.width()), (101_766, 51));
    let start = Instant::now();
    let splits = data::split_frame(&df, SplitMethod::Original, 0).unwrap();
    println!("split (original): {:.3} s", start.elapsed().as_secs_f64());
    assert_eq!(splits.train_pool.height(), 61_059);
    assert_eq!(splits.validation.height(), 20_353);
    assert_eq!(splits.test.height(), 20_354);
    assert_eq!(
        data::fingerprint(&splits.train_pool).unwrap(),
        "4bd9ef583b83b5e68f8c227ff67b265595b3409c59d55474f75d9927ec551925"
    );
    assert_eq!(
        data::fingerprint(&splits.validation).unwrap(),
        "6e34a091daf9083a779eefea9a017da32a0d47e9c91373f4df58cdaaa5594ada"
    );
    assert_eq!(
        data::fingerprint(&splits.test).unwrap(),
        "ea39aae1b0d90f8f3323150633e557cc9079184770b5676409231e1001fd75fd"
    );
    let ids = data::int_column(&df, "encounter_id").unwrap();
    let fingerprints = splits.indices.fingerprints(&ids);
    assert_eq!(fingerprints.test, data::fingerprint(&splits.test).unwrap());
    assert_eq!(
        fingerprints.first_batch,
        "8d3d28be3eb18426923a8437bd20167a5d43cf6dfca3c68c9fadb1b854f0a529"
    );
    let batch = data::take_rows(&df, splits.indices.batch(0)).unwrap();
    assert_eq!(batch.height(), BATCH_ROWS);
    assert_eq!(
        data::fingerprint(&batch).unwrap(),
        "8d3d28be3eb18426923a8437bd20167a5d43cf6dfca3c68c9fadb1b854f0a529"
    );
}

fn patients(df: &DataFrame) -> HashSet<i64> {
    data::int_column(df, "patient_nbr")
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn grouped_split_keeps_every_patient_in_one_split() {
    let Some(df) = real_frame() else { return };
    let start = Instant::now();
    let splits = data::split_frame(&df, SplitMethod::Grouped, 42).unwrap();
    println!("split (grouped): {:.3} s", start.elapsed().as_secs_f64());
    let (tr, va, te) = (
        patients(&splits.train_pool),
        patients(&splits.validation),
        patients(&splits.test),
    );
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    let n = df.height();
    assert_eq!(
        splits.train_pool.height() + splits.validation.height() + splits.test.height(),
        n
    );
    // The same proportions as the original, within one large patient's encounters.
    assert!((20_354..20_354 + 40).contains(&splits.test.height()));
    assert!((20_353 - 40..20_353 + 40).contains(&splits.validation.height()));
    // The original split, by contrast, shares patients between training and test.
    let original = data::split_frame(&df, SplitMethod::Original, 0).unwrap();
    let shared = patients(&original.test)
        .intersection(&patients(&original.train_pool))
        .count();
    assert!(shared > 5_000, "{shared}");
}

/// Fits on the pool and transforms every split, timing both.
fn fit_and_transform(
    splits: &Splits,
    params: &PipelineParams,
) -> (Pipeline, [readmit_ml::matrix::Matrix; 3]) {
    let start = Instant::now();
    let labels = data::labels(&splits.train_pool).unwrap();
    let pipeline = Pipeline::fit(&splits.train_pool, &labels, params).unwrap();
    let fitted = start.elapsed().as_secs_f64();
    let matrices = [
        pipeline.transform(&splits.train_pool).unwrap(),
        pipeline.transform(&splits.validation).unwrap(),
        pipeline.transform(&splits.test).unwrap(),
    ];
    let total = start.elapsed().as_secs_f64();
    println!(
        "pipeline_fit: {fitted:.3} s, pipeline_transform (all splits): {:.3} s",
        total - fitted
    );
    // The budget holds for optimised builds; debug builds of polars are ten times slower.
    if !cfg!(debug_assertions) {
        assert!(total < 0.5, "fit + transform took {total:.3} s");
    }
    (pipeline, matrices)
}

#[test]
fn one_fitted_pipeline_gives_every_split_the_same_live_columns() {
    let Some(df) = real_frame() else { return };
    for method in [SplitMethod::Original, SplitMethod::Grouped] {
        let splits = data::split_frame(&df, method, 42).unwrap();
        let (pipeline, [train, validation, test]) =
            fit_and_transform(&splits, &PipelineParams::default());
        assert_eq!(pipeline.n_features(), 50);
        // The original encoded each split on its own and got 71/74/73 columns; here the column
        // set is the pipeline's, whatever the split holds.
        for m in [&train, &validation, &test] {
            assert_eq!(m.names, pipeline.names());
            assert!(m.data.iter().all(|v| v.is_finite()));
        }
        // And no kept column is constant on validation (the original had one all-zero there).
        for j in 0..validation.n_cols {
            let col = validation.column(j);
            assert!(
                col.iter().any(|&v| v != col[0]),
                "{:?}: {} is constant on validation",
                method,
                validation.names[j]
            );
        }
        // Serving computes the same numbers from raw records, with or without a JSON trip.
        let records = data::records(&splits.validation, 0..500).unwrap();
        let reloaded = Pipeline::from_json(&pipeline.to_json().unwrap()).unwrap();
        assert_eq!(reloaded, pipeline);
        for (i, record) in records.iter().enumerate() {
            let single = reloaded.transform_record(record);
            assert!(
                single
                    .iter()
                    .zip(validation.row(i))
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "validation row {i}"
            );
        }
        println!("{method:?} kept: {:?}", pipeline.names());
    }
}
