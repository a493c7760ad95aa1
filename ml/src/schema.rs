//! The single source of truth for the 50 columns of the UCI "Diabetes 130-US hospitals
//! 1999-2008" CSV: each column's role, type, known levels, and the target rule.
//!
//! Everything that reads, validates, encodes or describes raw records (the CSV reader, the
//! feature pipeline, the serving input signature, the console's forms) derives from [`COLUMNS`].

use serde::{Deserialize, Serialize};

/// How a missing value is written in the CSV.
pub const MISSING: &str = "?";

/// The longest text value any column accepts: open columns take new levels, but not essays, and
/// stores size their text columns by it.
pub const MAX_TEXT_LEN: usize = 64;

/// The column the model predicts.
pub const TARGET: &str = "readmitted";

/// The level of [`TARGET`] that counts as positive: readmitted within 30 days.
pub const POSITIVE_LEVEL: &str = "<30";

/// The encounter's identifier: unique per row, and the order in which encounters happened.
pub const ENCOUNTER_ID: &str = "encounter_id";

/// The patient's identifier: many encounters share one.
pub const PATIENT_NBR: &str = "patient_nbr";

/// The engineered column holding how many earlier encounters (smaller `encounter_id`) the same
/// patient had. It is not in the CSV: the data module derives it from the whole file, and a
/// live record may carry it.
pub const PRIOR_ENCOUNTERS: &str = "prior_encounters";

/// What a column is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An identifier: used for splitting and engineered features, never as a model input.
    Id,
    /// A model input.
    Feature,
    /// The label.
    Target,
    /// Read and validated, but never used; the reason is in [`Column::note`].
    Dropped,
}

/// The type of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number within `min..=max`.
    Integer { min: i64, max: i64 },
    /// One of a set of levels. A `closed` column rejects any other level as a bad value; an open
    /// one accepts new levels (the feature pipeline maps unseen ones to its "other" bucket).
    Categorical {
        levels: &'static [&'static str],
        closed: bool,
    },
    /// An ICD-9 diagnosis code (`250.83`, `V57`, `E909`); hundreds of distinct values.
    Icd9,
}

/// One column of the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub role: Role,
    pub kind: Kind,
    /// Whether `?` may appear. Where it may not, a `?` is a bad value.
    pub missing_allowed: bool,
    /// Why the column has its role, when that is not obvious.
    pub note: &'static str,
}

