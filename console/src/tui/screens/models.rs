//! Models: registered models, their versions with stages and aliases, and what each inference
//! agent serves right now; promote or archive a version after a confirmation naming every
//! version that moves.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use crate::tui::action::Request;
use crate::tui::app::{App, Confirm, Mode, matches_filter, move_selection};
use crate::tui::events::Happening;
use crate::tui::keymap::Intent;
use crate::tui::ui::{ago, pane, selected_style, window};
use readmit_proto::{stage_name, v1};

pub const KEYS: &[(Intent, &str)] = &[
    (Intent::NextPane, "models ↔ versions"),
    (
        Intent::Promote,
        "promote the version to Production (asks first)",
    ),
    (Intent::Archive, "archive the version (asks first)"),
    (Intent::Filter, "filter models by name"),
];

#[derive(Debug, Default)]
pub struct State {
    pub models: Vec<v1::RegisteredModel>,
    pub error: Option<String>,
    pub filter: String,
    pub selected_model: usize,
    pub versions_of: String,
    pub versions: Vec<v1::ModelVersion>,
    pub versions_error: Option<String>,
    pub selected_version: usize,
    pub pane: usize,
    pub pending_promote: Option<(String, i64)>,
    /// Each model's last change when its versions were last read for the Overview's history.
    pub history_read: std::collections::HashMap<String, i64>,
}

impl State {
    pub fn visible(&self) -> Vec<&v1::RegisteredModel> {
        self.models
            .iter()
            .filter(|m| matches_filter(&self.filter, &m.name))
            .collect()
    }

    pub fn version(&self) -> Option<&v1::ModelVersion> {
        self.versions.get(self.selected_version)
    }
}

pub fn refresh(app: &mut App) {
    app.request(Request::Models);
    if !app.models.versions_of.is_empty() {
        let name = app.models.versions_of.clone();
        app.request(Request::Versions { name });
    }
}

pub fn on_models(app: &mut App, reply: Result<Vec<v1::RegisteredModel>, String>) {
    match reply {
        Ok(models) => {
            for m in &models {
                if app.models.history_read.get(&m.name) != Some(&m.last_updated_time_ms) {
                    app.models
                        .history_read
                        .insert(m.name.clone(), m.last_updated_time_ms);
                    app.request(Request::Versions {
                        name: m.name.clone(),
                    });
                }
            }
            app.models.models = models;
            app.models.error = None;
            select_model(app);
        }
        Err(e) => app.models.error = Some(e),
    }
}

fn select_model(app: &mut App) {
    let len = app.models.visible().len();
    if app.models.selected_model >= len {
        app.models.selected_model = len.saturating_sub(1);
    }
    let name = app
        .models
        .visible()
        .get(app.models.selected_model)
        .map(|m| m.name.clone())
        .unwrap_or_default();
    if name != app.models.versions_of {
        app.models.versions_of.clone_from(&name);
        app.models.versions.clear();
        app.models.selected_version = 0;
        if !name.is_empty() {
            app.request(Request::Versions { name });
        }
    }
}

pub fn on_versions(app: &mut App, name: &str, reply: Result<Vec<v1::ModelVersion>, String>) {
    let reply = reply.map(|mut versions| {
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        versions
    });
    if let Ok(versions) = &reply {
        app.events
            .history_all(versions.iter().flat_map(version_history));
    }
    if let Some((model, version)) = app
        .models
        .pending_promote
        .take_if(|(model, _)| model.as_str() == name)
    {
        match &reply {
            Ok(versions) => {
                let outcome = promotion(&model, version, versions);
                apply_promotion(app, outcome);
            }
            Err(e) => app.flash(format!(":promote {model}: {e}"), true),
        }
    }
    if name == app.models.versions_of {
        match reply {
            Ok(versions) => {
                let len = versions.len();
                app.models.versions = versions;
                app.models.versions_error = None;
                app.models.selected_version =
                    app.models.selected_version.min(len.saturating_sub(1));
            }
            Err(e) => app.models.versions_error = Some(e),
        }
    }
}

/// A version registered, as an event line.
fn registered(name: &str, version: i64, at_ms: i64) -> Happening {
    Happening {
        key: format!("model {name} v{version} registered"),
        at_ms,
        text: format!("{name} v{version} registered"),
        ok: true,
    }
}

/// A version moved to `stage`, as an event line; `was` when the stream tells it.
fn staged(name: &str, version: i64, stage: i32, was: Option<i32>, at_ms: i64) -> Happening {
    let mut text = format!("{name} v{version} → {}", stage_name(stage));
    if let Some(was) = was {
        text.push_str(&format!(" (was {})", stage_name(was)));
    }
    Happening {
        key: format!("model {name} v{version} stage {}", stage_name(stage)),
        at_ms,
        text,
        ok: true,
    }
}

