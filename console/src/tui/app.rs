//! The TUI's state and its one `update`: every action changes the state here, and only here.
//! `update` never awaits: what it needs from the agents it queues as `Request`s, which the run
//! loop hands to the backend.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use readmit_proto::v1;

use super::action::{Action, Request};
use super::events::Events;
use super::keymap::{Intent, Keymap};
use super::prom;
use super::screens::{dags, data, experiments, loadtest, metrics, models, overview, predict};

/// The screens, in tab order (digits 1–8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Data,
    Dags,
    Experiments,
    Models,
    Predict,
    LoadTest,
    Metrics,
}

impl Screen {
    pub const ALL: [Screen; 8] = [
        Screen::Overview,
        Screen::Data,
        Screen::Dags,
        Screen::Experiments,
        Screen::Models,
        Screen::Predict,
        Screen::LoadTest,
        Screen::Metrics,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Data => "Data",
            Screen::Dags => "DAGs",
            Screen::Experiments => "Experiments",
            Screen::Models => "Models",
            Screen::Predict => "Predict",
            Screen::LoadTest => "Load test",
            Screen::Metrics => "Metrics",
        }
    }

    /// The keymap scope of the screen's own keys.
    pub fn scope(self) -> &'static str {
        match self {
            Screen::Overview => "overview",
            Screen::Data => "data",
            Screen::Dags => "dags",
            Screen::Experiments => "experiments",
            Screen::Models => "models",
            Screen::Predict => "predict",
            Screen::LoadTest => "loadtest",
            Screen::Metrics => "metrics",
        }
    }

    /// The role whose agent serves the screen; its state greys the screen out.
    pub fn role(self) -> Option<&'static str> {
        match self {
            Screen::Overview | Screen::Metrics => None,
            Screen::Data | Screen::Dags => Some("etl"),
            Screen::Experiments | Screen::Models => Some("tracking"),
            Screen::Predict | Screen::LoadTest => Some("inference"),
        }
    }

    pub fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The screen's own keys with what they do, for the help.
    pub fn keys(self) -> &'static [(Intent, &'static str)] {
        match self {
            Screen::Overview => overview::KEYS,
            Screen::Data => data::KEYS,
            Screen::Dags => dags::KEYS,
            Screen::Experiments => experiments::KEYS,
            Screen::Models => models::KEYS,
            Screen::Predict => predict::KEYS,
            Screen::LoadTest => loadtest::KEYS,
            Screen::Metrics => metrics::KEYS,
        }
    }
}

/// The global keys, for the help.
pub const GLOBAL_KEYS: &[(Intent, &str)] = &[
    (
        Intent::Screen(1),
        "Overview (2–8: the other screens in tab order)",
    ),
    (Intent::NextScreen, "next screen"),
    (Intent::PrevScreen, "previous screen"),
    (Intent::Up, "up"),
    (Intent::Down, "down"),
    (Intent::PageUp, "page up"),
    (Intent::PageDown, "page down"),
    (Intent::Top, "first row"),
    (Intent::Bottom, "last row"),
    (Intent::NextPane, "next pane"),
    (Intent::PrevPane, "previous pane"),
    (
        Intent::Filter,
        "filter the list (`!text` keeps what does not match)",
    ),
    (
        Intent::Command,
        "command: :dags, :runs <experiment>, :promote <model> <version>, :<screen>, :q",
    ),
    (Intent::Refresh, "reload this screen"),
    (Intent::Help, "this help"),
    (Intent::Back, "back: close, clear the filter"),
    (Intent::Quit, "quit"),
];

/// A line being typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Line {
    pub text: String,
}

impl Line {
    pub fn new(text: &str) -> Self {
        Self { text: text.into() }
    }
}

/// What a typed line is for.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    Filter,
    Command,
    TriggerParams { dag: String },
    IngestPath,
    PredictField(usize),
    LoadField(usize),
}

/// A change waiting for yes or no; the message names what changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm {
    pub message: String,
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Normal,
    Help,
    Typing { edit: Edit, line: Line },
    Confirm(Confirm),
}

/// What is known of an agent's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Up,
    Down(String),
}

/// CPU and memory samples kept for the sparklines.
pub const SPARK_POINTS: usize = 120;

#[derive(Clone, Debug)]
pub struct AgentView {
    pub url: String,
    pub info: Option<v1::AgentInfo>,
    pub link: Link,
    pub status: Option<v1::AgentStatus>,
    /// CPU use in percent.
    pub cpu: VecDeque<u64>,
    /// Host memory in use, in tenths of a percent.
    pub mem: VecDeque<u64>,
    pub metrics: prom::Store,
    pub metrics_error: Option<String>,
    pub served: Option<Result<readmit_proto::ServedInfo, String>>,
}

