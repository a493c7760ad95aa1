//! DAGs: every DAG with its schedule and paused state, its runs, the selected run's tasks as
//! live bars on a shared time axis (from the run events), and the log tail following the
//! selected task; trigger with parameters, pause, cancel.

use std::collections::{BTreeMap, VecDeque};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use crate::tui::action::Request;
use crate::tui::app::{App, Confirm, Edit, Line as Typed, Mode, matches_filter, move_selection};
use crate::tui::events::Happening;
use crate::tui::keymap::Intent;
use crate::tui::ui::{ago, clock, duration_s, pane, selected_style, window};
use readmit_proto::{
    DagFileError, DagInfo, DagList, DagRunInfo, LogEntry, RunChange, RunEvent, RunState,
    StateChange,
};

pub const KEYS: &[(Intent, &str)] = &[
    (
        Intent::NextPane,
        "DAGs → runs → tasks (the log follows the task)",
    ),
    (Intent::Trigger, "trigger the DAG, with parameters"),
    (Intent::Pause, "pause or resume the DAG's schedule"),
    (Intent::Cancel, "cancel the selected run (asks first)"),
    (Intent::Filter, "filter DAGs by name"),
];

/// Log lines kept for the tail.
pub const LOG_KEPT: usize = 5000;

#[derive(Debug, Default)]
pub struct State {
    pub dags: Vec<DagInfo>,
    pub load_errors: Vec<DagFileError>,
    pub error: Option<String>,
    pub filter: String,
    pub selected_dag: usize,
    pub runs_of: String,
    pub runs: Vec<DagRunInfo>,
    pub runs_error: Option<String>,
    pub selected_run: usize,
    pub selected_task: usize,
    pub logs_of: String,
    pub logs: VecDeque<LogEntry>,
    pub pane: usize,
}

impl State {
    pub fn visible(&self) -> Vec<&DagInfo> {
        self.dags
            .iter()
            .filter(|d| matches_filter(&self.filter, &d.name))
            .collect()
    }

    pub fn dag(&self) -> Option<&DagInfo> {
        self.visible().get(self.selected_dag).copied()
    }

    pub fn run(&self) -> Option<&DagRunInfo> {
        self.runs.get(self.selected_run)
    }
}

pub fn refresh(app: &mut App) {
    app.request(Request::ListDags);
    if !app.dags.runs_of.is_empty() {
        let dag = app.dags.runs_of.clone();
        app.request(Request::DagRuns { dag });
    }
}

pub fn on_dags(app: &mut App, reply: Result<DagList, String>) {
    match reply {
        Ok(r) => {
            app.dags.dags = r.dags;
            app.dags.load_errors = r.errors;
            app.dags.error = None;
            select_dag(app);
        }
        Err(e) => app.dags.error = Some(e),
    }
}

/// Follows the DAG under the cursor: its runs are read when it changes.
fn select_dag(app: &mut App) {
    let len = app.dags.visible().len();
    if app.dags.selected_dag >= len {
        app.dags.selected_dag = len.saturating_sub(1);
    }
    let name = app.dags.dag().map(|d| d.name.clone()).unwrap_or_default();
    if name != app.dags.runs_of {
        app.dags.runs_of.clone_from(&name);
        app.dags.runs.clear();
        app.dags.selected_run = 0;
        app.dags.selected_task = 0;
        if !name.is_empty() {
            app.request(Request::DagRuns { dag: name });
        }
    }
}

pub fn on_runs(app: &mut App, dag: &str, reply: Result<Vec<DagRunInfo>, String>) {
    if dag.is_empty() {
        // Every DAG's last runs: the Overview's history.
        if let Ok(runs) = &reply {
            app.events.history_all(runs.iter().flat_map(run_history));
        }
        return;
    }
    if dag != app.dags.runs_of {
        return;
    }
    match reply {
        Ok(runs) => {
            let selected = app.dags.run().map(|r| r.run_id.clone());
            app.dags.runs = runs;
            app.dags.runs_error = None;
            app.dags.selected_run = selected
                .and_then(|id| app.dags.runs.iter().position(|r| r.run_id == id))
                .unwrap_or(0);
            select_run(app);
        }
        Err(e) => app.dags.runs_error = Some(e),
    }
}

