//! What the published file looks like, column by column: the shares of levels, codes and counts
//! measured on its 101,766 encounters, from which the generator draws.

/// A column's realistic shares: percent of rows per level, and percent missing (`?`). Levels of
/// the column that are not named share what is left, at least [`RARE_PERCENT`] each.
pub(super) struct Shares {
    pub(super) column: &'static str,
    pub(super) missing: f64,
    pub(super) levels: &'static [(&'static str, f64)],
}

/// The share of a level the tables do not name: rare, but it occurs in a large file.
pub(super) const RARE_PERCENT: f64 = 0.003;

/// Shares measured on the published file (101,766 encounters), rounded.
#[rustfmt::skip]
pub(super) const SHARES: &[Shares] = &[
    Shares { column: "race", missing: 2.23, levels: &[
        ("Caucasian", 74.78), ("AfricanAmerican", 18.88), ("Hispanic", 2.0), ("Other", 1.48),
        ("Asian", 0.63),
    ]},
    Shares { column: "gender", missing: 0.0, levels: &[("Female", 53.76), ("Male", 46.24)] },
    Shares { column: "age", missing: 0.0, levels: &[
        ("[0-10)", 0.16), ("[10-20)", 0.68), ("[20-30)", 1.63), ("[30-40)", 3.71),
        ("[40-50)", 9.52), ("[50-60)", 16.96), ("[60-70)", 22.09), ("[70-80)", 25.62),
        ("[80-90)", 16.9), ("[90-100)", 2.74),
    ]},
    Shares { column: "weight", missing: 96.86, levels: &[
        ("[0-25)", 0.05), ("[25-50)", 0.1), ("[50-75)", 0.88), ("[75-100)", 1.31),
        ("[100-125)", 0.61), ("[125-150)", 0.14), ("[150-175)", 0.03), ("[175-200)", 0.01),
    ]},
    Shares { column: "admission_type_id", missing: 0.0, levels: &[
        ("1", 53.05), ("2", 18.16), ("3", 18.54), ("5", 4.7), ("6", 5.2), ("8", 0.31),
        ("7", 0.02), ("4", 0.01),
    ]},
    Shares { column: "discharge_disposition_id", missing: 0.0, levels: &[
        ("1", 59.19), ("3", 13.71), ("6", 12.68), ("18", 3.63), ("2", 2.09), ("22", 1.96),
        ("11", 1.61), ("5", 1.16), ("25", 0.97), ("4", 0.8), ("7", 0.61), ("23", 0.4),
        ("13", 0.39), ("14", 0.37), ("28", 0.14), ("8", 0.11), ("15", 0.06), ("24", 0.05),
        ("9", 0.02),
    ]},
    Shares { column: "admission_source_id", missing: 0.0, levels: &[
        ("7", 56.5), ("1", 29.05), ("17", 6.66), ("4", 3.13), ("6", 2.22), ("2", 1.08),
        ("5", 0.84), ("3", 0.18), ("20", 0.16), ("9", 0.12), ("8", 0.02),
    ]},
    Shares { column: "payer_code", missing: 39.56, levels: &[
        ("MC", 31.88), ("HM", 6.17), ("SP", 4.92), ("BC", 4.57), ("MD", 3.47), ("CP", 2.49),
        ("UN", 2.41), ("CM", 1.9), ("OG", 1.02), ("PO", 0.58), ("DM", 0.54), ("CH", 0.14),
        ("WC", 0.13), ("OT", 0.09), ("MP", 0.08), ("SI", 0.05),
    ]},
    Shares { column: "medical_specialty", missing: 49.08, levels: &[
        ("InternalMedicine", 14.38), ("Emergency/Trauma", 7.43),
        ("Family/GeneralPractice", 7.31), ("Cardiology", 5.26), ("Surgery-General", 3.05),
        ("Nephrology", 1.59), ("Orthopedics", 1.38), ("Orthopedics-Reconstructive", 1.21),
        ("Radiologist", 1.12), ("Pulmonology", 0.86), ("Psychiatry", 0.84), ("Urology", 0.67),
        ("ObstetricsandGynecology", 0.66), ("Surgery-Cardiovascular/Thoracic", 0.64),
        ("Gastroenterology", 0.55), ("Surgery-Vascular", 0.52), ("Surgery-Neuro", 0.46),
        ("PhysicalMedicineandRehabilitation", 0.38), ("Oncology", 0.34), ("Pediatrics", 0.25),
        ("Hematology/Oncology", 0.2), ("Neurology", 0.2), ("Pediatrics-Endocrinology", 0.16),
        ("Otolaryngology", 0.12),
    ]},
    Shares { column: "max_glu_serum", missing: 0.0, levels: &[
        ("None", 94.75), ("Norm", 2.55), (">200", 1.46), (">300", 1.24),
    ]},
    Shares { column: "A1Cresult", missing: 0.0, levels: &[("None", 83.28), (">8", 8.07), ("Norm", 4.9), (">7", 3.75)] },
];