impl AgentView {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            info: None,
            link: Link::Connecting,
            status: None,
            cpu: VecDeque::new(),
            mem: VecDeque::new(),
            metrics: prom::Store::default(),
            metrics_error: None,
            served: None,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.info
            .as_ref()
            .is_some_and(|i| i.roles.iter().any(|r| r == role))
    }

    pub fn name(&self) -> String {
        self.info.as_ref().map_or_else(
            || self.url.clone(),
            |i| format!("{} ({})", i.host, i.grpc_addr),
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub until_ms: i64,
}

/// Everything the screen shows.
pub struct App {
    pub screen: Screen,
    pub mode: Mode,
    pub keymap: Keymap,
    pub agents: Vec<AgentView>,
    pub now_ms: i64,
    pub flash: Option<Flash>,
    pub events: Events,
    pub data: data::State,
    pub dags: dags::State,
    pub experiments: experiments::State,
    pub models: models::State,
    pub predict: predict::State,
    pub load: loadtest::State,
    pub metrics: metrics::State,
    pub quit: bool,
    pub size: (u16, u16),
    requests: Vec<Request>,
    last_poll_ms: i64,
    last_refresh_ms: i64,
}

/// How often the served models and the metrics are read, and the screen refreshed.
const POLL_MS: i64 = 2000;
const REFRESH_MS: i64 = 10_000;

impl App {
    pub fn new(agents: &[String], keymap: Keymap, now_ms: i64) -> Self {
        let mut app = Self {
            screen: Screen::Overview,
            mode: Mode::Normal,
            keymap,
            agents: agents.iter().map(|u| AgentView::new(u)).collect(),
            now_ms,
            flash: None,
            events: Events::default(),
            data: data::State::default(),
            dags: dags::State::default(),
            experiments: experiments::State::default(),
            models: models::State::default(),
            predict: predict::State::default(),
            load: loadtest::State::default(),
            metrics: metrics::State::default(),
            quit: false,
            size: (80, 24),
            requests: Vec::new(),
            last_poll_ms: 0,
            last_refresh_ms: now_ms,
        };
        app.refresh_all();
        app
    }

    /// Queues a request for the backend.
    pub fn request(&mut self, request: Request) {
        if !self.requests.contains(&request) {
            self.requests.push(request);
        }
    }

    /// The requests queued since the last call.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    pub fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            error,
            until_ms: self.now_ms + 6000,
        });
    }

    /// An event line only the console knows of (an agent down or back, a command's answer).
    pub fn event(&mut self, at_ms: i64, text: String, ok: bool) {
        self.events.note(at_ms, text, ok);
    }

    /// Whether any agent that is up runs `role`, or why not: `None` when it is up.
    pub fn role_down(&self, role: &str) -> Option<String> {
        let mut reasons = Vec::new();
        for a in &self.agents {
            match &a.link {
                Link::Up if a.has_role(role) => return None,
                Link::Down(reason) if a.info.is_none() || a.has_role(role) => {
                    reasons.push(format!("{}: {reason}", a.url));
                }
                Link::Connecting if a.info.is_none() || a.has_role(role) => {
                    reasons.push(format!("{}: connecting", a.url));
                }
                _ => {}
            }
        }
        if reasons.is_empty() {
            Some(format!("no agent runs the {role} role"))
        } else {
            Some(format!("{role} agent down — {}", reasons.join("; ")))
        }
    }

    fn refresh_all(&mut self) {
        overview::refresh(self);
        data::refresh(self);
        dags::refresh(self);
        experiments::refresh(self);
        models::refresh(self);
        predict::refresh(self);
        loadtest::refresh(self);
    }

    fn refresh_role(&mut self, role: &str) {
        match role {
            "etl" => {
                overview::refresh_runs(self);
                data::refresh(self);
                dags::refresh(self);
            }
            "tracking" => {
                experiments::refresh(self);
                models::refresh(self);
            }
            "inference" => {
                predict::refresh(self);
                loadtest::refresh(self);
                self.request(Request::Served);
            }
            _ => {}
        }
    }

    fn refresh_screen(&mut self) {
        match self.screen {
            Screen::Metrics => {}
            Screen::Overview => overview::refresh(self),
            Screen::Data => data::refresh(self),
            Screen::Dags => dags::refresh(self),
            Screen::Experiments => experiments::refresh(self),
            Screen::Models => models::refresh(self),
            Screen::Predict => predict::refresh(self),
            Screen::LoadTest => loadtest::refresh(self),
        }
    }

    pub fn go(&mut self, screen: Screen) {
        if self.screen != screen {
            self.screen = screen;
            self.refresh_screen();
        }
    }

    /// Where each tab sits in the tab bar (x from, x to), as `ui` draws it.
    pub fn tab_spans() -> Vec<(u16, u16)> {
        let mut x = 1u16;
        Screen::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let width = format!(" {} {} ", i + 1, s.title()).chars().count() as u16;
                let span = (x, x + width);
                x += width + 1;
                span
            })
            .collect()
    }
}