/// A run the agent just answered about (a trigger, a cancel): shown at once.
pub fn on_run(app: &mut App, reply: Result<DagRunInfo, String>) {
    let Ok(run) = reply else { return };
    if run.dag != app.dags.runs_of {
        return;
    }
    match app.dags.runs.iter_mut().find(|r| r.run_id == run.run_id) {
        // The events (or a refresh) already brought it, fresher than this answer.
        Some(_) => {}
        None => {
            app.dags.runs.insert(0, run);
            app.dags.selected_run = 0;
            select_run(app);
        }
    }
}

fn select_run(app: &mut App) {
    let id = app.dags.run().map(|r| r.run_id.clone()).unwrap_or_default();
    if id != app.dags.logs_of {
        app.dags.logs_of.clone_from(&id);
        app.dags.logs.clear();
        app.dags.selected_task = 0;
        if !id.is_empty() {
            app.request(Request::RunLogs { run_id: id });
        }
    }
}

pub fn on_logs(app: &mut App, run_id: &str, reply: Result<Vec<LogEntry>, String>) {
    if run_id != app.dags.logs_of {
        return;
    }
    if let Ok(mut lines) = reply {
        // Lines the event stream brought after this answer was read stay.
        let last = lines.last().map_or(-1, |l| l.seq);
        lines.extend(app.dags.logs.drain(..).filter(|l| l.seq > last));
        app.dags.logs = lines.into();
        while app.dags.logs.len() > LOG_KEPT {
            app.dags.logs.pop_front();
        }
    }
}

/// A run starting, as an event line.
fn started(dag: &str, run_id: &str, at_ms: i64) -> Happening {
    Happening {
        key: format!("dag run {run_id} started"),
        at_ms,
        text: format!("DAG {dag} run {} started", short(run_id)),
        ok: true,
    }
}

/// A run ending in `state`, as an event line.
fn ended(dag: &str, run_id: &str, state: RunState, error: &str, at_ms: i64) -> Happening {
    let mut text = format!("DAG {dag} run {} {}", short(run_id), state.name());
    if !error.is_empty() {
        text.push_str(&format!(": {error}"));
    }
    Happening {
        key: format!("dag run {run_id} ended"),
        at_ms,
        text,
        ok: state == RunState::Succeeded,
    }
}

/// What a stored run tells of its start and end.
fn run_history(run: &DagRunInfo) -> impl Iterator<Item = Happening> {
    let start = (run.started_at_ms > 0).then(|| started(&run.dag, &run.run_id, run.started_at_ms));
    let end = (run.state.is_terminal() && run.ended_at_ms > 0).then(|| {
        ended(
            &run.dag,
            &run.run_id,
            run.state,
            &run.error,
            run.ended_at_ms,
        )
    });
    start.into_iter().chain(end)
}

pub fn state_color(state: RunState) -> Color {
    match state {
        RunState::Succeeded => Color::Green,
        RunState::Running => Color::Cyan,
        RunState::Failed | RunState::UpstreamFailed => Color::Red,
        RunState::UpForRetry | RunState::Queued => Color::Yellow,
        RunState::Cancelled | RunState::Skipped | RunState::Pending => Color::DarkGray,
    }
}

/// A run's state change or log line, as it happens.
pub fn on_event(app: &mut App, event: RunEvent) {
    let at = event.timestamp_ms;
    match event.change {
        RunChange::State(change) => {
            if change.task_id.is_empty() && change.state.is_terminal() {
                app.events.live(ended(
                    &event.dag,
                    &event.run_id,
                    change.state,
                    &change.error,
                    at,
                ));
                // The finished run as the agent stored it: events missed while the run was
                // not yet listed (its trigger's answer still on the way) are filled in.
                if event.dag == app.dags.runs_of {
                    app.request(Request::DagRuns {
                        dag: event.dag.clone(),
                    });
                }
            } else if change.task_id.is_empty() && change.state == RunState::Running {
                app.events.live(started(&event.dag, &event.run_id, at));
            }
            match app.dags.runs.iter_mut().find(|r| r.run_id == event.run_id) {
                Some(run) => apply_change(run, &change, at),
                None if event.dag == app.dags.runs_of => {
                    app.request(Request::DagRuns {
                        dag: event.dag.clone(),
                    });
                }
                None => {}
            }
        }
        RunChange::Log(line)
            if event.run_id == app.dags.logs_of
                && app.dags.logs.back().is_none_or(|l| l.seq < line.seq) =>
        {
            app.dags.logs.push_back(line);
            if app.dags.logs.len() > LOG_KEPT {
                app.dags.logs.pop_front();
            }
        }
        RunChange::Log(_) => {}
    }
}

