//! The requests the TUI's state asks for, each run on its own task against an agent with the
//! request's role, its answer sent back as an action.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use readmit_proto::{Client, v1};

use super::action::{Action, Request};
use super::backend::Backend;

impl Backend {
    /// Runs a request on its own task; its answer comes back as an action.
    pub fn dispatch(&self, request: Request) {
        let me = self.clone();
        tokio::spawn(async move { me.run(request).await });
    }

    async fn run(&self, request: Request) {
        match request {
            Request::Scrape => return self.scrape_all().await,
            Request::Served => return self.served_all().await,
            _ => {}
        }
        let client = match self.route(request.role()) {
            Ok(c) => c,
            Err(reason) => return self.send(failure(&request, reason)),
        };
        let url = client.url().to_owned();
        let err = |s: tonic::Status| crate::output::status_error(&url, &s);
        let failed = |e: readmit_proto::CallError| crate::output::call_error(&url, &e);
        let action = match request {
            Request::Scrape | Request::Served => return,
            Request::DataStatus => Action::DataStatus(client.data_status().await.map_err(failed)),
            Request::AppendBatch => done(
                "append a batch",
                client
                    .append_batch(0, &uuid::Uuid::new_v4().to_string())
                    .await
                    .map(|r| {
                        if r.exhausted {
                            "the pool is exhausted: nothing appended".to_owned()
                        } else {
                            format!(
                                "batch {} appended: {} rows, {} train rows, {} left in the pool",
                                r.batch_number, r.appended, r.train_rows, r.pool_remaining
                            )
                        }
                    })
                    .map_err(failed),
            ),
            Request::Ingest { path } => done(
                &format!("ingest {path}"),
                client
                    .ingest(&path, readmit_proto::SplitKind::Original, false)
                    .await
                    .map(|r| {
                        if r.changed {
                            format!("{path} ingested in {:.1} s", r.duration_s)
                        } else {
                            format!("{path} was already ingested: nothing changed")
                        }
                    })
                    .map_err(failed),
            ),
            Request::ListDags => Action::Dags(client.list_dags().await.map_err(failed)),
            Request::DagRuns { dag } => Action::DagRuns {
                runs: client
                    .dag_runs(Some(dag.as_str()).filter(|d| !d.is_empty()), 50)
                    .await
                    .map_err(failed),
                dag,
            },
            Request::Trigger { dag, params } => {
                let reply = client.trigger_dag(&dag, &params).await.map_err(failed);
                if let Ok(run) = &reply {
                    self.send(Action::DagRun(Ok(run.clone())));
                }
                done(
                    &format!("trigger {dag}"),
                    reply.map(|r| format!("{dag} triggered: run {}", r.run_id)),
                )
            }
            Request::Pause { dag, paused } => {
                let reply = client.set_dag_paused(&dag, paused).await.map_err(failed);
                if reply.is_ok() {
                    self.dispatch(Request::ListDags);
                }
                done(
                    &format!("pause {dag}"),
                    reply.map(|_| format!("{dag} {}", if paused { "paused" } else { "resumed" })),
                )
            }
            Request::Cancel { run_id } => {
                let reply = client.cancel_dag_run(&run_id).await.map_err(failed);
                if let Ok(run) = &reply {
                    self.send(Action::DagRun(Ok(run.clone())));
                }
                done(
                    &format!("cancel {run_id}"),
                    reply.map(|_| format!("run {run_id} cancelled")),
                )
            }
            Request::RunLogs { run_id } => Action::RunLogs {
                lines: client.run_logs(&run_id, None, 0).await.map_err(failed),
                run_id,
            },
            Request::Experiments => Action::Experiments(
                client
                    .tracking()
                    .list_experiments(v1::ListExperimentsRequest {
                        view: v1::ViewType::ActiveOnly as i32,
                    })
                    .await
                    .map(|r| r.into_inner().experiments)
                    .map_err(err),
            ),
            Request::SearchRuns {
                experiment_id,
                filter,
            } => Action::Runs {
                runs: search_runs(&client, &experiment_id, &filter)
                    .await
                    .map_err(err),
                experiment_id,
                filter,
            },
            Request::Compare { run_ids } => Action::Compare(
                client
                    .tracking()
                    .compare_runs(v1::CompareRunsRequest { run_ids })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err),
            ),
            Request::History { run_id, key } => Action::History {
                points: client
                    .tracking()
                    .get_metric_history(v1::GetMetricHistoryRequest {
                        run_id: run_id.clone(),
                        metric_key: key.clone(),
                    })
                    .await
                    .map(|r| r.into_inner().metrics)
                    .map_err(err),
                run_id,
                key,
            },
            Request::Models => Action::Models(
                client
                    .tracking()
                    .list_registered_models(v1::ListRegisteredModelsRequest {})
                    .await
                    .map(|r| r.into_inner().models)
                    .map_err(err),
            ),
            Request::Versions { name } => Action::Versions {
                versions: client
                    .tracking()
                    .list_model_versions(v1::ListModelVersionsRequest { name: name.clone() })
                    .await
                    .map(|r| r.into_inner().versions)
                    .map_err(err),
                name,
            },
            Request::Transition {
                name,
                version,
                stage,
            } => {
                let reply = client
                    .tracking()
                    .transition_model_version_stage(v1::TransitionStageRequest {
                        name: name.clone(),
                        version,
                        stage: stage as i32,
                        archive_existing: stage == v1::Stage::Production,
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err);
                if reply.is_ok() {
                    self.dispatch(Request::Versions { name: name.clone() });
                }
                done(
                    &format!("move {name} v{version}"),
                    reply.map(|r| {
                        let mut text = format!(
                            "{name} v{version} → {}",
                            readmit_proto::stage_name(stage as i32)
                        );
                        for a in r.archived {
                            text.push_str(&format!(", v{} → Archived", a.version));
                        }
                        text
                    }),
                )
            }
            Request::Signature => Action::Signature(
                client
                    .inference()
                    .get_signature(v1::GetSignatureRequest {})
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err),
            ),
            Request::Example => Action::Example(
                client
                    .etl()
                    .get_test_records(v1::GetTestRecordsRequest {
                        offset: 0,
                        limit: EXAMPLES,
                    })
                    .await
                    .map(|r| r.into_inner().records.iter().map(record_text).collect())
                    .map_err(err),
            ),
            Request::Predict { fields } => Action::Prediction(
                client
                    .inference()
                    .predict(v1::PredictRequest {
                        records: vec![v1::Record {
                            fields: fields.into_iter().collect(),
                        }],
                        explain: 5,
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err),
            ),
            Request::LoadTests => Action::LoadTests(
                client
                    .load_test()
                    .list_load_tests(v1::ListLoadTestsRequest { max: 50 })
                    .await
                    .map(|r| r.into_inner().tests)
                    .map_err(err),
            ),
            Request::StartLoadTest(mut spec) => {
                if let Some(target) = spec.target.as_mut().filter(|t| t.url.is_empty()) {
                    target.url = if target.kind == v1::TargetKind::GrpcPredict as i32 {
                        client.url().to_owned()
                    } else {
                        self.http_of(&client)
                    };
                }
                let started = client.load_test().start_load_test(*spec).await;
                match started {
                    Err(s) => Action::LoadTestStarted(Err(err(s))),
                    Ok(summary) => {
                        let summary = summary.into_inner();
                        let id = summary.test_id.clone();
                        self.send(Action::LoadTestStarted(Ok(summary)));
                        self.follow_load_test(&client, &id).await
                    }
                }
            }
            Request::StopLoadTest { id } => done(
                &format!("stop {id}"),
                client
                    .load_test()
                    .stop_load_test(v1::LoadTestRef {
                        test_id: id.clone(),
                    })
                    .await
                    .map(|_| format!("load test {id} stopped"))
                    .map_err(err),
            ),
        };
        self.send(action);
    }

