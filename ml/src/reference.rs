//! What training data looked like, field by field: the distribution of every raw input the
//! pipeline reads (for drift: the population stability index of live records against it) and
//! one typical value per field (for explanations: how much the score moves when a field is
//! replaced by it).
//!
//! Fitted on the training split next to the pipeline and shipped in the model bundle, so the
//! serving side needs neither the data nor polars.

use serde::{Deserialize, Serialize};

use crate::pipeline::{Cells, PipelineError, Source};
use crate::record::FieldValue;
use crate::schema::{self, COLUMNS, Cell, Kind};

/// Most categories a field keeps its own bin for; rarer ones share the "other" bin.
const MAX_LEVELS: usize = 40;
/// A level needs this share of training rows for a bin of its own.
const MIN_LEVEL_SHARE: f64 = 0.001;
/// Integer fields are binned at these quantiles of training (deciles).
const QUANTILES: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
/// Added to every bin's share before the PSI's logarithm, so an empty bin is finite.
const PSI_FLOOR: f64 = 1e-4;

/// How a field's values fall into bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Bins {
    /// Integers: `edges` ascending; bin `i` holds values below `edges[i]` and at or above the
    /// edge before it; the last numeric bin holds values at or above the last edge.
    Numeric { edges: Vec<i64> },
    /// Text values: one bin per level, then "other". Diagnosis codes are binned by their
    /// ICD-9 chapter (`by_chapter`), as the pipeline groups them.
    Levels {
        levels: Vec<String>,
        #[serde(default)]
        by_chapter: bool,
    },
}

/// One raw input field's training distribution and typical value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldReference {
    pub name: String,
    /// The median (integers) or the most frequent level (text) of training; `None` when every
    /// training value was missing.
    pub typical: Option<FieldValue>,
    pub bins: Bins,
    /// Share of training rows in each bin, then in the "missing" bin; sums to 1.
    pub shares: Vec<f64>,
}

/// The reference of every raw input the pipeline reads, in the pipeline's input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub rows: usize,
    pub fields: Vec<FieldReference>,
}

