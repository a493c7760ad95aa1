//! Realistic states, built by feeding the app the actions real agents would send: for the
//! snapshot tests and the frame benchmark.

use std::collections::{BTreeMap, HashMap};

use readmit_proto::{
    DagInfo, DagList, DagRunInfo, DataState, LogEntry, RunState, ServedInfo, SplitKind, TableFacts,
    TaskDecl, TaskRun, v1,
};

use crate::tui::action::Action;
use crate::tui::app::{App, update};
use crate::tui::keymap::Keymap;
use crate::tui::prom;

/// 2026-12-07 12:00:00 UTC: every fixture's "now".
pub const NOW: i64 = 1_796_644_800_000;

pub fn info(host: &str, roles: &[&str], port: u16) -> v1::AgentInfo {
    v1::AgentInfo {
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        version: "0.1.0".into(),
        host: host.into(),
        started_at_ms: NOW - 3_600_000,
        uptime_s: 3600.0,
        grpc_addr: format!("127.0.0.1:{port}"),
        http_addr: format!("127.0.0.1:{}", port + 1000),
        os: "linux".into(),
        cpus: 2,
        auth_required: false,
        pid: 100,
    }
}

pub fn status(i: u64) -> v1::AgentStatus {
    v1::AgentStatus {
        timestamp_ms: NOW - 60_000 + i as i64 * 1000,
        uptime_s: 3600.0,
        cpu_percent: (20 + (i * 7) % 50) as f32,
        memory_used_bytes: (8 + i % 4) << 30,
        memory_total_bytes: 24 << 30,
        process_cpu_percent: 12.0,
        process_rss_bytes: 180 << 20,
        ready: true,
        gauges: Vec::new(),
    }
}

fn metrics_text(requests: u64) -> String {
    format!(
        "# HELP inference_requests_total Prediction requests.\n# TYPE inference_requests_total counter\n\
inference_requests_total{{endpoint=\"predict\",outcome=\"ok\"}} {requests}\n\
# HELP inference_request_latency_seconds Time to answer.\n# TYPE inference_request_latency_seconds histogram\n\
inference_request_latency_seconds_bucket{{endpoint=\"predict\",le=\"0.0005\"}} {}\n\
inference_request_latency_seconds_bucket{{endpoint=\"predict\",le=\"0.001\"}} {}\n\
inference_request_latency_seconds_bucket{{endpoint=\"predict\",le=\"0.005\"}} {}\n\
inference_request_latency_seconds_bucket{{endpoint=\"predict\",le=\"+Inf\"}} {requests}\n\
inference_request_latency_seconds_sum{{endpoint=\"predict\"}} 1\n\
inference_request_latency_seconds_count{{endpoint=\"predict\"}} {requests}\n\
# HELP readmit_host_cpu_percent Host-wide CPU use, 0 to 100.\n# TYPE readmit_host_cpu_percent gauge\nreadmit_host_cpu_percent 31\n",
        requests / 4,
        requests * 3 / 4,
        requests * 99 / 100,
    )
}

pub fn served(version: i64) -> ServedInfo {
    ServedInfo {
        loaded: true,
        name: "best_diabetes_readmission_model".into(),
        version,
        stage: "Production".into(),
        run_id: "4f1c2a9b0d3e4c5f8a7b6c5d4e3f2a1b".into(),
        source: "runs:/4f1c2a9b0d3e4c5f8a7b6c5d4e3f2a1b/model".into(),
        loaded_at_ms: NOW - 300_000,
        threshold: 0.113,
        metrics: BTreeMap::from([("val_roc_auc".to_owned(), 0.6871)]),
        following: "models:/best_diabetes_readmission_model/Production".into(),
        last_error: String::new(),
    }
}

