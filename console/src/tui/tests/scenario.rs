//! The headless app driven by keys through a whole scenario against a real agent with every
//! role, started here: trigger DAGs and watch them finish, filter and compare runs, promote a
//! version and see the inference role switch to it, fire a short load test.

use crossterm::event::KeyCode;
use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use readmit_proto::{Client, v1};

use crate::fleet::{Fleet, Sources};
use crate::tui::Headless;
use crate::tui::app::{App, Link, Mode, Screen};
use crate::tui::screens::experiments::Detail;

async fn start_agent(dir: &std::path::Path, addrs: Option<(&str, &str)>) -> RunningAgent {
    let mut raw = RawSettings::loopback(dir, &[Role::Etl, Role::Tracking, Role::Inference]);
    if let Some((grpc, http)) = addrs {
        raw.grpc_addr = grpc.into();
        raw.http_addr = http.into();
    }
    RunningAgent::start(raw.validate().unwrap()).await.unwrap()
}

fn served_version(app: &App) -> Option<i64> {
    match &app.agents[0].served {
        Some(Ok(s)) if s.loaded => Some(s.version),
        _ => None,
    }
}

/// Selects a DAG through the filter, triggers it with `params` typed into the prompt and
/// waits for the run to succeed, as the run events report it.
async fn trigger(h: &mut Headless, dag: &str, params: &str) {
    h.key(KeyCode::Char('3'));
    h.key(KeyCode::Esc);
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('/'));
    h.type_text(dag);
    h.key(KeyCode::Enter);
    let name = dag.to_owned();
    h.until(&format!("{dag} selected"), 20, |a| {
        a.dags.dag().is_some_and(|d| d.name == name)
    })
    .await;
    h.key(KeyCode::Char('t'));
    let Mode::Typing { line, .. } = &h.app.mode else {
        panic!("no trigger prompt: {:?}", h.app.mode)
    };
    for _ in 0..line.text.chars().count() {
        h.key(KeyCode::Backspace);
    }
    h.type_text(params);
    h.key(KeyCode::Enter);
    // The trigger's answer names the run on the status line.
    let said = format!("{dag} triggered: run ");
    h.until(&format!("{dag} triggered"), 30, |a| {
        a.flash.as_ref().is_some_and(|f| f.text.starts_with(&said))
    })
    .await;
    let id = h.app.flash.as_ref().unwrap().text[said.len()..].to_owned();
    // Finished, and every task's bar has a start and an end.
    h.until(&format!("{dag} finished"), 300, |a| {
        a.dags.runs.iter().any(|r| {
            r.run_id == id
                && r.ended_at_ms > 0
                && r.tasks
                    .iter()
                    .all(|t| t.started_at_ms > 0 && t.ended_at_ms >= t.started_at_ms)
        })
    })
    .await;
    let run = h.app.dags.runs.iter().find(|r| r.run_id == id).unwrap();
    assert_eq!(
        run.state,
        readmit_proto::RunState::Succeeded,
        "{dag}: {run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_drives_a_real_agent_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(dir.path(), None).await;
    let url = agent.grpc_url();
    let http = agent.http_url();
    let client = Client::connect(&url, None).await.unwrap();
    let synth = client
        .etl()
        .synthesize_dataset(v1::SynthesizeDatasetRequest {
            rows: 4000,
            seed: 5,
            path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let sources = Sources {
        agents: vec![url.clone()],
        ..Sources::default()
    };
    let fleet = Fleet::connect(sources.resolve().unwrap()).await;
    let mut h = Headless::start(std::sync::Arc::new(fleet));
    h.until("agent up", 30, |a| a.agents[0].link == Link::Up)
        .await;

    // DAGs: the whole pipeline, each triggered by keys, watched to its end.
    trigger(&mut h, "ingest_raw", &format!("path={}", synth.path)).await;
    trigger(
        &mut h,
        "append_batch",
        "batch_size=1000 until_exhausted=true",
    )
    .await;
    trigger(&mut h, "preprocess_incremental", "").await;
    h.until("the run's log tail", 10, |a| !a.dags.logs.is_empty())
        .await;
    trigger(&mut h, "train_and_register", "models=LR_C_0.1").await;
    h.until("serves v1", 90, |a| served_version(a) == Some(1))
        .await;
    trigger(&mut h, "train_and_register", "models=LR_C_0.01").await;
    h.until("serves v2", 90, |a| served_version(a) == Some(2))
        .await;

    // Experiments: the training runs, filtered with MLflow's syntax, two compared.
    h.key(KeyCode::Char(':'));
    h.type_text("runs diabetes_readmission_training");
    h.key(KeyCode::Enter);
    assert_eq!(h.app.screen, Screen::Experiments);
    h.until("two training runs", 30, |a| a.experiments.view.len() == 2)
        .await;
    h.key(KeyCode::Char('/'));
    h.type_text("metrics.val_roc_auc > 2");
    h.key(KeyCode::Enter);
    h.until("the filter leaves none", 30, |a| {
        !a.experiments.loading && a.experiments.view.is_empty()
    })
    .await;
    h.key(KeyCode::Esc);
    h.until("the filter cleared", 30, |a| {
        !a.experiments.loading && a.experiments.view.len() == 2
    })
    .await;
    h.key(KeyCode::Char(' '));
    h.key(KeyCode::Char(' '));
    h.key(KeyCode::Char('c'));
    h.until(
        "compared",
        30,
        |a| matches!(&a.experiments.detail, Detail::Compare(Ok(c)) if c.runs.len() == 2),
    )
    .await;
    let Detail::Compare(Ok(c)) = &h.app.experiments.detail else {
        unreachable!()
    };
    assert!(
        c.params.iter().chain(&c.metrics).any(|v| v.differs),
        "{c:#?}"
    );

    // Models: promote v1 back; the confirmation names both moves; the agent switches.
    h.key(KeyCode::Char(':'));
    h.type_text("promote best_diabetes_readmission_model 1");
    h.key(KeyCode::Enter);
    h.until("the confirmation", 20, |a| {
        matches!(a.mode, Mode::Confirm(_))
    })
    .await;
    let Mode::Confirm(confirm) = &h.app.mode else {
        unreachable!()
    };
    assert_eq!(
        confirm.message,
        "best_diabetes_readmission_model: v1 → Production, v2 → Archived"
    );
    h.key(KeyCode::Char('y'));
    h.until("serves v1 again", 90, |a| served_version(a) == Some(1))
        .await;
    assert!(
        h.app
            .events
            .iter()
            .any(|e| e.text.contains("v1 → Production")),
        "{:?}",
        h.app.events
    );

    // Predict: a real record, scored and explained.
    h.key(KeyCode::Char('6'));
    h.until("the signature", 20, |a| !a.predict.fields().is_empty())
        .await;
    h.key(KeyCode::Char('r'));
    h.until("a real record", 20, |a| {
        a.predict.values.iter().filter(|v| !v.is_empty()).count() > 10
    })
    .await;
    h.key(KeyCode::Char('s'));
    h.until("a prediction", 20, |a| {
        matches!(&a.predict.result, Some(Ok(_)))
    })
    .await;
    let Some(Ok(reply)) = &h.app.predict.result else {
        unreachable!()
    };
    assert_eq!(reply.model_version, 1);
    assert!(!reply.predictions[0].contributions.is_empty());

    // Load test: two users for two seconds, live samples, then the report.
    h.key(KeyCode::Char('7'));
    h.key(KeyCode::Down);
    h.key(KeyCode::Enter);
    h.key(KeyCode::Backspace);
    h.key(KeyCode::Backspace);
    h.type_text("2");
    h.key(KeyCode::Enter);
    for _ in 0..4 {
        h.key(KeyCode::Down);
    }
    h.key(KeyCode::Enter);
    h.key(KeyCode::Backspace);
    h.key(KeyCode::Backspace);
    h.type_text("2");
    h.key(KeyCode::Enter);
    h.key(KeyCode::Char('f'));
    h.until(
        "the load test's report",
        60,
        |a| matches!(&a.load.finished, Some(Ok(s)) if s.state != v1::LoadTestState::Running as i32),
    )
    .await;
    assert!(!h.app.load.samples.is_empty());
    let Some(Ok(summary)) = &h.app.load.finished else {
        unreachable!()
    };
    assert!(summary.total.as_ref().unwrap().requests > 0, "{summary:#?}");
    assert_eq!(summary.thresholds.len(), 2, "{summary:#?}");
    let test_ended = format!("load test {} ended", summary.test_id);

    // Metrics: the agent's own series, read over HTTP.
    h.key(KeyCode::Char('8'));
    h.until("metrics", 20, |a| {
        a.metrics
            .list
            .iter()
            .any(|s| s.family == "inference_requests_total")
    })
    .await;

    // A console opened now tells what happened before it started, from the agent's history:
    // the runs, the promotion back to v1, the load test; each once.
    let late_fleet = Fleet::connect(sources.resolve().unwrap()).await;
    let mut late = Headless::start(std::sync::Arc::new(late_fleet));
    let told = |a: &App, text: &str| a.events.iter().filter(|e| e.text.contains(text)).count();
    late.until("the history of runs, versions and tests", 30, |a| {
        told(a, "DAG train_and_register run") >= 4
            && told(a, "v1 → Production") == 1
            && told(a, &test_ended) == 1
    })
    .await;
    for (text, times) in [
        ("DAG ingest_raw run", 2),
        ("DAG append_batch run", 2),
        ("best_diabetes_readmission_model v2 registered", 1),
    ] {
        assert_eq!(
            told(&late.app, text),
            times,
            "{text}: {:#?}",
            late.app.events
        );
    }
    late.key(KeyCode::Char('q'));

    // The agent goes away: what it serves greys out with the reason; it comes back on the
    // same addresses and the console recovers by itself.
    let grpc = url.trim_start_matches("http://").to_owned();
    let http = http.trim_start_matches("http://").to_owned();
    agent.stop().await.unwrap();
    h.until("marked down", 30, |a| {
        matches!(a.agents[0].link, Link::Down(_))
    })
    .await;
    assert!(
        h.app.role_down("etl").is_some_and(|r| r.contains(&grpc)),
        "{:?}",
        h.app.role_down("etl")
    );
    let agent = start_agent(dir.path(), Some((&grpc, &http))).await;
    h.until("back up", 60, |a| {
        a.agents[0].link == Link::Up && a.role_down("etl").is_none()
    })
    .await;
    h.key(KeyCode::Char('3'));
    h.until("DAGs read again", 30, |a| a.dags.dags.len() >= 4)
        .await;
    h.key(KeyCode::Char('q'));
    assert!(h.app.quit);
    agent.stop().await.unwrap();
}