    /// Samples of a running test until it ends, then its summary.
    async fn follow_load_test(&self, client: &Client, id: &str) -> Action {
        let url = client.url().to_owned();
        let test = v1::LoadTestRef {
            test_id: id.to_owned(),
        };
        if let Ok(stream) = client.load_test().watch_load_test(test.clone()).await {
            let mut stream = stream.into_inner();
            while let Some(Ok(sample)) = stream.next().await {
                self.send(Action::LoadSample(sample));
            }
        }
        // The summary settles (thresholds, the kept run) a moment after the last sample.
        let mut last = None;
        for _ in 0..20 {
            match client.load_test().get_load_test(test.clone()).await {
                Ok(s) => {
                    let s = s.into_inner();
                    let running = s.state == v1::LoadTestState::Running as i32;
                    last = Some(Ok(s));
                    if !running {
                        break;
                    }
                }
                Err(s) => last = Some(Err(crate::output::status_error(&url, &s))),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Action::LoadTestEnded(last.unwrap_or_else(|| Err("no summary".into())))
    }
}

/// Runs of an experiment, page after page, up to 10,000.
async fn search_runs(
    client: &Client,
    experiment_id: &str,
    filter: &str,
) -> Result<Vec<v1::Run>, tonic::Status> {
    let mut runs = Vec::new();
    let mut token = String::new();
    loop {
        let reply = client
            .tracking()
            .search_runs(v1::SearchRunsRequest {
                experiment_ids: vec![experiment_id.to_owned()],
                filter: filter.to_owned(),
                order_by: vec!["attributes.start_time DESC".into()],
                max_results: 1000,
                page_token: token,
                view: v1::ViewType::ActiveOnly as i32,
            })
            .await?
            .into_inner();
        runs.extend(reply.runs);
        if reply.next_page_token.is_empty() || runs.len() >= 10_000 {
            return Ok(runs);
        }
        token = reply.next_page_token;
    }
}

/// Test records the Predict screen cycles through.
const EXAMPLES: u32 = 100;

/// A record's fields as the form's text: numbers without a needless `.0`, missing as `?`.
fn record_text(record: &v1::Record) -> BTreeMap<String, String> {
    record
        .fields
        .iter()
        .map(|(k, v)| {
            let text = match &v.kind {
                Some(v1::field_value::Kind::Text(t)) => t.clone(),
                Some(v1::field_value::Kind::Number(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
                    format!("{}", *n as i64)
                }
                Some(v1::field_value::Kind::Number(n)) => n.to_string(),
                None => "?".to_owned(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn done(what: &str, outcome: Result<String, String>) -> Action {
    Action::Done {
        what: what.to_owned(),
        outcome,
    }
}

/// The answer to a request no agent could take.
fn failure(request: &Request, reason: String) -> Action {
    match request.clone() {
        Request::DataStatus => Action::DataStatus(Err(reason)),
        Request::ListDags => Action::Dags(Err(reason)),
        Request::DagRuns { dag } => Action::DagRuns {
            dag,
            runs: Err(reason),
        },
        Request::RunLogs { run_id } => Action::RunLogs {
            run_id,
            lines: Err(reason),
        },
        Request::Experiments => Action::Experiments(Err(reason)),
        Request::SearchRuns {
            experiment_id,
            filter,
        } => Action::Runs {
            experiment_id,
            filter,
            runs: Err(reason),
        },
        Request::Compare { .. } => Action::Compare(Err(reason)),
        Request::History { run_id, key } => Action::History {
            run_id,
            key,
            points: Err(reason),
        },
        Request::Models => Action::Models(Err(reason)),
        Request::Versions { name } => Action::Versions {
            name,
            versions: Err(reason),
        },
        Request::Signature => Action::Signature(Err(reason)),
        Request::Example => Action::Example(Err(reason)),
        Request::Predict { .. } => Action::Prediction(Err(reason)),
        Request::LoadTests => Action::LoadTests(Err(reason)),
        Request::StartLoadTest(_) => Action::LoadTestStarted(Err(reason)),
        other => done(&format!("{other:?}"), Err(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_records_read_as_form_text() {
        let number = |n| v1::FieldValue {
            kind: Some(v1::field_value::Kind::Number(n)),
        };
        let record = v1::Record {
            fields: [
                ("num_lab_procedures".to_owned(), number(41.0)),
                ("weight".to_owned(), number(72.5)),
                ("x".to_owned(), v1::FieldValue { kind: None }),
            ]
            .into(),
        };
        let text = record_text(&record);
        assert_eq!(text["num_lab_procedures"], "41");
        assert_eq!(text["weight"], "72.5");
        assert_eq!(text["x"], "?");
    }
}