/// Three agents, one role each, all up, with status history, metrics and a served model.
pub fn three_agents() -> App {
    let urls = [
        "http://etl:50051".to_owned(),
        "http://tracking:50051".to_owned(),
        "http://inference:50051".to_owned(),
    ];
    let mut app = App::new(&urls, Keymap::default(), NOW);
    app.size = (120, 36);
    for (slot, (host, role)) in [
        ("etl-1", "etl"),
        ("tracking-1", "tracking"),
        ("inference-1", "inference"),
    ]
    .iter()
    .enumerate()
    {
        update(
            &mut app,
            Action::AgentUp {
                slot,
                info: info(host, &[*role], 50051 + slot as u16),
            },
        );
        for i in 0..60 {
            update(
                &mut app,
                Action::AgentStatus {
                    slot,
                    status: status(i + slot as u64),
                },
            );
        }
    }
    for (i, requests) in [1000u64, 3000, 5400].iter().enumerate() {
        update(
            &mut app,
            Action::Metrics {
                slot: 2,
                at_ms: NOW - 4000 + i as i64 * 2000,
                scrape: Ok(prom::parse(&metrics_text(*requests))),
            },
        );
    }
    update(
        &mut app,
        Action::Served {
            slot: 2,
            served: Ok(served(7)),
        },
    );
    app.event(
        NOW - 42_000,
        "DAG train_and_register run 9a8b7c6d succeeded".into(),
        true,
    );
    app.event(
        NOW - 40_000,
        "best_diabetes_readmission_model v7 → Production (was None)".into(),
        true,
    );
    app.event(
        NOW - 12_000,
        "load test 5e6f7a8b ended: 4812 requests, 481 req/s, thresholds held".into(),
        true,
    );
    let _ = app.take_requests();
    app
}

pub fn data_status() -> DataState {
    let t = |db: &str, table: &str, rows: i64| TableFacts {
        database: db.into(),
        table: table.into(),
        rows,
        fingerprint: None,
        readmitted: None,
    };
    let raw = |table: &str, rows: i64, fingerprint: &str, readmitted: i64| TableFacts {
        fingerprint: Some(fingerprint.into()),
        readmitted: Some(readmitted),
        ..t("raw", table, rows)
    };
    DataState {
        dataset_sha256: Some(
            "f4c3a0bd8a0f3e8c3b3c9a1e5b6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d".into(),
        ),
        split: Some(SplitKind::Original),
        ingested_at_ms: NOW - 1_800_000,
        tables: vec![
            raw(
                "train_pool",
                61_059,
                "4bd9ef583b83b5e68f8c227ff67b265595b3409c59d55474f75d9927ec551925",
                6_838,
            ),
            raw(
                "train_data",
                45_000,
                "0c1d4e2f7a9b3c5d6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abc",
                5_031,
            ),
            raw(
                "validation_data",
                20_353,
                "6e34a091daf9083a779eefea9a017da32a0d47e9c91373f4df58cdaaa5594ada",
                2_274,
            ),
            raw(
                "test_data",
                20_354,
                "ea39aae1b0d90f8f3323150633e557cc9079184770b5676409231e1001fd75fd",
                2_245,
            ),
            t("clean", "diabetes_train_processed", 45_000),
            t("clean", "diabetes_validation_processed", 20_353),
            t("clean", "diabetes_test_processed", 20_354),
        ],
        pool_rows: 61_059,
        train_rows: 45_000,
        pool_remaining: 16_059,
        batches_appended: 3,
        batch_size: 15_000,
    }
}

pub fn dags() -> DagList {
    let task = |id: &str, kind: &str, deps: &[&str]| TaskDecl {
        id: id.into(),
        kind: kind.into(),
        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
    };
    let dag = |name: &str, schedule: &str, paused: bool, tasks: Vec<TaskDecl>| DagInfo {
        name: name.into(),
        description: String::new(),
        schedule: schedule.into(),
        paused,
        params: BTreeMap::new(),
        tasks,
        source: String::new(),
        next_run_at_ms: 0,
    };
    DagList {
        dags: vec![
            dag(
                "append_batch",
                "",
                false,
                vec![task("append", "append_batch", &[])],
            ),
            dag(
                "ingest_raw",
                "",
                false,
                vec![task("ingest", "ingest_raw", &[])],
            ),
            dag(
                "nightly_export",
                "0 2 * * *",
                true,
                vec![task("extract", "shell", &[])],
            ),
            dag(
                "preprocess_incremental",
                "",
                false,
                vec![
                    task("load_splits", "load_splits", &[]),
                    task("clean_splits", "clean_splits", &["load_splits"]),
                    task("select_features", "select_features", &["clean_splits"]),
                    task("save_processed", "save_processed", &["select_features"]),
                ],
            ),
            dag(
                "train_and_register",
                "",
                false,
                vec![task("train_models", "train_models", &[])],
            ),
        ],
        errors: Vec::new(),
    }
}

