//! Unit tests of the pipeline on synthetic records.

use super::*;
use crate::record::FieldValue;
use crate::schema::{self, Kind};

/// A synthetic encounter: every required field set, varied by `i`, readmitted when
/// `i.is_multiple_of(5)` and then more often on insulin "Up" and with more inpatient visits.
fn record(i: usize) -> RawRecord {
    let races = ["Caucasian", "AfricanAmerican", "?", "Hispanic"];
    let ages = ["[50-60)", "[60-70)", "[70-80)"];
    let insulin = ["No", "Steady", "Up", "Down"];
    let diags = ["428", "250.83", "V57", "786", "?"];
    // Diagnoses rotate on i / 3 so that they carry no exact copy of the label.
    let specialties = ["InternalMedicine", "?", "Cardiology"];
    let readmitted = if i.is_multiple_of(5) { "<30" } else { ">30" };
    let fields: Vec<(&str, String)> = vec![
        ("encounter_id", (1000 + i).to_string()),
        ("patient_nbr", (i / 2).to_string()),
        ("race", races[i % 4].into()),
        (
            "gender",
            if i.is_multiple_of(2) {
                "Female"
            } else {
                "Male"
            }
            .into(),
        ),
        ("age", ages[i % 3].into()),
        ("admission_type_id", (1 + i % 3).to_string()),
        ("discharge_disposition_id", (1 + i % 4).to_string()),
        ("admission_source_id", (1 + i % 7).to_string()),
        ("time_in_hospital", (1 + i % 14).to_string()),
        (
            "payer_code",
            if i.is_multiple_of(3) { "MC" } else { "?" }.into(),
        ),
        ("medical_specialty", specialties[i % 3].into()),
        ("num_lab_procedures", (i % 60).to_string()),
        ("num_procedures", (i % 6).to_string()),
        ("num_medications", (5 + i % 20).to_string()),
        ("number_outpatient", (i % 3).to_string()),
        ("number_emergency", (i % 2).to_string()),
        (
            "number_inpatient",
            (if i.is_multiple_of(5) { 3 } else { i % 2 }).to_string(),
        ),
        ("diag_1", diags[(i / 3) % 5].into()),
        ("diag_2", diags[(i / 3 + 1) % 5].into()),
        ("diag_3", diags[(i / 3 + 2) % 5].into()),
        ("number_diagnoses", (1 + i % 9).to_string()),
        ("max_glu_serum", "None".into()),
        (
            "A1Cresult",
            if i.is_multiple_of(4) { ">8" } else { "None" }.into(),
        ),
        ("metformin", "No".into()),
        (
            "insulin",
            insulin[if i.is_multiple_of(5) { 2 } else { i % 4 }].into(),
        ),
        ("change", "Ch".into()),
        ("diabetesMed", "Yes".into()),
        ("readmitted", readmitted.into()),
    ];
    let drugs = schema::features()
        .filter(|(_, c)| {
            matches!(c.kind, Kind::Categorical { levels, .. } if levels.len() == 4
                && levels[1] == "Steady")
                && !fields.iter().any(|(n, _)| n == &c.name)
        })
        .map(|(_, c)| (c.name, "No".to_owned()))
        .collect::<Vec<_>>();
    RawRecord::from_fields(
        fields
            .into_iter()
            .chain(drugs)
            .map(|(n, v)| (n, Some(FieldValue::Text(v)))),
    )
    .unwrap()
    .with_prior_encounters(u32::try_from(i % 2).unwrap())
}

fn fixture(n: usize) -> (Vec<RawRecord>, Vec<bool>) {
    let rows: Vec<RawRecord> = (0..n).map(record).collect();
    let labels = rows.iter().map(|r| r.label().unwrap()).collect();
    (rows, labels)
}

#[test]
fn batch_and_single_record_transforms_are_identical() {
    let (rows, labels) = fixture(400);
    let params = PipelineParams {
        k: Some(30),
        min_level_rows: 5,
        ..PipelineParams::default()
    };
    let p = Pipeline::fit(&rows[..300], &labels[..300], &params).unwrap();
    assert_eq!(p.n_features(), 30);
    let m = p.transform(&rows[300..]).unwrap();
    assert_eq!((m.n_rows, m.n_cols), (100, 30));
    for (i, r) in rows[300..].iter().enumerate() {
        let single = p.transform_record(r);
        assert!(
            single
                .iter()
                .zip(m.row(i))
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "row {i}"
        );
    }
    // Scaled training columns have mean 0 and unit variance.
    let t = p.transform(&rows[..300]).unwrap();
    for j in 0..t.n_cols {
        let col = t.column(j);
        let mean: f64 = col.iter().map(|&v| f64::from(v)).sum::<f64>() / 300.0;
        let var: f64 = col
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 300.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{}: {mean} {var}",
            t.names[j]
        );
    }
}