fn apply_change(run: &mut DagRunInfo, change: &StateChange, at: i64) {
    let terminal = change.state.is_terminal();
    let running = change.state == RunState::Running;
    if change.task_id.is_empty() {
        run.state = change.state;
        run.error.clone_from(&change.error);
        if running && run.started_at_ms == 0 {
            run.started_at_ms = at;
        }
        if terminal {
            run.ended_at_ms = at;
            if run.started_at_ms > 0 {
                run.duration_s = (at - run.started_at_ms) as f64 / 1000.0;
            }
        }
        return;
    }
    if let Some(task) = run.tasks.iter_mut().find(|t| t.task_id == change.task_id) {
        task.state = change.state;
        task.attempt = change.attempt;
        task.error.clone_from(&change.error);
        if running {
            task.started_at_ms = at;
            task.ended_at_ms = 0;
        }
        if terminal {
            task.ended_at_ms = at;
            if task.started_at_ms > 0 {
                task.duration_s = (at - task.started_at_ms) as f64 / 1000.0;
            }
        }
    }
}

/// A run id as people read it: run ids are `<dag>__<uuid>`; the uuid's first 8 characters.
pub fn short(id: &str) -> &str {
    let id = id.rsplit_once("__").map_or(id, |(_, uuid)| uuid);
    id.get(..8).unwrap_or(id)
}

pub fn set_filter(app: &mut App, text: &str) {
    app.dags.filter = text.to_owned();
    app.dags.selected_dag = 0;
    select_dag(app);
}

pub fn on_intent(app: &mut App, intent: Intent) {
    let page = crate::tui::app::page(app);
    match intent {
        Intent::NextPane | Intent::Right => app.dags.pane = (app.dags.pane + 1).min(2),
        Intent::PrevPane | Intent::Left | Intent::Back => {
            app.dags.pane = app.dags.pane.saturating_sub(1);
        }
        Intent::Select => app.dags.pane = (app.dags.pane + 1).min(2),
        Intent::Up
        | Intent::Down
        | Intent::PageUp
        | Intent::PageDown
        | Intent::Top
        | Intent::Bottom => match app.dags.pane {
            0 => {
                let len = app.dags.visible().len();
                if move_selection(&mut app.dags.selected_dag, len, intent, page) {
                    select_dag(app);
                }
            }
            1 => {
                let len = app.dags.runs.len();
                if move_selection(&mut app.dags.selected_run, len, intent, page) {
                    select_run(app);
                }
            }
            _ => {
                let len = app.dags.run().map_or(0, |r| r.tasks.len());
                move_selection(&mut app.dags.selected_task, len, intent, page);
            }
        },
        Intent::Trigger => {
            if let Some(dag) = app.dags.dag() {
                let defaults: Vec<String> =
                    dag.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                app.mode = Mode::Typing {
                    edit: Edit::TriggerParams {
                        dag: dag.name.clone(),
                    },
                    line: Typed::new(&defaults.join(" ")),
                };
            }
        }
        Intent::Pause => {
            if let Some(dag) = app.dags.dag() {
                let request = Request::Pause {
                    dag: dag.name.clone(),
                    paused: !dag.paused,
                };
                app.request(request);
            }
        }
        Intent::Cancel => match app.dags.run() {
            Some(run) if !run.state.is_terminal() => {
                app.mode = Mode::Confirm(Confirm {
                    message: format!(
                        "Cancel run {} of {}? Its running tasks are killed; it ends cancelled.",
                        run.run_id, run.dag
                    ),
                    request: Request::Cancel {
                        run_id: run.run_id.clone(),
                    },
                });
            }
            Some(run) => {
                let text = format!("run {} already {}", short(&run.run_id), run.state.name());
                app.flash(text, true);
            }
            None => app.flash("no run selected", true),
        },
        _ => {}
    }
}

