//! Predict: a form built from the served model's input signature — choices from the allowed
//! values, numbers checked as typed — prefilled on request from a real record of the test
//! split (`Etl.GetTestRecords`); the prediction with its probability, decision and the fields
//! that moved the score most.

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use crate::tui::action::Request;
use crate::tui::app::{App, Edit, Line as Typed, Mode, matches_filter, move_selection};
use crate::tui::keymap::Intent;
use crate::tui::ui::{pane, selected_style, window};
use readmit_proto::v1;

pub const KEYS: &[(Intent, &str)] = &[
    (Intent::Select, "edit the field"),
    (Intent::Left, "previous allowed value"),
    (Intent::Right, "next allowed value"),
    (
        Intent::Prefill,
        "fill the form from a real test record (again: the next one)",
    ),
    (
        Intent::Submit,
        "predict, with the fields that moved the score most",
    ),
    (Intent::Filter, "show only fields whose name matches"),
];

#[derive(Debug, Default)]
pub struct State {
    pub signature: Option<Result<v1::ModelSignature, String>>,
    pub values: Vec<String>,
    pub selected: usize,
    pub filter: String,
    pub examples: Vec<BTreeMap<String, String>>,
    pub next_example: usize,
    pub result: Option<Result<v1::PredictReply, String>>,
    pub busy: bool,
}

impl State {
    pub fn fields(&self) -> &[v1::InputField] {
        match &self.signature {
            Some(Ok(s)) => &s.inputs,
            _ => &[],
        }
    }

    /// Indexes of the fields the filter shows.
    pub fn visible(&self) -> Vec<usize> {
        self.fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| matches_filter(&self.filter, &f.name))
            .map(|(i, _)| i)
            .collect()
    }
}

pub fn refresh(app: &mut App) {
    app.request(Request::Signature);
}

pub fn on_signature(app: &mut App, reply: Result<v1::ModelSignature, String>) {
    match reply {
        Ok(sig) => {
            let same = app
                .predict
                .fields()
                .iter()
                .map(|f| &f.name)
                .eq(sig.inputs.iter().map(|f| &f.name));
            if !same {
                app.predict.values = vec![String::new(); sig.inputs.len()];
                app.predict.selected = 0;
            }
            app.predict.signature = Some(Ok(sig));
        }
        Err(e) => {
            if !matches!(app.predict.signature, Some(Ok(_))) {
                app.predict.signature = Some(Err(e));
            }
        }
    }
}

pub fn field_name(app: &App, i: usize) -> String {
    app.predict
        .fields()
        .get(i)
        .map_or_else(String::new, |f| f.name.clone())
}

/// Whether a character may be typed into field `i`: numbers stay numbers as they are typed.
pub fn accepts(app: &App, i: usize, text: &str, c: char) -> bool {
    let Some(field) = app.predict.fields().get(i) else {
        return false;
    };
    match v1::FieldType::try_from(field.r#type).unwrap_or(v1::FieldType::Unspecified) {
        v1::FieldType::Integer => {
            c.is_ascii_digit() || (c == '-' && text.is_empty()) || (c == '?' && text.is_empty())
        }
        v1::FieldType::Number => {
            c.is_ascii_digit()
                || (c == '-' && text.is_empty())
                || (c == '.' && !text.contains('.'))
                || (c == '?' && text.is_empty())
        }
        v1::FieldType::Categorical | v1::FieldType::Unspecified => true,
    }
}

/// Why a field's text would be refused, if it would.
pub fn invalid(field: &v1::InputField, text: &str) -> Option<String> {
    if text.is_empty() || text == "?" {
        return field.required.then(|| "required".to_owned());
    }
    match v1::FieldType::try_from(field.r#type).unwrap_or(v1::FieldType::Unspecified) {
        v1::FieldType::Integer => text
            .parse::<i64>()
            .is_err()
            .then(|| "not a whole number".into()),
        v1::FieldType::Number => text.parse::<f64>().is_err().then(|| "not a number".into()),
        // A level training never saw is scored as the model's "other" level, not refused.
        v1::FieldType::Categorical | v1::FieldType::Unspecified => None,
    }
}

/// Whether a categorical value is one training never saw (shown, and scored as "other").
pub fn unseen(field: &v1::InputField, text: &str) -> bool {
    !text.is_empty()
        && text != "?"
        && !field.allowed_values.is_empty()
        && !field.allowed_values.iter().any(|v| v == text)
}

pub fn set_field(app: &mut App, i: usize, text: &str) {
    if let Some(v) = app.predict.values.get_mut(i) {
        *v = text.trim().to_owned();
    }
}