/// What a stored version tells: its registration and, when in a stage, its last move.
fn version_history(v: &v1::ModelVersion) -> impl Iterator<Item = Happening> {
    let staged_at = matches!(
        v1::Stage::try_from(v.stage),
        Ok(v1::Stage::Staging | v1::Stage::Production | v1::Stage::Archived)
    )
    .then(|| staged(&v.name, v.version, v.stage, None, v.last_updated_time_ms));
    std::iter::once(registered(&v.name, v.version, v.creation_time_ms)).chain(staged_at)
}

/// A registry change: an event line, and the lists read again.
pub fn on_event(app: &mut App, event: &v1::RegistryEvent) {
    let v = event.version.clone().unwrap_or_default();
    let at = event.timestamp_ms;
    let kind =
        v1::RegistryEventKind::try_from(event.kind).unwrap_or(v1::RegistryEventKind::Unspecified);
    let note = match kind {
        v1::RegistryEventKind::VersionCreated => {
            app.events.live(registered(&v.name, v.version, at));
            None
        }
        v1::RegistryEventKind::StageChanged => {
            let was = Some(event.previous_stage);
            app.events
                .live(staged(&v.name, v.version, v.stage, was, at));
            None
        }
        v1::RegistryEventKind::AliasSet => {
            Some(format!("{} @{} → v{}", v.name, event.alias, v.version))
        }
        v1::RegistryEventKind::AliasDeleted => Some(format!("{} @{} removed", v.name, event.alias)),
        v1::RegistryEventKind::ModelDeleted => Some(format!("model {} deleted", v.name)),
        v1::RegistryEventKind::VersionDeleted => Some(format!("{} v{} deleted", v.name, v.version)),
        v1::RegistryEventKind::Current | v1::RegistryEventKind::Unspecified => return,
    };
    if let Some(text) = note {
        app.event(at, text, true);
    }
    refresh(app);
    app.request(Request::Served);
}

pub fn set_filter(app: &mut App, text: &str) {
    app.models.filter = text.to_owned();
    app.models.selected_model = 0;
    select_model(app);
}

/// `:promote <model> <version>` and `p`: a confirmation naming what moves.
pub fn ask_promote(app: &mut App, model: &str, version: i64) {
    if app.models.versions_of == model && !app.models.versions.is_empty() {
        let outcome = promotion(model, version, &app.models.versions);
        apply_promotion(app, outcome);
    } else {
        app.models.pending_promote = Some((model.to_owned(), version));
        app.request(Request::Versions {
            name: model.to_owned(),
        });
    }
}

/// What promoting `version` of `model` asks to confirm, or why it cannot be asked.
fn promotion(model: &str, version: i64, versions: &[v1::ModelVersion]) -> Result<Confirm, String> {
    let Some(target) = versions.iter().find(|v| v.version == version) else {
        return Err(format!("{model} has no version {version}"));
    };
    if target.stage == v1::Stage::Production as i32 {
        return Err(format!("{model} v{version} is already in Production"));
    }
    let mut message = format!("{model}: v{version} → Production");
    for v in versions
        .iter()
        .filter(|v| v.stage == v1::Stage::Production as i32)
    {
        message.push_str(&format!(", v{} → Archived", v.version));
    }
    Ok(Confirm {
        message,
        request: Request::Transition {
            name: model.to_owned(),
            version,
            stage: v1::Stage::Production,
        },
    })
}

fn apply_promotion(app: &mut App, outcome: Result<Confirm, String>) {
    match outcome {
        Ok(confirm) => app.mode = Mode::Confirm(confirm),
        Err(reason) => app.flash(reason, true),
    }
}

fn ask_archive(app: &mut App) {
    let Some(v) = app.models.version().cloned() else {
        app.flash("no version selected", true);
        return;
    };
    if v.stage == v1::Stage::Archived as i32 {
        app.flash(
            format!("{} v{} is already archived", v.name, v.version),
            true,
        );
        return;
    }
    let mut message = format!("{}: v{} → Archived", v.name, v.version);
    if v.stage == v1::Stage::Production as i32 {
        message.push_str(" (no version left in Production: agents following it serve nothing new)");
    }
    app.mode = Mode::Confirm(Confirm {
        message,
        request: Request::Transition {
            name: v.name.clone(),
            version: v.version,
            stage: v1::Stage::Archived,
        },
    });
}

pub fn on_intent(app: &mut App, intent: Intent) {
    let page = crate::tui::app::page(app);
    match intent {
        Intent::NextPane | Intent::PrevPane | Intent::Select => {
            app.models.pane = 1 - app.models.pane.min(1)
        }
        Intent::Right => app.models.pane = 1,
        Intent::Left | Intent::Back => app.models.pane = 0,
        Intent::Up
        | Intent::Down
        | Intent::PageUp
        | Intent::PageDown
        | Intent::Top
        | Intent::Bottom => {
            if app.models.pane == 0 {
                let len = app.models.visible().len();
                if move_selection(&mut app.models.selected_model, len, intent, page) {
                    select_model(app);
                }
            } else {
                let len = app.models.versions.len();
                move_selection(&mut app.models.selected_version, len, intent, page);
            }
        }
        Intent::Promote => match app.models.version().map(|v| (v.name.clone(), v.version)) {
            Some((name, version)) => ask_promote(app, &name, version),
            None => app.flash("no version selected", true),
        },
        Intent::Archive => ask_archive(app),
        _ => {}
    }
}

