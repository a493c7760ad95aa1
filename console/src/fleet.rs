//! The console's many agents: who they are (flags, `READMIT_AGENT`, a config file), what
//! roles each runs (from `Agent.GetInfo`), and which one an operation goes to. Every command
//! asks the fleet for the agent of a role; a long-lived caller (the TUI) follows the fleet's
//! state as it changes, while a background task reconnects downed agents with backoff.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use readmit_proto::{Client, ClientTls, v1};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The agent URL used when none is named anywhere.
pub const DEFAULT_AGENT: &str = "http://127.0.0.1:50051";

/// How long one probe (connect and `GetInfo`) may take before the agent counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A role an operation needs, as agents name them in `GetInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// RawData, CleanData and the DAG runner.
    Etl,
    /// Experiments, runs and the model registry.
    Tracking,
    /// Predictions and the load-test engine.
    Inference,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Etl => "etl",
            Role::Tracking => "tracking",
            Role::Inference => "inference",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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

/// What the fleet knows of one agent right now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentState {
    pub name: String,
    pub url: String,
    pub up: bool,
    /// Why the agent is down (empty when up).
    pub reason: String,
    /// From the last `GetInfo` that answered (kept while the agent is down, so what it
    /// serves can be greyed out).
    pub roles: Vec<String>,
    pub version: String,
    pub host: String,
    pub os: String,
    pub cpus: u32,
    pub pid: u32,
    pub grpc_addr: String,
    pub http_addr: String,
    pub started_at_ms: i64,
    /// As of the last probe; a display that ticks counts from `started_at_ms`.
    pub uptime_s: f64,
    pub auth_required: bool,
}

impl AgentState {
    fn new(spec: &AgentSpec) -> Self {
        Self {
            name: spec.name.clone(),
            url: spec.url.clone(),
            up: false,
            reason: "not contacted yet".into(),
            roles: Vec::new(),
            version: String::new(),
            host: String::new(),
            os: String::new(),
            cpus: 0,
            pid: 0,
            grpc_addr: String::new(),
            http_addr: String::new(),
            started_at_ms: 0,
            uptime_s: 0.0,
            auth_required: false,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r == role.name())
    }
}

/// Every operation that needs `role` failed to find an agent for it: the agents tried and
/// why each could not serve it.
#[derive(Debug, thiserror::Error)]
#[error("no reachable agent has the {role} role: {}", tried.join("; "))]
pub struct NoAgent {
    pub role: Role,
    pub tried: Vec<String>,
}

struct Member {
    spec: AgentSpec,
    client: Option<Client>,
    state: AgentState,
    /// When a downed agent is next tried, and the wait after that.
    retry_at: Instant,
    backoff: Duration,
}

/// The agents, their connections and their state. Cheap to share behind an `Arc`.
pub struct Fleet {
    members: Mutex<Vec<Member>>,
    changes: watch::Sender<Vec<AgentState>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("agents", &self.snapshot())
            .finish()
    }
}

