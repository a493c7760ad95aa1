//! Reading, validating and transforming small CSV files that the tests generate: every error
//! names its line and column, and the DataFrame path computes what the single-record path does.
#![cfg(feature = "data")]

use std::io::Write;
use std::path::{Path, PathBuf};

use readmit_ml::data::{self, DataError};
use readmit_ml::pipeline::{Pipeline, PipelineParams};
use readmit_ml::record::RawRecord;
use readmit_ml::schema::{COLUMNS, Kind, ValueError};

const DIAGS: &[&str] = &["428", "250.83", "V57", "786", "?", "414", "E909", "8"];

/// The 50 fields of synthetic encounter `i`, varied per column; readmitted "<30" for a quarter
/// of rows, more often with more inpatient visits so that features carry some signal.
fn fields(i: usize) -> Vec<String> {
    COLUMNS
        .iter()
        .enumerate()
        .map(|(c, column)| match (column.name, column.kind) {
            ("encounter_id", _) => (5000 - 7 * i).to_string(),
            ("patient_nbr", _) => (i % 40).to_string(),
            ("readmitted", _) => ["<30", "NO", ">30", "NO"][i % 4].to_owned(),
            ("number_inpatient", _) => (if i.is_multiple_of(4) {
                2 + i % 3
            } else {
                i % 2
            })
            .to_string(),
            (_, Kind::Integer { min, .. }) => {
                (min + i64::try_from((i * 7 + c) % 11).unwrap()).to_string()
            }
            (_, Kind::Categorical { levels, .. }) => {
                let k = (i * 3 + c) % (levels.len() + 1);
                if k == levels.len() && column.missing_allowed {
                    "?".to_owned()
                } else {
                    levels[k % levels.len()].to_owned()
                }
            }
            (_, Kind::Icd9) => DIAGS[(i + c) % DIAGS.len()].to_owned(),
        })
        .collect()
}

fn header() -> String {
    COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
}

