//! The model bundle: one registered model version as a directory laid out as an MLflow model
//! with the `onnx` flavor, plus what serving needs to score raw records.
//!
//! Files: `MLmodel` (MLflow's YAML, so `mlflow.pyfunc.load_model(dir)` works unchanged),
//! `model.onnx`, `python_env.yaml` and `requirements.txt` (the environment MLflow restores),
//! `pipeline.json` (the fitted feature pipeline), `input_signature.json` (the raw columns, their
//! types and the levels seen in training: clients build their forms from it),
//! `input_example.json` (a few raw records), `metrics.json`, `reference.json` (the training
//! distribution of every raw input and a typical value of each: drift and explanations) and
//! `bundle.json` (name, creation time, feature names, the decision threshold chosen on
//! validation, the probabilities training gave the input example).
//!
//! [`LoadedBundle`] reads the directory once, checks that its parts agree and that the model
//! scores the input example as training did, and scores raw records; every error names the
//! file at fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::metrics::Report;
use crate::models::{Aggregation, Explainer, Model};
use crate::onnx::{ExportError, INPUT, OUTPUT, to_onnx};
use crate::pipeline::Pipeline;
use crate::record::RawRecord;
use crate::reference::Reference;
use crate::runtime::{LoadedModel, RuntimeError};
use crate::schema::{self, ColumnSpec, Role};

/// MLflow's model description.
pub const MLMODEL: &str = "MLmodel";
/// The ONNX graph: `features` float32 `[N, n_features]` in, `probabilities` float32 `[N]` out.
pub const MODEL_ONNX: &str = "model.onnx";
/// The Python environment MLflow restores to serve the model (it refers to `requirements.txt`).
pub const PYTHON_ENV: &str = "python_env.yaml";
/// The pip requirements of the `python_function` flavor.
pub const REQUIREMENTS: &str = "requirements.txt";
/// The fitted feature pipeline ([`Pipeline::to_json`]).
pub const PIPELINE: &str = "pipeline.json";
/// The raw input columns ([`InputSignature`]).
pub const INPUT_SIGNATURE: &str = "input_signature.json";
/// A few raw records, as clients send them.
pub const INPUT_EXAMPLE: &str = "input_example.json";
/// The model's metrics, by split.
pub const METRICS: &str = "metrics.json";
/// The training distribution of the raw inputs ([`Reference`]).
pub const REFERENCE: &str = "reference.json";
/// readmit's own description of the bundle ([`BundleInfo`]).
pub const BUNDLE: &str = "bundle.json";
/// The fitted model in readmit's own form ([`Model`], serde): explanations re-evaluate only
/// the trees a replaced field reaches ([`Explainer`]); tract serves `model.onnx`.
pub const MODEL_JSON: &str = "model.json";

/// The version of this layout, written to `bundle.json`. 2 added `reference.json` and the
/// example's probabilities, 3 `model.json`.
pub const FORMAT: u32 = 3;
/// How far a loaded model's score of the input example may be from what training recorded:
/// tract and the trained model agree far closer than this, a different model does not.
pub const EXAMPLE_TOLERANCE: f32 = 1e-5;
/// The MLflow release whose `MLmodel` fields are written (and which the Python test loads).
pub const MLFLOW_VERSION: &str = "3.17.2";
/// The oldest `onnx` package that reads IR 8 / opset 17, what [`crate::onnx`] writes.
pub const ONNX_VERSION: &str = "1.12.0";
/// The Python version the `python_function` flavor declares.
pub const PYTHON_VERSION: &str = "3.11";

/// Why a bundle cannot be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file the bundle needs is absent.
    #[error("{path}: the bundle has no such file")]
    NotFound { path: PathBuf },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file's content is malformed, or disagrees with another part of the bundle.
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The parts handed to [`Bundle::write`] do not fit together.
    #[error("cannot write the bundle: {reason}")]
    Parts { reason: String },
    /// The model cannot be exported to ONNX.
    #[error("cannot export the model: {0}")]
    Export(#[from] ExportError),
    /// tract failed to score records.
    #[error("scoring failed: {0}")]
    Run(#[source] RuntimeError),
}

/// `bundle.json`: what the bundle holds, in readmit's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// The layout version ([`FORMAT`]).
    pub format: u32,
    /// The run name, e.g. `GBM_300_d5`.
    pub name: String,
    /// `logistic_regression`, `random_forest` or `gradient_boosting`.
    pub family: String,
    /// When the bundle was written, RFC 3339 in UTC.
    pub created: String,
    /// The `model_uuid` of `MLmodel`.
    pub model_uuid: String,
    /// The model's input columns, in order: the pipeline's output names.
    pub features: Vec<String>,
    /// The raw fields the pipeline reads; the others may be sent but change nothing.
    pub inputs: Vec<String>,
    /// Scores at or above this are "readmitted within 30 days": the best-F1 threshold on
    /// validation.
    pub threshold: f32,
    /// The hyper-parameters, as logged for the run.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// What the trained model scored each record of the input example, in order: a loaded
    /// bundle must score them the same.
    #[serde(default)]
    pub example_probabilities: Vec<f32>,
}