/// Backoff between reconnect attempts of a downed agent.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Fleet {
    /// Connects to every agent at once and learns its roles; agents that fail are kept, down,
    /// with the reason.
    pub async fn connect(specs: Vec<AgentSpec>) -> Self {
        let now = Instant::now();
        let members = specs
            .into_iter()
            .map(|spec| Member {
                state: AgentState::new(&spec),
                spec,
                client: None,
                retry_at: now,
                backoff: BACKOFF_FIRST,
            })
            .collect::<Vec<_>>();
        let (changes, _) = watch::channel(members.iter().map(|m| m.state.clone()).collect());
        let fleet = Self {
            members: Mutex::new(members),
            changes,
        };
        fleet.probe_all(|_| true).await;
        fleet
    }

    /// Every agent's state, in the order they were named.
    pub fn snapshot(&self) -> Vec<AgentState> {
        self.lock().iter().map(|m| m.state.clone()).collect()
    }

    /// Changes of [`Fleet::snapshot`], as they happen (once [`Fleet::follow`] runs).
    #[allow(
        dead_code,
        reason = "the TUI's way to follow the fleet; the CLI's calls are one-shot"
    )]
    pub fn subscribe(&self) -> watch::Receiver<Vec<AgentState>> {
        self.changes.subscribe()
    }

    /// The connection of the first up agent that runs `role`. When none is up, the down
    /// agents whose backoff has passed are tried once more first.
    pub async fn client(&self, role: Role) -> Result<Routed, NoAgent> {
        if let Some(found) = self.first_with(role) {
            return Ok(found);
        }
        // Agents probed a moment ago wait out their backoff: a second try would only double
        // the time to the error.
        let now = Instant::now();
        self.probe_all(|m| !m.state.up && m.retry_at <= now).await;
        self.first_with(role).ok_or_else(|| NoAgent {
            role,
            tried: self
                .lock()
                .iter()
                .map(|m| {
                    if m.state.up {
                        format!(
                            "{} runs {}",
                            m.state.name,
                            if m.state.roles.is_empty() {
                                "no role".to_owned()
                            } else {
                                m.state.roles.join(", ")
                            }
                        )
                    } else {
                        format!("{} is down: {}", m.state.name, m.state.reason)
                    }
                })
                .collect(),
        })
    }

    /// Every up agent that runs `role`, in the order they were named.
    pub fn clients(&self, role: Role) -> Vec<Routed> {
        self.lock()
            .iter()
            .filter(|m| m.state.up && m.state.has(role))
            .filter_map(|m| {
                m.client.clone().map(|client| Routed {
                    client,
                    agent: m.state.clone(),
                })
            })
            .collect()
    }

    /// The connection of the agent called `name`, when it is up.
    pub fn client_of(&self, name: &str) -> Option<Client> {
        self.lock()
            .iter()
            .find(|m| m.state.name == name && m.state.up)
            .and_then(|m| m.client.clone())
    }

    /// Tells the fleet that a call to `name` failed for a transport reason: the agent counts
    /// as down until a probe reaches it again.
    #[allow(
        dead_code,
        reason = "for long-lived callers (the TUI); the CLI's calls are one-shot"
    )]
    pub fn report_down(&self, name: &str, reason: &str) {
        let mut members = self.lock();
        if let Some(m) = members.iter_mut().find(|m| m.state.name == name) {
            m.state.up = false;
            m.state.reason = reason.to_owned();
            m.client = None;
            m.retry_at = Instant::now();
        }
        self.publish(&members);
    }

    /// Spawns the task that keeps the state current: up agents are checked every two
    /// seconds, down ones retried with exponential backoff (0.5 s doubling to 30 s), and
    /// every change is published to [`Fleet::subscribe`]rs. It ends when the fleet is dropped
    /// by everyone else.
    #[cfg_attr(
        not(feature = "embedded"),
        allow(
            dead_code,
            reason = "readmit up and the TUI follow; the small client has neither yet"
        )
    )]
    pub fn follow(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        /// How often up agents are checked to still answer.
        const HEALTH_EVERY: Duration = Duration::from_secs(2);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_health = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(fleet) = weak.upgrade() else { return };
                let now = Instant::now();
                let check_up = now.duration_since(last_health) >= HEALTH_EVERY;
                if check_up {
                    last_health = now;
                }
                fleet
                    .probe_all(|m| {
                        if m.state.up {
                            check_up
                        } else {
                            m.retry_at <= now
                        }
                    })
                    .await;
            }
        })
    }

    fn first_with(&self, role: Role) -> Option<Routed> {
        self.clients(role).into_iter().next()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, members: &[Member]) {
        let now: Vec<AgentState> = members.iter().map(|m| m.state.clone()).collect();
        self.changes.send_if_modified(|old| {
            if *old == now {
                false
            } else {
                *old = now;
                true
            }
        });
    }

    /// Probes (reconnecting where needed) the agents `pick` chooses, all at once.
    async fn probe_all(&self, pick: impl Fn(&Member) -> bool) {
        let chosen: Vec<(usize, AgentSpec, Option<Client>)> = self
            .lock()
            .iter()
            .enumerate()
            .filter(|(_, m)| pick(m))
            .map(|(i, m)| (i, m.spec.clone(), m.client.clone()))
            .collect();
        if chosen.is_empty() {
            return;
        }
        let results = futures_util::future::join_all(
            chosen
                .into_iter()
                .map(|(i, spec, client)| async move { (i, probe(&spec, client).await) }),
        )
        .await;
        let mut members = self.lock();
        let now = Instant::now();
        for (i, result) in results {
            let Some(m) = members.get_mut(i) else {
                continue;
            };
            match result {
                Ok((client, info)) => {
                    m.client = Some(client);
                    m.backoff = BACKOFF_FIRST;
                    m.state.up = true;
                    m.state.reason.clear();
                    m.state.roles = info.roles;
                    m.state.version = info.version;
                    m.state.host = info.host;
                    m.state.os = info.os;
                    m.state.cpus = info.cpus;
                    m.state.pid = info.pid;
                    m.state.grpc_addr = info.grpc_addr;
                    m.state.http_addr = info.http_addr;
                    m.state.started_at_ms = info.started_at_ms;
                    m.state.uptime_s = info.uptime_s;
                    m.state.auth_required = info.auth_required;
                }
                Err(reason) => {
                    m.client = None;
                    m.state.up = false;
                    m.state.reason = reason;
                    m.retry_at = now + m.backoff;
                    m.backoff = (m.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.publish(&members);
    }
}

/// A connection chosen for a role, with the state of the agent it reaches.
#[derive(Clone, Debug)]
pub struct Routed {
    pub client: Client,
    pub agent: AgentState,
}

impl std::ops::Deref for Routed {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// One connect (unless `client` is still good) and `GetInfo`, within [`PROBE_TIMEOUT`].
async fn probe(
    spec: &AgentSpec,
    client: Option<Client>,
) -> Result<(Client, v1::AgentInfo), String> {
    let call = async {
        let client = match client {
            Some(c) => c,
            None => Client::connect_with(&spec.url, spec.token.as_deref(), &spec.tls)
                .await
                .map_err(|e| e.to_string())?,
        };
        let info = client
            .agent()
            .get_info(v1::GetInfoRequest {})
            .await
            .map_err(|s| crate::output::status_error(client.url(), &s))?
            .into_inner();
        Ok((client, info))
    };
    tokio::time::timeout(PROBE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "agent at {} did not answer within {} s",
                spec.url,
                PROBE_TIMEOUT.as_secs()
            ))
        })
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

    #[tokio::test]
    async fn no_agent_for_a_role_names_every_agent_tried_and_why() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let fleet = Fleet::connect(
            Sources {
                agents: vec![dead.clone()],
                ..Sources::default()
            }
            .resolve()
            .unwrap(),
        )
        .await;
        let state = fleet.snapshot();
        assert!(!state[0].up && state[0].reason.contains("cannot reach"));
        let err = fleet.client(Role::Etl).await.unwrap_err().to_string();
        assert!(
            err.contains("etl role") && err.contains(&dead) && err.contains("down"),
            "{err}"
        );
    }

    /// A fleet that follows sees an agent come up on a port that was dead, go down when told
    /// (and come back on the next probe), and go down again when it stops.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_following_fleet_reconnects_and_publishes_each_change() {
        use readmit_agent::settings::RawSettings;
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let url = format!("http://{addr}");
        let fleet = Arc::new(
            Fleet::connect(
                Sources {
                    agents: vec![url.clone()],
                    ..Sources::default()
                }
                .resolve()
                .unwrap(),
            )
            .await,
        );
        let changes = fleet.subscribe();
        let _task = fleet.follow();
        assert!(!fleet.snapshot()[0].up);
        let wait_for = |up: bool, changes: &watch::Receiver<Vec<AgentState>>| {
            let mut changes = changes.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(30), changes.wait_for(|s| s[0].up == up))
                    .await
                    .expect("the state did not change within 30 s")
                    .unwrap()
                    .clone()
            }
        };

        let dir = tempfile::tempdir().unwrap();
        let settings = RawSettings {
            grpc_addr: addr.to_string(),
            ..RawSettings::loopback(dir.path(), &[readmit_agent::Role::Tracking])
        }
        .validate()
        .unwrap();
        let agent = readmit_agent::RunningAgent::start(settings).await.unwrap();
        let up = wait_for(true, &changes).await;
        assert_eq!(up[0].roles, ["tracking"]);
        assert!(fleet.client(Role::Tracking).await.is_ok());

        fleet.report_down(&url, "a call failed");
        assert_eq!(fleet.snapshot()[0].reason, "a call failed");
        wait_for(true, &changes).await;

        agent.stop().await.unwrap();
        let down = wait_for(false, &changes).await;
        assert!(!down[0].reason.is_empty(), "{down:?}");
        assert_eq!(
            down[0].roles,
            ["tracking"],
            "what it served is kept, to grey out"
        );
    }
}