impl Reference {
    /// Fits on the training rows, for each of `sources` (normally
    /// [`crate::pipeline::Pipeline::input_sources`]).
    pub fn fit<C: Cells + ?Sized>(rows: &C, sources: &[Source]) -> Result<Self, PipelineError> {
        let fields = sources
            .iter()
            .map(|&source| fit_field(rows, source))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rows: rows.n_rows(),
            fields,
        })
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldReference> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn fit_field<C: Cells + ?Sized>(rows: &C, source: Source) -> Result<FieldReference, PipelineError> {
    let icd9 = matches!(source, Source::Column(i) if COLUMNS[i].kind == Kind::Icd9);
    let mut ints = Vec::new();
    let mut texts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut codes: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut missing = 0usize;
    rows.for_each_cell(source, &mut |_, cell| match cell {
        Cell::Missing => missing += 1,
        Cell::Int(v) => ints.push(v),
        Cell::Text(t) => {
            if icd9 {
                *codes.entry(t.to_owned()).or_default() += 1;
                *texts.entry(chapter_level(t)).or_default() += 1;
            } else {
                *texts.entry(t.to_owned()).or_default() += 1;
            }
        }
    })?;
    let n = rows.n_rows().max(1);
    #[allow(clippy::cast_precision_loss)]
    let share = |count: usize| count as f64 / n as f64;
    let (typical, bins, mut counts) = if texts.is_empty() {
        ints.sort_unstable();
        let typical = ints.get(ints.len() / 2).copied().map(FieldValue::Int);
        let mut edges: Vec<i64> = QUANTILES
            .iter()
            .filter_map(|q| quantile(&ints, *q))
            .collect();
        edges.dedup();
        let bins = Bins::Numeric { edges };
        let mut counts = vec![0usize; bins.len()];
        for v in &ints {
            counts[bins.bin_of(Cell::Int(*v))] += 1;
        }
        (typical, bins, counts)
    } else {
        let mut by_count: Vec<(String, usize)> = texts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let typical = if icd9 {
            codes
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map(|(code, _)| FieldValue::Text(code))
        } else {
            by_count.first().map(|(t, _)| FieldValue::Text(t.clone()))
        };
        let mut levels: Vec<String> = by_count
            .iter()
            .filter(|(_, c)| share(*c) >= MIN_LEVEL_SHARE)
            .take(MAX_LEVELS)
            .map(|(t, _)| t.clone())
            .collect();
        levels.sort();
        let bins = Bins::Levels {
            levels,
            by_chapter: icd9,
        };
        let mut counts = vec![0usize; bins.len()];
        for (text, count) in &by_count {
            // Chapters were counted already; look them up as chapter levels.
            let cell_bin = bins.level_bin(text);
            counts[cell_bin] += count;
        }
        (typical, bins, counts)
    };
    counts.push(missing);
    Ok(FieldReference {
        name: source.name().to_owned(),
        typical,
        bins,
        shares: counts.into_iter().map(share).collect(),
    })
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn quantile(values: &[i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((values.len() - 1) as f64 * q).round() as usize;
    values.get(rank).copied()
}

/// The bin level of an ICD-9 code: its chapter.
fn chapter_level(code: &str) -> String {
    schema::ICD9_CHAPTERS[schema::icd9_chapter(code)].to_owned()
}

impl Bins {
    /// Bins other than "missing".
    pub fn len(&self) -> usize {
        match self {
            Bins::Numeric { edges } => edges.len() + 1,
            Bins::Levels { levels, .. } => levels.len() + 1,
        }
    }

    /// Whether there are no bins besides "missing" (never, for a fitted reference).
    pub fn is_empty(&self) -> bool {
        false
    }

    fn level_bin(&self, level: &str) -> usize {
        match self {
            Bins::Levels { levels, .. } => levels
                .binary_search_by(|l| l.as_str().cmp(level))
                .unwrap_or(levels.len()),
            Bins::Numeric { edges } => edges.len(),
        }
    }

    /// The bin of one value of this field ([`Bins::len`] is "missing").
    pub fn bin_of(&self, cell: Cell<'_>) -> usize {
        match (self, cell) {
            (_, Cell::Missing) => self.len(),
            (Bins::Numeric { edges }, Cell::Int(v)) => edges.partition_point(|e| *e <= v),
            (Bins::Numeric { .. }, Cell::Text(_)) => self.len(),
            (Bins::Levels { .. }, Cell::Int(v)) => self.level_bin(&v.to_string()),
            (
                Bins::Levels {
                    by_chapter: true, ..
                },
                Cell::Text(t),
            ) => self.level_bin(&chapter_level(t)),
            (Bins::Levels { .. }, Cell::Text(t)) => self.level_bin(t),
        }
    }
}

impl FieldReference {
    /// The bin of a cell, `0..=bins.len()` (the last is "missing").
    pub fn bin_of(&self, cell: Cell<'_>) -> usize {
        self.bins.bin_of(cell)
    }

    /// The population stability index of live bin counts against training:
    /// Σ (live − train) · ln(live / train) over the bins, shares floored at 1e-4. Below 0.1 is
    /// usually read as stable, above 0.25 as a shifted population. `None` without counts.
    pub fn psi(&self, counts: &[u64]) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 || counts.len() != self.shares.len() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let psi = counts
            .iter()
            .zip(&self.shares)
            .map(|(&c, &train)| {
                let live = (c as f64 / total as f64).max(PSI_FLOOR);
                let train = train.max(PSI_FLOOR);
                (live - train) * (live / train).ln()
            })
            .sum();
        Some(psi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RawRecord;

    fn records(n: usize) -> Vec<RawRecord> {
        let mut generator = crate::synth::Generator::new(7, n);
        (0..n)
            .map(|i| {
                let fields = generator.next_fields();
                let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                RawRecord::from_csv_fields(&fields)
                    .unwrap()
                    .with_prior_encounters(u32::try_from(i % 3).unwrap())
            })
            .collect()
    }

    #[test]
    fn bins_cover_training_and_psi_is_zero_on_it() {
        let train = records(2_000);
        let sources: Vec<Source> = ["age", "time_in_hospital", "diag_1", "A1Cresult"]
            .iter()
            .map(|n| Source::Column(schema::index_of(n).unwrap()))
            .chain([Source::PriorEncounters])
            .collect();
        let reference = Reference::fit(&train[..], &sources).unwrap();
        assert_eq!(reference.rows, 2_000);
        for (field, source) in reference.fields.iter().zip(&sources) {
            let sum: f64 = field.shares.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-9,
                "{}: shares sum to {sum}",
                field.name
            );
            let mut counts = vec![0u64; field.shares.len()];
            for r in &train {
                counts[field.bin_of(source.cell(r))] += 1;
            }
            let psi = field.psi(&counts).unwrap();
            assert!(
                psi.abs() < 1e-9,
                "{}: PSI {psi} on its own training",
                field.name
            );
        }
        let age = reference.field("age").unwrap();
        assert!(matches!(age.bins, Bins::Levels { .. }));
        assert!(matches!(age.typical, Some(FieldValue::Text(_))));
        let stay = reference.field("time_in_hospital").unwrap();
        assert!(matches!(stay.bins, Bins::Numeric { .. }));
        assert!(matches!(stay.typical, Some(FieldValue::Int(1..=14))));
        // A diagnosis's typical value is a real code, binned by its chapter.
        let diag = reference.field("diag_1").unwrap();
        let Some(FieldValue::Text(code)) = &diag.typical else {
            panic!("diag_1 has no typical code: {:?}", diag.typical);
        };
        assert!(schema::is_icd9(code), "{code}");
    }

    #[test]
    fn a_shifted_population_has_a_large_psi() {
        let train = records(2_000);
        let source = Source::Column(schema::index_of("time_in_hospital").unwrap());
        let reference = Reference::fit(&train[..], &[source]).unwrap();
        let field = &reference.fields[0];
        // Everyone stays 14 days: all live values in the top bin.
        let mut counts = vec![0u64; field.shares.len()];
        counts[field.bin_of(Cell::Int(14))] = 500;
        assert!(field.psi(&counts).unwrap() > 1.0);
        assert_eq!(field.psi(&vec![0; field.shares.len()]), None);
        assert_eq!(field.bin_of(Cell::Missing), field.shares.len() - 1);
    }
}