/// One raw input column: the schema's description, whether the model reads it, and the levels
/// frequent enough in training to have their own feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputColumn {
    #[serde(flatten)]
    pub spec: ColumnSpec,
    /// Whether the fitted pipeline reads this column at all.
    pub used: bool,
    /// Levels with their own one-hot column, sorted; any other level scores as "other".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub training_levels: Vec<String>,
}

/// `input_signature.json`: every field a raw record may carry, in schema order, then the
/// engineered prior-encounter count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSignature {
    pub columns: Vec<InputColumn>,
}

impl InputSignature {
    /// The signature of a fitted pipeline: [`schema::signature`] plus what training saw.
    pub fn of(pipeline: &Pipeline) -> Self {
        let inputs = pipeline.inputs();
        let prior = ColumnSpec {
            name: schema::PRIOR_ENCOUNTERS.to_owned(),
            role: Role::Feature,
            kind: "integer".to_owned(),
            min: Some(0),
            max: None,
            levels: Vec::new(),
            open: false,
            missing_allowed: true,
        };
        let columns = schema::signature()
            .into_iter()
            .chain([prior])
            .map(|spec| InputColumn {
                used: inputs.contains(&spec.name.as_str()),
                training_levels: pipeline
                    .levels(&spec.name)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default(),
                spec,
            })
            .collect();
        Self { columns }
    }
}

/// The parts of a bundle, ready to be written to a directory.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    /// The run name, e.g. `LR_C_0.1`.
    pub name: &'a str,
    pub model: &'a Model,
    /// The pipeline the model was trained behind.
    pub pipeline: &'a Pipeline,
    /// The decision threshold chosen on validation.
    pub threshold: f32,
    /// Metrics by split name (`validation`, `test`).
    pub metrics: &'a BTreeMap<String, Report>,
    /// A few raw records, written as the input example.
    pub input_example: &'a [RawRecord],
    /// Hyper-parameters, as logged for the run.
    pub params: &'a BTreeMap<String, String>,
    /// The training distribution of the raw inputs ([`Reference::fit`] on the training split).
    pub reference: &'a Reference,
}

