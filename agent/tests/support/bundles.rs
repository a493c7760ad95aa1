//! Real model bundles for serving tests, made in-process: synthetic records, a fitted
//! pipeline, a quickly trained model, written as the training DAG writes them, then logged to
//! a tracking agent and registered like `select_and_promote` does.

use std::collections::BTreeMap;
use std::path::Path;

use readmit_ml::bundle::{Bundle, LoadedBundle};
use readmit_ml::metrics::{best_f1_threshold, report};
use readmit_ml::pipeline::{Pipeline, PipelineParams};
use readmit_ml::record::RawRecord;
use readmit_ml::reference::Reference;
use readmit_ml::training::{BoostingParams, LogisticParams, Params, fit};
use readmit_proto::{Client, VersionInfo, v1};

pub const MODEL: &str = "best_diabetes_readmission_model";

/// `n` synthetic encounters with every column, and their labels.
pub fn records(n: usize, seed: u64) -> Vec<RawRecord> {
    let mut generator = readmit_ml::synth::Generator::new(seed, n);
    (0..n)
        .map(|i| {
            let fields = generator.next_fields();
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            RawRecord::from_csv_fields(&fields)
                .unwrap()
                .with_prior_encounters(u32::try_from(i % 4).unwrap())
        })
        .collect()
}

/// The kinds of model a test can ask for: both train in well under a second.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Logistic(f64),
    Boosting(usize),
}

/// Trains a model on synthetic records and writes its bundle into `dir`.
pub fn write(dir: &Path, kind: Kind) {
    let all = records(1_600, 5);
    let (train, holdout) = all.split_at(1_200);
    let labels =
        |rs: &[RawRecord]| -> Vec<bool> { rs.iter().map(|r| r.label().unwrap()).collect() };
    let y = labels(train);
    let pipeline = Pipeline::fit(
        train,
        &y,
        &PipelineParams {
            k: Some(30),
            min_level_rows: 5,
            ..PipelineParams::default()
        },
    )
    .unwrap();
    let x = pipeline.transform(train).unwrap();
    let (name, params) = match kind {
        Kind::Logistic(c) => (
            format!("LR_C_{c}"),
            Params::Logistic(LogisticParams::with_c(c)),
        ),
        Kind::Boosting(n) => (
            format!("GBM_{n}_d3"),
            Params::Boosting(BoostingParams {
                iterations: n,
                max_depth: 3,
                ..BoostingParams::default()
            }),
        ),
    };
    let described: BTreeMap<String, String> = params
        .describe()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let model = fit(&params.check().unwrap(), &x, &y).unwrap();
    let y_holdout = labels(holdout);
    let p = model
        .predict_proba(&pipeline.transform(holdout).unwrap())
        .unwrap();
    let threshold = best_f1_threshold(&p, &y_holdout).unwrap().threshold;
    let metrics = BTreeMap::from([(
        "validation".to_owned(),
        report(&p, &y_holdout, threshold).unwrap(),
    )]);
    let reference = Reference::fit(train, &pipeline.input_sources()).unwrap();
    Bundle {
        name: &name,
        model: &model,
        pipeline: &pipeline,
        threshold,
        metrics: &metrics,
        input_example: &holdout[..5],
        params: &described,
        reference: &reference,
    }
    .write(dir)
    .unwrap();
    LoadedBundle::load(dir).unwrap();
}

/// Logs the bundle in `dir` as a run's `model` artifacts and registers it as a new version.
pub async fn publish(client: &Client, dir: &Path) -> VersionInfo {
    let mut tracking = client.tracking();
    let experiment = match tracking
        .create_experiment(v1::CreateExperimentRequest {
            name: "serving_tests".into(),
            ..Default::default()
        })
        .await
    {
        Ok(e) => e.into_inner().experiment_id,
        Err(_) => {
            tracking
                .get_experiment(v1::GetExperimentRequest {
                    key: Some(v1::get_experiment_request::Key::Name(
                        "serving_tests".into(),
                    )),
                })
                .await
                .unwrap()
                .into_inner()
                .experiment_id
        }
    };
    let run = tracking
        .create_run(v1::CreateRunRequest {
            experiment_id: experiment,
            run_name: "bundle".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let run_id = run.info.unwrap().run_id;
    client.upload_dir(&run_id, dir, "model").await.unwrap();
    client
        .register_version(
            MODEL,
            readmit_proto::NewVersion {
                source: format!("runs:/{run_id}/model"),
                run_id: run_id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// Moves a version to Production, archiving the one there.
pub async fn promote(client: &Client, version: i64) {
    client
        .transition(MODEL, version, "Production", true)
        .await
        .unwrap();
}

/// Waits until the agent serves `version`, failing the test after `seconds`.
pub async fn wait_served(client: &Client, version: i64, seconds: u64) -> v1::ServedModel {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let served = client
            .inference()
            .get_served_model(v1::GetServedModelRequest {})
            .await
            .map(tonic::Response::into_inner);
        if let Ok(s) = &served
            && s.loaded
            && s.version == version
        {
            return served.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "version {version} was not served within {seconds} s: {served:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A record as JSON, the way a client of `/predict` sends it.
pub fn json(record: &RawRecord) -> serde_json::Value {
    serde_json::to_value(record).unwrap()
}
