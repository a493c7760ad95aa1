//! The Overview's last events, newest first. Lines come three ways: what only the console saw
//! (an agent went down, a command's answer), what a stream reports as it happens (a run ended,
//! a version moved stage), and what the agents' history says happened before the console
//! started (read back from runs, versions and load tests). A stream line and a history line of
//! the same happening share a key, so each happening is listed once, wherever it came from.

use std::collections::VecDeque;

/// Lines kept; older ones drop off the end.
pub const EVENTS_KEPT: usize = 200;

/// A line of the Overview's recent events.
#[derive(Clone, Debug, PartialEq)]
pub struct EventLine {
    pub at_ms: i64,
    pub text: String,
    pub ok: bool,
    /// What happened, e.g. `dag run <id> ended`: the same for its stream and history line.
    pub key: Option<String>,
}

/// A happening with its key, as the screens build it from a stream event or from history.
#[derive(Clone, Debug, PartialEq)]
pub struct Happening {
    pub key: String,
    pub at_ms: i64,
    pub text: String,
    pub ok: bool,
}

impl From<Happening> for EventLine {
    fn from(h: Happening) -> Self {
        Self {
            at_ms: h.at_ms,
            text: h.text,
            ok: h.ok,
            key: Some(h.key),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Events {
    lines: VecDeque<EventLine>,
}

impl Events {
    /// A line only the console knows of; never matched with history.
    pub fn note(&mut self, at_ms: i64, text: String, ok: bool) {
        self.lines.push_front(EventLine {
            at_ms,
            text,
            ok,
            key: None,
        });
        self.lines.truncate(EVENTS_KEPT);
    }

    /// A happening as a stream reports it: it replaces the line history already listed for it,
    /// in place, or comes first.
    pub fn live(&mut self, h: Happening) {
        let line = EventLine::from(h);
        match self.lines.iter_mut().find(|l| l.key == line.key) {
            Some(listed) => *listed = line,
            None => {
                self.lines.push_front(line);
                self.lines.truncate(EVENTS_KEPT);
            }
        }
    }

    /// A happening read back from history: skipped when already listed, else placed by its
    /// time, before the first older line, so nothing listed moves.
    pub fn history(&mut self, h: Happening) {
        if h.at_ms <= 0 || self.lines.iter().any(|l| l.key.as_deref() == Some(&h.key)) {
            return;
        }
        let at = self
            .lines
            .iter()
            .position(|l| l.at_ms < h.at_ms)
            .unwrap_or(self.lines.len());
        if at >= EVENTS_KEPT {
            return;
        }
        self.lines.insert(at, h.into());
        self.lines.truncate(EVENTS_KEPT);
    }

    /// Every line of `happenings` read back from history.
    pub fn history_all(&mut self, happenings: impl IntoIterator<Item = Happening>) {
        for h in happenings {
            self.history(h);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &EventLine> {
        self.lines.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(key: &str, at_ms: i64, text: &str) -> Happening {
        Happening {
            key: key.into(),
            at_ms,
            text: text.into(),
            ok: true,
        }
    }

    fn texts(e: &Events) -> Vec<&str> {
        e.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn history_is_placed_by_time_and_listed_once() {
        let mut e = Events::default();
        e.note(3000, "agent back".into(), true);
        e.history(h("a", 1000, "first"));
        e.history(h("c", 5000, "newest"));
        e.history(h("b", 2000, "second"));
        e.history(h("b", 2000, "second again"));
        e.history(h("z", 0, "no time: not placed"));
        assert_eq!(texts(&e), ["newest", "agent back", "second", "first"]);
    }

    #[test]
    fn a_stream_line_replaces_its_history_line_in_place() {
        let mut e = Events::default();
        e.history(h("run 1 succeeded", 2000, "run 1 succeeded"));
        e.history(h("run 0 succeeded", 1000, "run 0 succeeded"));
        e.live(h("run 1 succeeded", 2100, "DAG d run 1 succeeded"));
        e.live(h("run 2 started", 3000, "DAG d run 2 started"));
        // History read again after the stream spoke adds nothing.
        e.history(h("run 2 started", 3000, "run 2 started"));
        assert_eq!(
            texts(&e),
            [
                "DAG d run 2 started",
                "DAG d run 1 succeeded",
                "run 0 succeeded"
            ]
        );
    }

    #[test]
    fn the_list_keeps_its_newest_lines() {
        let mut e = Events::default();
        for i in 0..EVENTS_KEPT as i64 {
            e.live(h(&format!("k{i}"), 10_000 + i, "live"));
        }
        e.history(h("old", 1, "older than all"));
        assert_eq!(e.iter().count(), EVENTS_KEPT);
        assert!(e.iter().all(|l| l.text == "live"));
        e.history(h("new", 1_000_000, "newer than all"));
        assert_eq!(e.iter().count(), EVENTS_KEPT);
        assert_eq!(e.iter().next().unwrap().text, "newer than all");
    }
}
