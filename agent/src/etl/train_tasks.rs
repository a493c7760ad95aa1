//! The training task kinds: `train_models` fits the ml crate's candidates on CleanData and logs
//! each to the tracking role over gRPC (params, metrics, the model bundle as artifacts);
//! `select_and_promote` registers the best by validation ROC AUC and moves it to Production,
//! archiving the version that was there.
//!
//! Both are safe to retry: `train_models` records each logged run in the run directory and
//! skips it on the next attempt; `select_and_promote` reuses a version already registered for
//! the chosen run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use readmit_ml::bundle::Bundle;
use readmit_ml::metrics::{Report, best_f1_threshold, report};
use readmit_ml::reference::Reference;
use readmit_ml::training::{Candidate, candidates, fit};
use readmit_proto::{CallError, Client, MetricPoint, NewVersion, RunEnd};
use serde::{Deserialize, Serialize};

use super::data::DataService;
use super::data_tasks::{read_json, write_json};
use super::io::blocking;
use super::raw;
use super::runs::EtlError;
use super::tasks::{TaskContext, TaskFuture, TaskKind, TaskKinds};

/// The original system's experiment and registered model names.
pub const EXPERIMENT: &str = "diabetes_readmission_training";
pub const REGISTERED_MODEL: &str = "best_diabetes_readmission_model";
/// Where a run's bundle goes under its artifacts, so versions point at `runs:/<id>/model`.
const MODEL_PATH: &str = "model";
const TRAINED_FILE: &str = "trained.json";
const EXAMPLE_ROWS: usize = 5;

/// How the ETL role reaches the tracking role.
#[derive(Clone, Debug)]
pub struct TrackingTarget {
    /// Empty when no tracking role is configured.
    pub url: String,
    pub token: Option<String>,
    /// How to verify the tracking role's certificate and which one to present.
    pub tls: readmit_proto::ClientTls,
}

impl TrackingTarget {
    async fn connect(&self) -> Result<Client, String> {
        if self.url.is_empty() {
            return Err(
                "no tracking role to log to: run this agent with the tracking role or \
                        set --tracking-url"
                    .into(),
            );
        }
        Client::connect_with(&self.url, self.token.as_deref(), &self.tls)
            .await
            .map_err(|e| format!("tracking at {}: {e}", self.url))
    }
}

pub fn add_train_kinds(kinds: &mut TaskKinds, data: &DataService, tracking: &TrackingTarget) {
    kinds.add(Arc::new(TrainModels {
        data: data.clone(),
        tracking: tracking.clone(),
    }));
    kinds.add(Arc::new(SelectAndPromote {
        tracking: tracking.clone(),
    }));
}

/// One candidate's result, as `train_models` hands it to `select_and_promote`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Trained {
    name: String,
    run_id: String,
    val_roc_auc: f64,
    test_roc_auc: f64,
}

fn failed(what: &str) -> impl FnOnce(CallError) -> String + '_ {
    move |e| format!("tracking: {what}: {e}")
}

/// What earlier attempts of this run trained and logged; nothing before the first.
fn read_trained(dir: &Path) -> Result<Vec<Trained>, String> {
    let path = dir.join(TRAINED_FILE);
    if path.exists() {
        read_json(&path)
    } else {
        Ok(Vec::new())
    }
}

/// Candidates named by the comma-separated `models` parameter, or all of them.
fn chosen(ctx: &TaskContext) -> Result<Vec<Candidate>, String> {
    let all = candidates();
    let list = ctx.param_or("models", "");
    if list.is_empty() {
        return Ok(all);
    }
    list.split(',')
        .map(str::trim)
        .map(|name| {
            all.iter().find(|c| c.name == name).cloned().ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "parameter \"models\": no candidate {name:?}; there are {}",
                    names.join(", ")
                )
            })
        })
        .collect()
}

struct TrainModels {
    data: DataService,
    tracking: TrackingTarget,
}

impl TaskKind for TrainModels {
    fn name(&self) -> &'static str {
        "train_models"
    }

    fn run(&self, ctx: TaskContext) -> TaskFuture {
        let data = self.data.clone();
        let tracking = self.tracking.clone();
        Box::pin(async move { train_models(data, tracking, ctx).await })
    }
}