/// Applies one action to the state.
pub fn update(app: &mut App, action: Action) {
    match action {
        Action::Key(key) => on_key(app, key),
        Action::Mouse(mouse) => on_mouse(app, mouse),
        Action::Resize(w, h) => app.size = (w, h),
        Action::Tick(now) => on_tick(app, now),
        Action::AgentUp { slot, info } => {
            let Some(agent) = app.agents.get_mut(slot) else {
                return;
            };
            let was_down = matches!(agent.link, Link::Down(_));
            let roles = info.roles.clone();
            agent.info = Some(info);
            agent.link = Link::Up;
            let name = agent.name();
            if was_down {
                app.event(app.now_ms, format!("{name} is back"), true);
            }
            for role in roles {
                app.refresh_role(&role);
            }
            app.request(Request::Scrape);
        }
        Action::AgentStatus { slot, status } => {
            let Some(agent) = app.agents.get_mut(slot) else {
                return;
            };
            push_capped(&mut agent.cpu, status.cpu_percent.max(0.0).round() as u64);
            let mem = (status.memory_used_bytes.saturating_mul(1000))
                .checked_div(status.memory_total_bytes)
                .unwrap_or(0);
            push_capped(&mut agent.mem, mem);
            agent.status = Some(status);
        }
        Action::AgentDown { slot, reason } => {
            let Some(agent) = app.agents.get_mut(slot) else {
                return;
            };
            let was_up = agent.link == Link::Up;
            agent.link = Link::Down(reason.clone());
            let name = agent.name();
            if was_up {
                app.event(app.now_ms, format!("{name} down: {reason}"), false);
            }
        }
        Action::Metrics {
            slot,
            at_ms,
            scrape,
        } => {
            if let Some(agent) = app.agents.get_mut(slot) {
                match scrape {
                    Ok(scrape) => {
                        agent.metrics.add(at_ms, scrape);
                        agent.metrics_error = None;
                    }
                    Err(e) => agent.metrics_error = Some(e),
                }
            }
            metrics::on_scrape(app);
        }
        Action::Served { slot, served } => {
            if let Some(agent) = app.agents.get_mut(slot) {
                agent.served = Some(served);
            }
        }
        Action::DataStatus(reply) => data::on_status(app, reply),
        Action::Dags(reply) => dags::on_dags(app, reply),
        Action::DagRuns { dag, runs } => dags::on_runs(app, &dag, runs),
        Action::DagRun(run) => dags::on_run(app, run),
        Action::RunEvent(event) => dags::on_event(app, event),
        Action::RunLogs { run_id, lines } => dags::on_logs(app, &run_id, lines),
        Action::Experiments(reply) => experiments::on_experiments(app, reply),
        Action::Runs {
            experiment_id,
            filter,
            runs,
        } => experiments::on_runs(app, &experiment_id, &filter, runs),
        Action::Compare(reply) => experiments::on_compare(app, reply),
        Action::History {
            run_id,
            key,
            points,
        } => experiments::on_history(app, &run_id, &key, points),
        Action::Models(reply) => models::on_models(app, reply),
        Action::Versions { name, versions } => models::on_versions(app, &name, versions),
        Action::RegistryEvent(event) => models::on_event(app, &event),
        Action::Signature(reply) => predict::on_signature(app, reply),
        Action::Example(reply) => predict::on_example(app, reply),
        Action::Prediction(reply) => predict::on_prediction(app, reply),
        Action::LoadTests(reply) => loadtest::on_list(app, reply),
        Action::LoadTestStarted(reply) => loadtest::on_started(app, reply),
        Action::LoadSample(sample) => loadtest::on_sample(app, sample),
        Action::LoadTestEnded(reply) => loadtest::on_ended(app, reply),
        Action::Done { what, outcome } => match outcome {
            Ok(text) => {
                app.flash(text.clone(), false);
                app.event(app.now_ms, text, true);
                app.refresh_screen();
            }
            Err(e) => app.flash(format!("{what}: {e}"), true),
        },
    }
}