impl Bundle<'_> {
    /// Writes every file of the bundle into `dir` (created if needed; files of an earlier bundle
    /// there are replaced) and returns what `bundle.json` says.
    pub fn write(&self, dir: &Path) -> Result<BundleInfo, BundleError> {
        let parts = |reason: String| Err(BundleError::Parts { reason });
        if self.model.n_features() != self.pipeline.n_features() {
            return parts(format!(
                "the model reads {} features but the pipeline makes {}",
                self.model.n_features(),
                self.pipeline.n_features()
            ));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return parts(format!("threshold {} is not a probability", self.threshold));
        }
        if self.input_example.is_empty() {
            return parts("the input example is empty: loading checks the model on it".into());
        }
        if self.name.is_empty() || self.name.contains(['/', '\\', '\n']) {
            return parts(format!("invalid model name {:?}", self.name));
        }
        let example_probabilities = self
            .model
            .predict_proba(&self.pipeline.transform(self.input_example).map_err(|e| {
                BundleError::Parts {
                    reason: format!("the input example does not transform: {e}"),
                }
            })?)
            .map_err(|e| BundleError::Parts {
                reason: format!("the model cannot score the input example: {e}"),
            })?;
        let onnx = to_onnx(self.model)?;
        std::fs::create_dir_all(dir).map_err(|source| BundleError::Io {
            path: dir.to_owned(),
            source,
        })?;

        let now = chrono::Utc::now();
        let info = BundleInfo {
            format: FORMAT,
            name: self.name.to_owned(),
            family: family(self.model).to_owned(),
            created: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            model_uuid: uuid::Uuid::new_v4().simple().to_string(),
            features: self.pipeline.names().to_vec(),
            inputs: self
                .pipeline
                .inputs()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            threshold: self.threshold,
            params: self.params.clone(),
            example_probabilities,
        };
        let pipeline_json = self.pipeline.to_json().map_err(|e| BundleError::Parts {
            reason: format!("the pipeline does not serialise: {e}"),
        })?;

        let files: [(&str, Vec<u8>); 10] = [
            (MODEL_ONNX, onnx),
            (MODEL_JSON, json(self.model)?),
            (PYTHON_ENV, python_env().into_bytes()),
            (REQUIREMENTS, REQUIREMENTS_TXT.as_bytes().to_vec()),
            (PIPELINE, pipeline_json.into_bytes()),
            (INPUT_SIGNATURE, json(&InputSignature::of(self.pipeline))?),
            (INPUT_EXAMPLE, json(&self.input_example)?),
            (METRICS, json(self.metrics)?),
            (REFERENCE, json(self.reference)?),
            (BUNDLE, json(&info)?),
        ];
        for (name, bytes) in &files {
            put(dir, name, bytes)?;
        }
        // MLmodel last: like MLflow's, it reports the size of everything else.
        let size = files.iter().map(|(_, b)| b.len()).sum();
        let mlmodel = mlmodel(
            &info,
            self.pipeline.n_features(),
            &now.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            size,
        );
        put(dir, MLMODEL, mlmodel.as_bytes())?;
        Ok(info)
    }
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|source| BundleError::Io { path, source })
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BundleError> {
    let mut out = serde_json::to_vec_pretty(value).map_err(|e| BundleError::Parts {
        reason: e.to_string(),
    })?;
    out.push(b'\n');
    Ok(out)
}

fn family(model: &Model) -> &'static str {
    match model {
        Model::Linear(_) => "logistic_regression",
        Model::Trees(t) => match t.aggregation {
            Aggregation::Mean => "random_forest",
            Aggregation::Logit { .. } => "gradient_boosting",
        },
    }
}

/// Unpinned within the majors we test: pins would go stale, and any onnxruntime runs the
/// graph (standard ops, opset 17).
const REQUIREMENTS_TXT: &str = "mlflow>=3,<4\nnumpy\nonnx>=1.12\nonnxruntime\n";

fn python_env() -> String {
    format!(
        "python: {PYTHON_VERSION}\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\n\
         dependencies:\n- -r {REQUIREMENTS}\n"
    )
}

/// A YAML single-quoted scalar: the only escape is a doubled quote.
fn yaml_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// MLflow's `MLmodel` for an ONNX model, with the fields `mlflow.onnx.save_model` writes.
/// The signature is a tensor spec, so pyfunc takes `{"features": float32 array}`.
fn mlmodel(info: &BundleInfo, n_features: usize, created: &str, size: usize) -> String {
    let tensor = |name: &str, shape: serde_json::Value| {
        serde_json::json!([{
            "name": name,
            "type": "tensor",
            "tensor-spec": {"dtype": "float32", "shape": shape},
        }])
        .to_string()
    };
    let inputs = tensor(INPUT, serde_json::json!([-1, n_features]));
    let outputs = tensor(OUTPUT, serde_json::json!([-1]));
    format!(
        "flavors:
  onnx:
    code: null
    data: {MODEL_ONNX}
    onnx_session_options: null
    onnx_version: {ONNX_VERSION}
    providers:
    - CPUExecutionProvider
  python_function:
    data: {MODEL_ONNX}
    env:
      virtualenv: {PYTHON_ENV}
    loader_module: mlflow.onnx
    python_version: '{PYTHON_VERSION}'
is_signature_from_type_hint: false
mlflow_version: {MLFLOW_VERSION}
model_id: null
model_size_bytes: {size}
model_uuid: {uuid}
signature:
  inputs: {inputs}
  outputs: {outputs}
  params: null
type_hint_from_example: false
utc_time_created: {created}
",
        uuid = info.model_uuid,
        inputs = yaml_quoted(&inputs),
        outputs = yaml_quoted(&outputs),
        created = yaml_quoted(created),
    )
}

/// A bundle read from its directory: the pipeline and the optimised tract model, loaded once.
#[derive(Debug, Clone)]
pub struct LoadedBundle {
    dir: PathBuf,
    info: BundleInfo,
    pipeline: Pipeline,
    model: LoadedModel,
    explainer: Explainer,
    signature: InputSignature,
    input_example: Vec<RawRecord>,
    metrics: BTreeMap<String, Report>,
    reference: Reference,
}

