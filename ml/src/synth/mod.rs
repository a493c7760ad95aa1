//! Synthetic encounters shaped like the UCI diabetes file, for demos, load tests and CI without
//! the real data: the same header, values that pass [`crate::schema`] validation, realistic
//! marginals, patients with several encounters, and a planted readmission signal that the
//! pipeline and a logistic regression can learn (validation ROC AUC near 0.7).
//!
//! The columns, their order, kinds and levels all come from [`COLUMNS`]. What this module adds
//! is how often each level occurs, keyed by column name: a column it has no shares for still
//! gets valid values (uniform levels, small counts, common ICD-9 codes), so a schema change can
//! never make the output invalid, only less realistic.
//!
//! Output is a pure function of `(rows, seed)`: the generator draws from the crate's
//! [`Mt19937`] and never from the clock or the environment. (Across platforms, `f64::ln`, `exp`
//! and `cos` come from the C library and may differ in the last bit, which could flip a rare
//! draw; on one platform the bytes are always the same.)

use std::io::{self, Write};

use crate::schema::{self, COLUMNS, Kind, Role};
use crate::split::Mt19937;

mod tables;

use tables::{
    DIAGNOSES, DRUG_SHARES, NUM_PROCEDURES, NUMBER_DIAGNOSES, RANDOM_TAIL, RARE_PERCENT, SHARES,
    TAIL_CODES, TIME_IN_HOSPITAL,
};

/// The count columns whose values this module models, by name.
#[derive(Debug, Clone, Copy)]
enum Count {
    TimeInHospital,
    LabProcedures,
    Procedures,
    Medications,
    Outpatient,
    Emergency,
    Inpatient,
    Diagnoses,
}

const COUNTS: &[(&str, Count)] = &[
    ("time_in_hospital", Count::TimeInHospital),
    ("num_lab_procedures", Count::LabProcedures),
    ("num_procedures", Count::Procedures),
    ("num_medications", Count::Medications),
    ("number_outpatient", Count::Outpatient),
    ("number_emergency", Count::Emergency),
    ("number_inpatient", Count::Inpatient),
    ("number_diagnoses", Count::Diagnoses),
];

/// Columns that describe the patient rather than the stay: drawn once per patient and repeated
/// on each of their encounters.
const PER_PATIENT: &[&str] = &["race", "gender", "age", "payer_code"];

/// The discharge column, whose codes change the risk of readmission.
const DISCHARGE: &str = "discharge_disposition_id";
/// Discharge code "Expired": the patient is never readmitted and has no later encounter.
const EXPIRED: &str = "11";
/// Log-odds added to readmission within 30 days per discharge code (IDs_mapping.csv): transfers
/// to other inpatient care and rehabilitation raise it, hospice lowers it.
#[rustfmt::skip]
const DISCHARGE_RISK: &[(&str, f64)] = &[
    ("2", 0.45), ("3", 0.4), ("5", 0.8), ("6", 0.25), ("9", 1.2), ("13", -1.2), ("14", -1.0),
    ("15", 1.3), ("22", 1.05), ("23", -0.3), ("28", 1.3),
];

/// The planted signal: log-odds of readmission within 30 days at the reference encounter (no
/// earlier visits, 4 days, 7 diagnoses, discharged home), and per unit of each risk factor.
const BASE_LOG_ODDS: f64 = -2.82;
const PER_INPATIENT: f64 = 0.36;
const PER_EMERGENCY: f64 = 0.16;
const PER_DAY: f64 = 0.05;
const PER_DIAGNOSIS: f64 = 0.11;
const PER_PRIOR_ENCOUNTER: f64 = 0.22;
/// The patient's unobserved frailty also raises the risk: it shows only through the visit
/// counts, so no model can reach the generator's own ranking.
const PER_FRAILTY: f64 = 0.3;
/// Log-odds of a later readmission (">30") for a patient not readmitted within 30 days.
const LATER_BASE_LOG_ODDS: f64 = -0.55;

/// Of new patients, the share that come back at least once, and the chance of each further
/// encounter after the second.
const RETURNING_SHARE: f64 = 0.28;
const FURTHER_VISIT: f64 = 0.42;

/// Of encounters with some diabetes drug and no dose raised or lowered, the share whose
/// medication was still changed (one drug for another): the file has 46% "Ch".
const SWITCHED: f64 = 0.38;