const AGE_LEVELS: &[&str] = &[
    "[0-10)", "[10-20)", "[20-30)", "[30-40)", "[40-50)", "[50-60)", "[60-70)", "[70-80)",
    "[80-90)", "[90-100)",
];
const WEIGHT_LEVELS: &[&str] = &[
    "[0-25)",
    "[25-50)",
    "[50-75)",
    "[75-100)",
    "[100-125)",
    "[125-150)",
    "[150-175)",
    "[175-200)",
    ">200",
];
/// The codes listed in IDs_mapping.csv for each id column.
const ADMISSION_TYPE_IDS: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "8"];
const DISCHARGE_DISPOSITION_IDS: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17",
    "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30",
];
const ADMISSION_SOURCE_IDS: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "17", "18",
    "19", "20", "21", "22", "23", "24", "25", "26",
];
const PAYER_CODES: &[&str] = &[
    "MC", "HM", "SP", "BC", "MD", "CP", "UN", "CM", "OG", "PO", "DM", "CH", "WC", "OT", "MP", "SI",
    "FR",
];
/// The specialties seen in the published file, most frequent first. The column is open: a
/// hospital may send a specialty the file never had.
const MEDICAL_SPECIALTIES: &[&str] = &[
    "InternalMedicine",
    "Emergency/Trauma",
    "Family/GeneralPractice",
    "Cardiology",
    "Surgery-General",
    "Nephrology",
    "Orthopedics",
    "Orthopedics-Reconstructive",
    "Radiologist",
    "Pulmonology",
    "Psychiatry",
    "Urology",
    "ObstetricsandGynecology",
    "Surgery-Cardiovascular/Thoracic",
    "Gastroenterology",
    "Surgery-Vascular",
    "Surgery-Neuro",
    "PhysicalMedicineandRehabilitation",
    "Oncology",
    "Pediatrics",
    "Hematology/Oncology",
    "Neurology",
    "Pediatrics-Endocrinology",
    "Otolaryngology",
    "Endocrinology",
    "Surgery-Thoracic",
    "Psychology",
    "Podiatry",
    "Surgery-Cardiovascular",
    "Pediatrics-CriticalCare",
    "Hematology",
    "Gynecology",
    "Hospitalist",
    "Radiology",
    "Surgeon",
    "Surgery-Plastic",
    "Osteopath",
    "Ophthalmology",
    "InfectiousDiseases",
    "SurgicalSpecialty",
    "Obsterics&Gynecology-GynecologicOnco",
    "Pediatrics-Pulmonology",
    "Anesthesiology-Pediatric",
    "Obstetrics",
    "Rheumatology",
    "Pathology",
    "Anesthesiology",
    "OutreachServices",
    "Surgery-Colon&Rectal",
    "Surgery-Maxillofacial",
    "PhysicianNotFound",
    "Pediatrics-Neurology",
    "Surgery-Pediatric",
    "Endocrinology-Metabolism",
    "Psychiatry-Child/Adolescent",
    "AllergyandImmunology",
    "Cardiology-Pediatric",
    "DCPTEAM",
    "Pediatrics-Hematology-Oncology",
    "Dentistry",
    "Pediatrics-EmergencyMedicine",
    "Pediatrics-AllergyandImmunology",
    "Resident",
    "Surgery-PlasticwithinHeadandNeck",
    "Pediatrics-InfectiousDiseases",
    "Psychiatry-Addictive",
    "Proctology",
    "Dermatology",
    "SportsMedicine",
    "Speech",
    "Perinatology",
    "Neurophysiology",
];
/// `None` means "not measured", a real and frequent level (96% of `max_glu_serum`), never a
/// missing value: pandas' default NA list turned it into NaN and then the mode, which made
/// "not measured" read as "normal".
const GLU_SERUM_LEVELS: &[&str] = &["None", "Norm", ">200", ">300"];
const A1C_LEVELS: &[&str] = &["None", "Norm", ">7", ">8"];
/// Dose change of a drug during the encounter.
const DRUG_LEVELS: &[&str] = &["No", "Steady", "Up", "Down"];
const CHANGE_LEVELS: &[&str] = &["No", "Ch"];
const YES_NO: &[&str] = &["No", "Yes"];
const RACE_LEVELS: &[&str] = &["Caucasian", "AfricanAmerican", "Hispanic", "Other", "Asian"];
const GENDER_LEVELS: &[&str] = &["Female", "Male", "Unknown/Invalid"];
const READMITTED_LEVELS: &[&str] = &["NO", ">30", "<30"];

const fn id(name: &'static str, note: &'static str) -> Column {
    Column {
        name,
        role: Role::Id,
        kind: Kind::Integer {
            min: 0,
            max: i64::MAX,
        },
        missing_allowed: false,
        note,
    }
}

const fn count(name: &'static str, min: i64) -> Column {
    Column {
        name,
        role: Role::Feature,
        // Generous upper bounds: a count beyond them is a data-entry error, not a patient.
        kind: Kind::Integer { min, max: 1000 },
        missing_allowed: false,
        note: "",
    }
}

