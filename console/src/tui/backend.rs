//! The TUI's network side. The console's [`Fleet`] knows the agents (connects, learns their
//! roles, reconnects downed ones with backoff); this module follows its changes and each up
//! agent's status stream, keeps the etl role's run events and the tracking role's registry
//! changes flowing, and runs one task per request, routed to an up agent with the request's
//! role. Everything it learns goes back to the state as an `Action`; nothing here touches the
//! state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use readmit_proto::{Client, v1};
use tokio::sync::mpsc::UnboundedSender;

use super::action::{Action, Request};
use super::prom;
use crate::fleet::{AgentState, Fleet, Role};

/// The handle the run loop dispatches requests through. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    tx: UnboundedSender<Action>,
    fleet: Arc<Fleet>,
    http: reqwest::Client,
}

/// The agent facts `GetInfo` gave, as the fleet keeps them.
fn info_of(state: &AgentState) -> v1::AgentInfo {
    v1::AgentInfo {
        roles: state.roles.clone(),
        version: state.version.clone(),
        host: state.host.clone(),
        started_at_ms: state.started_at_ms,
        uptime_s: state.uptime_s,
        grpc_addr: state.grpc_addr.clone(),
        http_addr: state.http_addr.clone(),
        os: state.os.clone(),
        cpus: state.cpus,
        auth_required: state.auth_required,
        pid: state.pid,
    }
}

fn role_of(name: &str) -> Option<Role> {
    match name {
        "etl" => Some(Role::Etl),
        "tracking" => Some(Role::Tracking),
        "inference" => Some(Role::Inference),
        _ => None,
    }
}

impl Backend {
    /// Follows the fleet (its reconnecting task included) and starts the role streams;
    /// returns at once.
    pub fn start(fleet: Arc<Fleet>, tx: UnboundedSender<Action>) -> Self {
        let backend = Self {
            tx,
            fleet,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        };
        drop(backend.fleet.follow());
        tokio::spawn(backend.clone().follow_fleet());
        for slot in 0..backend.fleet.snapshot().len() {
            tokio::spawn(backend.clone().status(slot));
        }
        tokio::spawn(backend.clone().watch_runs());
        tokio::spawn(backend.clone().watch_registry());
        backend
    }

    fn send(&self, action: Action) {
        // The state is gone only when the TUI is closing: nothing left to tell.
        let _ = self.tx.send(action);
    }

