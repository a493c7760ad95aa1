//! Drawing: a pure function of the state. The frame's chrome (tab bar, the role banner, the
//! status line, the help, confirmations) is here; each screen draws its body in its module.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use super::app::{App, Edit, GLOBAL_KEYS, Mode, Screen};
use super::screens::{dags, data, experiments, loadtest, metrics, models, overview, predict};

pub fn draw(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let [tabs, banner, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_tabs(app, frame, tabs);
    let down = app.screen.role().and_then(|r| app.role_down(r));
    match &down {
        Some(reason) => frame.render_widget(
            Paragraph::new(format!(
                "⚠ {reason} — reconnecting; showing what was last read"
            ))
            .style(Style::default().fg(Color::White).bg(Color::Red)),
            banner,
        ),
        None => {
            let up = app
                .agents
                .iter()
                .filter(|a| a.link == super::app::Link::Up)
                .count();
            frame.render_widget(
                Paragraph::new(format!(
                    "{up}/{} agents up   ? help   : command   q quit",
                    app.agents.len()
                ))
                .style(Style::default().fg(Color::DarkGray)),
                banner,
            );
        }
    }
    match app.screen {
        Screen::Overview => overview::draw(app, frame, body),
        Screen::Data => data::draw(app, frame, body),
        Screen::Dags => dags::draw(app, frame, body),
        Screen::Experiments => experiments::draw(app, frame, body),
        Screen::Models => models::draw(app, frame, body),
        Screen::Predict => predict::draw(app, frame, body),
        Screen::LoadTest => loadtest::draw(app, frame, body),
        Screen::Metrics => metrics::draw(app, frame, body),
    }
    if down.is_some() {
        grey_out(frame, body);
    }
    draw_status(app, frame, status);
    match &app.mode {
        Mode::Help => draw_help(app, frame, area),
        Mode::Confirm(c) => draw_confirm(&c.message, frame, area),
        Mode::Normal | Mode::Typing { .. } => {}
    }
}

/// What an agent that is down serves stays on screen, in grey.
fn grey_out(frame: &mut Frame, area: Rect) {
    let buffer = frame.buffer_mut();
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            if let Some(cell) = buffer.cell_mut((x, y)) {
                cell.set_fg(Color::DarkGray);
                cell.set_bg(Color::Reset);
            }
        }
    }
}

fn draw_tabs(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::raw(" ")];
    for (i, screen) in Screen::ALL.iter().enumerate() {
        let style = if *screen == app.screen {
            Style::default()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(
            format!(" {} {} ", i + 1, screen.title()),
            style,
        ));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Line::from(spans), area);
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let line = match &app.mode {
        Mode::Typing { edit, line } => {
            let prompt = match edit {
                Edit::Filter if app.screen == Screen::Experiments => {
                    "filter (MLflow syntax, e.g. metrics.val_roc_auc > 0.6): ".to_owned()
                }
                Edit::Filter => "filter: /".to_owned(),
                Edit::Command => ":".to_owned(),
                Edit::TriggerParams { dag } => format!("trigger {dag} with (k=v …): "),
                Edit::IngestPath => "ingest the file on the ETL agent at: ".to_owned(),
                Edit::PredictField(i) => format!("{}: ", predict::field_name(app, *i)),
                Edit::LoadField(i) => format!("{}: ", loadtest::field_name(*i)),
            };
            Line::from(vec![
                Span::styled(prompt, Style::default().fg(Color::Yellow)),
                Span::raw(line.text.clone()),
                Span::styled("█", Style::default().fg(Color::Yellow)),
            ])
        }
        _ => match &app.flash {
            Some(f) => Line::from(Span::styled(
                f.text.clone(),
                Style::default().fg(if f.error { Color::Red } else { Color::Green }),
            )),
            None => {
                let hints: Vec<String> = app
                    .screen
                    .keys()
                    .iter()
                    .map(|(intent, what)| {
                        format!(
                            "{} {}",
                            app.keymap.keys_of(app.screen.scope(), *intent),
                            what
                        )
                    })
                    .collect();
                Line::from(Span::styled(
                    hints.join("  ·  "),
                    Style::default().fg(Color::DarkGray),
                ))
            }
        },
    };
    frame.render_widget(line, area);
}