fn csv(n: usize) -> String {
    let mut out = header();
    out.push('\n');
    for i in 0..n {
        out.push_str(&fields(i).join(","));
        out.push('\n');
    }
    out
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn read_str(content: &str) -> Result<polars::prelude::DataFrame, DataError> {
    data::read_csv_bytes(content.as_bytes().to_vec(), Path::new("fixture.csv"))
}

#[test]
fn reads_plain_and_gzip_into_typed_columns() {
    let dir = tempfile::tempdir().unwrap();
    let content = csv(120);
    let plain = write(dir.path(), "d.csv", content.as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(content.as_bytes()).unwrap();
    let gzipped = write(dir.path(), "d.csv.gz", &gz.finish().unwrap());

    let a = data::read_csv(&plain).unwrap();
    let b = data::read_csv(&gzipped).unwrap();
    assert!(a.equals_missing(&b));
    assert_eq!((a.height(), a.width()), (120, 51));
    assert_eq!(
        a.column("time_in_hospital").unwrap().dtype(),
        &polars::prelude::DataType::Int64
    );
    // `?` is null; `None` is a level and stays.
    let race = a.column("race").unwrap().str().unwrap();
    assert!(race.null_count() > 0);
    let a1c = a.column("A1Cresult").unwrap().str().unwrap();
    assert!(a1c.iter().any(|v| v == Some("None")));
    assert_eq!(a1c.null_count(), 0);

    // Encounter ids fall as rows go on, so a patient's earlier encounters are later rows:
    // patient 0 has rows 0, 40, 80 with ids 5000, 4720, 4440.
    let prior = data::int_column(&a, "prior_encounters").unwrap();
    assert_eq!((prior[80], prior[40], prior[0]), (0, 1, 2));
    assert_eq!(data::labels(&a).unwrap().iter().filter(|&&y| y).count(), 30);
}

#[test]
fn malformed_lines_are_named() {
    let mut lines: Vec<String> = csv(5).lines().map(str::to_owned).collect();
    lines[3] = lines[3].rsplit_once(',').unwrap().0.to_owned();
    match read_str(&(lines.join("\n") + "\n")) {
        Err(DataError::FieldCount {
            line: 4,
            expected: 50,
            found: 49,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut lines: Vec<String> = csv(5).lines().map(str::to_owned).collect();
    lines[2].push_str(",extra");
    assert!(matches!(
        read_str(&lines.join("\n")),
        Err(DataError::FieldCount {
            line: 3,
            found: 51,
            ..
        })
    ));
    assert!(matches!(read_str(""), Err(DataError::Empty { .. })));
    let unterminated = csv(2).replacen('\n', "\n\"", 1);
    assert!(matches!(
        read_str(&unterminated),
        Err(DataError::QuotedLineBreak { .. })
    ));
}

#[test]
fn missing_and_extra_columns_are_named() {
    let content = csv(3).replacen(",weight,", ",", 1);
    let content: String = content
        .lines()
        .enumerate()
        .map(|(k, l)| {
            if k == 0 {
                l.to_owned()
            } else {
                // Drop the weight field (column 6) from data lines too.
                let mut f: Vec<&str> = l.split(',').collect();
                f.remove(5);
                f.join(",")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    match read_str(&content) {
        Err(DataError::MissingColumn {
            column: "weight", ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let extra = csv(3).replacen("readmitted", "readmitted,shoe_size", 1);
    match read_str(&extra) {
        Err(DataError::ExtraColumn {
            column, position, ..
        }) => assert_eq!((column.as_str(), position), ("shoe_size", 51)),
        other => panic!("{other:?}"),
    }
}

/// Replaces field `column` of data row `row` (0-based) and reads the result.
fn with_field(
    row: usize,
    column: &str,
    value: &str,
) -> Result<polars::prelude::DataFrame, DataError> {
    let c = readmit_ml::schema::index_of(column).unwrap();
    let mut out = header() + "\n";
    for i in 0..6 {
        let mut f = fields(i);
        if i == row {
            f[c] = value.to_owned();
        }
        out.push_str(&f.join(","));
        out.push('\n');
    }
    read_str(&out)
}

#[test]
fn bad_values_name_line_and_column() {
    match with_field(2, "time_in_hospital", "3.5") {
        Err(DataError::BadValue {
            line: 4,
            column: "time_in_hospital",
            source: ValueError::NotInteger { value },
            ..
        }) => assert_eq!(value, "3.5"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        with_field(0, "race", "Martian"),
        Err(DataError::BadValue {
            line: 2,
            column: "race",
            source: ValueError::UnknownLevel { .. },
            ..
        })
    ));
    assert!(matches!(
        with_field(5, "A1Cresult", "?"),
        Err(DataError::BadValue {
            line: 7,
            column: "A1Cresult",
            source: ValueError::MissingNotAllowed,
            ..
        })
    ));
    assert!(matches!(
        with_field(1, "diag_2", "25O.1"),
        Err(DataError::BadValue {
            line: 3,
            column: "diag_2",
            source: ValueError::NotIcd9 { .. },
            ..
        })
    ));
    assert!(matches!(
        with_field(3, "num_medications", ""),
        Err(DataError::BadValue {
            line: 5,
            column: "num_medications",
            ..
        })
    ));
    // An open column accepts a specialty the schema never listed.
    assert!(with_field(3, "medical_specialty", "Astrology").is_ok());
    let first_id = fields(0)[0].clone();
    match with_field(4, "encounter_id", &first_id) {
        Err(DataError::DuplicateEncounter { line, .. }) => assert_eq!(line, 6),
        other => panic!("{other:?}"),
    }
}

#[test]
fn frame_transform_equals_single_record_transform() {
    let content = csv(400);
    let df = read_str(&content).unwrap();
    let labels = data::labels(&df).unwrap();
    let params = PipelineParams {
        k: Some(40),
        min_level_rows: 5,
        ..PipelineParams::default()
    };
    let pipeline = Pipeline::fit(&df, &labels, &params).unwrap();
    let matrix = pipeline.transform(&df).unwrap();
    let prior = data::int_column(&df, "prior_encounters").unwrap();
    for (i, line) in content.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let record = RawRecord::from_csv_fields(&f)
            .unwrap()
            .with_prior_encounters(u32::try_from(prior[i]).unwrap());
        let single = pipeline.transform_record(&record);
        assert!(
            single
                .iter()
                .zip(matrix.row(i))
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "row {i}"
        );
    }
    // The frame's own records are the same records.
    let from_frame = data::records(&df, 0..df.height()).unwrap();
    for (i, r) in from_frame.iter().enumerate() {
        assert_eq!(pipeline.transform_record(r), matrix.row(i), "row {i}");
    }
    // Fitting on records gives the same pipeline as fitting on the frame.
    let records: Vec<RawRecord> = content
        .lines()
        .skip(1)
        .zip(&prior)
        .map(|(l, &p)| {
            let f: Vec<&str> = l.split(',').collect();
            RawRecord::from_csv_fields(&f)
                .unwrap()
                .with_prior_encounters(u32::try_from(p).unwrap())
        })
        .collect();
    assert_eq!(
        Pipeline::fit(&records[..], &labels, &params).unwrap(),
        pipeline
    );
}
