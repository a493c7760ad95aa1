//! Encoding raw cells into columns: where each encoder reads (a [`Source`] through [`Cells`]),
//! how it turns one cell into its one non-zero column, and how encoders are fitted.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{PipelineError, PipelineParams};
use crate::record::RawRecord;
use crate::schema::{self, COLUMNS, Cell, ICD9_CHAPTERS, Kind};

/// Where an encoder reads its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Column `i` of [`COLUMNS`].
    Column(usize),
    /// The engineered [`schema::PRIOR_ENCOUNTERS`].
    PriorEncounters,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Self::Column(i) => COLUMNS[i].name,
            Self::PriorEncounters => schema::PRIOR_ENCOUNTERS,
        }
    }

    /// The record's value for this source.
    pub fn cell(self, record: &RawRecord) -> Cell<'_> {
        match self {
            Self::Column(i) => record.cell(i),
            Self::PriorEncounters => record.prior_encounters().map_or(Cell::Missing, Cell::Int),
        }
    }
}

/// Columnar access to raw cells: record slices here, DataFrames in the data module.
pub trait Cells {
    fn n_rows(&self) -> usize;
    /// Calls `f(row, cell)` for every row of `source`, in row order.
    fn for_each_cell(
        &self,
        source: Source,
        f: &mut dyn FnMut(usize, Cell<'_>),
    ) -> Result<(), PipelineError>;
}

impl Cells for [RawRecord] {
    fn n_rows(&self) -> usize {
        self.len()
    }