/// A centered rectangle of at most `w` × `h`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    rect
}

fn draw_help(app: &App, frame: &mut Frame, area: Rect) {
    let scope = app.screen.scope();
    let mut lines = vec![Line::from(Span::styled(
        format!("{} keys", app.screen.title()),
        Style::default().add_modifier(Modifier::BOLD),
    ))];
    let key_line = |keys: String, what: &str| {
        Line::from(vec![
            Span::styled(format!("{keys:>18}  "), Style::default().fg(Color::Cyan)),
            Span::raw(what.to_owned()),
        ])
    };
    for (intent, what) in app.screen.keys() {
        lines.push(key_line(app.keymap.keys_of(scope, *intent), what));
    }
    if app.screen.keys().is_empty() {
        lines.push(Line::from("  (none of its own)"));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Everywhere",
        Style::default().add_modifier(Modifier::BOLD),
    )));
    for (intent, what) in GLOBAL_KEYS {
        lines.push(key_line(app.keymap.keys_of(scope, *intent), what));
    }
    lines.push(key_line(
        "mouse".into(),
        "wheel scrolls, a click on a tab opens it",
    ));
    let height = lines.len() as u16 + 2;
    let rect = centered(area, 90, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .title(" help — esc closes "),
        ),
        rect,
    );
}

fn draw_confirm(message: &str, frame: &mut Frame, area: Rect) {
    let rect = centered(area, 70, 7);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(
                message.to_owned(),
                Style::default().add_modifier(Modifier::BOLD),
            )),
            Line::from(""),
            Line::from("y / enter: do it     n / esc: cancel"),
        ])
        .wrap(Wrap { trim: false })
        .block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(Style::default().fg(Color::Yellow))
                .title(" confirm "),
        ),
        rect,
    );
}

/// A bordered block with a title.
pub fn title(text: &str) -> Block<'static> {
    Block::bordered().title(format!(" {text} "))
}

/// A pane's block: its border bright when it has the focus.
pub fn pane(text: &str, focused: bool) -> Block<'static> {
    let block = title(text);
    if focused {
        block.border_style(Style::default().fg(Color::Cyan))
    } else {
        block
    }
}

/// The rows of a list to draw so that `selected` is visible in `height` rows: (first, last+1).
pub fn window(selected: usize, len: usize, height: usize) -> (usize, usize) {
    if height == 0 || len == 0 {
        return (0, 0);
    }
    let start = if selected >= height {
        selected + 1 - height
    } else {
        0
    };
    (start, (start + height).min(len))
}

pub fn selected_style() -> Style {
    Style::default()
        .bg(Color::DarkGray)
        .add_modifier(Modifier::BOLD)
}

/// "12s ago", "3m ago", "2h ago".
pub fn ago(now_ms: i64, at_ms: i64) -> String {
    if at_ms <= 0 {
        return "-".into();
    }
    let s = (now_ms - at_ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A time of day in UTC, `HH:MM:SS`.
pub fn clock(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let s = (ms / 1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub fn duration_s(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, (s % 3600.0 / 60.0) as u64)
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_keep_the_selection_visible() {
        assert_eq!(window(0, 100, 10), (0, 10));
        assert_eq!(window(15, 100, 10), (6, 16));
        assert_eq!(window(3, 5, 10), (0, 5));
        assert_eq!(window(0, 0, 10), (0, 0));
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(ago(61_000, 0), "-");
        assert_eq!(ago(61_000, 1_000), "1m ago");
        assert_eq!(clock(3_723_000), "01:02:03");
        assert_eq!(duration_s(75.0), "1m15s");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