/// Triggers a DAG with `k=v` pairs as typed.
pub fn trigger(app: &mut App, dag: &str, text: &str) {
    let mut params = BTreeMap::new();
    for pair in text.split_whitespace() {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k.to_owned(), v.to_owned());
            }
            _ => {
                app.flash(
                    format!("trigger {dag}: {pair:?} is not name=value; nothing triggered"),
                    true,
                );
                return;
            }
        }
    }
    app.request(Request::Trigger {
        dag: dag.to_owned(),
        params,
    });
    app.flash(format!("triggering {dag}…"), false);
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.dags;
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(42), Constraint::Percentage(58)]).areas(area);
    let [dags_area, runs_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(left);
    let [gantt_area, logs_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(right);

    let visible = s.visible();
    let h = dags_area.height.saturating_sub(3) as usize;
    let (start, end) = window(s.selected_dag, visible.len(), h);
    let rows = visible[start..end].iter().enumerate().map(|(i, d)| {
        let row = Row::new(vec![
            Span::raw(d.name.clone()),
            Span::raw(if d.schedule.is_empty() {
                "manual".to_owned()
            } else {
                d.schedule.clone()
            }),
            if d.paused {
                Span::styled("paused", Style::default().fg(Color::Yellow))
            } else {
                Span::styled("active", Style::default().fg(Color::Green))
            },
            Span::raw(d.tasks.len().to_string()),
        ]);
        if start + i == s.selected_dag {
            row.style(selected_style())
        } else {
            row
        }
    });
    let mut dags_title = format!("DAGs ({})", visible.len());
    if !s.filter.is_empty() {
        dags_title.push_str(&format!(" /{}", s.filter));
    }
    if !s.load_errors.is_empty() {
        dags_title.push_str(&format!(" · {} files did not load", s.load_errors.len()));
    }
    let table = Table::new(
        rows,
        [
            Constraint::Min(22),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Length(5),
        ],
    )
    .header(Row::new(["NAME", "SCHEDULE", "STATE", "TASKS"]).style(bold()))
    .block(pane(&dags_title, s.pane == 0));
    match &s.error {
        Some(e) if s.dags.is_empty() => frame.render_widget(
            Paragraph::new(e.clone())
                .style(Style::default().fg(Color::Red))
                .block(pane("DAGs", s.pane == 0)),
            dags_area,
        ),
        _ => frame.render_widget(table, dags_area),
    }

    let h = runs_area.height.saturating_sub(3) as usize;
    let (start, end) = window(s.selected_run, s.runs.len(), h);
    let rows = s.runs[start..end].iter().enumerate().map(|(i, r)| {
        let row = Row::new(vec![
            Span::raw(short(&r.run_id).to_owned()),
            Span::styled(r.state.name(), Style::default().fg(state_color(r.state))),
            Span::raw(r.trigger.clone()),
            Span::raw(ago(app.now_ms, r.queued_at_ms)),
            Span::raw(if r.ended_at_ms > 0 {
                duration_s(r.duration_s)
            } else {
                "-".into()
            }),
        ]);
        if start + i == s.selected_run {
            row.style(selected_style())
        } else {
            row
        }
    });
    let runs_title = format!(
        "Runs of {} ({})",
        if s.runs_of.is_empty() {
            "-"
        } else {
            &s.runs_of
        },
        s.runs.len()
    );
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Length(15),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Min(7),
            ],
        )
        .header(Row::new(["RUN", "STATE", "TRIGGER", "QUEUED", "TOOK"]).style(bold()))
        .block(pane(&runs_title, s.pane == 1)),
        runs_area,
    );
    draw_gantt(app, frame, gantt_area);
    draw_logs(app, frame, logs_area);
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// The selected run's tasks as bars on the run's time axis.
fn draw_gantt(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.dags;
    let Some(run) = s.run() else {
        frame.render_widget(
            Paragraph::new("no run selected").block(pane("Tasks", s.pane == 2)),
            area,
        );
        return;
    };
    let now = app.now_ms;
    let start = run
        .tasks
        .iter()
        .filter(|t| t.started_at_ms > 0)
        .map(|t| t.started_at_ms)
        .chain((run.started_at_ms > 0).then_some(run.started_at_ms))
        .min()
        .unwrap_or(now);
    let end = if run.ended_at_ms > 0 {
        run.ended_at_ms
            .max(run.tasks.iter().map(|t| t.ended_at_ms).max().unwrap_or(0))
    } else {
        now
    }
    .max(start + 1);
    let name_w = run
        .tasks
        .iter()
        .map(|t| t.task_id.len())
        .max()
        .unwrap_or(4)
        .min(22);
    let bar_w = (area.width as usize).saturating_sub(name_w + 32).max(10);
    let h = area.height.saturating_sub(2) as usize;
    let (first, last) = window(s.selected_task, run.tasks.len(), h);
    let lines: Vec<Line> = run.tasks[first..last]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let color = state_color(t.state);
            let scale =
                |ms: i64| ((ms - start) as f64 / (end - start) as f64 * bar_w as f64) as usize;
            let (a, b) = if t.started_at_ms > 0 {
                let stop = if t.ended_at_ms > 0 {
                    t.ended_at_ms
                } else {
                    now
                };
                let a = scale(t.started_at_ms).min(bar_w - 1);
                (a, scale(stop).clamp(a + 1, bar_w))
            } else {
                (0, 0)
            };
            let bar = format!(
                "{}{}{}",
                " ".repeat(a),
                "█".repeat(b.saturating_sub(a)),
                "·".repeat(bar_w.saturating_sub(b.max(a)))
            );
            let took = match (t.started_at_ms, t.ended_at_ms) {
                (0, _) => "-".to_owned(),
                (s0, 0) => duration_s((now - s0) as f64 / 1000.0),
                _ => duration_s(t.duration_s),
            };
            let mut name = t.task_id.clone();
            name.truncate(name_w);
            let mut spans = vec![
                Span::raw(format!("{name:<name_w$} ")),
                Span::styled(
                    format!("{:<15} ", t.state.name()),
                    Style::default().fg(color),
                ),
                Span::styled(bar, Style::default().fg(color)),
                Span::raw(format!(" {took:>7}")),
            ];
            if t.attempt > 1 {
                spans.push(Span::raw(format!(" try {}/{}", t.attempt, t.max_attempts)));
            }
            let line = Line::from(spans);
            if s.pane == 2 && first + i == s.selected_task {
                line.style(selected_style())
            } else {
                line
            }
        })
        .collect();
    let title = format!(
        "Run {} {} · {} → {}",
        short(&run.run_id),
        run.state.name(),
        clock(start),
        if run.ended_at_ms > 0 {
            clock(end)
        } else {
            "now".into()
        }
    );
    frame.render_widget(Paragraph::new(lines).block(pane(&title, s.pane == 2)), area);
}

