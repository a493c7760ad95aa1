//! `readmit tui`: the operations console. Action → state → pure draw: input and the agents'
//! answers become `Action`s on one channel; `app::update` changes the state; `ui::draw` is a
//! pure function of it, run at most 30 times a second and only when something changed. Agent
//! calls and streams run on tasks (`backend`) and never block a frame.

pub mod action;
pub mod app;
pub mod backend;
pub mod bench;
pub mod events;
pub mod fixtures;
pub mod keymap;
pub mod prom;
pub mod requests;
pub mod scrape;
pub mod screens;
pub mod terminal;
pub mod ui;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use action::Action;
use app::App;
use backend::{Backend, now_ms};
use keymap::Keymap;

use crate::fleet::Fleet;

/// How often the clock ticks (polls, "ago" figures) and the fastest frame rate.
const TICK: Duration = Duration::from_millis(250);
const FRAME: Duration = Duration::from_millis(33);

/// The keymap file: the one given, else `$XDG_CONFIG_HOME/readmit/keymap.toml` (or
/// `~/.config/...`) when it exists, else the defaults.
pub fn load_keymap(path: Option<&Path>) -> anyhow::Result<Keymap> {
    let path = match path {
        Some(p) => p.to_owned(),
        None => match config_dir().map(|d| d.join("readmit").join("keymap.toml")) {
            Some(p) if p.exists() => p,
            _ => return Ok(Keymap::default()),
        },
    };
    Keymap::load(&path).map_err(anyhow::Error::msg)
}

fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// Where the TUI logs: `$XDG_STATE_HOME/readmit/tui.log` (or `~/.local/state/...`).
pub fn default_log_file() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("readmit")
        .join("tui.log")
}

/// Opens (creating it and its directory) a log file to append to.
pub fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("log directory {}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("log file {}: {e}", path.display()))
}

/// Sends the process's logs to `path`, never to the screen the TUI owns. When the process
/// already logs somewhere (`readmit up` sets its own), that stays.
pub fn log_to_file(path: &Path) -> anyhow::Result<()> {
    let file = open_log(path)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("READMIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// The agents' URLs, in the fleet's order (the app's slots).
fn urls(fleet: &Fleet) -> Vec<String> {
    fleet.snapshot().into_iter().map(|a| a.url).collect()
}

/// Runs the TUI on this terminal over the fleet's agents until the operator quits.
pub async fn run(fleet: Arc<Fleet>, keymap: Keymap) -> anyhow::Result<()> {
    let agents = urls(&fleet);
    if agents.is_empty() {
        anyhow::bail!("no agent to connect to: give --agent URL");
    }
    let (tx, mut rx) = unbounded_channel();
    let backend = Backend::start(fleet, tx.clone());
    let mut app = App::new(&agents, keymap, now_ms());
    tracing::info!(?agents, "console started");
    let (_guard, mut terminal) = terminal::Guard::enter()?;
    let size = terminal.size()?;
    app.size = (size.width, size.height);
    let input = tokio::spawn(read_input(tx.clone()));
    let clock = tokio::spawn(tick(tx));
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let result = loop {
        tokio::select! {
            action = rx.recv() => {
                let Some(action) = action else { break Ok(()) };
                drain(&mut app, action, &mut rx);
                for request in app.take_requests() {
                    backend.dispatch(request);
                }
                dirty = true;
            }
            _ = frame.tick() => {
                if dirty {
                    if let Err(e) = terminal.draw(|f| ui::draw(&app, f)) {
                        break Err(anyhow::anyhow!("drawing: {e}"));
                    }
                    dirty = false;
                }
            }
        }
        if app.quit {
            break Ok(());
        }
    };
    input.abort();
    clock.abort();
    tracing::info!("console closed");
    result
}

/// Applies an action and every one already waiting.
fn drain(app: &mut App, first: Action, rx: &mut UnboundedReceiver<Action>) {
    app::update(app, first);
    while let Ok(action) = rx.try_recv() {
        app::update(app, action);
    }
}

async fn read_input(tx: UnboundedSender<Action>) {
    let mut events = EventStream::new();
    while let Some(event) = events.next().await {
        let action = match event {
            Ok(Event::Key(key)) => Action::Key(key),
            Ok(Event::Mouse(mouse)) => Action::Mouse(mouse),
            Ok(Event::Resize(w, h)) => Action::Resize(w, h),
            Ok(_) => continue,
            Err(e) => {
                tracing::error!("terminal input: {e}");
                return;
            }
        };
        if tx.send(action).is_err() {
            return;
        }
    }
}

async fn tick(tx: UnboundedSender<Action>) {
    let mut clock = tokio::time::interval(TICK);
    loop {
        clock.tick().await;
        if tx.send(Action::Tick(now_ms())).is_err() {
            return;
        }
    }
}

/// The app without a terminal: actions in, requests out to real agents, for tests.
#[cfg(test)]
pub struct Headless {
    pub app: App,
    backend: Backend,
    rx: UnboundedReceiver<Action>,
}

#[cfg(test)]
impl Headless {
    pub fn start(fleet: Arc<Fleet>) -> Self {
        let (tx, rx) = unbounded_channel();
        let agents = urls(&fleet);
        let backend = Backend::start(fleet, tx);
        let app = App::new(&agents, Keymap::default(), now_ms());
        Self { app, backend, rx }
    }

    pub fn act(&mut self, action: Action) {
        app::update(&mut self.app, action);
        for request in self.app.take_requests() {
            self.backend.dispatch(request);
        }
    }

    pub fn key(&mut self, code: crossterm::event::KeyCode) {
        self.act(Action::Key(crossterm::event::KeyEvent::new(
            code,
            crossterm::event::KeyModifiers::NONE,
        )));
    }

    /// Types text as keys.
    pub fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.key(crossterm::event::KeyCode::Char(c));
        }
    }

    /// Applies actions as they come (and a tick every 250 ms) until `done` holds; panics with
    /// `what` after `secs`.
    pub async fn until(&mut self, what: &str, secs: u64, done: impl Fn(&App) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut last_tick = tokio::time::Instant::now();
        while !done(&self.app) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {secs} s; flash {:?}, prediction {:?}, events {:?}",
                self.app.flash,
                self.app.predict.result,
                self.app.events.iter().take(5).collect::<Vec<_>>()
            );
            if let Ok(Some(action)) =
                tokio::time::timeout(Duration::from_millis(100), self.rx.recv()).await
            {
                self.act(action);
            }
            if last_tick.elapsed() >= TICK {
                last_tick = tokio::time::Instant::now();
                self.act(Action::Tick(now_ms()));
            }
        }
    }
}
