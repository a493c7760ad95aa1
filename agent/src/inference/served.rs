//! One loaded model version as it serves: the bundle (pipeline and optimised tract plan), what
//! the registry says of it, and scoring with explanations. Built once per version, shared
//! (`Arc`) by every request that started on it.

use std::collections::BTreeMap;

use readmit_ml::bundle::LoadedBundle;
use readmit_ml::pipeline::Source;
use readmit_ml::record::{FieldValue, RawRecord};
use readmit_ml::schema::Cell;
use serde::{Deserialize, Serialize};

use super::drift::Drift;
use super::error::InferenceError;

/// What the registry said of the version when it was loaded; kept beside the cached bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServedMeta {
    pub name: String,
    pub version: i64,
    /// The stage the version was in when loaded (`None` when loaded by alias or number it may
    /// be in any).
    pub stage: String,
    pub run_id: String,
    pub source: String,
    pub loaded_at_ms: i64,
}

/// How one raw field moved one record's score.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub field: &'static str,
    /// As sent, `?` when missing.
    pub value: String,
    /// The typical training value it was replaced by.
    pub reference: String,
    /// The record's score minus the score with the field replaced.
    pub effect: f64,
}

/// One record's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub probability: f32,
    pub readmitted: bool,
    /// Largest |effect| first; empty unless an explanation was asked for.
    pub contributions: Vec<Contribution>,
}

/// A raw input and the typical training value explanations replace it by.
struct Typical {
    source: Source,
    value: FieldValue,
}

pub struct Served {
    pub bundle: LoadedBundle,
    pub meta: ServedMeta,
    typical: Vec<Typical>,
    pub drift: Drift,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").field("meta", &self.meta).finish()
    }
}

impl Served {
    pub fn new(bundle: LoadedBundle, meta: ServedMeta, drift_window: usize) -> Self {
        let reference = bundle.reference();
        let typical = bundle
            .pipeline()
            .input_sources()
            .into_iter()
            .filter_map(|source| {
                let value = reference.field(source.name())?.typical.clone()?;
                Some(Typical { source, value })
            })
            .collect();
        let drift = Drift::new(reference, &bundle.pipeline().input_sources(), drift_window);
        Self {
            bundle,
            meta,
            typical,
            drift,
        }
    }

    /// The bundle's metrics as flat `split_metric` names (`validation_roc_auc`, ...).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (split, report) in self.bundle.metrics() {
            for (name, value) in [
                ("roc_auc", report.roc_auc),
                ("pr_auc", report.pr_auc),
                ("accuracy", report.accuracy),
                ("log_loss", report.log_loss),
                ("brier", report.brier),
                ("f1", report.decision.f1),
            ] {
                out.insert(format!("{split}_{name}"), value);
            }
        }
        out
    }

    /// The fields an explanation may replace: those the model reads that have a typical value.
    pub fn explained_fields(&self) -> usize {
        self.typical.len()
    }

    pub fn threshold(&self) -> f32 {
        self.bundle.info().threshold
    }

    /// Scores every record; with `explain > 0`, also the `explain` fields that moved each
    /// record's score most. One tract run for the whole batch.
    pub fn score(
        &self,
        records: &[RawRecord],
        explain: usize,
    ) -> Result<Vec<Scored>, InferenceError> {
        let rows = self.rows(records, explain);
        let scores = self.run(&rows.data, rows.n_rows)?;
        Ok(self.finish(rows, &scores))
    }

    /// The records' feature rows for tract, and with `explain > 0` each record's
    /// explanation: every field that has a typical value the record does not, replaced by it,
    /// scored by the [`Explainer`] (which re-walks only the trees the field reaches), and the
    /// `explain` fields whose replacement moves the score most.
    pub fn rows(&self, records: &[RawRecord], explain: usize) -> Rows {
        let pipeline = self.bundle.pipeline();
        let explainer = self.bundle.explainer();
        let mut data = Vec::with_capacity(records.len() * pipeline.n_features());
        let mut explanations = Vec::with_capacity(if explain > 0 { records.len() } else { 0 });
        for record in records {
            let base = pipeline.transform_record(record);
            if explain > 0 {
                let baseline = explainer.baseline(&base);
                let probability = f64::from(explainer.probability(&baseline));
                let mut contributions = Vec::new();
                let mut row = base.clone();
                let mut changed = Vec::new();
                for typical in &self.typical {
                    let value = cell_of(&typical.value);
                    if typical.source.cell(record) == value {
                        continue;
                    }
                    pipeline.rewrite_input(&mut row, typical.source, value);
                    changed.clear();
                    changed.extend((0..row.len()).filter(|&j| row[j] != base[j]));
                    if !changed.is_empty() {
                        let replaced = explainer.probability_with(&baseline, &row, &changed);
                        contributions.push(Contribution {
                            field: typical.source.name(),
                            value: text_of(typical.source.cell(record)),
                            reference: text_of(value),
                            effect: probability - f64::from(replaced),
                        });
                        for &j in &changed {
                            row[j] = base[j];
                        }
                    }
                    // Else the field feeds only columns the value leaves unchanged.
                }
                contributions.sort_by(|a, b| {
                    b.effect
                        .abs()
                        .total_cmp(&a.effect.abs())
                        .then_with(|| a.field.cmp(b.field))
                });
                contributions.truncate(explain);
                explanations.push(contributions);
            }
            data.extend_from_slice(&base);
        }
        Rows {
            data,
            n_rows: records.len(),
            explanations,
        }
    }

    /// Scores `n_rows` feature rows given row-major in `data`.
    pub fn run(&self, data: &[f32], n_rows: usize) -> Result<Vec<f32>, InferenceError> {
        self.bundle
            .model()
            .predict_rows(data, n_rows)
            .map_err(|e| InferenceError::Internal {
                reason: e.to_string(),
            })
    }

    /// The records' results from tract's scores of their [`Rows`].
    pub fn finish(&self, rows: Rows, scores: &[f32]) -> Vec<Scored> {
        let mut explanations = rows.explanations.into_iter();
        scores
            .iter()
            .map(|&probability| Scored {
                probability,
                readmitted: self.bundle.decide(probability),
                contributions: explanations.next().unwrap_or_default(),
            })
            .collect()
    }
}

/// The feature rows of some records, one each, and their explanations when asked for.
pub struct Rows {
    pub data: Vec<f32>,
    pub n_rows: usize,
    explanations: Vec<Vec<Contribution>>,
}

fn cell_of(value: &FieldValue) -> Cell<'_> {
    match value {
        FieldValue::Int(i) => Cell::Int(*i),
        FieldValue::Text(t) => Cell::Text(t),
    }
}

fn text_of(cell: Cell<'_>) -> String {
    match cell {
        Cell::Missing => readmit_ml::schema::MISSING.to_owned(),
        Cell::Int(i) => i.to_string(),
        Cell::Text(t) => t.to_owned(),
    }
}
