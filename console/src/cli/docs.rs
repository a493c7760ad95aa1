//! `readmit completions` and `readmit man`: shell completions and a man page, generated from
//! the same clap definitions that parse the command line, so they never drift from it.

use std::io::Write as _;
use std::process::ExitCode;

use clap::CommandFactory as _;

use super::Cli;

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "readmit", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the man page (roff) to stdout: `readmit`'s, or with `subcommand` that of
/// `readmit SUBCOMMAND` (e.g. `dags`).
pub fn man(subcommand: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    command.build();
    let page = match subcommand {
        None => command,
        Some(name) => {
            let Some(sub) = command.find_subcommand(name) else {
                let known: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
                anyhow::bail!(
                    "readmit has no subcommand {name:?}; it has {}",
                    known.join(", ")
                );
            };
            // Built, a subcommand's display name is the page's title: `readmit-dags(1)`.
            sub.clone()
        }
    };
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(page).render(&mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
