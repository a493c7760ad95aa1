//! The console's many agents: who they are (flags, `READMIT_AGENT`, a config file), what
//! roles each runs (from `Agent.GetInfo`), and which one an operation goes to. Every command
//! asks the fleet for the agent of a role; a long-lived caller (the TUI) follows the fleet's
//! state as it changes, while a background task reconnects downed agents with backoff.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use readmit_proto::{AgentFacts, Client};
use serde::Serialize;
use tokio::sync::watch;

mod config;

pub use config::{AgentSpec, Sources};

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

    /// How the agent called `name` is reached (its URL, token and TLS files).
    pub fn spec_of(&self, name: &str) -> Option<AgentSpec> {
        self.lock()
            .iter()
            .find(|m| m.state.name == name)
            .map(|m| m.spec.clone())
    }

    /// Every agent's state, in the order they were named.
    pub fn snapshot(&self) -> Vec<AgentState> {
        self.lock().iter().map(|m| m.state.clone()).collect()
    }

    /// Changes of [`Fleet::snapshot`], as they happen (once [`Fleet::follow`] runs).
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
async fn probe(spec: &AgentSpec, client: Option<Client>) -> Result<(Client, AgentFacts), String> {
    let call = async {
        let client = match client {
            Some(c) => c,
            None => Client::connect_with(&spec.url, spec.token.as_deref(), &spec.tls)
                .await
                .map_err(|e| e.to_string())?,
        };
        let info = client
            .agent_info()
            .await
            .map_err(|e| crate::output::call_error(client.url(), &e))?;
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
