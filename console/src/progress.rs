//! Progress bars on stderr for long steps (an upload, a DAG run, `readmit up`'s pipeline):
//! only for people — never in `--output json` mode and never when stderr is not a terminal,
//! where a hidden bar makes every call a no-op.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::OutputFormat;

/// Whether bars are drawn for this output format and this stderr.
pub fn shown(output: OutputFormat) -> bool {
    output == OutputFormat::Table && std::io::stderr().is_terminal()
}

fn bar(show: bool, len: Option<u64>, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    // The templates are constants of this file: a bad one is a bug caught by the tests.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Bytes sent of `total`, with rate and time left.
pub fn bytes(show: bool, total: u64, message: &str) -> ProgressBar {
    let b = bar(show, Some(total), BYTES);
    b.set_message(message.to_owned());
    b
}

/// Steps done of `total` (tasks of a run, steps of a pipeline), the current one as message.
pub fn steps(show: bool, total: u64, prefix: &str) -> ProgressBar {
    let b = bar(show, Some(total), STEPS);
    b.set_prefix(prefix.to_owned());
    b
}

const BYTES: &str =
    "{spinner} {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}";
const STEPS: &str = "{spinner} {prefix} [{bar:20}] {pos}/{len} {elapsed} {wide_msg}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_hidden_bars_take_every_call() {
        for t in [BYTES, STEPS] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
        let b = steps(false, 3, "x");
        assert!(b.is_hidden());
        b.inc(1);
        b.set_message("task");
        b.finish_and_clear();
        assert!(!shown(OutputFormat::Json));
    }
}
