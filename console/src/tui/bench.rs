//! `readmit bench-tui`: the cost of one frame — an action through `update` and a whole `draw`
//! — with 10,000 runs, 100 model versions and a full log tail loaded, per screen, and the
//! process's resident memory; one JSON object on stdout.

use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

use super::action::Action;
use super::app::{App, Screen, update};
use super::fixtures;
use super::screens::dags::LOG_KEPT;
use super::ui;

const RUNS: usize = 10_000;
const VERSIONS: i64 = 100;

/// Resident memory from /proc (Linux), in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The loaded state: three agents, 10,000 runs, 100 versions, a full log tail.
pub fn loaded() -> App {
    let mut app = fixtures::three_agents();
    app.size = (160, 48);
    update(&mut app, Action::DataStatus(Ok(fixtures::data_status())));
    update(&mut app, Action::Dags(Ok(fixtures::dags())));
    app.dags.selected_dag = 3;
    app.dags.runs_of = "preprocess_incremental".into();
    let run = fixtures::preprocess_run();
    app.dags.logs_of.clone_from(&run.run_id);
    update(
        &mut app,
        Action::DagRuns {
            dag: "preprocess_incremental".into(),
            runs: Ok(vec![run.clone()]),
        },
    );
    update(
        &mut app,
        Action::RunLogs {
            run_id: run.run_id,
            lines: Ok(fixtures::log_lines(LOG_KEPT)),
        },
    );
    update(
        &mut app,
        Action::Experiments(Ok(vec![fixtures::experiment()])),
    );
    update(
        &mut app,
        Action::Runs {
            experiment_id: "1".into(),
            filter: String::new(),
            runs: Ok(fixtures::runs(RUNS)),
        },
    );
    update(
        &mut app,
        Action::Models(Ok(vec![fixtures::registered(VERSIONS - 2)])),
    );
    update(
        &mut app,
        Action::Versions {
            name: "best_diabetes_readmission_model".into(),
            versions: Ok(fixtures::versions(VERSIONS)),
        },
    );
    update(&mut app, Action::Signature(Ok(fixtures::signature())));
    update(&mut app, Action::Prediction(Ok(fixtures::prediction())));
    update(
        &mut app,
        Action::LoadTestStarted(Ok(fixtures::load_summary(true))),
    );
    for s in fixtures::load_samples(600) {
        update(&mut app, Action::LoadSample(s));
    }
    let _ = app.take_requests();
    app
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn run(frames: usize) -> anyhow::Result<serde_json::Value> {
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut app = loaded();
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rss_loaded = rss_bytes();
    anyhow::ensure!(
        app.experiments.runs.len() == RUNS && app.models.versions.len() == VERSIONS as usize
    );
    let mut terminal = Terminal::new(TestBackend::new(160, 48))?;
    let mut screens = serde_json::Map::new();
    let mut worst_p99: f64 = 0.0;
    for screen in Screen::ALL {
        app.go(screen);
        if screen == Screen::Dags {
            app.dags.pane = 2;
        }
        if screen == Screen::Experiments {
            app.experiments.pane = 1;
        }
        let _ = app.take_requests();
        let mut times = Vec::with_capacity(frames);
        for i in 0..frames {
            // A frame: one key (moving the selection down and back), then the whole draw.
            let key = if i % 2 == 0 {
                KeyCode::Down
            } else {
                KeyCode::Up
            };
            let t = Instant::now();
            update(
                &mut app,
                Action::Key(KeyEvent::new(key, KeyModifiers::NONE)),
            );
            terminal.draw(|f| ui::draw(&app, f))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let _ = app.take_requests();
        }
        times.sort_by(f64::total_cmp);
        worst_p99 = worst_p99.max(percentile(&times, 0.99));
        screens.insert(
            screen.scope().to_owned(),
            json!({
                "p50_ms": percentile(&times, 0.5),
                "p99_ms": percentile(&times, 0.99),
                "max_ms": times[times.len() - 1],
            }),
        );
    }
    // Sorting the 10,000 runs by a metric is a one-off action, not a frame.
    app.go(Screen::Experiments);
    app.experiments.col = 6;
    let t = Instant::now();
    update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE)),
    );
    let sort_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(json!({
        "terminal": "160x48",
        "frames_per_screen": frames,
        "runs": RUNS,
        "model_versions": VERSIONS,
        "log_lines": app.dags.logs.len(),
        "load_samples": app.load.samples.len(),
        "load_state_ms": load_ms,
        "screens": screens,
        "worst_p99_ms": worst_p99,
        "target_ms": 5.0,
        "sort_10000_runs_ms": sort_ms,
        "rss_bytes_before_load": rss_before,
        "rss_bytes_loaded": rss_loaded,
        "rss_bytes_after_frames": rss_bytes(),
    }))
}
