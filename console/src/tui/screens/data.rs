//! Data: RawData and CleanData tables with their row counts, RawData's split fingerprints and
//! class balance, the data set's digest and split, the training pool and its batches; append a
//! batch, ingest a file on the ETL agent.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Gauge, Paragraph, Row, Table};

use crate::tui::action::Request;
use crate::tui::app::{App, Edit, Line as Typed, Mode, move_selection};
use crate::tui::keymap::Intent;
use crate::tui::ui::{ago, selected_style, title, window};
use readmit_proto::{DataState, SplitKind, TableFacts};

pub const KEYS: &[(Intent, &str)] = &[
    (
        Intent::Append,
        "append the next batch of pool rows to train_data",
    ),
    (
        Intent::Ingest,
        "ingest a CSV (plain or .gz) on the ETL agent, by path",
    ),
];

#[derive(Debug, Default)]
pub struct State {
    pub status: Option<Result<DataState, String>>,
    pub selected: usize,
    pub busy: bool,
}

pub fn refresh(app: &mut App) {
    app.request(Request::DataStatus);
}

pub fn on_status(app: &mut App, reply: Result<DataState, String>) {
    match (&reply, &app.data.status) {
        // Keep what was read while the agent is away; the banner says it is down.
        (Err(_), Some(Ok(_))) => {}
        _ => app.data.status = Some(reply),
    }
    app.data.busy = false;
}

pub fn on_intent(app: &mut App, intent: Intent) {
    let len = match &app.data.status {
        Some(Ok(s)) => s.tables.len(),
        _ => 0,
    };
    let page = crate::tui::app::page(app);
    if move_selection(&mut app.data.selected, len, intent, page) {
        return;
    }
    match intent {
        Intent::Append => {
            app.data.busy = true;
            app.request(Request::AppendBatch);
            app.flash("appending a batch…", false);
        }
        Intent::Ingest => {
            app.mode = Mode::Typing {
                edit: Edit::IngestPath,
                line: Typed::default(),
            };
        }
        _ => {}
    }
}

/// Ingests the file the operator typed.
pub fn ingest(app: &mut App, path: &str) {
    if path.is_empty() {
        app.flash("ingest: no path given, nothing done", true);
        return;
    }
    app.data.busy = true;
    app.request(Request::Ingest {
        path: path.to_owned(),
    });
    app.flash(format!("ingesting {path}…"), false);
}

fn split_name(split: Option<SplitKind>) -> &'static str {
    match split {
        Some(SplitKind::Original) => "original (row for row the original system's)",
        Some(SplitKind::Grouped) => "grouped by patient",
        None => "-",
    }
}

/// A table's positive class as a count and a share of its rows; blank where not reported.
fn balance(t: &TableFacts) -> String {
    match t.readmitted {
        Some(n) if t.rows > 0 => format!("{n} ({:.1}%)", 100.0 * n as f64 / t.rows as f64),
        Some(n) => n.to_string(),
        None => String::new(),
    }
}

/// The first 12 hex digits of a fingerprint, as git shortens a commit: `readmit data status`
/// prints it whole.
fn short_fingerprint(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let status = match &app.data.status {
        None => {
            frame.render_widget(
                Paragraph::new("reading the data status…").block(title("Data")),
                area,
            );
            return;
        }
        Some(Err(e)) => {
            frame.render_widget(
                Paragraph::new(e.clone())
                    .style(Style::default().fg(Color::Red))
                    .block(title("Data")),
                area,
            );
            return;
        }
        Some(Ok(s)) => s,
    };
    let [facts, pool, tables] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(3),
        Constraint::Min(3),
    ])
    .areas(area);
    let ingested = match &status.dataset_sha256 {
        None => vec![Line::from(
            "nothing ingested yet: press i to ingest a file, or trigger the ingest_raw DAG",
        )],
        Some(sha256) => vec![
            Line::from(format!("data set sha256  {sha256}")),
            Line::from(format!("split            {}", split_name(status.split))),
            Line::from(format!(
                "ingested         {}",
                ago(app.now_ms, status.ingested_at_ms)
            )),
            Line::from(format!(
                "train rows       {}   batches appended {} (batch size {})",
                status.train_rows, status.batches_appended, status.batch_size
            )),
            Line::from(if app.data.busy { "working…" } else { "" }),
        ],
    };
    frame.render_widget(Paragraph::new(ingested).block(title("Data set")), facts);
    let ratio = if status.pool_rows > 0 {
        (status.pool_remaining as f64 / status.pool_rows as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    frame.render_widget(
        Gauge::default()
            .block(title("Pool left"))
            .gauge_style(Style::default().fg(Color::Green))
            .ratio(ratio)
            .label(format!(
                "{} of {} rows left in train_pool",
                status.pool_remaining, status.pool_rows
            )),
        pool,
    );
    let height = tables.height.saturating_sub(3) as usize;
    let (start, end) = window(app.data.selected, status.tables.len(), height);
    let rows = status.tables[start..end].iter().enumerate().map(|(i, t)| {
        let row = Row::new(vec![
            match t.database.as_str() {
                "raw" => "RawData".to_owned(),
                "clean" => "CleanData".to_owned(),
                other => other.to_owned(),
            },
            t.table.clone(),
            t.rows.to_string(),
            balance(t),
            short_fingerprint(t.fingerprint.as_deref().unwrap_or_default()).to_owned(),
        ]);
        if start + i == app.data.selected {
            row.style(selected_style())
        } else {
            row
        }
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(34),
                Constraint::Length(8),
                Constraint::Length(20),
                Constraint::Length(16),
            ],
        )
        .header(
            Row::new(["DATABASE", "TABLE", "ROWS", "READMITTED <30", "FINGERPRINT"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(title(&format!("Tables ({})", status.tables.len()))),
        tables,
    );
}
