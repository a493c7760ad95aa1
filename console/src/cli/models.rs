//! `readmit models`: the model registry — models, versions, promotion with archive, aliases.

use std::process::ExitCode;

use readmit_proto::v1;
use serde_json::{Value, json};

use super::Global;
use crate::output::{self, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
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

pub fn stage_name(stage: i32) -> &'static str {
    match v1::Stage::try_from(stage) {
        Ok(v1::Stage::None) => "None",
        Ok(v1::Stage::Staging) => "Staging",
        Ok(v1::Stage::Production) => "Production",
        Ok(v1::Stage::Archived) => "Archived",
        _ => "?",
    }
}

fn parse_stage(text: &str) -> anyhow::Result<v1::Stage> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "none" => v1::Stage::None,
        "staging" => v1::Stage::Staging,
        "production" => v1::Stage::Production,
        "archived" => v1::Stage::Archived,
        _ => anyhow::bail!("--stage: {text:?} is not None, Staging, Production or Archived"),
    })
}

fn version_json(v: &v1::ModelVersion) -> Value {
    json!({
        "name": v.name,
        "version": v.version,
        "stage": stage_name(v.stage),
        "run_id": v.run_id,
        "source": v.source,
        "aliases": v.aliases,
        "creation_time_ms": v.creation_time_ms,
        "last_updated_time_ms": v.last_updated_time_ms,
        "description": v.description,
    })
}

fn model_json(m: &v1::RegisteredModel) -> Value {
    json!({
        "name": m.name,
        "description": m.description,
        "latest_versions": m.latest_versions.iter().map(version_json).collect::<Vec<_>>(),
        "aliases": m.aliases.iter().map(|a| json!({"alias": a.alias, "version": a.version})).collect::<Vec<_>>(),
        "last_updated_time_ms": m.last_updated_time_ms,
    })
}

fn print_versions(global: &Global, versions: &[v1::ModelVersion]) -> anyhow::Result<()> {
    if global.output == OutputFormat::Json {
        return output::print_json(&versions.iter().map(version_json).collect::<Vec<_>>());
    }
    let mut table = output::table(["NAME", "VERSION", "STAGE", "ALIASES", "RUN", "SOURCE"]);
    for v in versions {
        table.add_row([
            v.name.clone(),
            v.version.to_string(),
            stage_name(v.stage).to_owned(),
            v.aliases.join(","),
            v.run_id[..8.min(v.run_id.len())].to_owned(),
            v.source.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}

pub async fn run(global: &Global, command: &ModelsCommand) -> anyhow::Result<ExitCode> {
    let client = global.client().await?;
    let mut tracking = client.tracking();
    let call = |s: tonic::Status| anyhow::anyhow!(output::status_error(client.url(), &s));
    match command {
        ModelsCommand::List => {
            let models = tracking
                .list_registered_models(v1::ListRegisteredModelsRequest {})
                .await
                .map_err(call)?
                .into_inner()
                .models;
            if global.output == OutputFormat::Json {
                output::print_json(&models.iter().map(model_json).collect::<Vec<_>>())?;
            } else {
                let mut table = output::table(["NAME", "LATEST VERSIONS", "ALIASES"]);
                for m in &models {
                    let latest: Vec<String> = m
                        .latest_versions
                        .iter()
                        .map(|v| format!("{}:v{}", stage_name(v.stage), v.version))
                        .collect();
                    let aliases: Vec<String> = m
                        .aliases
                        .iter()
                        .map(|a| format!("{}→v{}", a.alias, a.version))
                        .collect();
                    table.add_row([m.name.clone(), latest.join(" "), aliases.join(" ")]);
                }
                println!("{table}");
            }
        }
        ModelsCommand::Versions { name } => {
            let versions = tracking
                .list_model_versions(v1::ListModelVersionsRequest { name: name.clone() })
                .await
                .map_err(call)?
                .into_inner()
                .versions;
            print_versions(global, &versions)?;
        }
        ModelsCommand::Promote {
            name,
            version,
            stage,
            keep_existing,
        } => {
            let reply = tracking
                .transition_model_version_stage(v1::TransitionStageRequest {
                    name: name.clone(),
                    version: *version,
                    stage: parse_stage(stage)? as i32,
                    archive_existing: !keep_existing,
                })
                .await
                .map_err(call)?
                .into_inner();
            let mut changed: Vec<v1::ModelVersion> = reply.version.into_iter().collect();
            changed.extend(reply.archived);
            print_versions(global, &changed)?;
        }
        ModelsCommand::Archive { name, version } => {
            let reply = tracking
                .transition_model_version_stage(v1::TransitionStageRequest {
                    name: name.clone(),
                    version: *version,
                    stage: v1::Stage::Archived as i32,
                    archive_existing: false,
                })
                .await
                .map_err(call)?
                .into_inner();
            print_versions(global, &reply.version.into_iter().collect::<Vec<_>>())?;
        }
        ModelsCommand::Alias {
            name,
            alias,
            version,
            delete,
        } => {
            let model = match (delete, version) {
                (true, _) => {
                    tracking
                        .delete_model_alias(v1::DeleteModelAliasRequest {
                            name: name.clone(),
                            alias: alias.clone(),
                        })
                        .await
                }
                (false, Some(v)) => {
                    tracking
                        .set_model_alias(v1::SetModelAliasRequest {
                            name: name.clone(),
                            alias: alias.clone(),
                            version: *v,
                        })
                        .await
                }
                (false, None) => {
                    anyhow::bail!("give the version the alias should point at, or --delete")
                }
            }
            .map_err(call)?
            .into_inner();
            if global.output == OutputFormat::Json {
                output::print_json(&model_json(&model))?;
            } else {
                let aliases: Vec<String> = model
                    .aliases
                    .iter()
                    .map(|a| format!("{}→v{}", a.alias, a.version))
                    .collect();
                println!(
                    "{}: {}",
                    model.name,
                    if aliases.is_empty() {
                        "no aliases".to_owned()
                    } else {
                        aliases.join(" ")
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
