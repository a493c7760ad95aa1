//! Keys to intents: compiled-in defaults per scope (global, then one per screen), overridden
//! by a TOML keymap file (`[global] quit = ["q", "ctrl-c"]`, `[dags] trigger = ["T"]`).

use std::collections::BTreeMap;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key means. Global intents work on every screen; the others only where a screen
/// lists them (see each screen's `KEYS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Intent {
    Quit,
    Help,
    Back,
    Filter,
    Command,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    NextPane,
    PrevPane,
    NextScreen,
    PrevScreen,
    Screen(u8),
    Refresh,
    Select,
    // Screen actions.
    Append,
    Ingest,
    Trigger,
    Pause,
    Cancel,
    Mark,
    Compare,
    Chart,
    History,
    Sort,
    Reverse,
    Promote,
    Archive,
    Prefill,
    Submit,
    Fire,
    Stop,
}

/// Every intent a keymap file may name, with its name there.
pub const NAMES: &[(&str, Intent)] = &[
    ("quit", Intent::Quit),
    ("help", Intent::Help),
    ("back", Intent::Back),
    ("filter", Intent::Filter),
    ("command", Intent::Command),
    ("up", Intent::Up),
    ("down", Intent::Down),
    ("left", Intent::Left),
    ("right", Intent::Right),
    ("page_up", Intent::PageUp),
    ("page_down", Intent::PageDown),
    ("top", Intent::Top),
    ("bottom", Intent::Bottom),
    ("next_pane", Intent::NextPane),
    ("prev_pane", Intent::PrevPane),
    ("next_screen", Intent::NextScreen),
    ("prev_screen", Intent::PrevScreen),
    ("screen_1", Intent::Screen(1)),
    ("screen_2", Intent::Screen(2)),
    ("screen_3", Intent::Screen(3)),
    ("screen_4", Intent::Screen(4)),
    ("screen_5", Intent::Screen(5)),
    ("screen_6", Intent::Screen(6)),
    ("screen_7", Intent::Screen(7)),
    ("screen_8", Intent::Screen(8)),
    ("refresh", Intent::Refresh),
    ("select", Intent::Select),
    ("append", Intent::Append),
    ("ingest", Intent::Ingest),
    ("trigger", Intent::Trigger),
    ("pause", Intent::Pause),
    ("cancel", Intent::Cancel),
    ("mark", Intent::Mark),
    ("compare", Intent::Compare),
    ("chart", Intent::Chart),
    ("history", Intent::History),
    ("sort", Intent::Sort),
    ("reverse", Intent::Reverse),
    ("promote", Intent::Promote),
    ("archive", Intent::Archive),
    ("prefill", Intent::Prefill),
    ("submit", Intent::Submit),
    ("fire", Intent::Fire),
    ("stop", Intent::Stop),
];

/// The scopes of a keymap file: `global` and one per screen.
pub const SCOPES: &[&str] = &[
    "global",
    "overview",
    "data",
    "dags",
    "experiments",
    "models",
    "predict",
    "loadtest",
    "metrics",
];

fn defaults(scope: &str) -> Vec<(&'static str, Intent)> {
    use Intent::*;
    match scope {
        "global" => vec![
            ("q", Quit),
            ("ctrl-c", Quit),
            ("?", Help),
            ("esc", Back),
            ("/", Filter),
            (":", Command),
            ("up", Up),
            ("k", Up),
            ("down", Down),
            ("j", Down),
            ("left", Left),
            ("h", Left),
            ("right", Right),
            ("l", Right),
            ("pageup", PageUp),
            ("ctrl-u", PageUp),
            ("pagedown", PageDown),
            ("ctrl-d", PageDown),
            ("home", Top),
            ("g", Top),
            ("end", Bottom),
            ("G", Bottom),
            ("tab", NextPane),
            ("backtab", PrevPane),
            ("]", NextScreen),
            ("[", PrevScreen),
            ("1", Screen(1)),
            ("2", Screen(2)),
            ("3", Screen(3)),
            ("4", Screen(4)),
            ("5", Screen(5)),
            ("6", Screen(6)),
            ("7", Screen(7)),
            ("8", Screen(8)),
            ("ctrl-r", Refresh),
            ("enter", Select),
        ],
        "data" => vec![("a", Append), ("i", Ingest)],
        "dags" => vec![("t", Trigger), ("p", Pause), ("x", Cancel)],
        "experiments" => vec![
            ("space", Mark),
            ("c", Compare),
            ("v", Chart),
            ("H", History),
            ("s", Sort),
            ("S", Reverse),
        ],
        "models" => vec![("p", Promote), ("a", Archive)],
        "predict" => vec![("r", Prefill), ("s", Submit)],
        "loadtest" => vec![("f", Fire), ("x", Stop)],
        _ => vec![],
    }
}

