//! One console over three agents with one role each on loopback — etl, tracking and
//! inference, the first and last calling tracking by URL — as the original's three servers:
//! every command reaches the agent that has its role, and a role no agent runs is an error
//! naming the agents tried. Agents are also named in a config file with their own tokens.

use std::process::Command;

use readmit_agent::settings::RawSettings;
use readmit_agent::{Role, RunningAgent};
use serde_json::Value;

async fn start(roles: &[Role], tracking_url: &str, token: Option<&str>) -> RunningAgent {
    let dir = tempfile::tempdir().unwrap().keep();
    let settings = RawSettings {
        tracking_url: tracking_url.to_owned(),
        token: token.map(str::to_owned),
        ..RawSettings::loopback(&dir, roles)
    }
    .validate()
    .unwrap();
    RunningAgent::start(settings).await.unwrap()
}

/// Runs `readmit ARGS…` with no READMIT_* and no config file from the caller.
async fn readmit(args: Vec<String>) -> (bool, String, String) {
    let config_home = tempfile::tempdir().unwrap();
    let home = config_home.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_readmit"))
            .env_remove("READMIT_AGENT")
            .env_remove("READMIT_TOKEN")
            .env_remove("READMIT_CONSOLE_CONFIG")
            .env("XDG_CONFIG_HOME", home)
            .args(args)
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

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_command_reaches_the_agent_with_its_role() {
    let tracking = start(&[Role::Tracking], "", None).await;
    let etl = start(&[Role::Etl], &tracking.grpc_url(), None).await;
    let inference = start(&[Role::Inference], &tracking.grpc_url(), None).await;
    // Comma-separated, in an order that is not the roles' order.
    let agents = format!(
        "{},{},{}",
        inference.grpc_url(),
        tracking.grpc_url(),
        etl.grpc_url()
    );
    let run = |args: &[&str]| {
        let mut full = strings(&["--agent", &agents]);
        full.extend(strings(args));
        readmit(full)
    };
    let json = |args: &[&str]| {
        let mut full = strings(&["--agent", &agents, "--output", "json"]);
        full.extend(strings(args));
        async move {
            let (ok, out, err) = readmit(full).await;
            assert!(ok, "{out}\n{err}");
            serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
        }
    };

    let views = json(&["agents"]).await;
    let roles: Vec<&Value> = views
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["info"]["roles"])
        .collect();
    assert_eq!(
        roles,
        [
            &serde_json::json!(["inference"]),
            &serde_json::json!(["tracking"]),
            &serde_json::json!(["etl"])
        ]
    );

    // Data and DAGs go to etl, which reaches tracking by URL to train.
    let synth = json(&["data", "synth", "--rows", "4000", "--seed", "5"]).await;
    let (ok, out, err) = run(&["data", "ingest", synth["path"].as_str().unwrap()]).await;
    assert!(ok, "{out}\n{err}");
    let status = json(&["data", "status"]).await;
    assert_eq!(status["dataset_sha256"], synth["sha256"]);
    let dags = json(&["dags", "list"]).await;
    assert!(dags["dags"].as_array().unwrap().len() >= 4, "{dags}");
    for (dag, param) in [
        ("append_batch", "until_exhausted=true"),
        ("preprocess_incremental", ""),
        ("train_and_register", "models=LR_C_0.1"),
    ] {
        let mut args = vec!["dags", "trigger", dag, "--wait"];
        if !param.is_empty() {
            args.extend(["--param", param]);
        }
        let (ok, out, err) = run(&args).await;
        assert!(ok, "{dag}: {out}\n{err}");
    }

    // Runs and models go to tracking.
    let runs = json(&[
        "runs",
        "list",
        "--experiment",
        "diabetes_readmission_training",
    ])
    .await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let versions = json(&["models", "versions", "best_diabetes_readmission_model"]).await;
    assert_eq!(versions[0]["stage"], "Production", "{versions}");

    // Predictions and load tests go to inference, once it follows the registry there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let serving = loop {
        // It exits non-zero while an inference agent serves nothing.
        let (ok, out, err) = run(&["--output", "json", "models", "serving"]).await;
        let serving: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        if serving[0]["loaded"] == true {
            assert!(ok, "{err}");
            break serving;
        }
        assert!(std::time::Instant::now() < deadline, "{serving}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(serving.as_array().unwrap().len(), 1, "one inference agent");
    assert_eq!(serving[0]["url"], inference.grpc_url());
    assert_eq!(serving[0]["version"], 1);

    let p = json(&["predict", "--from-test", "3", "--explain", "4"]).await;
    assert_eq!(p["agent"], inference.grpc_url());
    assert_eq!(p["version"], 1);
    let probability = p["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&probability), "{p}");
    assert_eq!(p["contributions"].as_array().unwrap().len(), 4, "{p}");
    // The same record changed by a field scores on the same agent; a bad value is named.
    let p2 = json(&[
        "predict",
        "--from-test",
        "3",
        "--field",
        "time_in_hospital=14",
    ])
    .await;
    assert!(p2["probability"].is_number(), "{p2}");
    let (ok, _, err) = run(&[
        "predict",
        "--from-test",
        "3",
        "--field",
        "time_in_hospital=x",
    ])
    .await;
    assert!(!ok && err.contains("time_in_hospital"), "{err}");
    let (ok, table, err) = run(&["predict", "--from-test", "3", "--explain", "2"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("PROBABILITY") && lines[0].contains("READMITTED"),
        "{table}"
    );
    assert!(
        lines[1].contains("best_diabetes_readmission_model"),
        "{table}"
    );
    assert!(
        lines[2].contains("FIELD") && lines.len() == 5,
        "two fields: {table}"
    );
    let (ok, table, err) = run(&["models", "serving"]).await;
    assert!(ok, "{err}");
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .contains(&inference.grpc_url()),
        "one row per inference agent: {table}"
    );
    let (ok, _, err) = run(&["predict", "--from-test", "999999"]).await;
    assert!(!ok && err.contains("offset"), "{err}");

    let report = json(&[
        "loadtest",
        "run",
        "--users",
        "2",
        "--duration",
        "2s",
        "--threshold",
        "errors<1%",
    ])
    .await;
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["passed"], true, "{report}");

    for agent in [etl, tracking, inference] {
        agent.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_no_agent_runs_names_every_agent_tried() {
    let tracking = start(&[Role::Tracking], "", None).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (ok, _, err) = readmit(strings(&[
        "--agent",
        &tracking.grpc_url(),
        "--agent",
        &dead,
        "dags",
        "list",
    ]))
    .await;
    assert!(!ok);
    assert!(err.contains("no reachable agent has the etl role"), "{err}");
    assert!(
        err.contains(&format!("{} runs tracking", tracking.grpc_url())),
        "{err}"
    );
    assert!(err.contains(&format!("{dead} is down")), "{err}");

    // `agents` shows the down one with its reason, and fails.
    let (ok, out, _) = readmit(strings(&[
        "--agent",
        &tracking.grpc_url(),
        "--agent",
        &dead,
        "agents",
    ]))
    .await;
    assert!(!ok);
    let down = out
        .lines()
        .find(|l| l.trim_start().starts_with(&dead) && l.contains("cannot reach"))
        .unwrap_or_else(|| panic!("no down row with its reason:\n{out}"));
    assert!(!down.is_empty());
    tracking.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_names_agents_with_their_own_tokens() {
    let tracking = start(&[Role::Tracking], "", Some("tracking-secret")).await;
    let inference = start(&[Role::Inference], "", Some("inference-secret")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("console.toml");
    std::fs::write(
        &config,
        format!(
            "[[agent]]\nname = \"registry\"\nurl = \"{}\"\ntoken = \"tracking-secret\"\n\n\
             [[agent]]\nname = \"serving\"\nurl = \"{}\"\ntoken = \"inference-secret\"\n",
            tracking.grpc_url(),
            inference.grpc_url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let (ok, out, err) = readmit(strings(&[
        "--config", &config, "--output", "json", "agents",
    ]))
    .await;
    assert!(ok, "{out}\n{err}");
    let views: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(views[0]["name"], "registry");
    assert_eq!(views[1]["name"], "serving");
    assert_eq!(views[1]["info"]["roles"], serde_json::json!(["inference"]));

    // `--agent` picks entries by name; the wrong global token does not override an entry's.
    let (ok, out, err) = readmit(strings(&[
        "--config", &config, "--agent", "serving", "--token", "wrong", "--output", "json",
        "models", "serving",
    ]))
    .await;
    assert!(!ok, "no model is served yet: {out}");
    let rows: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(rows[0]["agent"], "serving", "{rows}");
    assert_eq!(rows[0]["loaded"], false, "{rows}");
    // A bad entry names the file and the field.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[agent]]\nurl = \"ftp://x\"\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml").display().to_string();
    let (ok, _, err) = readmit(strings(&["--config", &bad, "agents"])).await;
    assert!(
        !ok && err.contains("bad.toml") && err.contains("agent[0].url"),
        "{err}"
    );
    tracking.stop().await.unwrap();
    inference.stop().await.unwrap();
}

/// Progress bars: drawn on a terminal's stderr (`script` gives the command a pseudo-terminal),
/// never when stderr is a pipe, never with `--output json`.
#[tokio::test(flavor = "multi_thread")]
async fn the_upload_bar_is_drawn_only_on_a_terminal() {
    let etl = start(&[Role::Etl], "", None).await;
    let url = etl.grpc_url();
    let (ok, out, err) = readmit(strings(&[
        "--agent", &url, "--output", "json", "data", "synth", "--rows", "3000",
    ]))
    .await;
    assert!(ok, "{err}");
    let synth: Value = serde_json::from_str(&out).unwrap();
    let file = synth["path"].as_str().unwrap().to_owned();

    let (ok, _, err) = readmit(strings(&["--agent", &url, "data", "ingest", &file])).await;
    assert!(ok, "{err}");
    assert!(!err.contains("upload"), "no bar into a pipe: {err}");

    let bin = env!("CARGO_BIN_EXE_readmit");
    let on_terminal = |json: bool| {
        let format = if json { "json" } else { "table" };
        let line = format!("{bin} --agent {url} --output {format} data ingest --replace {file}");
        tokio::task::spawn_blocking(move || {
            let out = Command::new("script")
                .args(["-qfec", &line, "/dev/null"])
                .env_remove("READMIT_TOKEN")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let screen = on_terminal(false).await.unwrap();
    assert!(
        screen.contains("upload ["),
        "a bar on the terminal: {screen}"
    );
    let screen = on_terminal(true).await.unwrap();
    assert!(
        !screen.contains("upload ["),
        "no bar with --output json: {screen}"
    );
    etl.stop().await.unwrap();
}