/// Two MT19937 streams, one seeded from each half of the 64-bit seed, mixed by XOR: every seed
/// gets its own stream.
struct Rng {
    low: Mt19937,
    high: Mt19937,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let (low, high) = ((seed & 0xffff_ffff) as u32, (seed >> 32) as u32);
        Self {
            low: Mt19937::new(low),
            high: Mt19937::new(high ^ 0x9e37_79b9),
        }
    }

    fn next_u32(&mut self) -> u32 {
        self.low.next_u32() ^ self.high.next_u32().rotate_left(11)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Uniform in `0..n`, `n > 0`.
    fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// Standard normal (Box–Muller, one value per pair of draws).
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// How many further successes, each with probability `p`, before the first failure (capped).
    fn geometric(&mut self, p: f64) -> i64 {
        let mut k = 0;
        while k < 60 && self.chance(p) {
            k += 1;
        }
        k
    }

    /// Poisson by Knuth's multiplication method; `lambda` is capped at 30, far above any rate here.
    fn poisson(&mut self, lambda: f64) -> i64 {
        let limit = (-lambda.clamp(0.0, 30.0)).exp();
        let mut k = 0;
        let mut product = self.uniform();
        while product > limit {
            k += 1;
            product *= self.uniform();
        }
        k
    }
}

// The state is 5 KB of numbers: not worth printing.
impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rng")
    }
}

/// A discrete distribution over `items` by cumulative weight.
#[derive(Debug, Clone)]
struct Weighted<T> {
    items: Vec<T>,
    cumulative: Vec<f64>,
}

impl<T: Copy> Weighted<T> {
    /// Items with a weight of zero or less are dropped; at least one must remain.
    fn new(pairs: impl IntoIterator<Item = (T, f64)>) -> Self {
        let mut items = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        for (item, weight) in pairs {
            if weight > 0.0 {
                total += weight;
                items.push(item);
                cumulative.push(total);
            }
        }
        assert!(!items.is_empty(), "a distribution needs a positive weight");
        Self { items, cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> T {
        let total = self.cumulative[self.cumulative.len() - 1];
        let u = rng.uniform() * total;
        let i = self.cumulative.partition_point(|&c| c <= u);
        self.items[i.min(self.items.len() - 1)]
    }
}

/// One value of a generated row.
#[derive(Debug, Clone)]
enum Field {
    Missing,
    Text(&'static str),
    Int(i64),
    Owned(String),
}

impl Field {
    fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Owned(t) => Some(t),
            Self::Missing | Self::Int(_) => None,
        }
    }

    fn to_csv(&self) -> String {
        let mut out = String::new();
        self.push_csv(&mut out);
        out
    }

    /// Appends the field as the CSV writes it: quoted only if it must be (no level of the schema
    /// needs it today).
    fn push_csv(&self, out: &mut String) {
        let text = match self {
            Self::Missing => schema::MISSING,
            Self::Int(v) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{v}");
                return;
            }
            Self::Text(t) => t,
            Self::Owned(t) => t.as_str(),
        };
        if text.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(text);
        }
    }
}