pub fn set_filter(app: &mut App, text: &str) {
    app.predict.filter = text.to_owned();
    app.predict.selected = 0;
}

pub fn on_example(app: &mut App, reply: Result<Vec<BTreeMap<String, String>>, String>) {
    match reply {
        Ok(records) if !records.is_empty() => {
            app.predict.examples = records;
            app.predict.next_example = 0;
            fill_next(app);
        }
        Ok(_) => app.flash(
            "the test split holds no record (nothing ingested yet?)",
            true,
        ),
        Err(e) => app.flash(format!("real record: {e}"), true),
    }
}

fn fill_next(app: &mut App) {
    let s = &mut app.predict;
    let Some(record) = s
        .examples
        .get(s.next_example % s.examples.len().max(1))
        .cloned()
    else {
        return;
    };
    let n = s.next_example % s.examples.len();
    s.next_example += 1;
    let names: Vec<String> = s.fields().iter().map(|f| f.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        s.values[i] = record.get(name).cloned().unwrap_or_default();
    }
    app.flash(
        format!(
            "filled from test record {} (of the first {} of the test split)",
            n + 1,
            app.predict.examples.len()
        ),
        false,
    );
}

pub fn on_prediction(app: &mut App, reply: Result<v1::PredictReply, String>) {
    app.predict.busy = false;
    app.predict.result = Some(reply);
}

fn prefill(app: &mut App) {
    if !app.predict.examples.is_empty() {
        fill_next(app);
        return;
    }
    app.request(Request::Example);
    app.flash("reading test records…", false);
}