/// A key as written in a keymap file and in the help: `q`, `G`, `ctrl-d`, `enter`, `f5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(event: &KeyEvent) -> Self {
        // Terminals send shifted letters as upper case: SHIFT itself is not part of a key.
        Self {
            code: event.code,
            ctrl: event.modifiers.contains(KeyModifiers::CONTROL),
            alt: event.modifiers.contains(KeyModifiers::ALT),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = text;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            f if f.len() > 1 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().map_err(|_| format!("bad key {text:?}"))?)
            }
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next().unwrap_or(' ')),
            _ => return Err(format!("unknown key {text:?}")),
        };
        Ok(Self { code, ctrl, alt })
    }

    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Enter => "enter".to_owned(),
            KeyCode::Esc => "esc".to_owned(),
            KeyCode::Tab => "tab".to_owned(),
            KeyCode::BackTab => "shift-tab".to_owned(),
            KeyCode::Char(' ') => "space".to_owned(),
            KeyCode::Up => "↑".to_owned(),
            KeyCode::Down => "↓".to_owned(),
            KeyCode::Left => "←".to_owned(),
            KeyCode::Right => "→".to_owned(),
            KeyCode::PageUp => "pgup".to_owned(),
            KeyCode::PageDown => "pgdn".to_owned(),
            KeyCode::Home => "home".to_owned(),
            KeyCode::End => "end".to_owned(),
            KeyCode::F(n) => format!("f{n}"),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        match (self.ctrl, self.alt) {
            (true, _) => format!("ctrl-{base}"),
            (_, true) => format!("alt-{base}"),
            _ => base,
        }
    }
}

/// Keys to intents, per scope.
#[derive(Clone, Debug)]
pub struct Keymap {
    scopes: BTreeMap<String, Vec<(Key, Intent)>>,
}

impl Default for Keymap {
    fn default() -> Self {
        let scopes = SCOPES
            .iter()
            .map(|s| {
                let keys = defaults(s)
                    .into_iter()
                    .map(|(k, i)| {
                        (
                            Key::parse(k).unwrap_or_else(|e| panic!("default key: {e}")),
                            i,
                        )
                    })
                    .collect();
                ((*s).to_owned(), keys)
            })
            .collect();
        Self { scopes }
    }
}

impl Keymap {
    /// The defaults with a keymap file's bindings in place of theirs: naming an intent in a
    /// scope replaces every default key of that intent there.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("keymap file {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("keymap file {}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut map = Self::default();
        for (scope, entries) in table {
            if !SCOPES.contains(&scope.as_str()) {
                return Err(format!(
                    "unknown scope [{scope}] (scopes: {})",
                    SCOPES.join(", ")
                ));
            }
            let entries = entries
                .as_table()
                .ok_or_else(|| format!("[{scope}] must be a table of intent = [keys]"))?;
            for (name, keys) in entries {
                let intent = NAMES
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, i)| *i)
                    .ok_or_else(|| format!("[{scope}] unknown intent {name:?}"))?;
                let keys: Vec<&str> = match keys {
                    toml::Value::String(s) => vec![s.as_str()],
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .ok_or_else(|| format!("[{scope}] {name}: keys must be strings"))
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(format!("[{scope}] {name}: give a key or a list of keys")),
                };
                let bindings = map.scopes.entry(scope.clone()).or_default();
                bindings.retain(|(_, i)| *i != intent);
                for key in keys {
                    let key = Key::parse(key).map_err(|e| format!("[{scope}] {name}: {e}"))?;
                    bindings.retain(|(k, _)| *k != key);
                    bindings.push((key, intent));
                }
            }
        }
        Ok(map)
    }

    /// The intent of a key on a screen: the screen's own binding first, then the global one.
    pub fn intent(&self, scope: &str, event: &KeyEvent) -> Option<Intent> {
        let key = Key::from_event(event);
        let find = |s: &str| {
            self.scopes
                .get(s)
                .and_then(|b| b.iter().find(|(k, _)| *k == key).map(|(_, i)| *i))
        };
        find(scope).or_else(|| find("global"))
    }

    /// The keys bound to an intent, for the help ("j/↓").
    pub fn keys_of(&self, scope: &str, intent: Intent) -> String {
        let mut keys: Vec<String> = [scope, "global"]
            .iter()
            .filter_map(|s| self.scopes.get(*s))
            .flatten()
            .filter(|(_, i)| *i == intent)
            .map(|(k, _)| k.label())
            .collect();
        keys.dedup();
        keys.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn screen_keys_come_before_global_ones_and_files_replace_defaults() {
        let map = Keymap::default();
        assert_eq!(map.intent("dags", &key('p')), Some(Intent::Pause));
        assert_eq!(map.intent("models", &key('p')), Some(Intent::Promote));
        assert_eq!(map.intent("data", &key('j')), Some(Intent::Down));
        let map =
            Keymap::from_toml("[global]\nquit = [\"x\", \"ctrl-q\"]\n[dags]\ntrigger = \"T\"")
                .unwrap();
        assert_eq!(map.intent("data", &key('q')), None);
        assert_eq!(map.intent("data", &key('x')), Some(Intent::Quit));
        assert_eq!(map.intent("dags", &key('T')), Some(Intent::Trigger));
        assert_eq!(map.intent("dags", &key('t')), None);
        assert_eq!(map.keys_of("data", Intent::Quit), "x/ctrl-q");
    }

    #[test]
    fn bad_keymap_files_name_the_problem() {
        let err = Keymap::from_toml("[nope]\nquit = \"q\"").unwrap_err();
        assert!(err.contains("unknown scope [nope]"), "{err}");
        let err = Keymap::from_toml("[global]\nfly = \"q\"").unwrap_err();
        assert!(err.contains("unknown intent \"fly\""), "{err}");
        let err = Keymap::from_toml("[global]\nquit = \"hyper-q\"").unwrap_err();
        assert!(err.contains("quit") && err.contains("hyper-q"), "{err}");
    }
}
