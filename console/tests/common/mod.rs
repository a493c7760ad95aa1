//! Shared by the console's tests: the real `readmit` binary run against an agent.

use std::process::Command;

/// Runs `readmit --agent URL ARGS…`; returns whether it succeeded, its stdout and its stderr.
pub async fn readmit(url: &str, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["--agent".to_owned(), url.to_owned()];
    full.extend(args.iter().map(|s| (*s).to_owned()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_readmit"))
            .env_remove("READMIT_TOKEN")
            .args(full)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