const fn closed(name: &'static str, levels: &'static [&'static str]) -> Column {
    Column {
        name,
        role: Role::Feature,
        kind: Kind::Categorical {
            levels,
            closed: true,
        },
        missing_allowed: false,
        note: "",
    }
}

const fn drug(name: &'static str) -> Column {
    closed(name, DRUG_LEVELS)
}

const fn diag(name: &'static str) -> Column {
    Column {
        name,
        role: Role::Feature,
        kind: Kind::Icd9,
        // Missing for 0.02% / 0.35% / 1.4% of rows (diag_1 / diag_2 / diag_3): the encounter had
        // fewer diagnoses, which the pipeline keeps as its own bucket.
        missing_allowed: true,
        note: "",
    }
}

/// The 50 columns, in the CSV's order.
pub const COLUMNS: [Column; 50] = [
    id(
        ENCOUNTER_ID,
        "unique per row; its order is the order of encounters",
    ),
    id(
        PATIENT_NBR,
        "groups encounters of one patient: the grouped split and the prior-encounter count",
    ),
    Column {
        missing_allowed: true,
        note: "2.2% missing, kept as its own bucket",
        ..closed("race", RACE_LEVELS)
    },
    closed("gender", GENDER_LEVELS),
    closed("age", AGE_LEVELS),
    Column {
        name: "weight",
        role: Role::Dropped,
        kind: Kind::Categorical {
            levels: WEIGHT_LEVELS,
            closed: true,
        },
        missing_allowed: true,
        note: "97% missing, and readmission is the same with or without it (11.2% both)",
    },
    closed("admission_type_id", ADMISSION_TYPE_IDS),
    closed("discharge_disposition_id", DISCHARGE_DISPOSITION_IDS),
    closed("admission_source_id", ADMISSION_SOURCE_IDS),
    count("time_in_hospital", 1),
    Column {
        missing_allowed: true,
        note: "40% missing; kept with a missing bucket, selection decides whether it helps",
        ..closed("payer_code", PAYER_CODES)
    },
    Column {
        name: "medical_specialty",
        role: Role::Feature,
        kind: Kind::Categorical {
            levels: MEDICAL_SPECIALTIES,
            closed: false,
        },
        missing_allowed: true,
        note: "49% missing, yet the admitting specialty separates risk well: kept with a \
               missing bucket; open, because hospitals name specialties the file never had",
    },
    count("num_lab_procedures", 0),
    count("num_procedures", 0),
    count("num_medications", 0),
    count("number_outpatient", 0),
    count("number_emergency", 0),
    count("number_inpatient", 0),
    diag("diag_1"),
    diag("diag_2"),
    diag("diag_3"),
    count("number_diagnoses", 0),
    closed("max_glu_serum", GLU_SERUM_LEVELS),
    closed("A1Cresult", A1C_LEVELS),
    drug("metformin"),
    drug("repaglinide"),
    drug("nateglinide"),
    drug("chlorpropamide"),
    drug("glimepiride"),
    drug("acetohexamide"),
    drug("glipizide"),
    drug("glyburide"),
    drug("tolbutamide"),
    drug("pioglitazone"),
    drug("rosiglitazone"),
    drug("acarbose"),
    drug("miglitol"),
    drug("troglitazone"),
    drug("tolazamide"),
    Column {
        role: Role::Dropped,
        note: "constant: \"No\" in every row",
        ..drug("examide")
    },
    Column {
        role: Role::Dropped,
        note: "constant: \"No\" in every row",
        ..drug("citoglipton")
    },
    drug("insulin"),
    drug("glyburide-metformin"),
    drug("glipizide-metformin"),
    drug("glimepiride-pioglitazone"),
    drug("metformin-rosiglitazone"),
    drug("metformin-pioglitazone"),
    closed("change", CHANGE_LEVELS),
    closed("diabetesMed", YES_NO),
    Column {
        role: Role::Target,
        note: "the model predicts the level \"<30\"",
        ..closed(TARGET, READMITTED_LEVELS)
    },
];

/// The position of a column in [`COLUMNS`] (and in the CSV header).
pub fn index_of(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| c.name == name)
}

/// The column called `name`.
pub fn column(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}

/// The columns that are model inputs, in CSV order.
pub fn features() -> impl Iterator<Item = (usize, &'static Column)> {
    COLUMNS
        .iter()
        .enumerate()
        .filter(|(_, c)| c.role == Role::Feature)
}

/// The target rule: readmitted within 30 days.
pub fn is_positive(readmitted: &str) -> bool {
    readmitted == POSITIVE_LEVEL
}

/// One validated value of a column: the borrowed form that encoders read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Missing,
    Int(i64),
    Text(&'a str),
}

/// Why a raw value does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("`?` (missing) is not allowed in this column")]
    MissingNotAllowed,
    #[error("{value:?} is not a whole number")]
    NotInteger { value: String },
    #[error("{value} is outside {min}..={max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("{value:?} is not one of the known levels {levels:?}")]
    UnknownLevel {
        value: String,
        levels: &'static [&'static str],
    },
    #[error("a value of {len} characters is longer than the {max} this column accepts")]
    TooLong { len: usize, max: usize },
    #[error("{value:?} is not an ICD-9 code (like 250.83, V57 or E909)")]
    NotIcd9 { value: String },
}

