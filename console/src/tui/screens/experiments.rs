//! Experiments: the runs of an experiment as a table sortable by any metric, param or tag
//! column and filtered on the tracking agent with MLflow's filter syntax; marked runs compared
//! side by side with the differences highlighted; a chart of one metric across the runs or of
//! a run's metric history.

use std::collections::BTreeSet;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::widgets::{Axis, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table};

use crate::tui::action::Request;
use crate::tui::app::{App, move_selection};
use crate::tui::keymap::Intent;
use crate::tui::ui::{ago, pane, selected_style, window};
use readmit_proto::v1;

pub const KEYS: &[(Intent, &str)] = &[
    (Intent::NextPane, "experiments → runs → detail"),
    (Intent::Select, "open the experiment's runs"),
    (Intent::Left, "previous column (runs pane)"),
    (Intent::Right, "next column (runs pane)"),
    (Intent::Sort, "sort by the column (again: other way)"),
    (Intent::Reverse, "reverse the order"),
    (Intent::Mark, "mark or unmark the run"),
    (Intent::Compare, "compare the marked runs side by side"),
    (Intent::Chart, "chart the column's metric across the runs"),
    (
        Intent::History,
        "chart the selected run's history of the column's metric",
    ),
    (
        Intent::Filter,
        "MLflow filter, e.g. metrics.val_roc_auc > 0.6 and params.C = '1'",
    ),
];

/// A column of the runs table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Name,
    Status,
    Started,
    Metric(String),
    Param(String),
    Tag(String),
}

impl Column {
    pub fn header(&self) -> String {
        match self {
            Column::Name => "RUN".into(),
            Column::Status => "STATUS".into(),
            Column::Started => "STARTED".into(),
            Column::Metric(k) => k.clone(),
            Column::Param(k) => format!("p.{k}"),
            Column::Tag(k) => format!("t.{k}"),
        }
    }
}

/// What the detail pane shows.
#[derive(Clone, Debug, Default)]
pub enum Detail {
    #[default]
    None,
    Compare(Result<v1::RunComparison, String>),
    Across {
        key: String,
    },
    History {
        run: String,
        key: String,
        points: Result<Vec<(f64, f64)>, String>,
    },
}

#[derive(Debug, Default)]
pub struct State {
    pub experiments: Vec<v1::Experiment>,
    pub error: Option<String>,
    pub selected_exp: usize,
    pub runs_of: String,
    pub runs: Vec<v1::Run>,
    pub runs_error: Option<String>,
    pub loading: bool,
    pub filter: String,
    pub columns: Vec<Column>,
    pub col: usize,
    pub sort: Option<(usize, bool)>,
    pub view: Vec<usize>,
    pub selected: usize,
    pub marked: BTreeSet<String>,
    pub pane: usize,
    pub detail: Detail,
    pub pending_open: Option<String>,
}

impl State {
    pub fn run(&self) -> Option<&v1::Run> {
        self.view.get(self.selected).and_then(|i| self.runs.get(*i))
    }

    pub fn experiment_name(&self) -> String {
        self.experiments
            .iter()
            .find(|e| e.experiment_id == self.runs_of)
            .map_or_else(|| self.runs_of.clone(), |e| e.name.clone())
    }
}

pub fn refresh(app: &mut App) {
    app.request(Request::Experiments);
    if !app.experiments.runs_of.is_empty() {
        search(app);
    }
}

fn search(app: &mut App) {
    app.experiments.loading = true;
    app.request(Request::SearchRuns {
        experiment_id: app.experiments.runs_of.clone(),
        filter: app.experiments.filter.clone(),
    });
}

pub fn on_experiments(app: &mut App, reply: Result<Vec<v1::Experiment>, String>) {
    match reply {
        Ok(list) => {
            app.experiments.experiments = list;
            app.experiments.error = None;
            if let Some(name) = app.experiments.pending_open.clone() {
                open_by_name(app, &name);
                app.experiments.pending_open = None;
            } else if app.experiments.runs_of.is_empty() && !app.experiments.experiments.is_empty()
            {
                open(app, 0);
            }
        }
        Err(e) => app.experiments.error = Some(e),
    }
}