fn stage_style(stage: i32) -> Style {
    match v1::Stage::try_from(stage).unwrap_or(v1::Stage::Unspecified) {
        v1::Stage::Production => Style::default()
            .fg(Color::Green)
            .add_modifier(Modifier::BOLD),
        v1::Stage::Staging => Style::default().fg(Color::Yellow),
        v1::Stage::Archived => Style::default().fg(Color::DarkGray),
        v1::Stage::None | v1::Stage::Unspecified => Style::default(),
    }
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let s = &app.models;
    let serving = app
        .agents
        .iter()
        .filter(|a| a.has_role("inference"))
        .count() as u16;
    let [top, served_area] =
        Layout::vertical([Constraint::Min(6), Constraint::Length(serving.max(1) + 3)]).areas(area);
    let [models_area, versions_area] =
        Layout::horizontal([Constraint::Length(48), Constraint::Min(30)]).areas(top);
    let visible = s.visible();
    let h = models_area.height.saturating_sub(3) as usize;
    let (a, b) = window(s.selected_model, visible.len(), h);
    let rows = visible[a..b].iter().enumerate().map(|(i, m)| {
        let production = m
            .latest_versions
            .iter()
            .find(|v| v.stage == v1::Stage::Production as i32)
            .map_or("-".to_owned(), |v| format!("v{}", v.version));
        let row = Row::new(vec![m.name.clone(), production]);
        if a + i == s.selected_model {
            row.style(selected_style())
        } else {
            row
        }
    });
    let mut title = format!("Registered models ({})", visible.len());
    if !s.filter.is_empty() {
        title.push_str(&format!(" /{}", s.filter));
    }
    match &s.error {
        Some(e) if s.models.is_empty() => frame.render_widget(
            Paragraph::new(e.clone())
                .style(Style::default().fg(Color::Red))
                .block(pane(&title, s.pane == 0)),
            models_area,
        ),
        _ => frame.render_widget(
            Table::new(rows, [Constraint::Min(20), Constraint::Length(10)])
                .header(
                    Row::new(["NAME", "PRODUCTION"])
                        .style(Style::default().add_modifier(Modifier::BOLD)),
                )
                .block(pane(&title, s.pane == 0)),
            models_area,
        ),
    }
    let h = versions_area.height.saturating_sub(3) as usize;
    let (a, b) = window(s.selected_version, s.versions.len(), h);
    let rows = s.versions[a..b].iter().enumerate().map(|(i, v)| {
        let row = Row::new(vec![
            Span::raw(format!("v{}", v.version)),
            Span::styled(stage_name(v.stage), stage_style(v.stage)),
            Span::raw(
                v.aliases
                    .iter()
                    .map(|a| format!("@{a}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Span::raw(v.run_id.get(..8).unwrap_or(&v.run_id).to_owned()),
            Span::raw(ago(app.now_ms, v.creation_time_ms)),
            Span::raw(v.status.clone()),
        ]);
        if a + i == s.selected_version && s.pane == 1 {
            row.style(selected_style())
        } else {
            row
        }
    });
    let title = format!(
        "Versions of {} ({})",
        if s.versions_of.is_empty() {
            "-"
        } else {
            &s.versions_of
        },
        s.versions.len()
    );
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(6),
                Constraint::Length(11),
                Constraint::Length(16),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Min(6),
            ],
        )
        .header(
            Row::new(["VER", "STAGE", "ALIASES", "RUN", "CREATED", "STATUS"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(pane(&title, s.pane == 1)),
        versions_area,
    );
    let mut lines = Vec::new();
    for agent in app.agents.iter().filter(|a| a.has_role("inference")) {
        let text = match &agent.served {
            Some(Ok(m)) if m.loaded => {
                let auc = m
                    .metrics
                    .get("val_roc_auc")
                    .map_or(String::new(), |v| format!(", val_roc_auc {v:.4}"));
                format!(
                    "{} v{} ({}), threshold {:.3}{auc}, loaded {}, following {}",
                    m.name,
                    m.version,
                    m.stage,
                    m.threshold,
                    ago(app.now_ms, m.loaded_at_ms),
                    m.following
                )
            }
            Some(Ok(m)) => format!(
                "nothing loaded (following {}){}",
                m.following,
                if m.last_error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.last_error)
                }
            ),
            Some(Err(e)) => e.clone(),
            None => "-".into(),
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:<30}", agent.name()),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(text),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from("no inference agent known"));
    }
    frame.render_widget(
        Paragraph::new(lines).block(pane("Served now", false)),
        served_area,
    );
}
