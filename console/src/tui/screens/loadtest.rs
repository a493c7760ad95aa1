//! Load test: configure and fire a test or a capacity search on an inference agent's engine;
//! while it runs, live charts of requests/s, p50/p95/p99 and errors, one sample a second; the
//! thresholds green or red once judged; past reports.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph, Row, Table};

use crate::tui::action::Request;
use crate::tui::app::{App, Confirm, Edit, Line as Typed, Mode, move_selection};
use crate::tui::events::Happening;
use crate::tui::keymap::Intent;
use crate::tui::ui::{ago, pane, selected_style, window};
use readmit_proto::v1;

pub const KEYS: &[(Intent, &str)] = &[
    (Intent::NextPane, "settings ↔ past reports"),
    (Intent::Select, "edit the setting"),
    (Intent::Left, "previous choice (target, capacity search)"),
    (Intent::Right, "next choice"),
    (Intent::Fire, "fire the test (or the capacity search)"),
    (Intent::Stop, "stop the running test (asks first)"),
];

/// The settings of the form: name, default.
pub const FIELDS: &[(&str, &str)] = &[
    ("target", "predict"),
    ("users (closed loop)", "10"),
    ("spawn rate users/s", "0"),
    ("think ms", "0"),
    ("rate req/s (open loop if > 0)", "0"),
    ("duration s (search: a step)", "10"),
    ("thresholds", "p95<100ms,errors<1%"),
    ("capacity search", "no"),
    ("search up to users/rate", "100"),
];
const TARGETS: &[&str] = &["predict", "invocations", "oip", "grpc"];
const NUMERIC: &[usize] = &[1, 2, 3, 4, 5, 8];

#[derive(Debug)]
pub struct State {
    pub form: Vec<String>,
    pub selected: usize,
    pub pane: usize,
    pub current: Option<v1::LoadTestSummary>,
    pub samples: Vec<v1::LoadTestSample>,
    pub finished: Option<Result<v1::LoadTestSummary, String>>,
    pub past: Vec<v1::LoadTestSummary>,
    pub past_error: Option<String>,
    pub selected_past: usize,
}

impl Default for State {
    fn default() -> Self {
        Self {
            form: FIELDS.iter().map(|(_, d)| (*d).to_owned()).collect(),
            selected: 0,
            pane: 0,
            current: None,
            samples: Vec::new(),
            finished: None,
            past: Vec::new(),
            past_error: None,
            selected_past: 0,
        }
    }
}

impl State {
    pub fn running(&self) -> bool {
        self.current.is_some() && self.finished.is_none()
    }
}

pub fn refresh(app: &mut App) {
    app.request(Request::LoadTests);
}

pub fn field_name(i: usize) -> &'static str {
    FIELDS.get(i).map_or("", |f| f.0)
}

pub fn accepts(i: usize, _text: &str, c: char) -> bool {
    !NUMERIC.contains(&i) || c.is_ascii_digit() || c == '.'
}

pub fn set_field(app: &mut App, i: usize, text: &str) {
    if let Some(v) = app.load.form.get_mut(i) {
        *v = text.trim().to_owned();
    }
}

fn num(app: &App, i: usize) -> Result<f64, String> {
    app.load.form[i]
        .parse::<f64>()
        .map_err(|_| format!("{}: {:?} is not a number", FIELDS[i].0, app.load.form[i]))
}