/// Opens the runs of the experiment at `index`.
fn open(app: &mut App, index: usize) {
    let Some(e) = app.experiments.experiments.get(index) else {
        return;
    };
    app.experiments.selected_exp = index;
    if app.experiments.runs_of != e.experiment_id {
        app.experiments.runs_of.clone_from(&e.experiment_id);
        app.experiments.runs.clear();
        app.experiments.view.clear();
        app.experiments.marked.clear();
        app.experiments.selected = 0;
        app.experiments.detail = Detail::None;
    }
    search(app);
}

/// `:runs <experiment>`: opens it by name (once the list is read, if it is not yet).
pub fn open_by_name(app: &mut App, name: &str) {
    match app
        .experiments
        .experiments
        .iter()
        .position(|e| e.name == name)
    {
        Some(i) => {
            open(app, i);
            app.experiments.pane = 1;
        }
        // The list may be older than the experiment: read it again, then decide.
        None if app.experiments.pending_open.is_none() => {
            app.experiments.pending_open = Some(name.to_owned());
            app.request(Request::Experiments);
        }
        None => app.flash(format!(":runs: no experiment named {name:?}"), true),
    }
}

pub fn on_runs(
    app: &mut App,
    experiment_id: &str,
    filter: &str,
    reply: Result<Vec<v1::Run>, String>,
) {
    let s = &mut app.experiments;
    if experiment_id != s.runs_of || filter != s.filter {
        return;
    }
    s.loading = false;
    match reply {
        Ok(runs) => {
            let selected = s.run().map(|r| run_id(r).to_owned());
            s.runs = runs;
            s.runs_error = None;
            s.columns = columns(&s.runs);
            s.col = s.col.min(s.columns.len().saturating_sub(1));
            sort(s);
            s.selected = selected
                .and_then(|id| s.view.iter().position(|i| run_id(&s.runs[*i]) == id))
                .unwrap_or(0);
        }
        Err(e) => {
            if s.filter.is_empty() || !s.runs.is_empty() {
                app.flash(format!("runs: {e}"), true);
            }
            app.experiments.runs_error = Some(e);
        }
    }
}

/// Name, status, start, every metric, param and tag key found in the runs.
pub fn columns(runs: &[v1::Run]) -> Vec<Column> {
    let mut metrics = BTreeSet::new();
    let mut params = BTreeSet::new();
    let mut tags = BTreeSet::new();
    for run in runs {
        if let Some(d) = &run.data {
            metrics.extend(d.metrics.iter().map(|m| m.key.as_str()));
            params.extend(d.params.iter().map(|p| p.key.as_str()));
            tags.extend(
                d.tags
                    .keys()
                    .filter(|k| !k.starts_with("mlflow."))
                    .map(String::as_str),
            );
        }
    }
    let mut out = vec![Column::Name, Column::Status, Column::Started];
    out.extend(metrics.into_iter().map(|k| Column::Metric(k.to_owned())));
    out.extend(params.into_iter().map(|k| Column::Param(k.to_owned())));
    out.extend(tags.into_iter().map(|k| Column::Tag(k.to_owned())));
    out
}

fn run_id(run: &v1::Run) -> &str {
    run.info.as_ref().map_or("", |i| i.run_id.as_str())
}

pub fn metric(run: &v1::Run, key: &str) -> Option<f64> {
    run.data
        .as_ref()?
        .metrics
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.value)
}

/// A cell's text.
pub fn cell(run: &v1::Run, column: &Column, now_ms: i64) -> String {
    let info = run.info.as_ref();
    let data = run.data.as_ref();
    match column {
        Column::Name => info.map_or(String::new(), |i| {
            if i.run_name.is_empty() {
                i.run_id.clone()
            } else {
                i.run_name.clone()
            }
        }),
        Column::Status => info.map_or(String::new(), |i| status_name(i.status).to_owned()),
        Column::Started => info.map_or(String::new(), |i| ago(now_ms, i.start_time_ms)),
        Column::Metric(k) => metric(run, k).map_or(String::new(), |v| format!("{v:.4}")),
        Column::Param(k) => data
            .and_then(|d| d.params.iter().find(|p| p.key == *k))
            .map_or(String::new(), |p| p.value.clone()),
        Column::Tag(k) => data
            .and_then(|d| d.tags.get(k))
            .cloned()
            .unwrap_or_default(),
    }
}