pub fn preprocess_run() -> DagRunInfo {
    let start = NOW - 20_000;
    let ti = |id: &str, state: RunState, s: i64, e: i64| TaskRun {
        task_id: id.into(),
        kind: id.into(),
        state,
        attempt: 1,
        max_attempts: 1,
        started_at_ms: if s > 0 { start + s } else { 0 },
        ended_at_ms: if e > 0 { start + e } else { 0 },
        duration_s: (e - s) as f64 / 1000.0,
        error: String::new(),
    };
    DagRunInfo {
        run_id: "7d2e9c41b6a84f0e9d3c2b1a0f9e8d7c".into(),
        dag: "preprocess_incremental".into(),
        state: RunState::Running,
        trigger: "manual".into(),
        params: BTreeMap::new(),
        queued_at_ms: start - 500,
        started_at_ms: start,
        ended_at_ms: 0,
        duration_s: 0.0,
        tasks: vec![
            ti("load_splits", RunState::Succeeded, 1, 4_000),
            ti("clean_splits", RunState::Succeeded, 4_100, 9_000),
            ti("select_features", RunState::Running, 9_100, 0),
            ti("save_processed", RunState::Pending, 0, 0),
        ],
        error: String::new(),
    }
}

pub fn log_lines(n: usize) -> Vec<LogEntry> {
    (0..n)
        .map(|i| LogEntry {
            seq: i as i64 + 1,
            timestamp_ms: NOW - 20_000 + i as i64 * 10,
            task_id: ["load_splits", "clean_splits", "select_features"][(i * 3 / n.max(1)).min(2)]
                .into(),
            attempt: 1,
            level: if i % 97 == 5 {
                "warn".into()
            } else {
                "info".into()
            },
            message: format!("step {i}: {} rows processed", 1000 + i * 13),
        })
        .collect()
}

pub fn experiment() -> v1::Experiment {
    v1::Experiment {
        experiment_id: "1".into(),
        name: "diabetes_readmission_training".into(),
        lifecycle_stage: v1::LifecycleStage::Active as i32,
        ..v1::Experiment::default()
    }
}

pub fn runs(n: usize) -> Vec<v1::Run> {
    let names = [
        "LR_C_0.01",
        "LR_C_0.1",
        "LR_C_1",
        "RF_100",
        "RF_200",
        "RF_depth10",
        "GBM_300_d5",
    ];
    (0..n)
        .map(|i| {
            let name = names[i % names.len()];
            let auc = 0.64 + (i % names.len()) as f64 * 0.007 + (i / names.len()) as f64 * 0.00001;
            let metric = |k: &str, v: f64| v1::Metric {
                key: k.into(),
                value: v,
                timestamp_ms: NOW,
                step: 0,
            };
            v1::Run {
                info: Some(v1::RunInfo {
                    run_id: format!("{i:08x}c0ffee{i:018x}"),
                    run_name: if n > names.len() {
                        format!("{name}-{i}")
                    } else {
                        name.to_owned()
                    },
                    experiment_id: "1".into(),
                    status: v1::RunStatus::Finished as i32,
                    start_time_ms: NOW - 600_000 + i as i64 * 1000,
                    end_time_ms: NOW - 590_000 + i as i64 * 1000,
                    ..v1::RunInfo::default()
                }),
                data: Some(v1::RunData {
                    metrics: vec![
                        metric("val_roc_auc", auc),
                        metric("test_roc_auc", auc - 0.003),
                        metric("accuracy", 0.88 + (i % 3) as f64 * 0.001),
                        metric("log_loss", 0.33 - auc * 0.05),
                    ],
                    params: vec![v1::Param {
                        key: "model".into(),
                        value: name.into(),
                    }],
                    tags: HashMap::from([("mlflow.runName".to_owned(), name.to_owned())]),
                }),
            }
        })
        .collect()
}

pub fn versions(n: i64) -> Vec<v1::ModelVersion> {
    (1..=n)
        .map(|v| v1::ModelVersion {
            name: "best_diabetes_readmission_model".into(),
            version: v,
            creation_time_ms: NOW - (n - v + 1) * 3_600_000,
            stage: if v == n - 2 {
                v1::Stage::Production as i32
            } else if v < n - 2 {
                v1::Stage::Archived as i32
            } else {
                v1::Stage::None as i32
            },
            run_id: format!("{v:032x}"),
            status: "READY".into(),
            aliases: if v == n {
                vec!["challenger".into()]
            } else {
                Vec::new()
            },
            ..v1::ModelVersion::default()
        })
        .collect()
}

pub fn registered(production: i64) -> v1::RegisteredModel {
    v1::RegisteredModel {
        name: "best_diabetes_readmission_model".into(),
        latest_versions: vec![v1::ModelVersion {
            name: "best_diabetes_readmission_model".into(),
            version: production,
            stage: v1::Stage::Production as i32,
            ..v1::ModelVersion::default()
        }],
        ..v1::RegisteredModel::default()
    }
}