impl LoadedBundle {
    /// Reads and checks every part of the bundle in `dir`, and optimises the model.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let invalid = |name: &str, reason: String| BundleError::Invalid {
            path: dir.join(name),
            reason,
        };
        check_mlmodel(dir)?;
        let info: BundleInfo = read_json(dir, BUNDLE)?;
        if info.format != FORMAT {
            return Err(invalid(
                BUNDLE,
                format!(
                    "format {} is not {FORMAT}, the one this build reads",
                    info.format
                ),
            ));
        }
        if !(0.0..=1.0).contains(&info.threshold) {
            return Err(invalid(
                BUNDLE,
                format!("threshold {} is not a probability", info.threshold),
            ));
        }
        let pipeline_text = read(dir, PIPELINE)?;
        let pipeline = Pipeline::from_json(&String::from_utf8_lossy(&pipeline_text))
            .map_err(|e| invalid(PIPELINE, e.to_string()))?;
        if pipeline.names() != info.features {
            return Err(invalid(
                PIPELINE,
                format!(
                    "its {} output columns are not the {} features {BUNDLE} lists",
                    pipeline.n_features(),
                    info.features.len()
                ),
            ));
        }
        let model_path = dir.join(MODEL_ONNX);
        let model =
            LoadedModel::from_bytes(&read(dir, MODEL_ONNX)?).map_err(|e| BundleError::Invalid {
                path: model_path.clone(),
                reason: e.to_string(),
            })?;
        if model.n_features() != pipeline.n_features() {
            return Err(BundleError::Invalid {
                path: model_path,
                reason: format!(
                    "the model reads {} features but {PIPELINE} makes {}",
                    model.n_features(),
                    pipeline.n_features()
                ),
            });
        }
        let reference: Reference = read_json(dir, REFERENCE)?;
        if let Some(missing) = info.inputs.iter().find(|i| reference.field(i).is_none()) {
            return Err(invalid(
                REFERENCE,
                format!("no reference for the input `{missing}`"),
            ));
        }
        let fitted: Model = read_json(dir, MODEL_JSON)?;
        if fitted.n_features() != pipeline.n_features() {
            return Err(invalid(
                MODEL_JSON,
                format!(
                    "the model reads {} features but {PIPELINE} makes {}",
                    fitted.n_features(),
                    pipeline.n_features()
                ),
            ));
        }
        if let Model::Trees(ensemble) = &fitted {
            ensemble
                .validate()
                .map_err(|e| invalid(MODEL_JSON, e.to_string()))?;
        }
        let bundle = Self {
            explainer: Explainer::new(fitted),
            dir: dir.to_owned(),
            signature: read_json(dir, INPUT_SIGNATURE)?,
            input_example: read_json(dir, INPUT_EXAMPLE)?,
            metrics: read_json(dir, METRICS)?,
            reference,
            info,
            pipeline,
            model,
        };
        bundle.check_example()?;
        Ok(bundle)
    }

    /// The model must score the input example as training did: a bundle whose graph, pipeline
    /// and recorded scores do not belong together is refused before it serves.
    fn check_example(&self) -> Result<(), BundleError> {
        let invalid = |reason: String| BundleError::Invalid {
            path: self.dir.join(BUNDLE),
            reason,
        };
        let recorded = &self.info.example_probabilities;
        if recorded.len() != self.input_example.len() || recorded.is_empty() {
            return Err(invalid(format!(
                "{} example probabilities recorded for {} example records",
                recorded.len(),
                self.input_example.len()
            )));
        }
        let scored = self.predict_records(&self.input_example)?;
        let explained: Vec<f32> = self
            .input_example
            .iter()
            .map(|r| {
                let row = self.pipeline.transform_record(r);
                self.explainer.probability(&self.explainer.baseline(&row))
            })
            .collect();
        for (file, scores) in [(MODEL_ONNX, scored), (MODEL_JSON, explained)] {
            for (i, (got, want)) in scores.iter().zip(recorded).enumerate() {
                // A NaN score fails too: it is within no distance of anything.
                let close = (got - want).abs() <= EXAMPLE_TOLERANCE;
                if !close {
                    return Err(BundleError::Invalid {
                        path: self.dir.join(file),
                        reason: format!(
                            "scores example record {i} as {got}, but training recorded {want}"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `bundle.json` says.
    pub fn info(&self) -> &BundleInfo {
        &self.info
    }

    /// The fitted feature pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The optimised ONNX model.
    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    /// The fitted model with the index explanations use.
    pub fn explainer(&self) -> &Explainer {
        &self.explainer
    }

    /// The raw input columns, for building input forms.
    pub fn input_signature(&self) -> &InputSignature {
        &self.signature
    }

    /// The example records shipped with the model.
    pub fn input_example(&self) -> &[RawRecord] {
        &self.input_example
    }

    /// The metrics by split name.
    pub fn metrics(&self) -> &BTreeMap<String, Report> {
        &self.metrics
    }

    /// The training distribution and typical value of each raw input.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// P(readmitted within 30 days) for each raw record.
    pub fn predict_records(&self, records: &[RawRecord]) -> Result<Vec<f32>, BundleError> {
        let n = self.pipeline.n_features();
        let mut data = Vec::with_capacity(records.len() * n);
        for record in records {
            data.extend(self.pipeline.transform_record(record));
        }
        self.model
            .predict_rows(&data, records.len())
            .map_err(BundleError::Run)
    }

    /// P(readmitted within 30 days) for one raw record.
    pub fn predict_record(&self, record: &RawRecord) -> Result<f32, BundleError> {
        self.model
            .predict_row(&self.pipeline.transform_record(record))
            .map_err(BundleError::Run)
    }

    /// Whether a score is at or above the bundle's decision threshold.
    pub fn decide(&self, probability: f32) -> bool {
        probability >= self.info.threshold
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, BundleError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BundleError::NotFound { path }
        } else {
            BundleError::Io { path, source }
        }
    })
}

fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<T, BundleError> {
    serde_json::from_slice(&read(dir, name)?).map_err(|e| BundleError::Invalid {
        path: dir.join(name),
        reason: e.to_string(),
    })
}

/// `MLmodel` must declare the onnx flavor over `model.onnx`. A line-level check, not a YAML
/// parser: the file is ours, and this catches a directory that is some other kind of model.
fn check_mlmodel(dir: &Path) -> Result<(), BundleError> {
    let text = read(dir, MLMODEL)?;
    let text = String::from_utf8_lossy(&text);
    let mut section = "";
    let mut flavor = "";
    let mut onnx_data = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let line = line.trim_end();
        match indent {
            0 => {
                section = line;
                flavor = "";
            }
            2 if section == "flavors:" => flavor = line.trim_start(),
            4 if flavor == "onnx:" => {
                onnx_data |= line.trim_start() == format!("data: {MODEL_ONNX}");
            }
            _ => {}
        }
    }
    if onnx_data {
        Ok(())
    } else {
        Err(BundleError::Invalid {
            path: dir.join(MLMODEL),
            reason: format!("no `onnx` flavor with `data: {MODEL_ONNX}`"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quoting_doubles_single_quotes() {
        assert_eq!(yaml_quoted("a'b"), "'a''b'");
        assert_eq!(yaml_quoted(r#"[{"x": 1}]"#), r#"'[{"x": 1}]'"#);
    }

    #[test]
    fn the_mlmodel_check_wants_the_onnx_flavor() {
        let dir = tempfile::tempdir().unwrap();
        let info = BundleInfo {
            format: FORMAT,
            name: "LR".into(),
            family: "logistic_regression".into(),
            created: String::new(),
            model_uuid: "0".repeat(32),
            features: vec![],
            inputs: vec![],
            threshold: 0.5,
            params: BTreeMap::new(),
            example_probabilities: vec![],
        };
        let text = mlmodel(&info, 3, "2026-01-01 00:00:00.000000", 10);
        assert!(text.contains(r#""shape":[-1,3]"#), "{text}");
        std::fs::write(dir.path().join(MLMODEL), &text).unwrap();
        check_mlmodel(dir.path()).unwrap();
        // The python_function flavor also says `data: model.onnx`; alone it is not enough.
        let without_onnx = text.replace("  onnx:\n", "  other:\n");
        std::fs::write(dir.path().join(MLMODEL), without_onnx).unwrap();
        assert!(matches!(
            check_mlmodel(dir.path()),
            Err(BundleError::Invalid { path, .. }) if path.ends_with(MLMODEL)
        ));
        std::fs::remove_file(dir.path().join(MLMODEL)).unwrap();
        assert!(matches!(
            check_mlmodel(dir.path()),
            Err(BundleError::NotFound { path }) if path.ends_with(MLMODEL)
        ));
    }
}