fn status_name(status: i32) -> &'static str {
    match v1::RunStatus::try_from(status).unwrap_or(v1::RunStatus::Unspecified) {
        v1::RunStatus::Running => "RUNNING",
        v1::RunStatus::Scheduled => "SCHEDULED",
        v1::RunStatus::Finished => "FINISHED",
        v1::RunStatus::Failed => "FAILED",
        v1::RunStatus::Killed => "KILLED",
        v1::RunStatus::Unspecified => "-",
    }
}

/// Orders the view by the sort column: numbers as numbers, missing values last.
pub fn sort(s: &mut State) {
    let mut view: Vec<usize> = (0..s.runs.len()).collect();
    if let Some((col, desc)) = s.sort
        && let Some(column) = s.columns.get(col)
    {
        let keys: Vec<(Option<f64>, String)> = s
            .runs
            .iter()
            .map(|r| match column {
                Column::Metric(k) => (metric(r, k), String::new()),
                Column::Started => (
                    r.info.as_ref().map(|i| i.start_time_ms as f64),
                    String::new(),
                ),
                other => {
                    let text = cell(r, other, 0);
                    (text.parse::<f64>().ok(), text)
                }
            })
            .collect();
        view.sort_by(|a, b| {
            let (ka, kb) = (&keys[*a], &keys[*b]);
            let ord = match (ka.0, kb.0) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => ka.1.cmp(&kb.1),
            };
            if desc { ord.reverse() } else { ord }
        });
        // Missing values stay last whichever the direction.
        if desc {
            view.sort_by_key(|i| keys[*i].0.is_none() && keys[*i].1.is_empty());
        }
    }
    s.view = view;
}

pub fn set_filter(app: &mut App, text: &str) {
    app.experiments.filter = text.to_owned();
    app.experiments.selected = 0;
    if !app.experiments.runs_of.is_empty() {
        search(app);
    }
}

pub fn on_compare(app: &mut App, reply: Result<v1::RunComparison, String>) {
    app.experiments.detail = Detail::Compare(reply);
    app.experiments.pane = 2;
}

pub fn on_history(app: &mut App, run: &str, key: &str, reply: Result<Vec<v1::Metric>, String>) {
    if let Detail::History {
        run: r,
        key: k,
        points,
    } = &mut app.experiments.detail
        && r == run
        && k == key
    {
        *points = reply.map(|ms| ms.iter().map(|m| (m.step as f64, m.value)).collect());
    }
}