/// The dose-change shares of each drug column (percent `Steady`, `Up`, `Down`).
#[rustfmt::skip]
pub(super) const DRUG_SHARES: &[(&str, [f64; 3])] = &[
    ("metformin", [18.03, 1.05, 0.57]),
    ("repaglinide", [1.36, 0.11, 0.04]),
    ("nateglinide", [0.66, 0.02, 0.01]),
    ("chlorpropamide", [0.08, 0.01, 0.0]),
    ("glimepiride", [4.59, 0.32, 0.19]),
    ("acetohexamide", [0.001, 0.0, 0.0]),
    ("glipizide", [11.16, 0.76, 0.55]),
    ("glyburide", [9.11, 0.8, 0.55]),
    ("tolbutamide", [0.02, 0.0, 0.0]),
    ("pioglitazone", [6.85, 0.23, 0.12]),
    ("rosiglitazone", [5.99, 0.17, 0.09]),
    ("acarbose", [0.29, 0.01, 0.0]),
    ("miglitol", [0.03, 0.0, 0.0]),
    ("troglitazone", [0.003, 0.0, 0.0]),
    ("tolazamide", [0.04, 0.0, 0.0]),
    ("examide", [0.0, 0.0, 0.0]),
    ("citoglipton", [0.0, 0.0, 0.0]),
    ("insulin", [30.31, 11.12, 12.01]),
    ("glyburide-metformin", [0.68, 0.01, 0.01]),
    ("glipizide-metformin", [0.01, 0.0, 0.0]),
    ("glimepiride-pioglitazone", [0.001, 0.0, 0.0]),
    ("metformin-rosiglitazone", [0.002, 0.0, 0.0]),
    ("metformin-pioglitazone", [0.001, 0.0, 0.0]),
];

/// A diagnosis position's most frequent codes (percent of rows) and percent missing; the rest
/// of the rows draw from [`TAIL_CODES`] and random well-formed codes.
pub(super) struct Diagnoses {
    pub(super) column: &'static str,
    pub(super) missing: f64,
    pub(super) codes: &'static [(&'static str, f64)],
}