impl Column {
    /// Validates one raw CSV field for this column; `?` becomes [`Cell::Missing`].
    pub fn parse<'a>(&self, raw: &'a str) -> Result<Cell<'a>, ValueError> {
        if raw == MISSING {
            return if self.missing_allowed {
                Ok(Cell::Missing)
            } else {
                Err(ValueError::MissingNotAllowed)
            };
        }
        match self.kind {
            Kind::Integer { .. } => {
                let value: i64 = raw.parse().map_err(|_| ValueError::NotInteger {
                    value: raw.to_owned(),
                })?;
                self.check_integer(value)
            }
            Kind::Categorical { levels, closed } => {
                if raw.chars().count() > MAX_TEXT_LEN {
                    Err(ValueError::TooLong {
                        len: raw.chars().count(),
                        max: MAX_TEXT_LEN,
                    })
                } else if closed && !levels.contains(&raw) || raw.is_empty() {
                    Err(ValueError::UnknownLevel {
                        value: raw.to_owned(),
                        levels,
                    })
                } else {
                    Ok(Cell::Text(raw))
                }
            }
            Kind::Icd9 => {
                if is_icd9(raw) {
                    Ok(Cell::Text(raw))
                } else {
                    Err(ValueError::NotIcd9 {
                        value: raw.to_owned(),
                    })
                }
            }
        }
    }

    /// Validates an already-parsed integer against this column's range.
    pub fn check_integer(&self, value: i64) -> Result<Cell<'static>, ValueError> {
        match self.kind {
            Kind::Integer { min, max } if (min..=max).contains(&value) => Ok(Cell::Int(value)),
            Kind::Integer { min, max } => Err(ValueError::OutOfRange { value, min, max }),
            // A categorical id column (admission_type_id, ...) may arrive as a JSON number.
            Kind::Categorical { .. } | Kind::Icd9 => Err(ValueError::NotInteger {
                value: value.to_string(),
            }),
        }
    }
}

/// Whether `code` is shaped like an ICD-9 code as the file writes them: 1–3 digits with up to two
/// decimals (leading zeros are dropped: `8` is 008), `V` and two digits, or `E` and three.
pub fn is_icd9(code: &str) -> bool {
    let (body, int_len, decimals) = if let Some(rest) = code.strip_prefix('V') {
        (rest, 2..=2, 2)
    } else if let Some(rest) = code.strip_prefix('E') {
        (rest, 3..=3, 1)
    } else {
        (code, 1..=3, 2)
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && int_len.contains(&int.len())
        && frac.is_none_or(|f| digits(f) && f.len() <= decimals)
}

/// The ICD-9 chapters that diagnosis codes are grouped into, plus diabetes (250.x) on its own
/// because every encounter in this data set is a diabetic's and 250.x says which complication.
pub const ICD9_CHAPTERS: &[&str] = &[
    "infectious",
    "neoplasms",
    "diabetes",
    "endocrine",
    "blood",
    "mental",
    "nervous",
    "circulatory",
    "respiratory",
    "digestive",
    "genitourinary",
    "pregnancy",
    "skin",
    "musculoskeletal",
    "congenital",
    "perinatal",
    "symptoms",
    "injury",
    "supplementary",
    "external",
];

/// The chapter of a code that passed [`is_icd9`], as an index into [`ICD9_CHAPTERS`].
pub fn icd9_chapter(code: &str) -> usize {
    if code.starts_with('V') {
        return 18;
    }
    if code.starts_with('E') {
        return 19;
    }
    let int: u32 = code
        .split('.')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    match int {
        0..=139 => 0,
        140..=239 => 1,
        250 => 2,
        240..=279 => 3,
        280..=289 => 4,
        290..=319 => 5,
        320..=389 => 6,
        390..=459 => 7,
        460..=519 => 8,
        520..=579 => 9,
        580..=629 => 10,
        630..=679 => 11,
        680..=709 => 12,
        710..=739 => 13,
        740..=759 => 14,
        760..=779 => 15,
        780..=799 => 16,
        _ => 17,
    }
}

/// An owned, serialisable description of one column: the input signature shipped in a model
/// bundle, from which clients build their forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub role: Role,
    /// `integer`, `categorical` or `icd9`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Known levels of a categorical column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<String>,
    /// Whether a level outside `levels` is accepted.
    pub open: bool,
    pub missing_allowed: bool,
}

