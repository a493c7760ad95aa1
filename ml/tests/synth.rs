//! The synthetic data generator: its files pass the reader's validation, are a pure function of
//! the seed, look like the real file column by column, and carry a readmission signal that the
//! feature pipeline and a logistic regression learn.
//!
//! The marginal and determinism tests need no feature of the crate; validation needs `data`,
//! learning needs `data` and `train`.

use std::collections::HashMap;
use std::time::Instant;

use readmit_ml::schema::{self, COLUMNS};
use readmit_ml::synth::{self, Generator};

/// The rows of a generated CSV as fields by column name (the output never needs quoting).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn parse(csv: &[u8]) -> Self {
        let text = std::str::from_utf8(csv).unwrap();
        let mut lines = text.lines();
        let header = lines
            .next()
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        let rows = lines
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect();
        Self { header, rows }
    }

    fn column(&self, name: &str) -> Vec<&str> {
        let i = self.header.iter().position(|h| h == name).unwrap();
        self.rows.iter().map(|r| r[i].as_str()).collect()
    }

    fn ints(&self, name: &str) -> Vec<i64> {
        self.column(name)
            .iter()
            .map(|v| v.parse().unwrap())
            .collect()
    }

    /// The share of rows whose `name` is `value`.
    fn share(&self, name: &str, value: &str) -> f64 {
        let column = self.column(name);
        column.iter().filter(|v| **v == value).count() as f64 / column.len() as f64
    }

    /// The most frequent value of `name`.
    fn mode(&self, name: &str) -> String {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in self.column(name) {
            *counts.entry(v).or_default() += 1;
        }
        let (value, _) = counts.into_iter().max_by_key(|(v, c)| (*c, *v)).unwrap();
        value.to_owned()
    }
}

fn mean(values: &[i64]) -> f64 {
    values.iter().sum::<i64>() as f64 / values.len() as f64
}