/// The spec the form describes, checked.
pub fn spec(app: &App) -> Result<v1::LoadTestSpec, String> {
    let kind = match app.load.form[0].as_str() {
        "predict" => v1::TargetKind::Predict,
        "invocations" => v1::TargetKind::Invocations,
        "oip" => v1::TargetKind::OipInfer,
        "grpc" => v1::TargetKind::GrpcPredict,
        other => {
            return Err(format!(
                "target: {other:?} is not predict, invocations, oip or grpc"
            ));
        }
    };
    let users = num(app, 1)?;
    let spawn = num(app, 2)?;
    let think = num(app, 3)? as u64;
    let rate = num(app, 4)?;
    let duration_ms = (num(app, 5)? * 1000.0) as u64;
    if duration_ms == 0 {
        return Err("duration s: must be above 0".into());
    }
    let thresholds: Vec<String> = app.load.form[6]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let capacity = app.load.form[7] == "yes";
    let max = num(app, 8)? as u32;
    let load = if rate > 0.0 {
        v1::load_test_spec::Load::Open(v1::OpenLoop {
            start_rate: rate,
            stages: Vec::new(),
            connections: 0,
        })
    } else {
        if users < 1.0 {
            return Err("users (closed loop): at least 1, or set a rate".into());
        }
        v1::load_test_spec::Load::Closed(v1::ClosedLoop {
            users: users as u32,
            spawn_rate: spawn,
            think_min_ms: think,
            think_max_ms: think,
        })
    };
    if capacity && thresholds.is_empty() {
        return Err("capacity search: give thresholds, its objective".into());
    }
    Ok(v1::LoadTestSpec {
        name: "tui".into(),
        target: Some(v1::LoadTarget {
            url: String::new(),
            kind: kind as i32,
            batch: if kind == v1::TargetKind::Invocations {
                10
            } else {
                0
            },
            model: String::new(),
            timeout_ms: 0,
            agent: String::new(),
        }),
        load: Some(load),
        duration_ms: if capacity { 0 } else { duration_ms },
        max_requests: 0,
        thresholds,
        abort_on_fail: false,
        capacity: capacity.then_some(v1::CapacitySearch {
            start: if rate > 0.0 {
                rate as u32
            } else {
                users as u32
            },
            step: 0,
            max,
            step_duration_ms: duration_ms,
            refine: 0,
        }),
    })
}

pub fn on_list(app: &mut App, reply: Result<Vec<v1::LoadTestSummary>, String>) {
    match reply {
        Ok(list) => {
            app.events.history_all(list.iter().flat_map(test_history));
            app.load.past = list;
            app.load.past_error = None;
            let len = app.load.past.len();
            app.load.selected_past = app.load.selected_past.min(len.saturating_sub(1));
        }
        Err(e) => app.load.past_error = Some(e),
    }
}

/// A test starting, as an event line.
fn test_started(id: &str, at_ms: i64) -> Happening {
    Happening {
        key: format!("load test {id} started"),
        at_ms,
        text: format!("load test {id} started"),
        ok: true,
    }
}

/// A test ending, as an event line: its figures and verdict.
fn test_ended(s: &v1::LoadTestSummary, at_ms: i64) -> Happening {
    let total = s.total.clone().unwrap_or_default();
    let verdict = if s.thresholds.is_empty() {
        ""
    } else if s.passed {
        ", thresholds held"
    } else {
        ", thresholds broke"
    };
    let mut text = format!(
        "load test {} ended: {} requests, {:.0} req/s{verdict}",
        s.test_id, total.requests, total.rps
    );
    if let Some(c) = &s.capacity {
        text.push_str(&format!(", holds {} {}", c.max_level, c.dimension));
    }
    if !s.error.is_empty() {
        text.push_str(&format!(": {}", s.error));
    }
    Happening {
        key: format!("load test {} ended", s.test_id),
        at_ms,
        text,
        ok: s.error.is_empty() && (s.passed || s.thresholds.is_empty()),
    }
}

/// A time the agent reported, else (0: not reported) `now`.
fn time_or(reported_ms: i64, now_ms: i64) -> i64 {
    if reported_ms > 0 { reported_ms } else { now_ms }
}

/// What a past test tells of its start and end.
fn test_history(s: &v1::LoadTestSummary) -> impl Iterator<Item = Happening> {
    let start = test_started(&s.test_id, s.started_at_ms);
    let end = (s.ended_at_ms > 0).then(|| test_ended(s, s.ended_at_ms));
    std::iter::once(start).chain(end)
}

pub fn on_started(app: &mut App, reply: Result<v1::LoadTestSummary, String>) {
    match reply {
        Ok(summary) => {
            let at = time_or(summary.started_at_ms, app.now_ms);
            app.events.live(test_started(&summary.test_id, at));
            app.load.current = Some(summary);
            app.load.samples.clear();
            app.load.finished = None;
        }
        Err(e) => app.flash(format!("load test: {e}"), true),
    }
}