#[rustfmt::skip]
pub(super) const DIAGNOSES: &[Diagnoses] = &[
    Diagnoses { column: "diag_1", missing: 0.02, codes: &[
        ("428", 6.74), ("414", 6.47), ("786", 3.95), ("410", 3.55), ("486", 3.45),
        ("427", 2.72), ("491", 2.24), ("715", 2.11), ("682", 2.01), ("434", 1.99),
        ("780", 1.98), ("996", 1.93), ("276", 1.86), ("38", 1.66), ("250.8", 1.65),
        ("599", 1.57), ("584", 1.49), ("V57", 1.19), ("250.6", 1.16), ("518", 1.1),
        ("820", 1.06), ("577", 1.04), ("493", 1.04), ("435", 1.0), ("562", 0.97),
        ("574", 0.95), ("296", 0.88), ("560", 0.86), ("250.7", 0.86), ("250.13", 0.84),
        ("440", 0.83), ("433", 0.78), ("998", 0.77), ("722", 0.76), ("250.02", 0.66),
        ("578", 0.65), ("250.11", 0.61), ("507", 0.6), ("789", 0.55), ("453", 0.54),
    ]},
    Diagnoses { column: "diag_2", missing: 0.35, codes: &[
        ("276", 6.63), ("428", 6.55), ("250", 5.97), ("427", 4.95), ("401", 3.67),
        ("496", 3.25), ("599", 3.23), ("403", 2.77), ("414", 2.6), ("411", 2.52),
        ("250.02", 2.04), ("707", 1.96), ("585", 1.84), ("584", 1.62), ("491", 1.52),
        ("250.01", 1.5), ("285", 1.49), ("780", 1.47), ("425", 1.41), ("682", 1.41),
        ("486", 1.36), ("518", 1.33), ("424", 1.05), ("413", 1.02), ("250.6", 0.88),
        ("493", 0.87), ("305", 0.69), ("786", 0.63), ("280", 0.6), ("998", 0.56),
        ("410", 0.54), ("511", 0.51), ("785", 0.51), ("38", 0.47), ("996", 0.45),
        ("272", 0.41), ("571", 0.41), ("197", 0.4), ("V45", 0.4), ("295", 0.4),
    ]},
    Diagnoses { column: "diag_3", missing: 1.4, codes: &[
        ("250", 11.35), ("401", 8.15), ("276", 5.09), ("428", 4.5), ("427", 3.89),
        ("414", 3.6), ("496", 2.56), ("403", 2.32), ("585", 1.96), ("272", 1.93),
        ("599", 1.91), ("V45", 1.36), ("250.02", 1.35), ("707", 1.34), ("780", 1.31),
        ("285", 1.18), ("425", 1.12), ("250.6", 1.06), ("424", 1.04), ("584", 0.95),
        ("305", 0.91), ("250.01", 0.9), ("682", 0.87), ("518", 0.84), ("41", 0.71),
        ("493", 0.68), ("278", 0.67), ("530", 0.61), ("786", 0.57), ("491", 0.56),
        ("486", 0.56), ("244", 0.53), ("V58", 0.49), ("250.4", 0.42), ("411", 0.39),
        ("280", 0.39), ("357", 0.39), ("785", 0.38), ("287", 0.38), ("197", 0.38),
    ]},
];

/// Less frequent codes of the published file, drawn uniformly for most of the long tail.
pub(super) const TAIL_CODES: &[&str] = &[
    "591", "572", "781", "553", "564", "196", "416", "250.42", "444", "805", "288", "532", "292",
    "459", "437", "157", "681", "218", "174", "293", "250.22", "455", "189", "596", "398",
    "250.51", "274", "250.5", "275", "821", "568", "79", "337", "716", "726", "573", "346", "626",
    "250.2", "309", "512", "432", "250.43", "583", "481", "566", "E932", "620", "205", "289",
    "151", "478", "850", "E942", "V55", "241", "516", "616", "611", "199", "V46", "421", "368",
    "191", "617", "358", "183", "227", "822", "533", "E935", "485", "V63", "510", "604", "586",
    "958", "E884", "351", "621", "522", "239", "745", "737", "378", "644", "753", "V27", "656",
    "658", "369", "570", "E939", "746", "8", "112", "250.83", "427.31", "E909", "V57.1",
];

/// The share of the long tail drawn as random well-formed codes rather than from
/// [`TAIL_CODES`], so that the number of distinct codes grows with the file as the real one's
/// does (916 distinct codes in 101,766 rows).
pub(super) const RANDOM_TAIL: f64 = 0.25;

/// Percent of stays of 1, 2, … 14 days.
pub(super) const TIME_IN_HOSPITAL: [f64; 14] = [
    13.96, 16.93, 17.45, 13.68, 9.79, 7.41, 5.76, 4.31, 2.95, 2.3, 1.82, 1.42, 1.19, 1.02,
];
/// Percent of encounters with 0, 1, … 6 procedures.
pub(super) const NUM_PROCEDURES: [f64; 7] = [45.84, 20.38, 12.5, 9.28, 4.11, 3.02, 4.87];
/// Percent of encounters with 1, 2, … 16 diagnoses.
pub(super) const NUMBER_DIAGNOSES: [f64; 16] = [
    0.22, 1.01, 2.79, 5.44, 11.2, 9.98, 10.21, 10.43, 48.62, 0.02, 0.01, 0.01, 0.02, 0.01, 0.01,
    0.04,
];
