//! The Overview's last events read back from the agents' history: what the Overview asks for,
//! how the answers become lines, and how the streams' lines meet them.

use crate::tui::action::{Action, Request};
use crate::tui::app::{App, Screen, update};
use crate::tui::fixtures::{self, NOW};
use crate::tui::keymap::Keymap;
use readmit_proto::{DagRunInfo, RunChange, RunEvent, RunState, StateChange, v1};

fn texts(app: &App) -> Vec<String> {
    app.events.iter().map(|e| e.text.clone()).collect()
}

fn finished_run(id: &str, dag: &str, started: i64, ended: i64, state: RunState) -> DagRunInfo {
    DagRunInfo {
        run_id: id.into(),
        dag: dag.into(),
        state,
        started_at_ms: started,
        ended_at_ms: ended,
        error: if state == RunState::Failed {
            "clean_splits: no rows".into()
        } else {
            String::new()
        },
        ..fixtures::preprocess_run()
    }
}

/// Two registered models, as the tracking agent lists them.
fn models() -> Vec<v1::RegisteredModel> {
    vec![
        v1::RegisteredModel {
            last_updated_time_ms: NOW - 20_000,
            ..fixtures::registered(2)
        },
        v1::RegisteredModel {
            name: "readmission_challenger".into(),
            last_updated_time_ms: NOW - 60_000,
            ..v1::RegisteredModel::default()
        },
    ]
}

/// The model's three versions, v1 moved to Production 20 s ago, as the Overview reads them.
fn read_versions(app: &mut App) -> Vec<v1::ModelVersion> {
    let mut versions = fixtures::versions(3);
    versions[0].last_updated_time_ms = NOW - 20_000;
    update(
        app,
        Action::Versions {
            name: "best_diabetes_readmission_model".into(),
            versions: Ok(versions.clone()),
        },
    );
    versions
}

#[test]
fn the_overview_asks_for_history_and_lists_it_by_time() {
    let mut app = App::new(&["http://all:50051".to_owned()], Keymap::default(), NOW);
    let asked = app.take_requests();
    for r in [
        Request::DagRuns { dag: String::new() },
        Request::Models,
        Request::LoadTests,
    ] {
        assert!(asked.contains(&r), "{r:?} not in {asked:?}");
    }

    update(
        &mut app,
        Action::DagRuns {
            dag: String::new(),
            runs: Ok(vec![
                finished_run(
                    "b2",
                    "train_and_register",
                    NOW - 50_000,
                    NOW - 30_000,
                    RunState::Succeeded,
                ),
                finished_run(
                    "a1",
                    "preprocess_incremental",
                    NOW - 90_000,
                    NOW - 80_000,
                    RunState::Failed,
                ),
                fixtures::preprocess_run(),
            ]),
        },
    );
    // Every DAG's runs feed the events, never the DAG screen's list of one DAG's runs.
    assert!(app.dags.runs.is_empty());

    update(&mut app, Action::Models(Ok(models())));
    // Every model's versions, not only the one the Models screen selects.
    let asked = app.take_requests();
    for name in ["best_diabetes_readmission_model", "readmission_challenger"] {
        let r = Request::Versions { name: name.into() };
        assert!(asked.contains(&r), "{r:?} not in {asked:?}");
    }
    read_versions(&mut app);
    update(
        &mut app,
        Action::LoadTests(Ok(vec![fixtures::load_summary(true)])),
    );

    let listed = texts(&app);
    let times: Vec<i64> = app.events.iter().map(|e| e.at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    for line in [
        "load test 5e6f7a8b9c0d ended: 4812 requests, 481 req/s, thresholds held",
        "load test 5e6f7a8b9c0d started",
        "best_diabetes_readmission_model v1 → Production",
        "DAG train_and_register run b2 succeeded",
        "DAG preprocess_incremental run 7d2e9c41 started",
        "DAG preprocess_incremental run a1 failed: clean_splits: no rows",
        "best_diabetes_readmission_model v3 registered",
    ] {
        assert!(
            listed.iter().any(|l| l == line),
            "{line:?} not in {listed:#?}"
        );
    }
    let failed = app
        .events
        .iter()
        .find(|e| e.text.contains("a1 failed"))
        .unwrap();
    assert!(!failed.ok);

    // The same history read again (the Overview's refresh) lists nothing twice; an unchanged
    // registry is not asked for its versions again.
    let before = app.events.iter().count();
    update(
        &mut app,
        Action::LoadTests(Ok(vec![fixtures::load_summary(true)])),
    );
    update(&mut app, Action::Models(Ok(models())));
    assert_eq!(app.events.iter().count(), before);
    assert!(
        !app.take_requests()
            .iter()
            .any(|r| matches!(r, Request::Versions { .. }))
    );
}

#[test]
fn a_stream_event_takes_the_place_of_its_history_line() {
    let mut app = App::new(&["http://all:50051".to_owned()], Keymap::default(), NOW);
    update(
        &mut app,
        Action::DagRuns {
            dag: String::new(),
            runs: Ok(vec![fixtures::preprocess_run()]),
        },
    );
    let run = fixtures::preprocess_run();
    // The run the history listed as started ends now; then it is read back again.
    update(
        &mut app,
        Action::RunEvent(RunEvent {
            run_id: run.run_id.clone(),
            dag: run.dag.clone(),
            timestamp_ms: NOW,
            change: RunChange::State(StateChange {
                task_id: String::new(),
                state: RunState::Succeeded,
                attempt: 0,
                error: String::new(),
            }),
        }),
    );
    let ended = finished_run(
        &run.run_id,
        &run.dag,
        run.started_at_ms,
        NOW,
        RunState::Succeeded,
    );
    update(
        &mut app,
        Action::DagRuns {
            dag: String::new(),
            runs: Ok(vec![ended]),
        },
    );
    assert_eq!(
        texts(&app),
        [
            "DAG preprocess_incremental run 7d2e9c41 succeeded",
            "DAG preprocess_incremental run 7d2e9c41 started",
        ]
    );

    // A promotion the stream reports replaces the line the versions' history gave it.
    let versions = read_versions(&mut app);
    update(
        &mut app,
        Action::RegistryEvent(v1::RegistryEvent {
            kind: v1::RegistryEventKind::StageChanged as i32,
            version: Some(versions[0].clone()),
            previous_stage: v1::Stage::Staging as i32,
            timestamp_ms: NOW - 20_000,
            ..v1::RegistryEvent::default()
        }),
    );
    let promoted: Vec<String> = texts(&app)
        .into_iter()
        .filter(|t| t.contains("v1 →"))
        .collect();
    assert_eq!(
        promoted,
        ["best_diabetes_readmission_model v1 → Production (was Staging)"]
    );
    assert_eq!(app.screen, Screen::Overview);
}