pub fn signature() -> v1::ModelSignature {
    let cat = |name: &str, values: &[&str]| v1::InputField {
        name: name.into(),
        r#type: v1::FieldType::Categorical as i32,
        allowed_values: values.iter().map(|v| (*v).to_owned()).collect(),
        required: false,
        description: String::new(),
    };
    let int = |name: &str| v1::InputField {
        name: name.into(),
        r#type: v1::FieldType::Integer as i32,
        allowed_values: Vec::new(),
        required: false,
        description: String::new(),
    };
    v1::ModelSignature {
        inputs: vec![
            cat(
                "race",
                &["Caucasian", "AfricanAmerican", "Hispanic", "Asian", "Other"],
            ),
            cat("gender", &["Female", "Male"]),
            cat(
                "age",
                &["[0-10)", "[40-50)", "[50-60)", "[60-70)", "[70-80)"],
            ),
            int("time_in_hospital"),
            int("num_lab_procedures"),
            int("num_medications"),
            int("number_inpatient"),
            cat("insulin", &["No", "Steady", "Up", "Down"]),
            cat("A1Cresult", &["None", "Norm", ">7", ">8"]),
        ],
    }
}

pub fn prediction() -> v1::PredictReply {
    let c = |f: &str, v: &str, r: &str, e: f64| v1::Contribution {
        field: f.into(),
        value: v.into(),
        reference: r.into(),
        effect: e,
    };
    v1::PredictReply {
        predictions: vec![v1::Prediction {
            probability: 0.214,
            readmitted: true,
            contributions: vec![
                c("number_inpatient", "3", "0", 0.081),
                c("num_medications", "23", "15", 0.019),
                c("insulin", "Up", "No", 0.012),
                c("age", "[70-80)", "[60-70)", 0.006),
                c("A1Cresult", ">8", "None", -0.004),
            ],
        }],
        model_name: "best_diabetes_readmission_model".into(),
        model_version: 7,
        threshold: 0.113,
    }
}

pub fn load_samples(n: usize) -> Vec<v1::LoadTestSample> {
    (0..n)
        .map(|i| {
            let rps = 450.0 + (i % 5) as f64 * 12.0;
            v1::LoadTestSample {
                test_id: "5e6f7a8b9c0d".into(),
                state: v1::LoadTestState::Running as i32,
                elapsed_s: i as f64 + 1.0,
                users: 10,
                target_rate: 0.0,
                step: 0,
                interval: Some(v1::Figures {
                    requests: rps as u64,
                    failures: u64::from(i == 4),
                    rps,
                    latency: Some(v1::Latency {
                        p50_ms: 1.8 + (i % 3) as f64 * 0.1,
                        p95_ms: 4.2 + (i % 4) as f64 * 0.3,
                        p99_ms: 7.5 + (i % 5) as f64 * 0.6,
                        ..v1::Latency::default()
                    }),
                    ..v1::Figures::default()
                }),
                total_requests: (rps as u64) * (i as u64 + 1),
                total_failures: u64::from(i >= 4),
                total_latency: None,
            }
        })
        .collect()
}

pub fn load_summary(passed: bool) -> v1::LoadTestSummary {
    v1::LoadTestSummary {
        test_id: "5e6f7a8b9c0d".into(),
        spec: Some(v1::LoadTestSpec {
            thresholds: vec!["p95<100ms".into(), "errors<1%".into()],
            ..v1::LoadTestSpec::default()
        }),
        state: v1::LoadTestState::Finished as i32,
        started_at_ms: NOW - 15_000,
        ended_at_ms: NOW - 5_000,
        total: Some(v1::Figures {
            requests: 4812,
            failures: 1,
            seconds: 10.0,
            rps: 481.2,
            latency: Some(v1::Latency {
                p50_ms: 1.9,
                p95_ms: 4.5,
                p99_ms: 8.1,
                max_ms: 21.0,
                ..v1::Latency::default()
            }),
            ..v1::Figures::default()
        }),
        thresholds: vec![
            v1::ThresholdResult {
                threshold: "p95<100ms".into(),
                passed: true,
                observed: 4.5,
            },
            v1::ThresholdResult {
                threshold: "errors<1%".into(),
                passed,
                observed: 0.02,
            },
        ],
        passed,
        run_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
        payload: "test_split".into(),
        ..v1::LoadTestSummary::default()
    }
}