/// The log tail: the selected task's lines when the task pane has the focus, else the run's.
fn draw_logs(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.dags;
    let task = (s.pane == 2)
        .then(|| s.run().and_then(|r| r.tasks.get(s.selected_task)))
        .flatten()
        .map(|t| t.task_id.as_str());
    let h = area.height.saturating_sub(2) as usize;
    // Only the last `h` matching lines are looked at: the tail, whatever the log's length.
    let mut lines: Vec<Line> = s
        .logs
        .iter()
        .rev()
        .filter(|l| task.is_none_or(|t| l.task_id == t))
        .take(h)
        .map(|l| {
            let color = match l.level.as_str() {
                "error" | "ERROR" => Color::Red,
                "warn" | "WARN" => Color::Yellow,
                _ => Color::Reset,
            };
            Line::from(vec![
                Span::styled(
                    format!("{} ", clock(l.timestamp_ms)),
                    Style::default().fg(Color::DarkGray),
                ),
                Span::styled(
                    format!("{:<14} ", l.task_id),
                    Style::default().fg(Color::Cyan),
                ),
                Span::styled(l.message.clone(), Style::default().fg(color)),
            ])
        })
        .collect();
    lines.reverse();
    let title = match task {
        Some(t) => format!("Log of {t} (following)"),
        None => format!("Log ({} lines, following)", s.logs.len()),
    };
    frame.render_widget(Paragraph::new(lines).block(pane(&title, false)), area);
}