/// One pick from a diagnosis distribution.
#[derive(Debug, Clone, Copy)]
enum Diagnosis {
    Missing,
    Code(&'static str),
    Tail,
}

/// How a column's values are made.
#[derive(Debug, Clone)]
enum Plan {
    EncounterId,
    PatientNbr,
    /// A categorical column; `per_patient` ones are drawn once per patient.
    Levels {
        levels: Weighted<Option<&'static str>>,
        per_patient: bool,
        drug: bool,
    },
    Count {
        count: Option<Count>,
        min: i64,
        max: i64,
    },
    Diagnosis(Weighted<Diagnosis>),
    /// `change`: "Ch" when some drug's dose went up or down, or (sometimes) when one was used.
    Change {
        changed: &'static str,
        unchanged: &'static str,
    },
    /// `diabetesMed`: "Yes" when any drug was used.
    DiabetesMed {
        yes: &'static str,
        no: &'static str,
    },
    Target {
        within_30: &'static str,
        later: &'static str,
        never: &'static str,
    },
}

fn find_level(levels: &[&'static str], wanted: &str) -> Option<&'static str> {
    levels.iter().copied().find(|l| *l == wanted)
}

impl Plan {
    fn for_column(column: &schema::Column) -> Self {
        match column.kind {
            Kind::Integer { .. } if column.name == schema::ENCOUNTER_ID => Self::EncounterId,
            Kind::Integer { .. } if column.name == schema::PATIENT_NBR => Self::PatientNbr,
            Kind::Integer { min, max } => Self::Count {
                count: COUNTS
                    .iter()
                    .find(|(name, _)| *name == column.name)
                    .map(|(_, c)| *c),
                min,
                max,
            },
            Kind::Icd9 => {
                let table = DIAGNOSES
                    .iter()
                    .find(|d| d.column == column.name)
                    .unwrap_or(&DIAGNOSES[DIAGNOSES.len() - 1]);
                let listed: f64 = table.codes.iter().map(|(_, p)| p).sum();
                let missing = if column.missing_allowed {
                    table.missing
                } else {
                    0.0
                };
                Self::Diagnosis(Weighted::new(
                    table
                        .codes
                        .iter()
                        .map(|&(code, p)| (Diagnosis::Code(code), p))
                        .chain([
                            (Diagnosis::Missing, missing),
                            (Diagnosis::Tail, (100.0 - listed - missing).max(1.0)),
                        ]),
                ))
            }
            Kind::Categorical { levels, .. } => Self::categorical(column, levels),
        }
    }

    fn categorical(column: &schema::Column, levels: &'static [&'static str]) -> Self {
        if column.role == Role::Target
            && let Some(within_30) = find_level(levels, schema::POSITIVE_LEVEL)
        {
            let others: Vec<_> = levels.iter().copied().filter(|l| *l != within_30).collect();
            let later = find_level(levels, ">30").or(others.first().copied());
            let never = find_level(levels, "NO").or(others.last().copied());
            if let (Some(later), Some(never)) = (later, never) {
                return Self::Target {
                    within_30,
                    later,
                    never,
                };
            }
        }
        if column.name == "change"
            && let (Some(changed), Some(unchanged)) =
                (find_level(levels, "Ch"), find_level(levels, "No"))
        {
            return Self::Change { changed, unchanged };
        }
        if column.name == "diabetesMed"
            && let (Some(yes), Some(no)) = (find_level(levels, "Yes"), find_level(levels, "No"))
        {
            return Self::DiabetesMed { yes, no };
        }
        let is_drug = find_level(levels, "No").is_some() && find_level(levels, "Steady").is_some();
        let shares = SHARES.iter().find(|s| s.column == column.name);
        // What the table leaves over goes evenly to the levels it does not name.
        let rest = shares.map_or(RARE_PERCENT, |s| {
            let named = s.levels.iter().map(|(_, p)| p).sum::<f64>() + s.missing;
            let unnamed = levels
                .iter()
                .filter(|l| !s.levels.iter().any(|(n, _)| n == *l))
                .count();
            ((100.0 - named) / unnamed.max(1) as f64).max(RARE_PERCENT)
        });
        let weight = |level: &str| -> f64 {
            if is_drug {
                let [steady, up, down] = DRUG_SHARES
                    .iter()
                    .find(|(name, _)| *name == column.name)
                    .map_or([0.3, 0.0, 0.0], |(_, s)| *s);
                return match level {
                    "No" => 100.0 - steady - up - down,
                    "Steady" => steady,
                    "Up" => up,
                    "Down" => down,
                    _ => 0.0,
                };
            }
            match shares {
                Some(s) => s
                    .levels
                    .iter()
                    .find(|(l, _)| *l == level)
                    .map_or(rest, |(_, p)| *p),
                None => 100.0 / levels.len() as f64,
            }
        };
        let missing = match shares {
            Some(s) if column.missing_allowed => s.missing,
            _ => 0.0,
        };
        Self::Levels {
            levels: Weighted::new(
                levels
                    .iter()
                    .map(|&l| (Some(l), weight(l)))
                    .chain([(None, missing)]),
            ),
            per_patient: PER_PATIENT.contains(&column.name),
            drug: is_drug,
        }
    }
}

/// The counts of one stay, drawn together because they depend on each other and on the patient.
#[derive(Debug, Clone, Copy)]
struct Counts {
    time_in_hospital: i64,
    lab_procedures: i64,
    procedures: i64,
    medications: i64,
    outpatient: i64,
    emergency: i64,
    inpatient: i64,
    diagnoses: i64,
}

impl Counts {
    fn draw(rng: &mut Rng, tables: &Tables, frailty: f64, prior: u32) -> Self {
        let time_in_hospital = tables.time_in_hospital.draw(rng);
        let procedures = tables.procedures.draw(rng);
        let days = time_in_hospital as f64;
        // 3% of stays have a single lab procedure; the rest centre near 43 and grow with the stay.
        let lab_procedures = if rng.chance(0.0315) {
            1
        } else {
            (36.5 + 1.8 * days + 17.0 * rng.normal()).round() as i64
        }
        .clamp(1, 132);
        let medications = (6.5 + 1.7 * days + 1.5 * procedures as f64 + 6.5 * rng.normal())
            .round()
            .clamp(1.0, 81.0) as i64;
        let outpatient = if rng.chance(0.165) {
            1 + rng.geometric(0.5)
        } else {
            0
        };
        // Frail patients visit the emergency room and the wards more often; the lognormal factor
        // has mean one, so the shares of zeros stay near the file's 89% and 66%.
        let emergency = if rng.chance((0.112 * (0.5 * frailty - 0.125).exp()).min(0.9)) {
            1 + rng.geometric(0.3)
        } else {
            0
        };
        let earlier = f64::from(prior.min(4));
        let inpatient = rng.poisson(0.42 * (0.9 * frailty - 0.405).exp() * (1.0 + 0.6 * earlier));
        let diagnoses = tables.diagnoses.draw(rng);
        Self {
            time_in_hospital,
            lab_procedures,
            procedures,
            medications,
            outpatient,
            emergency,
            inpatient,
            diagnoses,
        }
    }

    fn get(&self, count: Count) -> i64 {
        match count {
            Count::TimeInHospital => self.time_in_hospital,
            Count::LabProcedures => self.lab_procedures,
            Count::Procedures => self.procedures,
            Count::Medications => self.medications,
            Count::Outpatient => self.outpatient,
            Count::Emergency => self.emergency,
            Count::Inpatient => self.inpatient,
            Count::Diagnoses => self.diagnoses,
        }
    }
}

/// The count distributions, built once.
#[derive(Debug, Clone)]
struct Tables {
    time_in_hospital: Weighted<i64>,
    procedures: Weighted<i64>,
    diagnoses: Weighted<i64>,
}

impl Tables {
    fn new() -> Self {
        let from = |first: i64, shares: &[f64]| {
            Weighted::new((first..).zip(shares.iter().copied()).collect::<Vec<_>>())
        };
        Self {
            time_in_hospital: from(1, &TIME_IN_HOSPITAL),
            procedures: from(0, &NUM_PROCEDURES),
            diagnoses: from(1, &NUMBER_DIAGNOSES),
        }
    }
}

/// A patient with encounters still to come.
#[derive(Debug, Clone)]
struct Patient {
    nbr: i64,
    /// Unobserved, standard normal: raises visit counts and readmission.
    frailty: f64,
    /// Encounters so far.
    seen: u32,
    /// Encounters still to come.
    remaining: u32,
    /// The per-patient columns' values, by column position.
    attributes: Vec<(usize, Option<&'static str>)>,
}

/// An endless stream of synthetic encounters in `encounter_id` order, each as its 50 CSV fields
/// in [`COLUMNS`] order (`?` for missing). The same seed and expected row count give the same
/// stream.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    plans: Vec<Plan>,
    tables: Tables,
    pending: Vec<Patient>,
    pending_encounters: u64,
    /// How many pending encounters make a returning patient as likely as a new one: scales with
    /// the file, so a patient's encounters spread over it.
    pool_scale: f64,
    next_encounter: i64,
    next_patient: i64,
    discharge: Option<usize>,
}

impl Generator {
    /// A generator for a file of about `expected_rows` rows (which sets how far apart a
    /// patient's encounters are), seeded with `seed`.
    pub fn new(seed: u64, expected_rows: usize) -> Self {
        Self {
            rng: Rng::new(seed),
            plans: COLUMNS.iter().map(Plan::for_column).collect(),
            tables: Tables::new(),
            pending: Vec::new(),
            pending_encounters: 0,
            pool_scale: (expected_rows as f64 / 40.0).clamp(20.0, 5000.0),
            next_encounter: 10_000,
            next_patient: 100_000,
            discharge: schema::index_of(DISCHARGE),
        }
    }

    /// The next encounter's fields as the CSV writes them.
    pub fn next_fields(&mut self) -> Vec<String> {
        self.next_row().iter().map(Field::to_csv).collect()
    }

    fn new_patient(&mut self) -> Patient {
        self.next_patient += 1 + self.rng.below(2000) as i64;
        let remaining = if self.rng.chance(RETURNING_SHARE) {
            1 + self.rng.geometric(FURTHER_VISIT) as u32
        } else {
            0
        };
        self.pending_encounters += u64::from(remaining);
        let mut attributes = Vec::new();
        for (i, plan) in self.plans.iter().enumerate() {
            if let Plan::Levels {
                levels,
                per_patient: true,
                ..
            } = plan
            {
                attributes.push((i, levels.draw(&mut self.rng)));
            }
        }
        Patient {
            nbr: self.next_patient,
            frailty: self.rng.normal(),
            seen: 0,
            remaining,
            attributes,
        }
    }

    /// A returning patient with probability rising with the encounters still to come, else a
    /// new one.
    fn pick_patient(&mut self) -> Patient {
        let pending = self.pending_encounters as f64;
        if !self.pending.is_empty() && self.rng.chance(pending / (pending + self.pool_scale)) {
            let i = self.rng.below(self.pending.len());
            let mut patient = self.pending.swap_remove(i);
            patient.remaining -= 1;
            self.pending_encounters -= 1;
            patient
        } else {
            self.new_patient()
        }
    }

    fn next_row(&mut self) -> Vec<Field> {
        let mut patient = self.pick_patient();
        self.next_encounter += 1 + self.rng.below(8000) as i64;
        let counts = Counts::draw(&mut self.rng, &self.tables, patient.frailty, patient.seen);
        let rng = &mut self.rng;
        let mut row: Vec<Field> = Vec::with_capacity(self.plans.len());
        for (i, plan) in self.plans.iter().enumerate() {
            let field = match plan {
                Plan::EncounterId => Field::Int(self.next_encounter),
                Plan::PatientNbr => Field::Int(patient.nbr),
                Plan::Levels {
                    per_patient: true, ..
                } => level_field(
                    patient
                        .attributes
                        .iter()
                        .find(|(c, _)| *c == i)
                        .and_then(|(_, v)| *v),
                ),
                Plan::Levels { levels, .. } => {
                    let mut level = levels.draw(rng);
                    // The dead come back to no hospital: a patient with encounters to come
                    // was not discharged as expired.
                    if Some(i) == self.discharge && patient.remaining > 0 {
                        while level == Some(EXPIRED) {
                            level = levels.draw(rng);
                        }
                    }
                    level_field(level)
                }
                Plan::Count { count, min, max } => {
                    let value = match count {
                        Some(c) => counts.get(*c),
                        None => min.saturating_add(rng.geometric(0.5)),
                    };
                    Field::Int(value.clamp(*min, *max))
                }
                Plan::Diagnosis(codes) => match codes.draw(rng) {
                    Diagnosis::Missing => Field::Missing,
                    Diagnosis::Code(code) => Field::Text(code),
                    Diagnosis::Tail => tail_code(rng),
                },
                // Filled below, from the rest of the row.
                Plan::Change { .. } | Plan::DiabetesMed { .. } | Plan::Target { .. } => {
                    Field::Missing
                }
            };
            row.push(field);
        }

        let drugs: Vec<&str> = self
            .plans
            .iter()
            .zip(&row)
            .filter(|(plan, _)| matches!(plan, Plan::Levels { drug: true, .. }))
            .filter_map(|(_, field)| field.text())
            .collect();
        let used = drugs.iter().any(|d| *d != "No");
        let dose_changed = drugs.iter().any(|d| *d == "Up" || *d == "Down");
        let switched = used && !dose_changed && rng.chance(SWITCHED);
        let discharge = self.discharge.and_then(|i| row[i].text());
        let expired = discharge == Some(EXPIRED);
        let discharge_risk = discharge_risk(discharge);
        for (i, plan) in self.plans.iter().enumerate() {
            row[i] = match *plan {
                Plan::Change { changed, unchanged } => Field::Text(if dose_changed || switched {
                    changed
                } else {
                    unchanged
                }),
                Plan::DiabetesMed { yes, no } => Field::Text(if used { yes } else { no }),
                Plan::Target {
                    within_30,
                    later,
                    never,
                } => Field::Text(if expired {
                    never
                } else if rng.chance(within_30_probability(
                    &counts,
                    discharge_risk,
                    patient.seen,
                    patient.frailty,
                )) {
                    within_30
                } else if rng.chance(later_probability(&counts, patient.seen, patient.frailty)) {
                    later
                } else {
                    never
                }),
                _ => continue,
            };
        }

        patient.seen += 1;
        if expired {
            self.pending_encounters -= u64::from(patient.remaining);
        } else if patient.remaining > 0 {
            self.pending.push(patient);
        }
        row
    }
}

impl Iterator for Generator {
    type Item = Vec<String>;

    fn next(&mut self) -> Option<Vec<String>> {
        Some(self.next_fields())
    }
}

fn level_field(level: Option<&'static str>) -> Field {
    level.map_or(Field::Missing, Field::Text)
}

/// A code from the long tail: mostly a real one, sometimes a random well-formed one.
fn tail_code(rng: &mut Rng) -> Field {
    if !rng.chance(RANDOM_TAIL) {
        return Field::Text(TAIL_CODES[rng.below(TAIL_CODES.len())]);
    }
    let code = match rng.below(20) {
        0 => format!("V{:02}", 1 + rng.below(90)),
        1 => format!("E{}", 800 + rng.below(200)),
        2..=5 => format!("{}.{}", 1 + rng.below(999), rng.below(10)),
        _ => format!("{}", 1 + rng.below(999)),
    };
    // The shapes above are all valid; the check keeps it so if the rule ever tightens.
    if schema::is_icd9(&code) {
        Field::Owned(code)
    } else {
        Field::Text(TAIL_CODES[0])
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn discharge_risk(discharge: Option<&str>) -> f64 {
    DISCHARGE_RISK
        .iter()
        .find(|(code, _)| Some(*code) == discharge)
        .map_or(0.0, |(_, r)| *r)
}

/// The planted signal: P(readmitted within 30 days) for one stay.
fn within_30_probability(counts: &Counts, discharge_risk: f64, prior: u32, frailty: f64) -> f64 {
    sigmoid(
        BASE_LOG_ODDS
            + PER_INPATIENT * counts.inpatient.min(8) as f64
            + PER_EMERGENCY * counts.emergency.min(6) as f64
            + PER_DAY * (counts.time_in_hospital - 4) as f64
            + PER_DIAGNOSIS * (counts.diagnoses.min(12) - 7) as f64
            + PER_PRIOR_ENCOUNTER * f64::from(prior.min(4))
            + discharge_risk
            + PER_FRAILTY * frailty,
    )
}

/// P(readmitted after 30 days) for a stay not readmitted within 30.
fn later_probability(counts: &Counts, prior: u32, frailty: f64) -> f64 {
    sigmoid(
        LATER_BASE_LOG_ODDS
            + 0.15 * counts.inpatient.min(8) as f64
            + 0.1 * counts.emergency.min(6) as f64
            + 0.1 * f64::from(prior.min(4))
            + 0.25 * frailty,
    )
}

/// The header line of the real file: the column names in [`COLUMNS`] order, no newline.
pub fn header() -> String {
    COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
}

/// Writes a CSV of the real file's header and `rows` synthetic encounters seeded with `seed`;
/// the same arguments give the same bytes. Lines end in CRLF, as the published file's do.
pub fn write_csv<W: Write>(out: W, rows: usize, seed: u64) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    write!(out, "{}\r\n", header())?;
    let mut generator = Generator::new(seed, rows);
    let mut line = String::with_capacity(512);
    for _ in 0..rows {
        line.clear();
        for (i, field) in generator.next_row().iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            field.push_csv(&mut line);
        }
        line.push_str("\r\n");
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

/// [`write_csv`] into memory.
pub fn csv_bytes(rows: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * 330 + 1024);
    // Writing to a Vec cannot fail.
    let _ = write_csv(&mut out, rows, seed);
    out
}

#[cfg(test)]
mod tests;
