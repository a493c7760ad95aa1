//! `readmit models`: the model registry — models, versions, promotion with archive, aliases.

use std::process::ExitCode;

use readmit_proto::{CallError, ModelInfo, VersionInfo};
use serde_json::{Value, json};

use super::Global;
use crate::fleet::Role;
use crate::output::{self, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// What each inference agent serves right now, one row per agent; exits non-zero unless
    /// every one serves a model.
    Serving,
    /// Registered models with their latest version in each stage and their aliases.
    List,
    /// Every version of one model.
    Versions { name: String },
    /// Move a version to a stage (Production by default), archiving the version there before.
    Promote {
        name: String,
        version: i64,
        #[arg(long, default_value = "Production")]
        stage: String,
        /// Leave the versions already in that stage where they are.
        #[arg(long)]
        keep_existing: bool,
    },
    /// Move a version to Archived.
    Archive { name: String, version: i64 },
    /// Point an alias (e.g. champion) at a version, or remove it with --delete.
    Alias {
        name: String,
        alias: String,
        /// The version; required unless --delete.
        version: Option<i64>,
        #[arg(long)]
        delete: bool,
    },
}

/// The stage a `--stage` names, as MLflow spells it.
fn parse_stage(text: &str) -> anyhow::Result<&'static str> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "none" => "None",
        "staging" => "Staging",
        "production" => "Production",
        "archived" => "Archived",
        _ => anyhow::bail!("--stage: {text:?} is not None, Staging, Production or Archived"),
    })
}

fn version_json(v: &VersionInfo) -> Value {
    json!({
        "name": v.name,
        "version": v.version,
        "stage": v.stage,
        "run_id": v.run_id,
        "source": v.source,
        "aliases": v.aliases,
        "creation_time_ms": v.creation_time_ms,
        "last_updated_time_ms": v.last_updated_time_ms,
        "description": v.description,
    })
}

fn model_json(m: &ModelInfo) -> Value {
    json!({
        "name": m.name,
        "description": m.description,
        "latest_versions": m.latest_versions.iter().map(version_json).collect::<Vec<_>>(),
        "aliases": m.aliases.iter().map(|(alias, version)| json!({"alias": alias, "version": version})).collect::<Vec<_>>(),
        "last_updated_time_ms": m.last_updated_time_ms,
    })
}

/// A model's aliases as `alias→vN`, space-separated.
fn aliases_text(m: &ModelInfo) -> String {
    let aliases: Vec<String> = m
        .aliases
        .iter()
        .map(|(alias, version)| format!("{alias}→v{version}"))
        .collect();
    aliases.join(" ")
}

fn print_versions(global: &Global, versions: &[VersionInfo]) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&versions.iter().map(version_json).collect::<Vec<_>>());
    }
    let mut table = output::table(["NAME", "VERSION", "STAGE", "ALIASES", "RUN", "SOURCE"]);
    for v in versions {
        table.add_row([
            v.name.clone(),
            v.version.to_string(),
            v.stage.clone(),
            v.aliases.join(","),
            v.run_id[..8.min(v.run_id.len())].to_owned(),
            v.source.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn print_models(global: &Global, models: &[ModelInfo]) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&models.iter().map(model_json).collect::<Vec<_>>());
    }
    let mut table = output::table(["NAME", "LATEST VERSIONS", "ALIASES"]);
    for m in models {
        let latest: Vec<String> = m
            .latest_versions
            .iter()
            .map(|v| format!("{}:v{}", v.stage, v.version))
            .collect();
        table.add_row([m.name.clone(), latest.join(" "), aliases_text(m)]);
    }
    println!("{table}");
    Ok(())
}