pub fn on_sample(app: &mut App, sample: v1::LoadTestSample) {
    if app
        .load
        .current
        .as_ref()
        .is_some_and(|c| c.test_id == sample.test_id)
    {
        app.load.samples.push(sample);
    }
}

pub fn on_ended(app: &mut App, reply: Result<v1::LoadTestSummary, String>) {
    if let Ok(s) = &reply {
        app.events
            .live(test_ended(s, time_or(s.ended_at_ms, app.now_ms)));
    }
    app.load.finished = Some(reply);
    refresh(app);
}

pub fn on_intent(app: &mut App, intent: Intent) {
    let page = crate::tui::app::page(app);
    let s = &mut app.load;
    match intent {
        Intent::NextPane | Intent::PrevPane => s.pane = 1 - s.pane.min(1),
        Intent::Back => s.pane = 0,
        Intent::Up
        | Intent::Down
        | Intent::PageUp
        | Intent::PageDown
        | Intent::Top
        | Intent::Bottom => {
            if s.pane == 0 {
                move_selection(&mut s.selected, FIELDS.len(), intent, page);
            } else {
                let len = s.past.len();
                move_selection(&mut s.selected_past, len, intent, page);
            }
        }
        Intent::Left | Intent::Right if s.pane == 0 => {
            let step = |choices: &[&str], v: &str| {
                let n = choices.len();
                let i = choices.iter().position(|c| *c == v).unwrap_or(0);
                let j = if intent == Intent::Right {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                choices[j].to_owned()
            };
            match s.selected {
                0 => s.form[0] = step(TARGETS, &s.form[0]),
                7 => s.form[7] = step(&["no", "yes"], &s.form[7]),
                _ => {}
            }
        }
        Intent::Select if s.pane == 0 => {
            let i = s.selected;
            app.mode = Mode::Typing {
                edit: Edit::LoadField(i),
                line: Typed::new(&app.load.form[i]),
            };
        }
        Intent::Fire => {
            if app.load.running() {
                app.flash("a test is running: stop it first (x)", true);
                return;
            }
            match spec(app) {
                Ok(spec) => {
                    app.request(Request::StartLoadTest(Box::new(spec)));
                    app.flash("starting the load test…", false);
                }
                Err(e) => app.flash(e, true),
            }
        }
        Intent::Stop => match &app.load.current {
            Some(c) if app.load.running() => {
                app.mode = Mode::Confirm(Confirm {
                    message: format!(
                        "Stop load test {}? Requests in flight finish; it is kept as stopped.",
                        c.test_id
                    ),
                    request: Request::StopLoadTest {
                        id: c.test_id.clone(),
                    },
                });
            }
            _ => app.flash("no test is running", true),
        },
        _ => {}
    }
}

fn state_name(state: i32) -> &'static str {
    match v1::LoadTestState::try_from(state).unwrap_or(v1::LoadTestState::Unspecified) {
        v1::LoadTestState::Running => "running",
        v1::LoadTestState::Finished => "finished",
        v1::LoadTestState::Stopped => "stopped",
        v1::LoadTestState::Failed => "failed",
        v1::LoadTestState::Aborted => "aborted",
        v1::LoadTestState::Unspecified => "-",
    }
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.load;
    let [left, right] =
        Layout::horizontal([Constraint::Length(54), Constraint::Min(30)]).areas(area);
    let [form_area, past_area] = Layout::vertical([
        Constraint::Length(FIELDS.len() as u16 + 3),
        Constraint::Min(4),
    ])
    .areas(left);
    let editing = match &app.mode {
        Mode::Typing {
            edit: Edit::LoadField(i),
            line,
        } => Some((*i, line.text.clone())),
        _ => None,
    };
    let rows = FIELDS.iter().enumerate().map(|(i, (name, _))| {
        let value = match &editing {
            Some((e, t)) if *e == i => format!("{t}█"),
            _ if i == 0 || i == 7 => format!("‹ {} ›", s.form[i]),
            _ => s.form[i].clone(),
        };
        let row = Row::new(vec![(*name).to_owned(), value]);
        if i == s.selected && s.pane == 0 {
            row.style(selected_style())
        } else {
            row
        }
    });
    frame.render_widget(
        Table::new(rows, [Constraint::Length(30), Constraint::Min(10)])
            .block(pane("Test settings · f fires", s.pane == 0)),
        form_area,
    );
    let h = past_area.height.saturating_sub(3) as usize;
    let (a, b) = window(s.selected_past, s.past.len(), h);
    let rows = s.past[a..b].iter().enumerate().map(|(i, t)| {
        let total = t.total.clone().unwrap_or_default();
        let verdict = if t.thresholds.is_empty() {
            Span::raw("-")
        } else if t.passed {
            Span::styled("pass", Style::default().fg(Color::Green))
        } else {
            Span::styled("FAIL", Style::default().fg(Color::Red))
        };
        let row = Row::new(vec![
            Span::raw(t.test_id.get(..8).unwrap_or(&t.test_id).to_owned()),
            Span::raw(state_name(t.state)),
            Span::raw(format!("{:.0}", total.rps)),
            verdict,
            Span::raw(ago(app.now_ms, t.started_at_ms)),
        ]);
        if a + i == s.selected_past && s.pane == 1 {
            row.style(selected_style())
        } else {
            row
        }
    });
    let title = match &s.past_error {
        Some(e) => format!("Past reports: {e}"),
        None => format!("Past reports ({})", s.past.len()),
    };
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(5),
                Constraint::Min(7),
            ],
        )
        .header(
            Row::new(["TEST", "STATE", "REQ/S", "THR", "STARTED"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(pane(&title, s.pane == 1)),
        past_area,
    );
    if s.pane == 1 {
        match s.past.get(s.selected_past) {
            Some(t) => draw_summary(app, frame, right, t, "Report"),
            None => frame.render_widget(
                Paragraph::new("no past tests").block(pane("Report", false)),
                right,
            ),
        }
        return;
    }
    draw_live(app, frame, right);
}

fn draw_live(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.load;
    let Some(current) = &s.current else {
        let text = "Set the test on the left (enter edits, ←/→ picks), then f fires it on the inference agent's engine.\nEvery finished test is kept as a run of the load_tests experiment.";
        frame.render_widget(Paragraph::new(text).block(pane("Live", false)), area);
        return;
    };
    let [head, rps_area, lat_area] = Layout::vertical([
        Constraint::Length(8),
        Constraint::Percentage(45),
        Constraint::Min(6),
    ])
    .areas(area);
    match &s.finished {
        Some(Ok(summary)) => draw_summary(app, frame, head, summary, "Finished"),
        Some(Err(e)) => frame.render_widget(
            Paragraph::new(e.clone())
                .style(Style::default().fg(Color::Red))
                .block(pane("Finished", false)),
            head,
        ),
        None => {
            let last = s.samples.last();
            let mut lines = vec![Line::from(format!(
                "test {} running · {:.0}s · {} users · {} requests, {} failed",
                current.test_id,
                last.map_or(0.0, |l| l.elapsed_s),
                last.map_or(0, |l| l.users),
                last.map_or(0, |l| l.total_requests),
                last.map_or(0, |l| l.total_failures),
            ))];
            if let Some(step) = last.filter(|l| l.step > 0) {
                lines.push(Line::from(format!("capacity search step {}", step.step)));
            }
            let errors: Vec<String> = last
                .and_then(|l| l.interval.as_ref())
                .map(|f| {
                    f.errors
                        .iter()
                        .map(|e| format!("{} {}", e.kind, e.count))
                        .collect()
                })
                .unwrap_or_default();
            lines.push(Line::from(format!(
                "errors this second: {}",
                if errors.is_empty() {
                    "none".into()
                } else {
                    errors.join(", ")
                }
            )));
            let spec = current.spec.clone().unwrap_or_default();
            for t in &spec.thresholds {
                lines.push(Line::from(vec![
                    Span::styled(format!("… {t}"), Style::default().fg(Color::Yellow)),
                    Span::raw("  judged at the end"),
                ]));
            }
            frame.render_widget(Paragraph::new(lines).block(pane("Live", false)), head);
        }
    }
    let rps: Vec<(f64, f64)> = s
        .samples
        .iter()
        .map(|x| (x.elapsed_s, x.interval.as_ref().map_or(0.0, |f| f.rps)))
        .collect();
    let errs: Vec<(f64, f64)> = s
        .samples
        .iter()
        .map(|x| {
            (
                x.elapsed_s,
                x.interval
                    .as_ref()
                    .map_or(0.0, |f| (f.failures + f.missed) as f64),
            )
        })
        .collect();
    let lat = |q: fn(&v1::Latency) -> f64| -> Vec<(f64, f64)> {
        s.samples
            .iter()
            .filter_map(|x| {
                x.interval
                    .as_ref()
                    .and_then(|f| f.latency.as_ref())
                    .map(|l| (x.elapsed_s, q(l)))
            })
            .collect()
    };
    let (p50, p95, p99) = (lat(|l| l.p50_ms), lat(|l| l.p95_ms), lat(|l| l.p99_ms));
    let x_max = rps.last().map_or(1.0, |p| p.0).max(1.0);
    let y_max = rps.iter().chain(&errs).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let chart = Chart::new(vec![
        Dataset::default()
            .name("req/s")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&rps),
        Dataset::default()
            .name("errors/s")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Red))
            .data(&errs),
    ])
    .block(pane("Requests/s (cyan) and errors/s (red)", false))
    .x_axis(
        Axis::default()
            .title("s")
            .bounds([0.0, x_max])
            .labels(["0".to_owned(), format!("{x_max:.0}")]),
    )
    .y_axis(
        Axis::default()
            .bounds([0.0, y_max])
            .labels(["0".to_owned(), format!("{y_max:.0}")]),
    );
    frame.render_widget(chart, rps_area);
    let l_max = p99
        .iter()
        .chain(&p95)
        .chain(&p50)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    let chart = Chart::new(vec![
        Dataset::default()
            .name("p50")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Green))
            .data(&p50),
        Dataset::default()
            .name("p95")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Yellow))
            .data(&p95),
        Dataset::default()
            .name("p99")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Red))
            .data(&p99),
    ])
    .block(pane(
        "Latency ms each second: p50 green, p95 yellow, p99 red",
        false,
    ))
    .x_axis(
        Axis::default()
            .title("s")
            .bounds([0.0, x_max])
            .labels(["0".to_owned(), format!("{x_max:.0}")]),
    )
    .y_axis(
        Axis::default()
            .bounds([0.0, l_max])
            .labels(["0".to_owned(), format!("{l_max:.1}")]),
    );
    frame.render_widget(chart, lat_area);
}

