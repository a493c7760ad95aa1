//! The real `readmit` binary in a pseudo-terminal against a real agent: it opens the TUI (no
//! subcommand, as k9s does), switches screens by key, shows the help, and on `q` exits 0
//! with the terminal restored (alternate screen left, mouse capture off, cursor shown).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;

struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Screen {
    fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    fn wait_until_gone(&self, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "{what:?} still on screen after {secs} s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, what: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.text();
            if text.contains(what) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{what:?} not on screen within {secs} s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_opens_switches_screens_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings::loopback(dir.path(), &[readmit_agent::Role::Etl])
        .validate()
        .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let url = agent.grpc_url();
    let log = dir.path().join("tui.log");
    let log_for_child = log.clone();

    let status = tokio::task::spawn_blocking(move || {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 36,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_readmit"));
        cmd.args(["--agent", &url]);
        cmd.env("TERM", "xterm-256color");
        cmd.env("READMIT_TUI_LOG", &log_for_child);
        cmd.env_remove("READMIT_TOKEN");
        cmd.env_remove("READMIT_KEYMAP");
        let mut child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let screen = Screen {
            parser: Arc::new(Mutex::new(vt100::Parser::new(36, 120, 0))),
            raw: Arc::new(Mutex::new(Vec::new())),
        };
        let mut reader = pty.master.try_clone_reader().unwrap();
        let (parser, raw) = (screen.parser.clone(), screen.raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                parser.lock().unwrap().process(&buf[..n]);
                raw.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut keys = pty.master.take_writer().unwrap();
        let mut press = |k: &str| {
            keys.write_all(k.as_bytes()).unwrap();
            keys.flush().unwrap();
        };

        let text = screen.wait_for("● up", 30);
        assert!(
            text.contains("1 Overview") && text.contains("8 Metrics"),
            "{text}"
        );
        assert!(screen.parser.lock().unwrap().screen().alternate_screen());
        press("3");
        let text = screen.wait_for("ingest_raw", 20);
        assert!(
            text.contains("DAGs (") && text.contains("preprocess_incremental"),
            "{text}"
        );
        press("?");
        screen.wait_for("DAGs keys", 10);
        // A lone ESC: the terminal waits a moment to tell it from an escape sequence, as it
        // does for a person.
        press("\x1b");
        screen.wait_until_gone("esc closes", 10);
        press("2");
        screen.wait_for("Data set", 20);
        press("q");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "readmit did not exit on q");
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(200));
        let raw = String::from_utf8_lossy(&screen.raw.lock().unwrap()).into_owned();
        assert!(
            !screen.parser.lock().unwrap().screen().alternate_screen(),
            "still on the alternate screen"
        );
        for (seq, what) in [
            ("\x1b[?1049l", "alternate screen left"),
            ("\x1b[?1000l", "mouse capture off"),
            ("\x1b[?25h", "cursor shown"),
        ] {
            assert!(raw.contains(seq), "{what}: {seq:?} never sent");
        }
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("console started"), "{logged}");
    agent.stop().await.unwrap();
}