/// The metrics logged for each run: the original's four, then the rest of the report.
fn metric_values(val: &Report, test: &Report) -> Vec<(&'static str, f64)> {
    vec![
        ("val_accuracy", val.accuracy),
        ("val_roc_auc", val.roc_auc),
        ("test_accuracy", test.accuracy),
        ("test_roc_auc", test.roc_auc),
        ("val_pr_auc", val.pr_auc),
        ("test_pr_auc", test.pr_auc),
        ("val_log_loss", val.log_loss),
        ("test_log_loss", test.log_loss),
        ("val_brier", val.brier),
        ("test_brier", test.brier),
        ("val_f1", val.decision.f1),
        ("test_f1", test.decision.f1),
        ("test_precision", test.decision.precision),
        ("test_recall", test.decision.recall),
    ]
}

async fn train_models(
    data: DataService,
    tracking: TrackingTarget,
    ctx: TaskContext,
) -> Result<(), String> {
    let chosen = chosen(&ctx)?;
    let experiment = ctx.param_or("experiment", EXPERIMENT).to_owned();
    let client = tracking.connect().await?;
    let (splits, pipeline, version) = data.clean().read_all().await.map_err(|e| e.to_string())?;
    let [train, val, test] = splits;
    let test_raw = data
        .raw()
        .read_table(raw::TEST_DATA)
        .await
        .map_err(|e| e.to_string())?;
    let example =
        readmit_ml::data::records(&test_raw, 0..EXAMPLE_ROWS).map_err(|e| e.to_string())?;
    drop(test_raw);
    // What serving compares live records with (drift) and replaces fields by (explanations):
    // the training split the pipeline was fitted on, as RawData holds it.
    let train_raw = data
        .raw()
        .read_table(raw::TRAIN_DATA)
        .await
        .map_err(|e| e.to_string())?;
    let reference = {
        let sources = pipeline.input_sources();
        blocking(move || {
            Reference::fit(&train_raw, &sources).map_err(|e| EtlError::Ml(e.to_string()))
        })
        .await
        .map_err(|e| e.to_string())?
    };
    ctx.info(&format!(
        "CleanData version {}: {} train, {} validation, {} test rows, {} features",
        version.version,
        train.y.len(),
        val.y.len(),
        test.y.len(),
        pipeline.n_features()
    ))
    .await;

    let experiment_id = client
        .experiment_id_or_create(&experiment)
        .await
        .map_err(failed("finding or creating the experiment"))?;
    let mut trained = read_trained(&ctx.dir)?;
    let shared = Arc::new((train, val, test, pipeline, example, reference));
    for candidate in chosen {
        if let Some(done) = trained.iter().find(|t| t.name == candidate.name) {
            ctx.info(&format!(
                "{}: already logged as run {} by an earlier attempt",
                done.name, done.run_id
            ))
            .await;
            continue;
        }
        let dir = ctx.dir.join("models").join(&candidate.name);
        let started = std::time::Instant::now();
        let started_ms = crate::now_ms();
        let fitted = {
            let shared = Arc::clone(&shared);
            let candidate = candidate.clone();
            let dir = dir.clone();
            blocking(move || {
                let (train, val, test, pipeline, example, reference) = &*shared;
                let ml =
                    |e: &dyn std::fmt::Display| EtlError::Ml(format!("{}: {e}", candidate.name));
                let params = candidate.params.clone().check().map_err(|e| ml(&e))?;
                let model = fit(&params, &train.x, &train.y).map_err(|e| ml(&e))?;
                let p_val = model.predict_proba(&val.x).map_err(|e| ml(&e))?;
                let p_test = model.predict_proba(&test.x).map_err(|e| ml(&e))?;
                let threshold = best_f1_threshold(&p_val, &val.y)
                    .map_err(|e| ml(&e))?
                    .threshold;
                let val_report = report(&p_val, &val.y, threshold).map_err(|e| ml(&e))?;
                let test_report = report(&p_test, &test.y, threshold).map_err(|e| ml(&e))?;
                let metrics: BTreeMap<String, Report> = [
                    ("validation".to_owned(), val_report),
                    ("test".to_owned(), test_report),
                ]
                .into();
                let params: BTreeMap<String, String> = candidate
                    .params
                    .describe()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(EtlError::io(&dir))?;
                }
                Bundle {
                    name: &candidate.name,
                    model: &model,
                    pipeline,
                    threshold,
                    metrics: &metrics,
                    input_example: example,
                    params: &params,
                    reference,
                }
                .write(&dir)
                .map_err(|e| ml(&e))?;
                Ok((val_report, test_report, params))
            })
            .await
            .map_err(|e| e.to_string())?
        };
        let (val_report, test_report, params) = fitted;
        let fit_s = started.elapsed().as_secs_f64();
        let run_id = log_run(
            &client,
            &experiment_id,
            &candidate,
            &ctx,
            &params,
            &metric_values(&val_report, &test_report),
            &version.dataset_sha256,
            &dir,
            started_ms,
        )
        .await?;
        ctx.info(&format!(
            "{}: val ROC AUC {:.4}, test ROC AUC {:.4}, fitted and exported in {fit_s:.1} s; run {run_id}",
            candidate.name, val_report.roc_auc, test_report.roc_auc
        ))
        .await;
        trained.push(Trained {
            name: candidate.name.clone(),
            run_id,
            val_roc_auc: val_report.roc_auc,
            test_roc_auc: test_report.roc_auc,
        });
        write_json(&ctx.dir.join(TRAINED_FILE), &trained)?;
    }
    Ok(())
}

