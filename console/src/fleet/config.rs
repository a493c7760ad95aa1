//! Where the console's agents come from: `--agent` values (URLs or names), `READMIT_AGENT`,
//! and the config file (`console.toml`) naming each agent with its own token and TLS files,
//! resolved into one [`AgentSpec`] per agent.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use readmit_proto::ClientTls;
use serde::Deserialize;

/// The agent URL used when none is named anywhere.
pub const DEFAULT_AGENT: &str = "http://127.0.0.1:50051";

/// Where the agents come from, before they are resolved: what the global flags and their
/// environment variables say.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `--agent` values (or `READMIT_AGENT`): URLs, or names of agents in the config file.
    pub agents: Vec<String>,
    /// `--config` (or `READMIT_CONSOLE_CONFIG`); must exist when given.
    pub config: Option<PathBuf>,
    /// `--token`, the default for agents that name none.
    pub token: Option<String>,
    /// `--ca-cert`, `--tls-cert`, `--tls-key`: the defaults for agents that name none.
    pub tls: ClientTls,
}

/// One agent as the console knows it before connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// The config file's name for it, or its URL.
    pub name: String,
    pub url: String,
    pub token: Option<String>,
    pub tls: ClientTls,
}

/// A bad agent list: it names the file and field, or the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("--agent {value:?}: {reason}")]
    Agent { value: String, reason: String },
}

/// The console's config file (`console.toml`): the agents, each with its own token and TLS
/// files; anything an entry leaves out comes from the global flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default, rename = "agent")]
    agents: Vec<AgentEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    name: Option<String>,
    url: String,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// The default config file: `$XDG_CONFIG_HOME/readmit/console.toml`, else
/// `~/.config/readmit/console.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("readmit").join("console.toml"))
}

impl Sources {
    /// The agents to use: each `--agent` value (a config file name or a URL), or, with none,
    /// every agent of the config file, or else the local default agent.
    pub fn resolve(&self) -> Result<Vec<AgentSpec>, ConfigError> {
        let file = match &self.config {
            Some(path) => Some(load_config(path)?),
            None => match default_config_path().filter(|p| p.is_file()) {
                Some(path) => Some(load_config(&path)?),
                None => None,
            },
        };
        let from_file = file.unwrap_or_default();
        let mut specs = Vec::new();
        let named: Vec<&str> = self
            .agents
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .collect();
        if named.is_empty() {
            for entry in &from_file {
                specs.push(self.merge(entry));
            }
            if specs.is_empty() {
                specs.push(
                    self.plain(DEFAULT_AGENT)
                        .map_err(|reason| ConfigError::Agent {
                            value: DEFAULT_AGENT.into(),
                            reason,
                        })?,
                );
            }
        } else {
            for value in named {
                match from_file.iter().find(|e| e.name == value) {
                    Some(entry) => specs.push(self.merge(entry)),
                    None => specs.push(self.plain(value).map_err(|reason| ConfigError::Agent {
                        value: value.into(),
                        reason,
                    })?),
                }
            }
        }
        let mut seen = HashSet::new();
        specs.retain(|s| seen.insert(s.name.clone()));
        Ok(specs)
    }

    fn plain(&self, url: &str) -> Result<AgentSpec, String> {
        let url = with_scheme(url, &self.tls).map_err(|e| e.to_string())?;
        Ok(AgentSpec {
            name: url.clone(),
            url,
            token: self.token.clone(),
            tls: self.tls.clone(),
        })
    }

    fn merge(&self, entry: &Resolved) -> AgentSpec {
        let tls = ClientTls {
            ca_cert: entry
                .tls
                .ca_cert
                .clone()
                .or_else(|| self.tls.ca_cert.clone()),
            cert: entry.tls.cert.clone().or_else(|| self.tls.cert.clone()),
            key: entry.tls.key.clone().or_else(|| self.tls.key.clone()),
        };
        AgentSpec {
            name: entry.name.clone(),
            // Checked when the file was read; only the scheme may still change.
            url: with_scheme(&entry.url, &tls).unwrap_or_else(|_| entry.url.clone()),
            token: entry.token.clone().or_else(|| self.token.clone()),
            tls,
        }
    }
}