fn push_capped(q: &mut VecDeque<u64>, v: u64) {
    q.push_back(v);
    while q.len() > SPARK_POINTS {
        q.pop_front();
    }
}

fn on_tick(app: &mut App, now: i64) {
    app.now_ms = now;
    if app.flash.as_ref().is_some_and(|f| f.until_ms <= now) {
        app.flash = None;
    }
    if now - app.last_poll_ms >= POLL_MS {
        app.last_poll_ms = now;
        app.request(Request::Scrape);
        app.request(Request::Served);
    }
    if now - app.last_refresh_ms >= REFRESH_MS {
        app.last_refresh_ms = now;
        app.refresh_screen();
    }
}

fn on_mouse(app: &mut App, mouse: MouseEvent) {
    if app.mode != Mode::Normal {
        return;
    }
    match mouse.kind {
        MouseEventKind::ScrollDown => on_intent(app, Intent::Down),
        MouseEventKind::ScrollUp => on_intent(app, Intent::Up),
        MouseEventKind::Down(MouseButton::Left) if mouse.row == 0 => {
            if let Some(i) = App::tab_spans()
                .iter()
                .position(|(a, b)| mouse.column >= *a && mouse.column < *b)
            {
                app.go(Screen::ALL[i]);
            }
        }
        _ => {}
    }
}

fn on_key(app: &mut App, key: KeyEvent) {
    if key.kind == crossterm::event::KeyEventKind::Release {
        return;
    }
    match app.mode.clone() {
        Mode::Normal => {
            if let Some(intent) = app.keymap.intent(app.screen.scope(), &key) {
                on_intent(app, intent);
            }
        }
        Mode::Help => {
            if matches!(
                app.keymap.intent(app.screen.scope(), &key),
                Some(Intent::Back | Intent::Help | Intent::Quit)
            ) {
                app.mode = Mode::Normal;
            }
        }
        Mode::Confirm(confirm) => match key.code {
            KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                app.mode = Mode::Normal;
                app.request(confirm.request);
            }
            KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                app.mode = Mode::Normal;
                app.flash("cancelled: nothing changed", false);
            }
            _ => {}
        },
        Mode::Typing { edit, mut line } => match key.code {
            KeyCode::Esc => app.mode = Mode::Normal,
            KeyCode::Enter => {
                app.mode = Mode::Normal;
                finish_typing(app, edit, &line.text);
            }
            KeyCode::Backspace => {
                line.text.pop();
                app.mode = Mode::Typing { edit, line };
            }
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .contains(crossterm::event::KeyModifiers::CONTROL) =>
            {
                if accepts(app, &edit, &line.text, c) {
                    line.text.push(c);
                }
                app.mode = Mode::Typing { edit, line };
            }
            _ => app.mode = Mode::Typing { edit, line },
        },
    }
}

/// Whether a typed character is accepted: form fields check numbers as they are typed.
fn accepts(app: &App, edit: &Edit, text: &str, c: char) -> bool {
    match edit {
        Edit::PredictField(i) => predict::accepts(app, *i, text, c),
        Edit::LoadField(i) => loadtest::accepts(*i, text, c),
        _ => true,
    }
}

fn finish_typing(app: &mut App, edit: Edit, text: &str) {
    match edit {
        Edit::Filter => apply_filter(app, text.trim()),
        Edit::Command => run_command(app, text.trim()),
        Edit::TriggerParams { dag } => dags::trigger(app, &dag, text),
        Edit::IngestPath => data::ingest(app, text.trim()),
        Edit::PredictField(i) => predict::set_field(app, i, text),
        Edit::LoadField(i) => loadtest::set_field(app, i, text),
    }
}

/// The filter of the current screen.
pub fn current_filter(app: &App) -> String {
    match app.screen {
        Screen::Dags => app.dags.filter.clone(),
        Screen::Experiments => app.experiments.filter.clone(),
        Screen::Models => app.models.filter.clone(),
        Screen::Metrics => app.metrics.filter.clone(),
        Screen::Predict => app.predict.filter.clone(),
        Screen::Overview | Screen::Data | Screen::LoadTest => String::new(),
    }
}

fn apply_filter(app: &mut App, text: &str) {
    match app.screen {
        Screen::Dags => dags::set_filter(app, text),
        Screen::Experiments => experiments::set_filter(app, text),
        Screen::Models => models::set_filter(app, text),
        Screen::Metrics => metrics::set_filter(app, text),
        Screen::Predict => predict::set_filter(app, text),
        Screen::Overview | Screen::Data | Screen::LoadTest => {}
    }
}