pub fn on_intent(app: &mut App, intent: Intent) {
    let page = crate::tui::app::page(app);
    let s = &mut app.experiments;
    match intent {
        Intent::NextPane => s.pane = (s.pane + 1) % 3,
        Intent::PrevPane => s.pane = (s.pane + 2) % 3,
        Intent::Back if s.pane > 0 => s.pane -= 1,
        Intent::Select if s.pane == 0 => {
            let i = s.selected_exp;
            open(app, i);
            app.experiments.pane = 1;
        }
        Intent::Up
        | Intent::Down
        | Intent::PageUp
        | Intent::PageDown
        | Intent::Top
        | Intent::Bottom => {
            if s.pane == 0 {
                let len = s.experiments.len();
                move_selection(&mut s.selected_exp, len, intent, page);
            } else {
                let len = s.view.len();
                move_selection(&mut s.selected, len, intent, page);
            }
        }
        Intent::Left if s.pane == 1 => s.col = s.col.saturating_sub(1),
        Intent::Right if s.pane == 1 => s.col = (s.col + 1).min(s.columns.len().saturating_sub(1)),
        Intent::Sort => {
            s.sort = match s.sort {
                Some((c, desc)) if c == s.col => Some((c, !desc)),
                _ => Some((
                    s.col,
                    matches!(s.columns.get(s.col), Some(Column::Metric(_))),
                )),
            };
            sort(s);
        }
        Intent::Reverse => {
            s.view.reverse();
            if let Some((_, desc)) = s.sort.as_mut() {
                *desc = !*desc;
            }
        }
        Intent::Mark => {
            if let Some(id) = s.run().map(|r| run_id(r).to_owned()) {
                if !s.marked.remove(&id) {
                    s.marked.insert(id);
                }
                let len = s.view.len();
                move_selection(&mut s.selected, len, Intent::Down, 1);
            }
        }
        Intent::Compare => {
            if s.marked.len() < 2 {
                app.flash("mark two runs or more (space) to compare them", true);
            } else {
                let run_ids = s.marked.iter().cloned().collect();
                app.request(Request::Compare { run_ids });
            }
        }
        Intent::Chart => match s.columns.get(s.col) {
            Some(Column::Metric(k)) => {
                s.detail = Detail::Across { key: k.clone() };
                s.pane = 2;
            }
            _ => app.flash("move to a metric column (←/→) to chart it", true),
        },
        Intent::History => match (
            s.columns.get(s.col).cloned(),
            s.run().map(|r| run_id(r).to_owned()),
        ) {
            (Some(Column::Metric(key)), Some(run)) => {
                s.detail = Detail::History {
                    run: run.clone(),
                    key: key.clone(),
                    points: Ok(Vec::new()),
                };
                s.pane = 2;
                app.request(Request::History { run_id: run, key });
            }
            _ => app.flash(
                "select a run and a metric column to chart its history",
                true,
            ),
        },
        _ => {}
    }
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.experiments;
    let [top, detail] =
        Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(area);
    let [exps, runs] = Layout::horizontal([Constraint::Length(34), Constraint::Min(20)]).areas(top);
    let h = exps.height.saturating_sub(2) as usize;
    let (a, b) = window(s.selected_exp, s.experiments.len(), h);
    let rows = s.experiments[a..b].iter().enumerate().map(|(i, e)| {
        let mut style = Style::default();
        if e.experiment_id == s.runs_of {
            style = style.fg(Color::Cyan);
        }
        if a + i == s.selected_exp && s.pane == 0 {
            style = selected_style();
        }
        Row::new([e.name.clone()]).style(style)
    });
    let body = Table::new(rows, [Constraint::Min(10)]).block(pane(
        &format!("Experiments ({})", s.experiments.len()),
        s.pane == 0,
    ));
    match &s.error {
        Some(e) if s.experiments.is_empty() => frame.render_widget(
            Paragraph::new(e.clone())
                .style(Style::default().fg(Color::Red))
                .block(pane("Experiments", s.pane == 0)),
            exps,
        ),
        _ => frame.render_widget(body, exps),
    }
    draw_runs(app, frame, runs);
    draw_detail(app, frame, detail);
}

fn draw_runs(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.experiments;
    let mut title = format!("Runs of {} ({})", s.experiment_name(), s.view.len());
    if !s.filter.is_empty() {
        title.push_str(&format!(" where {}", s.filter));
    }
    if !s.marked.is_empty() {
        title.push_str(&format!(" · {} marked", s.marked.len()));
    }
    if s.loading {
        title.push_str(" · loading…");
    }
    if let (Some(e), true) = (&s.runs_error, s.runs.is_empty()) {
        frame.render_widget(
            Paragraph::new(e.clone())
                .style(Style::default().fg(Color::Red))
                .block(pane(&title, s.pane == 1)),
            area,
        );
        return;
    }
    // Name and status stay; the other columns scroll so that the cursor's is in view.
    let fixed = 2usize.min(s.columns.len());
    let fit = (area.width.saturating_sub(2 + 25 + 11) / 15).max(1) as usize;
    let first = if s.col < fixed + fit {
        fixed
    } else {
        s.col + 1 - fit
    };
    let shown: Vec<usize> = (0..fixed)
        .chain(first..(first + fit).min(s.columns.len()))
        .collect();
    let header = Row::new(shown.iter().map(|c| {
        let mut text = s.columns[*c].header();
        if let Some((_, desc)) = s.sort.filter(|(sc, _)| sc == c) {
            text.push_str(if desc { " ▼" } else { " ▲" });
        }
        let mut style = Style::default().add_modifier(Modifier::BOLD);
        if *c == s.col && s.pane == 1 {
            style = style.fg(Color::Black).bg(Color::Cyan);
        }
        Cell::from(text).style(style)
    }));
    let h = area.height.saturating_sub(3) as usize;
    let (a, b) = window(s.selected, s.view.len(), h);
    let rows = s.view[a..b].iter().enumerate().map(|(i, ri)| {
        let run = &s.runs[*ri];
        let marked = s.marked.contains(run_id(run));
        let cells = shown.iter().map(|c| {
            let mut text = cell(run, &s.columns[*c], app.now_ms);
            if *c == 0 {
                text = format!("{}{text}", if marked { "● " } else { "  " });
            }
            Cell::from(text)
        });
        let row = Row::new(cells);
        if a + i == s.selected {
            row.style(selected_style())
        } else if marked {
            row.style(Style::default().fg(Color::Yellow))
        } else {
            row
        }
    });
    let widths: Vec<Constraint> = shown
        .iter()
        .map(|c| match c {
            0 => Constraint::Length(24),
            1 => Constraint::Length(10),
            _ => Constraint::Length(14),
        })
        .collect();
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(pane(&title, s.pane == 1)),
        area,
    );
}