/// Logs one fitted candidate as a run that started when its fit did (`started_ms`), so the
/// run's duration is the fit, the export and the upload, as MLflow's own logging shows it.
#[allow(clippy::too_many_arguments)]
async fn log_run(
    client: &Client,
    experiment_id: &str,
    candidate: &Candidate,
    ctx: &TaskContext,
    params: &BTreeMap<String, String>,
    metrics: &[(&'static str, f64)],
    dataset_sha256: &str,
    bundle: &Path,
    started_ms: i64,
) -> Result<String, String> {
    let tags: HashMap<String, String> = [
        ("readmit.dag", ctx.dag.clone()),
        ("readmit.dag_run_id", ctx.run_id.clone()),
        ("readmit.family", candidate.params.family().to_owned()),
        ("mlflow.source.name", format!("readmit-agent/{}", ctx.dag)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let run_id = client
        .create_run(experiment_id, &candidate.name, started_ms, tags)
        .await
        .map_err(failed("creating a run"))?;
    let now = crate::now_ms();
    let mut all_params: Vec<(String, String)> =
        params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all_params.push(("dataset_sha256".into(), dataset_sha256.to_owned()));
    let points: Vec<MetricPoint> = metrics
        .iter()
        .map(|(key, value)| MetricPoint {
            key: (*key).to_owned(),
            value: *value,
            timestamp_ms: now,
            step: 0,
        })
        .collect();
    client
        .log_all(&run_id, &all_params, &points)
        .await
        .map_err(failed("logging params and metrics"))?;
    client
        .upload_dir(&run_id, bundle, MODEL_PATH)
        .await
        .map_err(failed("uploading the model bundle"))?;
    client
        .set_terminated(&run_id, RunEnd::Finished, crate::now_ms())
        .await
        .map_err(failed("finishing the run"))?;
    Ok(run_id)
}

struct SelectAndPromote {
    tracking: TrackingTarget,
}

impl TaskKind for SelectAndPromote {
    fn name(&self) -> &'static str {
        "select_and_promote"
    }

    fn run(&self, ctx: TaskContext) -> TaskFuture {
        let tracking = self.tracking.clone();
        Box::pin(async move { select_and_promote(tracking, ctx).await })
    }
}

async fn select_and_promote(tracking: TrackingTarget, ctx: TaskContext) -> Result<(), String> {
    let name = ctx
        .param_or("registered_model", REGISTERED_MODEL)
        .to_owned();
    let trained = read_trained(&ctx.dir)?;
    let best = trained
        .iter()
        .max_by(|a, b| a.val_roc_auc.total_cmp(&b.val_roc_auc))
        .ok_or("no trained models in this run: train_models logged none")?;
    ctx.info(&format!(
        "best by validation ROC AUC: {} ({:.4}; test {:.4}) of {} candidates",
        best.name,
        best.val_roc_auc,
        best.test_roc_auc,
        trained.len()
    ))
    .await;
    let client = tracking.connect().await?;
    client
        .ensure_registered_model(
            &name,
            "The readmission model in production, promoted by train_and_register",
        )
        .await
        .map_err(failed("creating the registered model"))?;
    let existing = client
        .model_versions(&name)
        .await
        .map_err(failed("listing versions"))?
        .into_iter()
        .find(|v| v.run_id == best.run_id);
    let version = match existing {
        Some(v) => v,
        None => client
            .register_version(
                &name,
                NewVersion {
                    source: format!("runs:/{}/{MODEL_PATH}", best.run_id),
                    run_id: best.run_id.clone(),
                    description: format!("{} from DAG run {}", best.name, ctx.run_id),
                    tags: [("readmit.candidate".to_owned(), best.name.clone())].into(),
                },
            )
            .await
            .map_err(failed("registering the version"))?,
    };
    client
        .transition(&name, version.version, "Production", true)
        .await
        .map_err(failed("moving the version to Production"))?;
    ctx.info(&format!(
        "{name} version {} ({}) is in Production; the previous one is archived",
        version.version, best.name
    ))
    .await;
    Ok(())
}