fn submit(app: &mut App) {
    let refused = app
        .predict
        .fields()
        .iter()
        .zip(&app.predict.values)
        .find_map(|(field, text)| {
            invalid(field, text).map(|why| format!("{}: {why}; nothing sent", field.name))
        });
    if let Some(msg) = refused {
        app.flash(msg, true);
        return;
    }
    let mut fields = BTreeMap::new();
    for (field, text) in app.predict.fields().iter().zip(&app.predict.values) {
        if text.is_empty() || text == "?" {
            continue;
        }
        let kind = match v1::FieldType::try_from(field.r#type).unwrap_or(v1::FieldType::Unspecified)
        {
            v1::FieldType::Integer | v1::FieldType::Number => {
                v1::field_value::Kind::Number(text.parse().unwrap_or_default())
            }
            v1::FieldType::Categorical | v1::FieldType::Unspecified => {
                v1::field_value::Kind::Text(text.clone())
            }
        };
        fields.insert(field.name.clone(), v1::FieldValue { kind: Some(kind) });
    }
    app.predict.busy = true;
    app.request(Request::Predict { fields });
}

pub fn on_intent(app: &mut App, intent: Intent) {
    let page = crate::tui::app::page(app);
    let visible = app.predict.visible();
    let field = visible.get(app.predict.selected).copied();
    match intent {
        Intent::Up
        | Intent::Down
        | Intent::PageUp
        | Intent::PageDown
        | Intent::Top
        | Intent::Bottom => {
            move_selection(&mut app.predict.selected, visible.len(), intent, page);
        }
        Intent::Select => {
            if let Some(i) = field {
                app.mode = Mode::Typing {
                    edit: Edit::PredictField(i),
                    line: Typed::new(&app.predict.values[i]),
                };
            }
        }
        Intent::Left | Intent::Right => {
            let Some(i) = field else { return };
            let allowed = app.predict.fields()[i].allowed_values.clone();
            if allowed.is_empty() {
                return;
            }
            let current = allowed.iter().position(|v| *v == app.predict.values[i]);
            let n = allowed.len();
            let next = match (current, intent == Intent::Right) {
                (None, _) => 0,
                (Some(c), true) => (c + 1) % n,
                (Some(c), false) => (c + n - 1) % n,
            };
            app.predict.values[i] = allowed[next].clone();
        }
        Intent::Prefill => prefill(app),
        Intent::Submit => submit(app),
        _ => {}
    }
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.predict;
    let [form, result] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    match &s.signature {
        None => frame.render_widget(
            Paragraph::new("reading the served model's signature…").block(pane("Record", true)),
            form,
        ),
        Some(Err(e)) => frame.render_widget(
            Paragraph::new(e.clone())
                .style(Style::default().fg(Color::Red))
                .block(pane("Record", true)),
            form,
        ),
        Some(Ok(_)) => draw_form(app, frame, form),
    }
    draw_result(app, frame, result);
}

fn draw_form(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.predict;
    let visible = s.visible();
    let h = area.height.saturating_sub(3) as usize;
    let (a, b) = window(s.selected, visible.len(), h);
    let editing = match &app.mode {
        Mode::Typing {
            edit: Edit::PredictField(i),
            line,
        } => Some((*i, line.text.clone())),
        _ => None,
    };
    let rows = visible[a..b].iter().enumerate().map(|(row_i, &i)| {
        let f = &s.fields()[i];
        let text = match &editing {
            Some((e, t)) if *e == i => format!("{t}█"),
            _ => s.values[i].clone(),
        };
        let bad = invalid(f, &s.values[i]);
        let kind = match v1::FieldType::try_from(f.r#type).unwrap_or(v1::FieldType::Unspecified) {
            v1::FieldType::Categorical => format!("one of {}", f.allowed_values.len()),
            v1::FieldType::Integer => "integer".into(),
            v1::FieldType::Number => "number".into(),
            v1::FieldType::Unspecified => "-".into(),
        };
        let value_style = if bad.is_some() && !s.values[i].is_empty() {
            Style::default().fg(Color::Red)
        } else if unseen(f, &s.values[i]) {
            Style::default().fg(Color::Yellow)
        } else {
            Style::default()
        };
        let row = Row::new(vec![
            Span::raw(format!("{}{}", f.name, if f.required { "*" } else { "" })),
            Span::styled(text, value_style),
            Span::styled(kind, Style::default().fg(Color::DarkGray)),
        ]);
        if a + row_i == s.selected {
            row.style(selected_style())
        } else {
            row
        }
    });
    let filled = s.values.iter().filter(|v| !v.is_empty()).count();
    let mut title = format!("Record · {filled}/{} fields set", s.fields().len());
    if !s.filter.is_empty() {
        title.push_str(&format!(" /{}", s.filter));
    }
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(26),
                Constraint::Min(14),
                Constraint::Length(12),
            ],
        )
        .header(
            Row::new(["FIELD", "VALUE", "TYPE"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(pane(&title, true)),
        area,
    );
}

fn draw_result(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.predict;
    let lines = match &s.result {
        _ if s.busy => vec![Line::from("predicting…")],
        None => vec![
            Line::from("r fills the form from a real record, s predicts."),
            Line::from("Empty fields are sent as missing (\"?\")."),
        ],
        Some(Err(e)) => vec![Line::from(Span::styled(
            e.clone(),
            Style::default().fg(Color::Red),
        ))],
        Some(Ok(reply)) => {
            let Some(p) = reply.predictions.first() else {
                return frame.render_widget(
                    Paragraph::new("no prediction returned").block(pane("Prediction", false)),
                    area,
                );
            };
            let (decision, color) = if p.readmitted {
                ("READMITTED within 30 days", Color::Red)
            } else {
                ("not readmitted within 30 days", Color::Green)
            };
            let mut lines = vec![
                Line::from(vec![
                    Span::raw("probability "),
                    Span::styled(
                        format!("{:.3}", p.probability),
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(format!("  (threshold {:.3})", reply.threshold)),
                ]),
                Line::from(Span::styled(
                    decision,
                    Style::default().fg(color).add_modifier(Modifier::BOLD),
                )),
                Line::from(format!(
                    "model {} v{}",
                    reply.model_name, reply.model_version
                )),
                Line::from(""),
                Line::from(Span::styled(
                    "fields that moved the score most (value vs typical)",
                    Style::default().add_modifier(Modifier::BOLD),
                )),
            ];
            let max = p
                .contributions
                .iter()
                .map(|c| c.effect.abs())
                .fold(0.0, f64::max)
                .max(1e-12);
            // Long field names (discharge_disposition_id) keep the bars in one column.
            let names = p
                .contributions
                .iter()
                .map(|c| c.field.len() + 1)
                .fold(22, usize::max);
            for c in &p.contributions {
                let width = ((c.effect.abs() / max) * 12.0).round() as usize;
                let color = if c.effect > 0.0 {
                    Color::Red
                } else {
                    Color::Green
                };
                lines.push(Line::from(vec![
                    Span::raw(format!("{:<names$}", c.field)),
                    Span::styled(
                        format!("{:<13}", "█".repeat(width.max(1))),
                        Style::default().fg(color),
                    ),
                    Span::raw(format!("{:+.4}  {} vs {}", c.effect, c.value, c.reference)),
                ]));
            }
            lines
        }
    };
    frame.render_widget(Paragraph::new(lines).block(pane("Prediction", false)), area);
}