impl From<&Column> for ColumnSpec {
    fn from(c: &Column) -> Self {
        let (kind, min, max, levels, open) = match c.kind {
            Kind::Integer { min, max } => ("integer", Some(min), Some(max), Vec::new(), false),
            Kind::Categorical { levels, closed } => (
                "categorical",
                None,
                None,
                levels.iter().map(|l| (*l).to_owned()).collect(),
                !closed,
            ),
            Kind::Icd9 => ("icd9", None, None, Vec::new(), true),
        };
        Self {
            name: c.name.to_owned(),
            role: c.role,
            kind: kind.to_owned(),
            min,
            max,
            levels,
            open,
            missing_allowed: c.missing_allowed,
        }
    }
}

/// The input signature of the model: every column a raw record may carry.
pub fn signature() -> Vec<ColumnSpec> {
    COLUMNS.iter().map(ColumnSpec::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_unique_columns_with_one_target_and_two_ids() {
        let mut names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 50);
        let count = |r| COLUMNS.iter().filter(|c| c.role == r).count();
        assert_eq!(count(Role::Target), 1);
        assert_eq!(count(Role::Id), 2);
        assert_eq!(count(Role::Dropped), 3);
        assert_eq!(features().count(), 44);
        assert_eq!(index_of(TARGET), Some(49));
        assert_eq!(index_of("A1Cresult"), Some(23));
    }

    #[test]
    fn none_is_a_level_not_missing() {
        let a1c = column("A1Cresult").unwrap();
        assert_eq!(a1c.parse("None"), Ok(Cell::Text("None")));
        assert_eq!(a1c.parse("?"), Err(ValueError::MissingNotAllowed));
        let glu = column("max_glu_serum").unwrap();
        assert_eq!(glu.parse("None"), Ok(Cell::Text("None")));
    }

    #[test]
    fn parse_validates_by_kind() {
        let t = column("time_in_hospital").unwrap();
        assert_eq!(t.parse("3"), Ok(Cell::Int(3)));
        assert_eq!(
            t.parse("3.5"),
            Err(ValueError::NotInteger {
                value: "3.5".into()
            })
        );
        assert_eq!(
            t.parse("0"),
            Err(ValueError::OutOfRange {
                value: 0,
                min: 1,
                max: 1000
            })
        );
        let race = column("race").unwrap();
        assert_eq!(race.parse("?"), Ok(Cell::Missing));
        assert!(matches!(
            race.parse("Martian"),
            Err(ValueError::UnknownLevel { .. })
        ));
        let spec = column("medical_specialty").unwrap();
        assert_eq!(spec.parse("Astrology"), Ok(Cell::Text("Astrology")));
        let d = column("diag_1").unwrap();
        assert_eq!(d.parse("250.83"), Ok(Cell::Text("250.83")));
        assert!(matches!(d.parse("25O"), Err(ValueError::NotIcd9 { .. })));
    }

    #[test]
    fn icd9_shapes_and_chapters() {
        for ok in [
            "8", "42", "250", "250.8", "250.83", "V57", "V57.1", "E909", "E909.1",
        ] {
            assert!(is_icd9(ok), "{ok}");
        }
        for bad in [
            "", "2500", "250.", "250.123", "V5", "E90", "X12", "250.8a", "E909.12",
        ] {
            assert!(!is_icd9(bad), "{bad}");
        }
        let chapter = |c| ICD9_CHAPTERS[icd9_chapter(c)];
        assert_eq!(chapter("8"), "infectious");
        assert_eq!(chapter("250.83"), "diabetes");
        assert_eq!(chapter("276"), "endocrine");
        assert_eq!(chapter("428"), "circulatory");
        assert_eq!(chapter("486"), "respiratory");
        assert_eq!(chapter("996.5"), "injury");
        assert_eq!(chapter("V57"), "supplementary");
        assert_eq!(chapter("E909"), "external");
    }

    #[test]
    fn target_rule_and_signature() {
        assert!(is_positive("<30"));
        assert!(!is_positive(">30"));
        assert!(!is_positive("NO"));
        let sig = signature();
        assert_eq!(sig.len(), 50);
        let spec = sig.iter().find(|s| s.name == "medical_specialty").unwrap();
        assert!(spec.open && spec.missing_allowed && spec.levels.len() == 72);
    }
}
