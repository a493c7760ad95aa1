//! Every screen drawn from realistic state, compared with its committed snapshot
//! (`cargo insta review` after a deliberate change).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::tui::action::Action;
use crate::tui::app::{App, Screen, update};
use crate::tui::fixtures::{self, NOW};
use crate::tui::keymap::Keymap;
use crate::tui::ui;

fn render(app: &App) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(120, 36)).unwrap();
    terminal.draw(|f| ui::draw(app, f)).unwrap();
    terminal
}

fn key(app: &mut App, c: char) {
    update(
        app,
        Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
    );
}

fn code(app: &mut App, code: KeyCode) {
    update(app, Action::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

#[test]
fn overview() {
    let app = fixtures::three_agents();
    insta::assert_snapshot!(render(&app).backend());
}

#[test]
fn overview_with_an_agent_down() {
    let mut app = fixtures::three_agents();
    update(
        &mut app,
        Action::AgentDown {
            slot: 1,
            reason:
                "cannot reach agent at http://tracking:50051: transport error: Connection refused"
                    .into(),
        },
    );
    insta::assert_snapshot!(render(&app).backend());
}

/// One agent with every role and nothing in it yet.
fn empty() -> App {
    let mut app = App::new(
        &["http://127.0.0.1:50051".to_owned()],
        Keymap::default(),
        NOW,
    );
    app.size = (120, 36);
    update(
        &mut app,
        Action::AgentUp {
            slot: 0,
            info: fixtures::info("laptop", &["etl", "tracking", "inference"], 50051),
        },
    );
    update(
        &mut app,
        Action::AgentStatus {
            slot: 0,
            status: fixtures::status(0),
        },
    );
    update(
        &mut app,
        Action::DataStatus(Ok(readmit_proto::DataState::default())),
    );
    update(
        &mut app,
        Action::Dags(Ok(readmit_proto::DagList::default())),
    );
    update(&mut app, Action::Experiments(Ok(Vec::new())));
    update(&mut app, Action::Models(Ok(Vec::new())));
    update(&mut app, Action::LoadTests(Ok(Vec::new())));
    let mut nothing = fixtures::served(0);
    nothing.loaded = false;
    nothing.last_error =
        "models:/best_diabetes_readmission_model/Production resolves to no version".into();
    update(
        &mut app,
        Action::Served {
            slot: 0,
            served: Ok(nothing),
        },
    );
    update(
        &mut app,
        Action::Signature(Err("no model is served yet".into())),
    );
    let _ = app.take_requests();
    app
}

#[test]
fn empty_system_on_every_screen() {
    let mut app = empty();
    let mut out = String::new();
    for screen in Screen::ALL {
        app.go(screen);
        out.push_str(&format!("{}\n", render(&app).backend()));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn data() {
    let mut app = fixtures::three_agents();
    app.go(Screen::Data);
    update(&mut app, Action::DataStatus(Ok(fixtures::data_status())));
    insta::assert_snapshot!(render(&app).backend());
}

fn dags_app() -> App {
    let mut app = fixtures::three_agents();
    code(&mut app, KeyCode::Char('3'));
    update(&mut app, Action::Dags(Ok(fixtures::dags())));
    for _ in 0..3 {
        code(&mut app, KeyCode::Down);
    }
    update(
        &mut app,
        Action::DagRuns {
            dag: "preprocess_incremental".into(),
            runs: Ok(vec![fixtures::preprocess_run()]),
        },
    );
    update(
        &mut app,
        Action::RunLogs {
            run_id: fixtures::preprocess_run().run_id,
            lines: Ok(fixtures::log_lines(300)),
        },
    );
    app
}

#[test]
fn dags_with_a_live_run() {
    let mut app = dags_app();
    // The task pane: the log follows the selected task.
    code(&mut app, KeyCode::Tab);
    code(&mut app, KeyCode::Tab);
    code(&mut app, KeyCode::Down);
    insta::assert_snapshot!(render(&app).backend());
}

#[test]
fn dags_greyed_while_the_etl_agent_is_down() {
    let mut app = dags_app();
    update(
        &mut app,
        Action::AgentDown {
            slot: 0,
            reason: "the agent ended its status stream (shutting down?)".into(),
        },
    );
    let terminal = render(&app);
    let cell = &terminal.backend().buffer()[(2, 5)];
    assert_eq!(
        cell.fg,
        ratatui::style::Color::DarkGray,
        "the body is greyed"
    );
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn dags_trigger_prompt_and_cancel_confirmation() {
    let mut app = dags_app();
    key(&mut app, 't');
    let prompt = render(&app);
    code(&mut app, KeyCode::Esc);
    code(&mut app, KeyCode::Tab);
    key(&mut app, 'x');
    insta::assert_snapshot!(format!("{}\n{}", prompt.backend(), render(&app).backend()));
}

fn experiments_app(n: usize) -> App {
    let mut app = fixtures::three_agents();
    code(&mut app, KeyCode::Char('4'));
    update(
        &mut app,
        Action::Experiments(Ok(vec![fixtures::experiment()])),
    );
    update(
        &mut app,
        Action::Runs {
            experiment_id: "1".into(),
            filter: String::new(),
            runs: Ok(fixtures::runs(n)),
        },
    );
    app
}

#[test]
fn experiments_sorted_marked_and_compared() {
    let mut app = experiments_app(7);
    code(&mut app, KeyCode::Tab);
    // To the val_roc_auc column (name, status, started, accuracy, log_loss, test_roc_auc, val_roc_auc), sort descending.
    for _ in 0..6 {
        key(&mut app, 'l');
    }
    key(&mut app, 's');
    key(&mut app, ' ');
    key(&mut app, ' ');
    let runs = fixtures::runs(7);
    let a = runs[6].clone();
    let b = runs[5].clone();
    let cmp = |k: &str, x: &str, y: &str| readmit_proto::v1::ComparedValue {
        key: k.into(),
        values: vec![x.into(), y.into()],
        present: vec![true, true],
        differs: x != y,
    };
    update(
        &mut app,
        Action::Compare(Ok(readmit_proto::v1::RunComparison {
            runs: vec![a, b],
            params: vec![cmp("model", "GBM_300_d5", "RF_depth10")],
            metrics: vec![
                cmp("accuracy", "0.88", "0.88"),
                cmp("val_roc_auc", "0.682", "0.675"),
            ],
            tags: Vec::new(),
        })),
    );
    insta::assert_snapshot!(render(&app).backend());
}

#[test]
fn experiments_chart_across_runs_and_history() {
    let mut app = experiments_app(7);
    code(&mut app, KeyCode::Tab);
    for _ in 0..6 {
        key(&mut app, 'l');
    }
    key(&mut app, 'v');
    let across = render(&app);
    code(&mut app, KeyCode::Tab);
    code(&mut app, KeyCode::Tab);
    key(&mut app, 'H');
    let run_id = app
        .experiments
        .run()
        .and_then(|r| r.info.clone())
        .unwrap()
        .run_id;
    let points = (0..30)
        .map(|s| readmit_proto::v1::Metric {
            key: "val_roc_auc".into(),
            value: 0.6 + f64::from(s) * 0.002,
            timestamp_ms: NOW,
            step: i64::from(s),
        })
        .collect();
    update(
        &mut app,
        Action::History {
            run_id,
            key: "val_roc_auc".into(),
            points: Ok(points),
        },
    );
    insta::assert_snapshot!(format!("{}\n{}", across.backend(), render(&app).backend()));
}

#[test]
fn models_with_a_promotion_to_confirm() {
    let mut app = fixtures::three_agents();
    code(&mut app, KeyCode::Char('5'));
    update(&mut app, Action::Models(Ok(vec![fixtures::registered(7)])));
    update(
        &mut app,
        Action::Versions {
            name: "best_diabetes_readmission_model".into(),
            versions: Ok(fixtures::versions(9)),
        },
    );
    let list = render(&app);
    code(&mut app, KeyCode::Tab);
    key(&mut app, 'p');
    let crate::tui::app::Mode::Confirm(confirm) = &app.mode else {
        panic!("no confirmation: {:?}", app.mode)
    };
    assert_eq!(
        confirm.message,
        "best_diabetes_readmission_model: v9 → Production, v7 → Archived"
    );
    insta::assert_snapshot!(format!("{}\n{}", list.backend(), render(&app).backend()));
}

#[test]
fn predict_form_and_result() {
    let mut app = fixtures::three_agents();
    code(&mut app, KeyCode::Char('6'));
    update(&mut app, Action::Signature(Ok(fixtures::signature())));
    let record = [
        ("race", "Caucasian"),
        ("gender", "Female"),
        ("age", "[70-80)"),
        ("time_in_hospital", "5"),
        ("num_lab_procedures", "41"),
        ("num_medications", "23"),
        ("number_inpatient", "3"),
        ("insulin", "Up"),
        ("A1Cresult", ">8"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    update(&mut app, Action::Example(Ok(vec![record])));
    // A number field refuses letters as they are typed.
    for _ in 0..3 {
        code(&mut app, KeyCode::Down);
    }
    code(&mut app, KeyCode::Enter);
    for c in "x7".chars() {
        key(&mut app, c);
    }
    let crate::tui::app::Mode::Typing { line, .. } = &app.mode else {
        panic!("not editing")
    };
    assert_eq!(line.text, "57");
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.predict.values[3], "57");
    key(&mut app, 's');
    assert!(
        app.take_requests()
            .iter()
            .any(|r| matches!(r, crate::tui::action::Request::Predict { .. }))
    );
    update(&mut app, Action::Prediction(Ok(fixtures::prediction())));
    insta::assert_snapshot!(render(&app).backend());
}

#[test]
fn load_test_live_and_finished() {
    let mut app = fixtures::three_agents();
    code(&mut app, KeyCode::Char('7'));
    let mut started = fixtures::load_summary(true);
    started.state = readmit_proto::v1::LoadTestState::Running as i32;
    started.thresholds.clear();
    update(&mut app, Action::LoadTestStarted(Ok(started)));
    for s in fixtures::load_samples(10) {
        update(&mut app, Action::LoadSample(s));
    }
    let live = render(&app);
    update(
        &mut app,
        Action::LoadTestEnded(Ok(fixtures::load_summary(false))),
    );
    update(
        &mut app,
        Action::LoadTests(Ok(vec![fixtures::load_summary(false)])),
    );
    insta::assert_snapshot!(format!("{}\n{}", live.backend(), render(&app).backend()));
}

#[test]
fn metrics_histogram_percentiles() {
    let mut app = fixtures::three_agents();
    code(&mut app, KeyCode::Char('8'));
    // inference_request_latency_seconds is the first series.
    insta::assert_snapshot!(render(&app).backend());
}

#[test]
fn help_lists_the_screen_keys() {
    let mut app = fixtures::three_agents();
    code(&mut app, KeyCode::Char('4'));
    key(&mut app, '?');
    insta::assert_snapshot!(render(&app).backend());
}

#[test]
fn command_line_and_mouse() {
    let mut app = fixtures::three_agents();
    key(&mut app, ':');
    for c in "dags".chars() {
        key(&mut app, c);
    }
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Dags);
    // A click on the fifth tab opens Models.
    let (x, _) = App::tab_spans()[4];
    update(
        &mut app,
        Action::Mouse(crossterm::event::MouseEvent {
            kind: crossterm::event::MouseEventKind::Down(crossterm::event::MouseButton::Left),
            column: x + 1,
            row: 0,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(app.screen, Screen::Models);
    key(&mut app, 'q');
    assert!(app.quit);
}
