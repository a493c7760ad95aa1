//! Metrics: every agent's Prometheus series, read from `/metrics` every two seconds, as charts:
//! counters as rates, gauges as values, histograms as p50/p95/p99 over the last minutes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph, Row, Table};

use crate::tui::app::{App, matches_filter, move_selection};
use crate::tui::keymap::Intent;
use crate::tui::prom::{self, Kind};
use crate::tui::ui::{pane, selected_style, window};

/// A chart line: its name, colour and points.
type Line3 = (&'static str, Color, Vec<(f64, f64)>);

pub const KEYS: &[(Intent, &str)] = &[(
    Intent::Filter,
    "show only series whose name or labels match",
)];

/// One series of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesRef {
    pub slot: usize,
    pub family: String,
    pub labels: String,
    pub kind: Kind,
}

impl SeriesRef {
    pub fn label(&self) -> String {
        if self.labels.is_empty() {
            self.family.clone()
        } else {
            format!("{}{{{}}}", self.family, self.labels)
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub filter: String,
    pub list: Vec<SeriesRef>,
    pub selected: usize,
}

/// Rebuilds the series list after a scrape, keeping the selection on the same series.
pub fn on_scrape(app: &mut App) {
    let keep = app.metrics.list.get(app.metrics.selected).cloned();
    let mut list = Vec::new();
    for (slot, agent) in app.agents.iter().enumerate() {
        for (family, labels, kind) in agent.metrics.series() {
            let s = SeriesRef {
                slot,
                family: family.to_owned(),
                labels: labels.to_owned(),
                kind,
            };
            if matches_filter(&app.metrics.filter, &s.label()) {
                list.push(s);
            }
        }
    }
    app.metrics.selected = keep
        .and_then(|k| list.iter().position(|s| *s == k))
        .unwrap_or(app.metrics.selected.min(list.len().saturating_sub(1)));
    app.metrics.list = list;
}

pub fn set_filter(app: &mut App, text: &str) {
    app.metrics.filter = text.to_owned();
    app.metrics.selected = 0;
    on_scrape(app);
}

pub fn on_intent(app: &mut App, intent: Intent) {
    let page = crate::tui::app::page(app);
    let len = app.metrics.list.len();
    move_selection(&mut app.metrics.selected, len, intent, page);
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.metrics;
    let [list_area, chart_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let h = list_area.height.saturating_sub(2) as usize;
    let (a, b) = window(s.selected, s.list.len(), h);
    let rows = s.list[a..b].iter().enumerate().map(|(i, r)| {
        let host = app.agents[r.slot]
            .info
            .as_ref()
            .map_or_else(|| app.agents[r.slot].url.clone(), |i| i.host.clone());
        let kind = match r.kind {
            Kind::Counter => "rate",
            Kind::Gauge => "gauge",
            Kind::Histogram => "hist",
            Kind::Untyped => "value",
        };
        let row = Row::new(vec![host, kind.to_owned(), r.label()]);
        if a + i == s.selected {
            row.style(selected_style())
        } else {
            row
        }
    });
    let mut title = format!("Series ({})", s.list.len());
    if !s.filter.is_empty() {
        title.push_str(&format!(" /{}", s.filter));
    }
    let errors: Vec<String> = app
        .agents
        .iter()
        .filter_map(|a| a.metrics_error.as_ref().map(|e| format!("{}: {e}", a.url)))
        .collect();
    if s.list.is_empty() {
        let text = if errors.is_empty() {
            "no metrics read yet (every 2 s from each agent's /metrics)".to_owned()
        } else {
            errors.join("\n")
        };
        frame.render_widget(Paragraph::new(text).block(pane(&title, true)), list_area);
    } else {
        frame.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(12),
                    Constraint::Length(5),
                    Constraint::Min(20),
                ],
            )
            .block(pane(&title, true)),
            list_area,
        );
    }
    let Some(series) = s.list.get(s.selected) else {
        frame.render_widget(
            Paragraph::new("pick a series").block(pane("Chart", false)),
            chart_area,
        );
        return;
    };
    let store = &app.agents[series.slot].metrics;
    let Some(history) = store
        .families
        .get(&series.family)
        .and_then(|(_, _, m)| m.get(&series.labels))
    else {
        return;
    };
    let now = store.last_ms;
    let help = store
        .families
        .get(&series.family)
        .map_or(String::new(), |f| f.1.clone());
    let [head, chart] =
        Layout::vertical([Constraint::Length(5), Constraint::Min(5)]).areas(chart_area);
    let (datasets, summary, unit): (Vec<Line3>, String, &str) = match series.kind {
        Kind::Counter => {
            let r = prom::rate(history, now);
            let last = r.last().map_or(0.0, |p| p.1);
            (
                vec![("per second", Color::Cyan, r)],
                format!("{last:.2}/s now"),
                "/s",
            )
        }
        Kind::Gauge | Kind::Untyped => {
            let v = prom::values(history, now);
            let last = v.last().map_or(0.0, |p| p.1);
            (
                vec![("value", Color::Cyan, v)],
                format!("{last:.2} now"),
                "",
            )
        }
        Kind::Histogram => {
            let ms = |v: Vec<(f64, f64)>| {
                v.into_iter()
                    .map(|(x, y)| (x, y * 1000.0))
                    .collect::<Vec<_>>()
            };
            let seconds = series.family.ends_with("_seconds");
            let scale = |v: Vec<(f64, f64)>| -> Vec<(f64, f64)> { if seconds { ms(v) } else { v } };
            let minute = history
                .points
                .iter()
                .find(|(t, _)| *t >= now - 60_000)
                .map(|p| &p.1);
            let latest = history.points.back().map(|p| &p.1);
            let q = |q: f64| match (minute, latest) {
                (Some(a), Some(b)) => {
                    prom::quantile_between(a, b, q).map(|v| if seconds { v * 1000.0 } else { v })
                }
                _ => None,
            };
            let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
            let rate = prom::rate(history, now).last().map_or(0.0, |p| p.1);
            (
                vec![
                    (
                        "p50",
                        Color::Green,
                        scale(prom::quantiles(history, 0.5, now)),
                    ),
                    (
                        "p95",
                        Color::Yellow,
                        scale(prom::quantiles(history, 0.95, now)),
                    ),
                    (
                        "p99",
                        Color::Red,
                        scale(prom::quantiles(history, 0.99, now)),
                    ),
                ],
                format!(
                    "last minute: p50 {} p95 {} p99 {}{} · {rate:.2} observations/s",
                    fmt(q(0.5)),
                    fmt(q(0.95)),
                    fmt(q(0.99)),
                    if seconds { " ms" } else { "" }
                ),
                if seconds { "ms" } else { "" },
            )
        }
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(
                series.label(),
                Style::default().fg(Color::Cyan),
            )),
            Line::from(help),
            Line::from(summary),
        ])
        .block(pane(&app.agents[series.slot].name(), false)),
        head,
    );
    let y_max = datasets
        .iter()
        .flat_map(|d| d.2.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let x_min = datasets
        .iter()
        .flat_map(|d| d.2.iter().map(|p| p.0))
        .fold(0.0, f64::min)
        .min(-10.0);
    let sets = datasets
        .iter()
        .map(|(name, color, points)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(*color))
                .data(points)
        })
        .collect();
    frame.render_widget(
        Chart::new(sets)
            .block(pane("Last minutes", false))
            .x_axis(
                Axis::default()
                    .title("s")
                    .bounds([x_min, 0.0])
                    .labels([format!("{x_min:.0}"), "now".to_owned()]),
            )
            .y_axis(
                Axis::default()
                    .title(unit)
                    .bounds([0.0, y_max])
                    .labels(["0".to_owned(), format!("{y_max:.2}")]),
            ),
        chart,
    );
}
