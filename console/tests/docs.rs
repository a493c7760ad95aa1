//! `readmit completions` and `readmit man`: the scripts load in a real shell and complete the
//! real subcommands, and the man page renders with groff, naming every subcommand.

use std::process::Command;

fn readmit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_readmit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bash_completes_subcommands_and_their_flags() {
    let (ok, script, err) = readmit(&["completions", "bash"]);
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("readmit.bash");
    std::fs::write(&file, script).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
             _readmit readmit '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            words.join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subcommands = complete("readmit pre");
    assert!(subcommands.lines().any(|l| l == "predict"), "{subcommands}");
    let flags = complete("readmit predict --ex");
    assert!(flags.lines().any(|l| l == "--explain"), "{flags}");
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for (shell, mark) in [
        ("zsh", "#compdef readmit"),
        ("fish", "complete -c readmit"),
        ("elvish", "edit:completion:arg-completer[readmit]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let (ok, script, err) = readmit(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(
            script.contains("predict") && script.contains("loadtest"),
            "{shell}"
        );
    }
    let (ok, _, err) = readmit(&["completions", "tcsh"]);
    assert!(!ok && err.contains("tcsh"), "{err}");
}

#[test]
fn the_man_page_renders_and_names_every_subcommand() {
    let (ok, roff, err) = readmit(&["man"]);
    assert!(ok, "{err}");
    assert!(roff.contains(".TH readmit 1"), "{roff}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("readmit.1");
    std::fs::write(&file, &roff).unwrap();
    let out = Command::new("groff")
        .args(["-man", "-Tascii", "-P-cbou"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "agents",
        "dags",
        "data",
        "runs",
        "models",
        "predict",
        "loadtest",
        "completions",
        "man",
    ] {
        assert!(page.contains(&format!("readmit-{sub}")), "{sub}: {page}");
    }
    let (ok, roff, err) = readmit(&["man", "dags"]);
    assert!(ok, "{err}");
    assert!(roff.contains(".TH readmit-dags 1"), "{roff}");
    assert!(roff.contains("trigger"), "{roff}");
    let (ok, _, err) = readmit(&["man", "nope"]);
    assert!(
        !ok && err.contains("nope") && err.contains("predict"),
        "{err}"
    );
}