#[test]
fn selection_prefers_the_signal() {
    let (rows, labels) = fixture(500);
    let params = PipelineParams {
        k: Some(3),
        ..PipelineParams::default()
    };
    let p = Pipeline::fit(&rows[..], &labels, &params).unwrap();
    // Readmitted rows are exactly those with insulin Up and 3 inpatient visits.
    assert!(
        p.names().contains(&"insulin=Up".to_owned()),
        "{:?}",
        p.names()
    );
    assert!(
        p.names().contains(&"number_inpatient".to_owned()),
        "{:?}",
        p.names()
    );
    assert!(p.inputs().contains(&"insulin"));
    assert!(p.f_scores().iter().all(|f| *f > 0.0));
}

#[test]
fn unseen_levels_and_missing_values_do_not_crash() {
    let (rows, labels) = fixture(200);
    let params = PipelineParams {
        k: None,
        min_level_rows: 1,
        ..PipelineParams::default()
    };
    let p = Pipeline::fit(&rows[..], &labels, &params).unwrap();
    // A specialty, a diagnosis code and a payer never seen in training.
    let unseen = RawRecord::from_fields(
        (0..50)
            .filter_map(|i| {
                let column = &COLUMNS[i];
                let value = match column.name {
                    "medical_specialty" => "Astrology".to_owned(),
                    "diag_1" => "428.1".to_owned(),
                    "payer_code" => "FR".to_owned(),
                    "race" => "?".to_owned(),
                    _ => match rows[0].cell(i) {
                        Cell::Missing => return None,
                        Cell::Int(v) => v.to_string(),
                        Cell::Text(t) => t.to_owned(),
                    },
                };
                Some((column.name, Some(FieldValue::Text(value))))
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let features = p.transform_record(&unseen);
    assert_eq!(features.len(), p.n_features());
    assert!(features.iter().all(|v| v.is_finite()));
    let at = |name: &str| p.names().iter().position(|n| n == name).unwrap();
    let hot = |name: &str| features[at(name)] != p.zero_row[at(name)];
    // Unseen levels land in "other", which training never filled, so no kept column of
    // theirs is hot: the record scores as "none of the known levels".
    for (j, name) in p.names().iter().enumerate() {
        if name.starts_with("medical_specialty=") || name.starts_with("payer_code=") {
            assert_eq!(features[j], p.zero_row[j], "{name} {:?}", unseen);
        }
    }
    assert!(!hot("diag_1=428"));
    assert!(hot("diag_1_chapter=circulatory"));
    assert!(hot("race=<missing>"));
    assert!(!hot("race=Caucasian"));
    // Of two complementary columns only one is kept, even with no limit on k.
    let genders = p
        .names()
        .iter()
        .filter(|n| n.starts_with("gender="))
        .count();
    assert_eq!(genders, 1, "{:?}", p.names());
    // No prior-encounter count: the training median, 0.5 between the halves of 0s and 1s.
    let j = at("prior_encounters");
    let zero = p.transform_record(&unseen.clone().with_prior_encounters(0))[j];
    let one = p.transform_record(&unseen.with_prior_encounters(1))[j];
    assert!((features[j] - f32::midpoint(zero, one)).abs() < 1e-6);
}

#[test]
fn serde_round_trip_is_exact() {
    let (rows, labels) = fixture(300);
    let p = Pipeline::fit(&rows[..], &labels, &PipelineParams::default()).unwrap();
    let json = p.to_json().unwrap();
    let back = Pipeline::from_json(&json).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.to_json().unwrap(), json);
    for r in &rows[..20] {
        assert_eq!(back.transform_record(r), p.transform_record(r));
    }
    // A tampered file is refused, not trusted.
    let tampered = json.replacen("\"std\": [\n    ", "\"std\": [\n    -", 1);
    assert!(matches!(
        Pipeline::from_json(&tampered),
        Err(PipelineError::Inconsistent { .. })
    ));
}

#[test]
fn bad_fits_are_errors() {
    let (rows, labels) = fixture(50);
    let zero_k = PipelineParams {
        k: Some(0),
        ..PipelineParams::default()
    };
    assert!(matches!(
        Pipeline::fit(&rows[..], &labels, &zero_k),
        Err(PipelineError::InvalidParams { field: "k", .. })
    ));
    assert!(matches!(
        Pipeline::fit(&rows[..], &labels[..10], &PipelineParams::default()),
        Err(PipelineError::LabelCount {
            rows: 50,
            labels: 10
        })
    ));
    assert!(matches!(
        Pipeline::fit(&rows[..], &[false; 50], &PipelineParams::default()),
        Err(PipelineError::OneClass { rows: 50 })
    ));
}