fn has_filter(screen: Screen) -> bool {
    matches!(
        screen,
        Screen::Dags | Screen::Experiments | Screen::Models | Screen::Metrics | Screen::Predict
    )
}

/// Global intents here; the rest belong to the screen.
pub fn on_intent(app: &mut App, intent: Intent) {
    match intent {
        Intent::Quit => app.quit = true,
        Intent::Help => app.mode = Mode::Help,
        Intent::Back => {
            if has_filter(app.screen) && !current_filter(app).is_empty() {
                apply_filter(app, "");
            } else {
                screen_intent(app, Intent::Back);
            }
        }
        Intent::Filter if has_filter(app.screen) => {
            app.mode = Mode::Typing {
                edit: Edit::Filter,
                line: Line::new(&current_filter(app)),
            };
        }
        Intent::Command => {
            app.mode = Mode::Typing {
                edit: Edit::Command,
                line: Line::default(),
            };
        }
        Intent::Screen(n) => {
            if let Some(s) = Screen::ALL.get(usize::from(n).saturating_sub(1)) {
                app.go(*s);
            }
        }
        Intent::NextScreen => app.go(Screen::ALL[(app.screen.index() + 1) % 8]),
        Intent::PrevScreen => app.go(Screen::ALL[(app.screen.index() + 7) % 8]),
        Intent::Refresh => {
            app.refresh_screen();
            app.flash("reloading", false);
        }
        other => screen_intent(app, other),
    }
}

fn screen_intent(app: &mut App, intent: Intent) {
    match app.screen {
        Screen::Overview => overview::on_intent(app, intent),
        Screen::Data => data::on_intent(app, intent),
        Screen::Dags => dags::on_intent(app, intent),
        Screen::Experiments => experiments::on_intent(app, intent),
        Screen::Models => models::on_intent(app, intent),
        Screen::Predict => predict::on_intent(app, intent),
        Screen::LoadTest => loadtest::on_intent(app, intent),
        Screen::Metrics => metrics::on_intent(app, intent),
    }
}

/// `:` commands.
pub fn run_command(app: &mut App, text: &str) {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [] => {}
        ["q" | "quit" | "q!"] => app.quit = true,
        ["dags"] => app.go(Screen::Dags),
        ["runs", experiment @ ..] if !experiment.is_empty() => {
            app.go(Screen::Experiments);
            experiments::open_by_name(app, &experiment.join(" "));
        }
        ["runs"] => app.go(Screen::Experiments),
        ["promote", model, version] => match version.trim_start_matches('v').parse::<i64>() {
            Ok(v) => models::ask_promote(app, model, v),
            Err(_) => app.flash(
                format!(":promote: {version:?} is not a version number"),
                true,
            ),
        },
        ["promote", ..] => app.flash("usage: :promote <model> <version>", true),
        [name] => match Screen::ALL.iter().find(|s| {
            s.scope() == name.to_lowercase()
                || s.title().to_lowercase().replace(' ', "") == name.to_lowercase()
        }) {
            Some(s) => app.go(*s),
            None => app.flash(format!("unknown command :{text} (? lists the keys)"), true),
        },
        _ => app.flash(format!("unknown command :{text} (? lists the keys)"), true),
    }
}

/// Moves a selection by an intent over `len` rows; `page` rows a page.
pub fn move_selection(selected: &mut usize, len: usize, intent: Intent, page: usize) -> bool {
    if len == 0 {
        *selected = 0;
        return false;
    }
    let before = *selected;
    *selected = match intent {
        Intent::Up => selected.saturating_sub(1),
        Intent::Down => (*selected + 1).min(len - 1),
        Intent::PageUp => selected.saturating_sub(page),
        Intent::PageDown => (*selected + page).min(len - 1),
        Intent::Top => 0,
        Intent::Bottom => len - 1,
        _ => *selected,
    }
    .min(len - 1);
    *selected != before
}

/// Whether `text` passes a list filter: a case-blind substring, or with `!` its absence.
pub fn matches_filter(filter: &str, text: &str) -> bool {
    match filter.strip_prefix('!') {
        Some(f) => !text.to_lowercase().contains(&f.to_lowercase()),
        None => text.to_lowercase().contains(&filter.to_lowercase()),
    }
}

/// Rows a page, from the terminal's height.
pub fn page(app: &App) -> usize {
    usize::from(app.size.1.saturating_sub(10)).max(1)
}
