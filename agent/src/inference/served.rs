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
    /// record's score most. One tract run for the whole batch, variants included.
    pub fn score(
        &self,
        records: &[RawRecord],
        explain: usize,
    ) -> Result<Vec<Scored>, InferenceError> {
        let pipeline = self.bundle.pipeline();
        let n_features = pipeline.n_features();
        let mut rows = Vec::with_capacity(records.len() * n_features);
        // Per record: its row's index and the fields its variants replace.
        let mut plan: Vec<(usize, Vec<&Typical>)> = Vec::with_capacity(records.len());
        let mut n_rows = 0;
        for record in records {
            let base = pipeline.transform_record(record);
            let at = n_rows;
            rows.extend_from_slice(&base);
            n_rows += 1;
            let mut replaced = Vec::new();
            if explain > 0 {
                for typical in &self.typical {
                    let value = cell_of(&typical.value);
                    if typical.source.cell(record) == value {
                        continue;
                    }
                    let mut row = base.clone();
                    pipeline.rewrite_input(&mut row, typical.source, value);
                    if row == base {
                        // The field feeds only columns the value leaves unchanged.
                        continue;
                    }
                    rows.extend_from_slice(&row);
                    n_rows += 1;
                    replaced.push(typical);
                }
            }
            plan.push((at, replaced));
        }
        let scores = self
            .bundle
            .model()
            .predict_rows(&rows, n_rows)
            .map_err(|e| InferenceError::Internal {
                reason: e.to_string(),
            })?;
        let scored = records
            .iter()
            .zip(plan)
            .map(|(record, (at, replaced))| {
                let probability = scores[at];
                let mut contributions: Vec<Contribution> = replaced
                    .iter()
                    .enumerate()
                    .map(|(k, typical)| Contribution {
                        field: typical.source.name(),
                        value: text_of(typical.source.cell(record)),
                        reference: text_of(cell_of(&typical.value)),
                        effect: f64::from(probability) - f64::from(scores[at + 1 + k]),
                    })
                    .collect();
                contributions.sort_by(|a, b| {
                    b.effect
                        .abs()
                        .total_cmp(&a.effect.abs())
                        .then_with(|| a.field.cmp(b.field))
                });
                contributions.truncate(explain);
                Scored {
                    probability,
                    readmitted: self.bundle.decide(probability),
                    contributions,
                }
            })
            .collect();
        Ok(scored)
    }
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