fn draw_summary(app: &App, frame: &mut Frame, area: Rect, t: &v1::LoadTestSummary, title: &str) {
    let total = t.total.clone().unwrap_or_default();
    let lat = total.latency.unwrap_or_default();
    let mut lines = vec![
        Line::from(format!(
            "test {} {} · started {} · records: {}",
            t.test_id,
            state_name(t.state),
            ago(app.now_ms, t.started_at_ms),
            t.payload
        )),
        Line::from(format!(
            "{} requests, {} failed, {:.1} req/s over {:.1}s · p50 {:.2} p95 {:.2} p99 {:.2} max {:.2} ms",
            total.requests,
            total.failures,
            total.rps,
            total.seconds,
            lat.p50_ms,
            lat.p95_ms,
            lat.p99_ms,
            lat.max_ms
        )),
    ];
    if let Some(c) = &t.capacity {
        lines.push(Line::from(format!(
            "capacity: holds {} {} at {:.0} req/s{}",
            c.max_level,
            c.dimension,
            c.rps,
            if c.first_bad > 0 {
                format!(", breaks at {}", c.first_bad)
            } else {
                String::new()
            }
        )));
    }
    for th in &t.thresholds {
        let (mark, color) = if th.passed {
            ("✓", Color::Green)
        } else {
            ("✗", Color::Red)
        };
        lines.push(Line::from(Span::styled(
            format!("{mark} {} (observed {:.2})", th.threshold, th.observed),
            Style::default().fg(color),
        )));
    }
    if !t.error.is_empty() {
        lines.push(Line::from(Span::styled(
            t.error.clone(),
            Style::default().fg(Color::Red),
        )));
    }
    if !t.run_id.is_empty() {
        lines.push(Line::from(format!(
            "kept as run {} of load_tests",
            t.run_id
        )));
    }
    frame.render_widget(Paragraph::new(lines).block(pane(title, false)), area);
}