    /// Each agent's ups and downs as the fleet publishes them.
    async fn follow_fleet(self) {
        let mut changes = self.fleet.subscribe();
        let mut last: Vec<Option<(bool, String, Vec<String>)>> = Vec::new();
        loop {
            let now: Vec<AgentState> = changes.borrow_and_update().clone();
            last.resize(now.len(), None);
            for (slot, state) in now.iter().enumerate() {
                let key = (state.up, state.reason.clone(), state.roles.clone());
                if last[slot].as_ref() == Some(&key) {
                    continue;
                }
                last[slot] = Some(key);
                if state.up {
                    self.send(Action::AgentUp {
                        slot,
                        info: info_of(state),
                    });
                } else {
                    self.send(Action::AgentDown {
                        slot,
                        reason: state.reason.clone(),
                    });
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// One agent's status stream while it is up; a broken stream tells the fleet, which
    /// marks the agent down until its next probe reaches it.
    async fn status(self, slot: usize) {
        loop {
            let name = self.fleet.snapshot().get(slot).map(|s| s.name.clone());
            let Some(name) = name else { return };
            match self.fleet.client_of(&name) {
                Some(client) => {
                    let reason = self.follow_status(slot, &client).await;
                    self.fleet.report_down(&name, &reason);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Forwards status samples until the stream breaks; returns why it did.
    async fn follow_status(&self, slot: usize, client: &Client) -> String {
        let url = client.url().to_owned();
        let stream = client
            .agent()
            .watch_status(v1::WatchStatusRequest { interval_ms: 1000 })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) => return crate::output::status_error(&url, &s),
        };
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(Ok(status))) => self.send(Action::AgentStatus { slot, status }),
                Ok(Some(Err(s))) => return crate::output::status_error(&url, &s),
                Ok(None) => return "the agent ended its status stream (shutting down?)".into(),
                Err(_) => return "no status sample for 5 s".into(),
            }
        }
    }

    /// The first agent that is up and runs `role`, or why there is none.
    fn route(&self, role: &str) -> Result<Client, String> {
        let Some(role) = role_of(role) else {
            return Err(format!("no such role {role}"));
        };
        if let Some(routed) = self.fleet.clients(role).into_iter().next() {
            return Ok(routed.client);
        }
        let tried: Vec<String> = self
            .fleet
            .snapshot()
            .iter()
            .map(|a| {
                if a.up {
                    format!("{} runs {}", a.name, a.roles.join(", "))
                } else {
                    format!("{} is down: {}", a.name, a.reason)
                }
            })
            .collect();
        Err(format!(
            "no agent up with the {role} role ({})",
            tried.join("; ")
        ))
    }

    /// Waits until an agent with `role` is up.
    async fn route_wait(&self, role: &str) -> Client {
        loop {
            if let Ok(c) = self.route(role) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every run's state changes and log lines, from the etl agent, reopened when it breaks.
    async fn watch_runs(self) {
        loop {
            let client = self.route_wait("etl").await;
            if let Ok(stream) = client
                .etl()
                .watch_runs(v1::WatchRunsRequest::default())
                .await
            {
                let mut stream = stream.into_inner();
                while let Some(Ok(event)) = stream.next().await {
                    self.send(Action::RunEvent(event));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Registry changes from the tracking agent, reopened when it breaks.
    async fn watch_registry(self) {
        loop {
            let client = self.route_wait("tracking").await;
            if let Ok(stream) = client
                .tracking()
                .watch_registry(v1::WatchRegistryRequest::default())
                .await
            {
                let mut stream = stream.into_inner();
                while let Some(Ok(event)) = stream.next().await {
                    self.send(Action::RegistryEvent(event));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

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
        let action = match request {
            Request::Scrape | Request::Served => return,
            Request::DataStatus => Action::DataStatus(
                client
                    .etl()
                    .get_data_status(v1::GetDataStatusRequest {})
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err),
            ),
            Request::AppendBatch => done(
                "append a batch",
                client
                    .etl()
                    .append_batch(v1::AppendBatchRequest {
                        batch_size: 0,
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        if r.exhausted {
                            "the pool is exhausted: nothing appended".to_owned()
                        } else {
                            format!(
                                "batch {} appended: {} rows, {} train rows, {} left in the pool",
                                r.batch_number, r.appended, r.train_rows, r.pool_remaining
                            )
                        }
                    })
                    .map_err(err),
            ),
            Request::Ingest { path } => done(
                &format!("ingest {path}"),
                client
                    .etl()
                    .ingest(v1::IngestRequest {
                        path: path.clone(),
                        split: v1::SplitKind::Original as i32,
                        replace: false,
                    })
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        if r.changed {
                            format!("{path} ingested in {:.1} s", r.duration_s)
                        } else {
                            format!("{path} was already ingested: nothing changed")
                        }
                    })
                    .map_err(err),
            ),
            Request::ListDags => Action::Dags(
                client
                    .etl()
                    .list_dags(v1::ListDagsRequest {})
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err),
            ),
            Request::DagRuns { dag } => Action::DagRuns {
                runs: client
                    .etl()
                    .list_dag_runs(v1::ListDagRunsRequest {
                        dag: dag.clone(),
                        limit: 50,
                    })
                    .await
                    .map(|r| r.into_inner().runs)
                    .map_err(err),
                dag,
            },
            Request::Trigger { dag, params } => {
                let reply = client
                    .etl()
                    .trigger_dag(v1::TriggerDagRequest {
                        dag: dag.clone(),
                        params: params.into_iter().collect(),
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err);
                if let Ok(run) = &reply {
                    self.send(Action::DagRun(Ok(run.clone())));
                }
                done(
                    &format!("trigger {dag}"),
                    reply.map(|r| format!("{dag} triggered: run {}", r.run_id)),
                )
            }
            Request::Pause { dag, paused } => {
                let reply = client
                    .etl()
                    .set_dag_paused(v1::SetDagPausedRequest {
                        dag: dag.clone(),
                        paused,
                    })
                    .await
                    .map_err(err);
                if reply.is_ok() {
                    self.dispatch(Request::ListDags);
                }
                done(
                    &format!("pause {dag}"),
                    reply.map(|_| format!("{dag} {}", if paused { "paused" } else { "resumed" })),
                )
            }
            Request::Cancel { run_id } => {
                let reply = client
                    .etl()
                    .cancel_dag_run(v1::CancelDagRunRequest {
                        run_id: run_id.clone(),
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(err);
                if let Ok(run) = &reply {
                    self.send(Action::DagRun(Ok(run.clone())));
                }
                done(
                    &format!("cancel {run_id}"),
                    reply.map(|_| format!("run {run_id} cancelled")),
                )
            }
            Request::RunLogs { run_id } => Action::RunLogs {
                lines: client
                    .etl()
                    .get_run_logs(v1::GetRunLogsRequest {
                        run_id: run_id.clone(),
                        task_id: String::new(),
                        after_seq: 0,
                    })
                    .await
                    .map(|r| r.into_inner().lines)
                    .map_err(err),
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
            Request::Example { run_id, path } => Action::Example(
                client
                    .download_bytes(&run_id, &path, 4 << 20)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| example_records(&bytes)),
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

    /// The HTTP base URL of the agent behind `client`, as the fleet learned it.
    fn http_of(&self, client: &Client) -> String {
        self.fleet
            .snapshot()
            .iter()
            .find(|a| a.up && a.url == client.url())
            .map(|a| http_base(&a.url, &a.http_addr))
            .unwrap_or_default()
    }

    /// Scrapes `/metrics` of every agent that is up.
    async fn scrape_all(&self) {
        for (slot, agent) in self.fleet.snapshot().into_iter().enumerate() {
            if !agent.up || agent.http_addr.is_empty() {
                continue;
            }
            let base = http_base(&agent.url, &agent.http_addr);
            let at_ms = now_ms();
            let scrape = if base.starts_with("https://") {
                Err("the console reads /metrics over plain HTTP only".to_owned())
            } else {
                match self.http.get(format!("{base}/metrics")).send().await {
                    Err(e) => Err(readmit_proto::error_chain(&e)),
                    Ok(r) if !r.status().is_success() => {
                        Err(format!("{base}/metrics answered {}", r.status()))
                    }
                    Ok(r) => match r.text().await {
                        Ok(text) => Ok(prom::parse(&text)),
                        Err(e) => Err(readmit_proto::error_chain(&e)),
                    },
                }
            };
            self.send(Action::Metrics {
                slot,
                at_ms,
                scrape,
            });
        }
    }

    /// Asks every inference agent that is up what it serves.
    async fn served_all(&self) {
        for (slot, agent) in self.fleet.snapshot().into_iter().enumerate() {
            if !agent.up || !agent.has(Role::Inference) {
                continue;
            }
            let Some(client) = self.fleet.client_of(&agent.name) else {
                continue;
            };
            let served = client
                .inference()
                .get_served_model(v1::GetServedModelRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| crate::output::status_error(client.url(), &s));
            self.send(Action::Served { slot, served });
        }
    }
}

/// The HTTP base URL from a gRPC URL and the agent's bound HTTP address: an unspecified bind
/// address (`0.0.0.0`) is reached at the gRPC URL's host.
fn http_base(grpc_url: &str, http_addr: &str) -> String {
    let scheme = if grpc_url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let host_of_url = grpc_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.rsplit_once(':').map(|(h, _)| h.to_owned()))
        .unwrap_or_else(|| "127.0.0.1".into());
    let addr = match http_addr.rsplit_once(':') {
        Some((host, port)) if host == "0.0.0.0" || host == "[::]" => {
            format!("{host_of_url}:{port}")
        }
        _ => http_addr.to_owned(),
    };
    format!("{scheme}://{addr}")
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

/// The records of an `input_example.json` (a list of field → value objects), as text.
fn example_records(bytes: &[u8]) -> Result<Vec<BTreeMap<String, String>>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("input_example.json: {e}"))?;
    let list = value
        .as_array()
        .ok_or("input_example.json: not a list of records")?;
    list.iter()
        .map(|record| {
            let object = record
                .as_object()
                .ok_or("input_example.json: a record is not an object")?;
            Ok(object
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "?".to_owned(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect())
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
        Request::Example { .. } => Action::Example(Err(reason)),
        Request::Predict { .. } => Action::Prediction(Err(reason)),
        Request::LoadTests => Action::LoadTests(Err(reason)),
        Request::StartLoadTest(_) => Action::LoadTestStarted(Err(reason)),
        other => done(&format!("{other:?}"), Err(reason)),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_base_uses_the_url_host_for_unspecified_binds() {
        assert_eq!(
            http_base("http://10.0.0.5:50051", "0.0.0.0:8080"),
            "http://10.0.0.5:8080"
        );
        assert_eq!(
            http_base("https://a:1", "127.0.0.1:8443"),
            "https://127.0.0.1:8443"
        );
    }

    #[test]
    fn example_records_are_read_as_text() {
        let records =
            example_records(br#"[{"age": "[50-60)", "num_lab_procedures": 41, "x": null}]"#)
                .unwrap();
        assert_eq!(records[0]["num_lab_procedures"], "41");
        assert_eq!(records[0]["x"], "?");
        assert!(example_records(b"{}").unwrap_err().contains("not a list"));
    }
}
