//! Overview: every agent (up or down, roles, version, uptime), CPU and memory sparklines from
//! the status streams, the inference agents' request rate, latency and served model, and the
//! last events.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table};

use crate::tui::action::Request;
use crate::tui::app::{AgentView, App, Link};
use crate::tui::keymap::Intent;
use crate::tui::prom;
use crate::tui::ui::{ago, bytes, duration_s, title};

pub const KEYS: &[(Intent, &str)] = &[];

pub fn on_intent(_app: &mut App, _intent: Intent) {}

/// What the last events are read back from, so they tell what happened before the console
/// started: the runs of every DAG, the registry (each model's versions, asked when the list of
/// models shows it changed) and past load tests. The streams add what happens from now on.
pub fn refresh(app: &mut App) {
    refresh_runs(app);
    app.request(Request::Models);
    app.request(Request::LoadTests);
}

/// The last runs of every DAG (an empty DAG name).
pub fn refresh_runs(app: &mut App) {
    app.request(Request::DagRuns { dag: String::new() });
}

/// An inference agent's request rate over the last interval and its latency percentiles over
/// the last minute, in ms, from its `/metrics`.
pub fn inference_figures(agent: &AgentView) -> Option<(f64, Option<f64>, Option<f64>)> {
    let now = agent.metrics.last_ms;
    let requests = agent.metrics.summed("inference_requests_total");
    let rps = prom::rate(&requests, now).last().map(|p| p.1)?;
    let latency = agent.metrics.summed("inference_request_latency_seconds");
    let latest = latency.points.back().map(|p| &p.1);
    let earlier = latency
        .points
        .iter()
        .find(|(t, _)| *t >= now - 60_000)
        .map(|p| &p.1);
    let q = |q: f64| match (earlier, latest) {
        (Some(a), Some(b)) if a != b => prom::quantile_between(a, b, q).map(|v| v * 1000.0),
        _ => None,
    };
    Some((rps, q(0.5), q(0.99)))
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let agents = app.agents.len() as u16;
    let serving: Vec<&AgentView> = app
        .agents
        .iter()
        .filter(|a| a.has_role("inference"))
        .collect();
    let [table_area, sparks_area, serving_area, events_area] = Layout::vertical([
        Constraint::Length(agents + 3),
        Constraint::Length((agents.min(3)) * 3),
        Constraint::Length(serving.len().max(1) as u16 + 2),
        Constraint::Min(3),
    ])
    .areas(area);
    draw_agents(app, frame, table_area);
    for (i, agent) in app.agents.iter().take(3).enumerate() {
        let row = Rect {
            y: sparks_area.y + i as u16 * 3,
            height: 3,
            ..sparks_area
        };
        let [cpu, mem] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(row);
        let label = agent
            .info
            .as_ref()
            .map_or_else(|| agent.url.clone(), |i| i.host.clone());
        let cpu_now = agent.status.as_ref().map_or(0.0, |s| s.cpu_percent);
        let cpu_data: Vec<u64> = agent.cpu.iter().copied().collect();
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(format!(" {label} CPU {cpu_now:.0}% ")))
                .max(100)
                .style(Style::default().fg(Color::Cyan))
                .data(&cpu_data),
            cpu,
        );
        let mem_now = agent.mem.back().copied().unwrap_or(0);
        let mem_data: Vec<u64> = agent.mem.iter().copied().collect();
        let top = memory_scale(&mem_data);
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(format!(
                    " {label} memory {:.1}% (scale 0–{}%) ",
                    mem_now as f64 / 10.0,
                    top / 10
                )))
                .max(top)
                .style(Style::default().fg(Color::Magenta))
                .data(&mem_data),
            mem,
        );
    }
    draw_serving(&serving, frame, serving_area);
    draw_events(app, frame, events_area);
}

/// The top of the memory sparkline, in tenths of a percent: the next 10% step above the highest
/// sample, so a host at 5% shows a line, not a blank 0–100% band.
fn memory_scale(samples: &[u64]) -> u64 {
    let highest = samples.iter().copied().max().unwrap_or(0);
    (highest / 100 + 1).min(10) * 100
}