fn assert_within(what: &str, value: f64, low: f64, high: f64) {
    println!("{what}: {value:.4}");
    assert!(
        (low..=high).contains(&value),
        "{what} = {value}, expected {low}..={high}"
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = synth::csv_bytes(2_000, 42);
    let mut b = Vec::new();
    synth::write_csv(&mut b, 2_000, 42).unwrap();
    assert!(a == b, "the same seed gave different bytes");
    assert!(a != synth::csv_bytes(2_000, 43), "seeds 42 and 43 agree");
    assert!(
        a != synth::csv_bytes(2_000, 42 + (1 << 32)),
        "seeds differing in the high half agree"
    );

    let table = Table::parse(&a);
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(table.header, names);
    assert_eq!(synth::header(), names.join(","));
    assert_eq!(table.rows.len(), 2_000);
    assert!(table.rows.iter().all(|r| r.len() == COLUMNS.len()));
    assert_eq!(
        synth::csv_bytes(0, 1),
        format!("{}\r\n", synth::header()).into_bytes()
    );
    // CRLF throughout, as in the published file.
    assert_eq!(
        a.windows(2).filter(|w| w == b"\r\n").count(),
        a.iter().filter(|b| **b == b'\n').count()
    );

    // The iterator gives the rows write_csv writes.
    let first: Vec<Vec<String>> = Generator::new(42, 2_000).take(3).collect();
    assert_eq!(first, table.rows[..3]);
}

#[test]
fn marginals_look_like_the_real_file() {
    let started = Instant::now();
    let csv = synth::csv_bytes(100_000, 7);
    let elapsed = started.elapsed();
    println!(
        "generated 100,000 rows ({} MB) in {elapsed:.2?}: {:.0} rows/s",
        csv.len() / 1_000_000,
        100_000.0 / elapsed.as_secs_f64()
    );
    let t = Table::parse(&csv);

    assert_within("readmitted <30", t.share(schema::TARGET, "<30"), 0.08, 0.14);
    assert_within("readmitted >30", t.share(schema::TARGET, ">30"), 0.28, 0.42);
    assert_within("weight missing", t.share("weight", "?"), 0.95, 0.99);
    assert_within("payer_code missing", t.share("payer_code", "?"), 0.35, 0.45);
    assert_within(
        "medical_specialty missing",
        t.share("medical_specialty", "?"),
        0.44,
        0.54,
    );
    assert_within("Female", t.share("gender", "Female"), 0.5, 0.58);
    assert_within("Caucasian", t.share("race", "Caucasian"), 0.68, 0.82);
    assert_eq!(t.mode("age"), "[70-80)");
    assert_within("metformin No", t.share("metformin", "No"), 0.75, 0.85);
    assert_within("insulin No", t.share("insulin", "No"), 0.4, 0.53);
    assert_within("diabetesMed Yes", t.share("diabetesMed", "Yes"), 0.7, 0.84);
    assert_within("change Ch", t.share("change", "Ch"), 0.38, 0.54);
    assert_eq!(t.share("examide", "No"), 1.0);
    assert_within("diag_1 428", t.share("diag_1", "428"), 0.05, 0.085);
    assert_within("diag_3 missing", t.share("diag_3", "?"), 0.008, 0.02);

    let time = t.ints("time_in_hospital");
    assert!(time.iter().all(|d| (1..=14).contains(d)));
    assert!(["2", "3"].contains(&t.mode("time_in_hospital").as_str()));
    assert_within("mean time_in_hospital", mean(&time), 3.9, 4.9);
    let labs = t.ints("num_lab_procedures");
    assert!(labs.iter().all(|n| (1..=132).contains(n)));
    assert_within("mean num_lab_procedures", mean(&labs), 39.0, 47.0);
    assert_within(
        "mean num_medications",
        mean(&t.ints("num_medications")),
        14.0,
        18.0,
    );
    assert_within(
        "number_inpatient zero",
        t.share("number_inpatient", "0"),
        0.6,
        0.72,
    );
    assert_within(
        "number_emergency zero",
        t.share("number_emergency", "0"),
        0.84,
        0.93,
    );
    assert_within(
        "mean number_diagnoses",
        mean(&t.ints("number_diagnoses")),
        6.9,
        7.9,
    );

    let encounters = t.ints(schema::ENCOUNTER_ID);
    assert!(encounters.windows(2).all(|w| w[0] < w[1]));
    let mut per_patient: HashMap<i64, usize> = HashMap::new();
    for p in t.ints(schema::PATIENT_NBR) {
        *per_patient.entry(p).or_default() += 1;
    }
    let repeat = per_patient.values().filter(|n| **n > 1).count();
    assert_within(
        "patients with more than one encounter",
        repeat as f64 / per_patient.len() as f64,
        0.2,
        0.35,
    );
    assert_within(
        "encounters per patient",
        encounters.len() as f64 / per_patient.len() as f64,
        1.25,
        1.6,
    );
}

/// The planted signal shows in plain rates: more inpatient visits and later encounters are
/// readmitted more often, and the expired never are.
#[test]
fn readmission_rises_with_the_planted_risk_factors() {
    let t = Table::parse(&synth::csv_bytes(60_000, 11));
    let positive: Vec<bool> = t
        .column(schema::TARGET)
        .iter()
        .map(|v| schema::is_positive(v))
        .collect();
    let rate = |keep: &dyn Fn(usize) -> bool| {
        let rows: Vec<usize> = (0..positive.len()).filter(|&i| keep(i)).collect();
        rows.iter().filter(|&&i| positive[i]).count() as f64 / rows.len().max(1) as f64
    };
    let inpatient = t.ints("number_inpatient");
    let none = rate(&|i| inpatient[i] == 0);
    let some = rate(&|i| inpatient[i] >= 2);
    println!("<30 rate: no inpatient visit {none:.3}, two or more {some:.3}");
    assert!(some > none + 0.06);

    let patients = t.ints(schema::PATIENT_NBR);
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let prior: Vec<usize> = patients
        .iter()
        .map(|p| {
            let n = seen.entry(*p).or_default();
            *n += 1;
            *n - 1
        })
        .collect();
    let first = rate(&|i| prior[i] == 0);
    let later = rate(&|i| prior[i] >= 1);
    println!("<30 rate: first encounter {first:.3}, later ones {later:.3}");
    assert!(later > first + 0.03);

    let discharge = t.column("discharge_disposition_id");
    assert_eq!(rate(&|i| discharge[i] == "11"), 0.0);
    let home = rate(&|i| discharge[i] == "1");
    let rehab = rate(&|i| discharge[i] == "22");
    println!("<30 rate: discharged home {home:.3}, to rehabilitation {rehab:.3}");
    assert!(rehab > home + 0.05);
}

#[cfg(feature = "data")]
#[test]
fn generated_files_pass_the_readers_validation() {
    use readmit_ml::data::{int_column, labels, read_csv_bytes};

    // The header is the published file's, when it is here to compare with.
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/diabetic_data.csv.gz");
    if let Ok(gz) = std::fs::read(&real) {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&gz[..]))
            .read_line(&mut first)
            .unwrap();
        assert_eq!(
            first.as_bytes(),
            synth::csv_bytes(0, 0),
            "the header line differs"
        );
    }

    let path = std::path::Path::new("synthetic.csv");
    for (rows, seed) in [(1, 0), (5_000, 3), (20_000, u64::MAX)] {
        let df = read_csv_bytes(synth::csv_bytes(rows, seed), path)
            .unwrap_or_else(|e| panic!("{rows} rows, seed {seed}: {e}"));
        assert_eq!(df.height(), rows);
        assert_eq!(labels(&df).unwrap().len(), rows);
        let prior = int_column(&df, schema::PRIOR_ENCOUNTERS).unwrap();
        if rows > 1 {
            assert!(prior.iter().any(|p| *p > 0), "some patients return");
        }
    }
}

#[cfg(all(feature = "data", feature = "train"))]
#[test]
fn the_signal_is_learnable_by_the_pipeline_and_logistic_regression() {
    use readmit_ml::data::{labels, read_csv_bytes};
    use readmit_ml::metrics::roc_auc;
    use readmit_ml::pipeline::{Pipeline, PipelineParams};
    use readmit_ml::training::{LogisticParams, Params, fit};

    let path = std::path::Path::new("synthetic.csv");
    let train = read_csv_bytes(synth::csv_bytes(20_000, 101), path).unwrap();
    let validation = read_csv_bytes(synth::csv_bytes(5_000, 202), path).unwrap();
    let y = labels(&train).unwrap();
    let y_val = labels(&validation).unwrap();

    let pipeline = Pipeline::fit(&train, &y, &PipelineParams::default()).unwrap();
    let x = pipeline.transform(&train).unwrap();
    let x_val = pipeline.transform(&validation).unwrap();
    let params = Params::Logistic(LogisticParams::with_c(0.1))
        .check()
        .unwrap();
    let started = Instant::now();
    let model = fit(&params, &x, &y).unwrap();
    let p = model.predict_proba(&x_val).unwrap();
    let auc = roc_auc(&p, &y_val).unwrap();
    println!(
        "logistic regression on 20,000 synthetic rows ({} features, fitted in {:.2?}): \
         validation ROC AUC {auc:.4} on 5,000 others",
        x.n_cols,
        started.elapsed()
    );
    assert!(auc > 0.6, "validation AUC {auc}");
    assert!(
        auc < 0.85,
        "validation AUC {auc}: the signal is implausibly strong"
    );
}