fn draw_detail(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.experiments;
    let focused = s.pane == 2;
    match &s.detail {
        Detail::None => frame.render_widget(
            Paragraph::new("space marks runs, c compares them; on a metric column v charts it across runs, H the selected run's history")
                .style(Style::default().fg(Color::DarkGray))
                .block(pane("Detail", focused)),
            area,
        ),
        Detail::Compare(Err(e)) => frame.render_widget(
            Paragraph::new(e.clone()).style(Style::default().fg(Color::Red)).block(pane("Compare", focused)),
            area,
        ),
        Detail::Compare(Ok(c)) => draw_compare(c, frame, area, focused),
        Detail::Across { key } => {
            let points: Vec<(f64, f64)> = s
                .view
                .iter()
                .filter_map(|i| metric(&s.runs[*i], key))
                .enumerate()
                .map(|(i, v)| (i as f64, v))
                .collect();
            let title = format!("{key} across {} runs, in the table's order", points.len());
            draw_chart(frame, area, &title, "run (table order)", &points, focused, GraphType::Line);
        }
        Detail::History { run, key, points } => match points {
            Err(e) => frame.render_widget(
                Paragraph::new(e.clone()).style(Style::default().fg(Color::Red)).block(pane("History", focused)),
                area,
            ),
            Ok(points) => {
                let title = format!("{key} of run {} by step ({} points)", run.get(..8).unwrap_or(run), points.len());
                draw_chart(frame, area, &title, "step", points, focused, GraphType::Line);
            }
        },
    }
}

/// A line chart with its bounds from the data.
pub fn draw_chart(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    x_title: &str,
    points: &[(f64, f64)],
    focused: bool,
    kind: GraphType,
) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if points.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(kind)
        .style(Style::default().fg(Color::Cyan))
        .data(points);
    let chart = Chart::new(vec![dataset])
        .block(pane(title, focused))
        .x_axis(
            Axis::default()
                .title(x_title)
                .bounds([x0, x1])
                .labels([format!("{x0:.0}"), format!("{x1:.0}")]),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([format!("{y0:.4}"), format!("{y1:.4}")]),
        );
    frame.render_widget(chart, area);
}

fn draw_compare(c: &v1::RunComparison, frame: &mut Frame, area: Rect, focused: bool) {
    let names: Vec<String> = c
        .runs
        .iter()
        .map(|r| {
            r.info.as_ref().map_or(String::new(), |i| {
                if i.run_name.is_empty() {
                    i.run_id.clone()
                } else {
                    i.run_name.clone()
                }
            })
        })
        .collect();
    let mut header = vec![Cell::from("KEY")];
    header.extend(names.iter().map(|n| Cell::from(n.clone())));
    let mut rows = Vec::new();
    let mut differing = 0;
    for (group, values) in [
        ("metric", &c.metrics),
        ("param", &c.params),
        ("tag", &c.tags),
    ] {
        for v in values.iter().filter(|v| !v.key.starts_with("mlflow.")) {
            let mut cells = vec![Cell::from(format!("{group} {}", v.key))];
            cells.extend(v.values.iter().zip(&v.present).map(|(val, present)| {
                Cell::from(if *present { val.clone() } else { "—".into() })
            }));
            let style = if v.differs {
                differing += 1;
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::default().fg(Color::DarkGray)
            };
            rows.push(Row::new(cells).style(style));
        }
    }
    let mut widths = vec![Constraint::Length(28)];
    widths.extend(names.iter().map(|_| Constraint::Length(18)));
    let title = format!(
        "Compare {} runs · {differing} keys differ (bold)",
        names.len()
    );
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
            .block(pane(&title, focused)),
        area,
    );
}