    fn for_each_cell(
        &self,
        source: Source,
        f: &mut dyn FnMut(usize, Cell<'_>),
    ) -> Result<(), PipelineError> {
        for (i, record) in self.iter().enumerate() {
            f(i, source.cell(record));
        }
        Ok(())
    }
}

/// The name suffix of the bucket for unseen and rare levels.
pub const OTHER: &str = "<other>";
/// The name suffix of the bucket for missing values.
pub const MISSING: &str = "<missing>";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Encoding {
    /// The integer itself; missing becomes the training median.
    Numeric { impute: f64 },
    /// One column per level (sorted, for binary search), then other, then missing if allowed.
    OneHot {
        levels: Vec<String>,
        missing_bucket: bool,
    },
    /// One column per ICD-9 chapter, then other, then missing.
    Chapter,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Encoder {
    pub(super) source: Source,
    pub(super) encoding: Encoding,
    /// The encoder's first column among all encoded columns.
    pub(super) first: usize,
}

impl Encoder {
    pub(super) fn width(&self) -> usize {
        match &self.encoding {
            Encoding::Numeric { .. } => 1,
            Encoding::OneHot {
                levels,
                missing_bucket,
            } => levels.len() + 1 + usize::from(*missing_bucket),
            Encoding::Chapter => ICD9_CHAPTERS.len() + 2,
        }
    }

    pub(super) fn names(&self) -> Vec<String> {
        let name = self.source.name();
        match &self.encoding {
            Encoding::Numeric { .. } => vec![name.to_owned()],
            Encoding::OneHot {
                levels,
                missing_bucket,
            } => levels
                .iter()
                .map(String::as_str)
                .chain([OTHER])
                .chain(missing_bucket.then_some(MISSING))
                .map(|l| format!("{name}={l}"))
                .collect(),
            Encoding::Chapter => ICD9_CHAPTERS
                .iter()
                .copied()
                .chain([OTHER, MISSING])
                .map(|l| format!("{name}_chapter={l}"))
                .collect(),
        }
    }

    /// The one non-zero encoded value of a cell: its offset within this encoder, and the value.
    /// Total: any cell, even one no training row had, lands somewhere.
    pub(super) fn hot(&self, cell: Cell<'_>) -> (usize, f64) {
        match &self.encoding {
            Encoding::Numeric { impute } => match cell {
                // Counts are far below 2^52: exact in f64.
                #[allow(clippy::cast_precision_loss)]
                Cell::Int(v) => (0, v as f64),
                Cell::Missing | Cell::Text(_) => (0, *impute),
            },
            Encoding::OneHot {
                levels,
                missing_bucket,
            } => {
                let other = levels.len();
                let offset = match cell {
                    Cell::Text(t) => levels
                        .binary_search_by(|l| l.as_str().cmp(t))
                        .unwrap_or(other),
                    Cell::Missing if *missing_bucket => other + 1,
                    Cell::Missing | Cell::Int(_) => other,
                };
                (offset, 1.0)
            }
            Encoding::Chapter => {
                let other = ICD9_CHAPTERS.len();
                let offset = match cell {
                    Cell::Text(t) if schema::is_icd9(t) => schema::icd9_chapter(t),
                    Cell::Text(_) | Cell::Int(_) => other,
                    Cell::Missing => other + 1,
                };
                (offset, 1.0)
            }
        }
    }
}

pub(super) fn build_encoders<C: Cells + ?Sized>(
    train: &C,
    params: &PipelineParams,
) -> Result<Vec<Encoder>, PipelineError> {
    let mut encodings = Vec::new();
    for (i, column) in schema::features() {
        let source = Source::Column(i);
        match column.kind {
            Kind::Integer { .. } => encodings.push((source, numeric(train, source)?)),
            Kind::Categorical { .. } => encodings.push((source, one_hot(train, source, params)?)),
            Kind::Icd9 => {
                if params.diag_codes {
                    encodings.push((source, one_hot(train, source, params)?));
                }
                if params.icd9_chapters {
                    encodings.push((source, Encoding::Chapter));
                }
            }
        }
    }
    if params.prior_encounters {
        let source = Source::PriorEncounters;
        encodings.push((source, numeric(train, source)?));
    }
    let mut first = 0;
    Ok(encodings
        .into_iter()
        .map(|(source, encoding)| {
            let e = Encoder {
                source,
                encoding,
                first,
            };
            first += e.width();
            e
        })
        .collect())
}

/// A numeric encoding whose missing values become the training median.
fn numeric<C: Cells + ?Sized>(train: &C, source: Source) -> Result<Encoding, PipelineError> {
    let mut values = Vec::with_capacity(train.n_rows());
    train.for_each_cell(source, &mut |_, cell| {
        if let Cell::Int(v) = cell {
            values.push(v);
        }
    })?;
    // Counts are far below 2^52: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let impute = match values.len() {
        0 => 0.0,
        len => {
            let mid = len / 2;
            let (low, upper, _) = values.select_nth_unstable(mid);
            let upper = *upper as f64;
            if len % 2 == 1 {
                upper
            } else {
                // The lower middle value is the largest of the lower half.
                let lower = low.iter().copied().max().unwrap_or_default() as f64;
                f64::midpoint(lower, upper)
            }
        }
    };
    Ok(Encoding::Numeric { impute })
}

/// A one-hot encoding over the levels seen in at least `min_level_rows` training rows.
fn one_hot<C: Cells + ?Sized>(
    train: &C,
    source: Source,
    params: &PipelineParams,
) -> Result<Encoding, PipelineError> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    train.for_each_cell(source, &mut |_, cell| {
        if let Cell::Text(t) = cell {
            if let Some(c) = counts.get_mut(t) {
                *c += 1;
            } else {
                counts.insert(t.to_owned(), 1);
            }
        }
    })?;
    let mut levels: Vec<String> = counts
        .into_iter()
        .filter(|(_, c)| *c >= params.min_level_rows)
        .map(|(l, _)| l)
        .collect();
    levels.sort_unstable();
    let missing_bucket = match source {
        Source::Column(i) => COLUMNS[i].missing_allowed,
        Source::PriorEncounters => true,
    };
    Ok(Encoding::OneHot {
        levels,
        missing_bucket,
    })
}