fn draw_agents(app: &App, frame: &mut Frame, area: Rect) {
    let rows = app.agents.iter().map(|a| {
        let (state, style) = match &a.link {
            Link::Up => ("● up", Style::default().fg(Color::Green)),
            Link::Connecting => ("… connecting", Style::default().fg(Color::Yellow)),
            Link::Down(_) => ("✗ down", Style::default().fg(Color::Red)),
        };
        let info = a.info.as_ref();
        let status = a.status.as_ref();
        let uptime = match (&a.link, status, info) {
            (Link::Up, Some(s), _) => duration_s(s.uptime_s),
            (Link::Up, None, Some(i)) => duration_s(i.uptime_s),
            _ => "-".into(),
        };
        let detail = match &a.link {
            Link::Down(reason) => reason.clone(),
            _ => status.map_or(String::new(), |s| {
                let mem = (s.memory_used_bytes * 100)
                    .checked_div(s.memory_total_bytes)
                    .unwrap_or(0);
                format!(
                    "cpu {:.0}%  mem {mem}% of {}  rss {}{}",
                    s.cpu_percent,
                    bytes(s.memory_total_bytes),
                    bytes(s.process_rss_bytes),
                    if s.ready { "" } else { "  not ready" }
                )
            }),
        };
        Row::new(vec![
            Cell::from(state).style(style),
            Cell::from(a.url.clone()),
            Cell::from(info.map_or(String::new(), |i| i.roles.join(","))),
            Cell::from(info.map_or(String::new(), |i| i.version.clone())),
            Cell::from(info.map_or(String::new(), |i| i.host.clone())),
            Cell::from(uptime),
            Cell::from(detail),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(24),
            Constraint::Length(24),
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new([
            "STATE", "AGENT", "ROLES", "VERSION", "HOST", "UPTIME", "STATUS",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(title(&format!("Agents ({})", app.agents.len())));
    frame.render_widget(table, area);
}

fn draw_serving(serving: &[&AgentView], frame: &mut Frame, area: Rect) {
    let mut lines = Vec::new();
    for agent in serving {
        let model = match &agent.served {
            Some(Ok(s)) if s.loaded => {
                format!("{} v{} ({})", s.name, s.version, s.stage)
            }
            Some(Ok(s)) if !s.last_error.is_empty() => format!("nothing: {}", s.last_error),
            Some(Ok(s)) => format!("nothing yet (following {})", s.following),
            Some(Err(e)) => e.clone(),
            None => "-".into(),
        };
        let figures = match (inference_figures(agent), &agent.metrics_error) {
            (_, Some(e)) => format!("metrics: {e}"),
            (Some((rps, p50, p99)), None) => format!(
                "{rps:.1} req/s  p50 {}  p99 {}",
                p50.map_or("-".into(), |v| format!("{v:.2} ms")),
                p99.map_or("-".into(), |v| format!("{v:.2} ms"))
            ),
            (None, None) => "no requests measured yet".into(),
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:<32} ", agent.name()),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("serves {model}   ")),
            Span::styled(figures, Style::default().fg(Color::Cyan)),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from("no inference agent known yet"));
    }
    frame.render_widget(Paragraph::new(lines).block(title("Serving")), area);
}

fn draw_events(app: &App, frame: &mut Frame, area: Rect) {
    let height = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .events
        .iter()
        .take(height)
        .map(|e| {
            Line::from(vec![
                Span::styled(
                    format!("{:>9}  ", ago(app.now_ms, e.at_ms)),
                    Style::default().fg(Color::DarkGray),
                ),
                Span::styled(
                    e.text.clone(),
                    Style::default().fg(if e.ok { Color::Reset } else { Color::Red }),
                ),
            ])
        })
        .collect();
    let body = if lines.is_empty() {
        Paragraph::new("no events yet: DAG runs, promotions and load tests appear here")
    } else {
        Paragraph::new(lines)
    };
    frame.render_widget(body.block(title("Last events")), area);
}
