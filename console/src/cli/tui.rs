//! `readmit tui` (and `readmit` alone): the operations console over every `--agent`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Global;
use crate::tui;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TuiArgs {
    /// Keymap file (TOML) overriding the default keys [default:
    /// $XDG_CONFIG_HOME/readmit/keymap.toml when it exists]
    #[arg(long, env = "READMIT_KEYMAP", value_name = "FILE")]
    pub keymap: Option<PathBuf>,
    /// Where the console logs [default: $XDG_STATE_HOME/readmit/tui.log]
    #[arg(long, env = "READMIT_TUI_LOG", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

impl TuiArgs {
    /// The settings `readmit` alone takes: the environment's.
    pub fn from_env() -> Self {
        Self {
            keymap: std::env::var_os("READMIT_KEYMAP").map(PathBuf::from),
            log_file: std::env::var_os("READMIT_TUI_LOG").map(PathBuf::from),
        }
    }
}

pub async fn run(global: &Global, args: &TuiArgs) -> anyhow::Result<ExitCode> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!(
            "the console (readmit alone, or readmit tui) needs a terminal; scripts use the \
             subcommands (readmit --help)"
        );
    }
    let keymap = tui::load_keymap(args.keymap.as_deref())?;
    let log = args.log_file.clone().unwrap_or_else(tui::default_log_file);
    tui::log_to_file(&log)?;
    let fleet = std::sync::Arc::new(global.fleet().await?);
    tui::run(fleet, keymap).await?;
    Ok(ExitCode::SUCCESS)
}