/// An agent URL with its scheme, as the client connects to it: `https://` for a bare address
/// when any TLS option is set, else `http://`.
fn with_scheme(url: &str, tls: &ClientTls) -> Result<String, readmit_proto::ClientError> {
    if tls.is_set() && !url.contains("://") {
        readmit_proto::normalize_url(&format!("https://{}", url.trim()))
    } else {
        readmit_proto::normalize_url(url)
    }
}

/// A config file entry, checked, its paths made absolute against the file's directory.
struct Resolved {
    name: String,
    url: String,
    token: Option<String>,
    tls: ClientTls,
}

fn load_config(path: &Path) -> Result<Vec<Resolved>, ConfigError> {
    let fail = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(line) => fail(format!("line {line}: {}", e.message())),
            None => fail(e.message().to_owned()),
        }
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, entry) in file.agents.into_iter().enumerate() {
        let at = |field: &str| format!("agent[{i}].{field}");
        // Kept as written (a bare address takes https:// once TLS options are known); checked
        // now.
        let url = entry.url.trim().to_owned();
        let shown =
            readmit_proto::normalize_url(&url).map_err(|e| fail(format!("{}: {e}", at("url"))))?;
        let name = match entry.name {
            Some(name) => {
                let name = name.trim().to_owned();
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(fail(format!(
                        "{}: give 1 to 64 printable characters",
                        at("name")
                    )));
                }
                name
            }
            None => shown,
        };
        if !names.insert(name.clone()) {
            return Err(fail(format!("{}: {name:?} is named twice", at("name"))));
        }
        let abs = |p: Option<PathBuf>| p.map(|p| if p.is_absolute() { p } else { base.join(p) });
        if entry.token.as_deref().is_some_and(str::is_empty) {
            return Err(fail(format!("{}: is empty", at("token"))));
        }
        out.push(Resolved {
            name,
            url,
            token: entry.token,
            tls: ClientTls {
                ca_cert: abs(entry.ca_cert),
                cert: abs(entry.tls_cert),
                key: abs(entry.tls_key),
            },
        });
    }
    if out.is_empty() {
        return Err(fail("it names no [[agent]]".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("console.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_name_urls_or_config_entries_and_entries_override_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(
            dir.path(),
            r#"
[[agent]]
name = "etl"
url = "10.0.0.1:50051"
token = "etl-token"
ca_cert = "ca.pem"

[[agent]]
name = "serving"
url = "https://10.0.0.2:50051"
"#,
        );
        let sources = Sources {
            agents: vec![],
            config: Some(config),
            token: Some("global".into()),
            tls: ClientTls::default(),
        };
        let all = sources.resolve().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "etl");
        assert_eq!(
            all[0].url, "https://10.0.0.1:50051",
            "a bare address with a CA"
        );
        assert_eq!(all[0].token.as_deref(), Some("etl-token"));
        assert_eq!(all[0].tls.ca_cert, Some(dir.path().join("ca.pem")));
        assert_eq!(all[1].token.as_deref(), Some("global"), "the flag fills in");

        let picked = Sources {
            agents: vec!["serving".into(), "127.0.0.1:7".into(), "serving".into()],
            ..sources
        }
        .resolve()
        .unwrap();
        assert_eq!(picked.len(), 2, "{picked:?}");
        assert_eq!(picked[0].name, "serving");
        assert_eq!(picked[1].url, "http://127.0.0.1:7");
    }

    #[test]
    fn bad_config_files_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expect) in [
            ("[[agent]]\nurl = \"grpc://x:1\"\n", "agent[0].url"),
            ("[[agent]]\nurl = \"a:1\"\nname = \"\"\n", "agent[0].name"),
            (
                "[[agent]]\nurl = \"a:1\"\nname = \"x\"\n[[agent]]\nurl = \"b:1\"\nname = \"x\"\n",
                "agent[1].name",
            ),
            ("[[agent]]\nurl = \"a:1\"\ncolour = 1\n", "colour"),
            ("", "names no"),
        ] {
            let path = write(dir.path(), text);
            let err = Sources {
                config: Some(path.clone()),
                ..Sources::default()
            }
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&path.display().to_string()) && err.contains(expect),
                "{text:?}: {err}"
            );
        }
        let err = Sources {
            agents: vec!["ftp://x".into()],
            config: Some(dir.path().join("missing.toml")),
            ..Sources::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }
}