pub async fn run(global: &Global, command: &ModelsCommand) -> anyhow::Result<ExitCode> {
    if let ModelsCommand::Serving = command {
        return serving(global).await;
    }
    let client = global.client(Role::Tracking).await?;
    let failed = |e: CallError| anyhow::anyhow!(output::call_error(client.url(), &e));
    match command {
        ModelsCommand::Serving => unreachable!("answered above"),
        ModelsCommand::List => {
            print_models(global, &client.registered_models().await.map_err(failed)?)?;
        }
        ModelsCommand::Versions { name } => {
            let versions = client.model_versions_of(name).await.map_err(failed)?;
            print_versions(global, &versions)?;
        }
        ModelsCommand::Promote {
            name,
            version,
            stage,
            keep_existing,
        } => {
            let stage = parse_stage(stage)?;
            let (moved, archived) = client
                .transition(name, *version, stage, !keep_existing)
                .await
                .map_err(failed)?;
            let changed: Vec<VersionInfo> = std::iter::once(moved).chain(archived).collect();
            print_versions(global, &changed)?;
        }
        ModelsCommand::Archive { name, version } => {
            let (moved, _) = client
                .transition(name, *version, "Archived", false)
                .await
                .map_err(failed)?;
            print_versions(global, &[moved])?;
        }
        ModelsCommand::Alias {
            name,
            alias,
            version,
            delete,
        } => {
            let model = match (delete, version) {
                (true, _) => client.delete_alias(name, alias).await,
                (false, Some(v)) => client.set_alias(name, alias, *v).await,
                (false, None) => {
                    anyhow::bail!("give the version the alias should point at, or --delete")
                }
            }
            .map_err(failed)?;
            if global.output == OutputFormat::Json {
                output::print_json(&model_json(&model))?;
            } else if model.aliases.is_empty() {
                println!("{}: no aliases", model.name);
            } else {
                println!("{}: {}", model.name, aliases_text(&model));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One inference agent's served model, or why it cannot say.
#[derive(Debug, serde::Serialize)]
pub struct ServingView {
    pub agent: String,
    pub url: String,
    pub loaded: bool,
    pub name: String,
    pub version: i64,
    pub stage: String,
    pub following: String,
    pub loaded_at_ms: i64,
    pub threshold: f64,
    /// Why the last model offered was refused, or why the agent is down.
    pub error: String,
}

async fn serving(global: &Global) -> anyhow::Result<ExitCode> {
    let fleet = global.fleet().await?;
    let views = serving_views(&fleet).await;
    if views.is_empty() {
        // Names the agents and why none serves.
        fleet.client(Role::Inference).await?;
    }
    if global.output == OutputFormat::Json {
        output::print_json(&views)?;
    } else {
        let mut table = output::table([
            "AGENT",
            "MODEL",
            "VERSION",
            "STAGE",
            "FOLLOWING",
            "LOADED",
            "ERROR",
        ]);
        for v in &views {
            table.add_row([
                v.agent.clone(),
                v.name.clone(),
                if v.loaded {
                    v.version.to_string()
                } else {
                    "-".into()
                },
                v.stage.clone(),
                v.following.clone(),
                if v.loaded {
                    loaded_ago(v.loaded_at_ms)
                } else {
                    "no".into()
                },
                v.error.clone(),
            ]);
        }
        println!("{table}");
    }
    Ok(if views.iter().all(|v| v.loaded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every inference agent the fleet knows (up or down), asked at once.
pub async fn serving_views(fleet: &crate::fleet::Fleet) -> Vec<ServingView> {
    let down = fleet
        .snapshot()
        .into_iter()
        .filter(|a| !a.up && a.has(Role::Inference))
        .map(|a| ServingView {
            agent: a.name,
            url: a.url,
            loaded: false,
            name: String::new(),
            version: 0,
            stage: String::new(),
            following: String::new(),
            loaded_at_ms: 0,
            threshold: 0.0,
            error: a.reason,
        });
    let up = futures_util::future::join_all(fleet.clients(Role::Inference).into_iter().map(
        |routed| async move {
            let reply = routed.served_model().await;
            let mut view = ServingView {
                agent: routed.agent.name.clone(),
                url: routed.agent.url.clone(),
                loaded: false,
                name: String::new(),
                version: 0,
                stage: String::new(),
                following: String::new(),
                loaded_at_ms: 0,
                threshold: 0.0,
                error: String::new(),
            };
            match reply {
                Ok(s) => {
                    view.loaded = s.loaded;
                    view.name = s.name;
                    view.version = s.version;
                    view.stage = s.stage;
                    view.following = s.following;
                    view.loaded_at_ms = s.loaded_at_ms;
                    view.threshold = s.threshold;
                    view.error = s.last_error;
                }
                Err(e) => view.error = output::call_error(routed.url(), &e),
            }
            view
        },
    ))
    .await;
    up.into_iter().chain(down).collect()
}

fn loaded_ago(at_ms: i64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format!("{} ago", output::duration((now_ms - at_ms) as f64 / 1000.0))
}
