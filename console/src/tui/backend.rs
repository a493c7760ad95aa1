//! The TUI's network side. The console's [`Fleet`] knows the agents (connects, learns their
//! roles, reconnects downed ones with backoff); this module follows its changes and each up
//! agent's status stream, keeps the etl role's run events and the tracking role's registry
//! changes flowing, and runs one task per request, routed to an up agent with the request's
//! role. Everything it learns goes back to the state as an `Action`; nothing here touches the
//! state.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use readmit_proto::{Client, v1};
use tokio::sync::mpsc::UnboundedSender;

use super::action::Action;
use super::prom;
use super::scrape::Scraper;
use crate::fleet::{AgentState, Fleet, Role};

/// The handle the run loop dispatches requests through. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    tx: UnboundedSender<Action>,
    fleet: Arc<Fleet>,
    /// Each agent's `/metrics` client, by agent name, made on first use.
    scrapers: Arc<std::sync::Mutex<std::collections::HashMap<String, Scraper>>>,
}

/// The agent facts `GetInfo` gave, as the fleet keeps them.
fn info_of(state: &AgentState) -> v1::AgentInfo {
    v1::AgentInfo {
        roles: state.roles.clone(),
        version: state.version.clone(),
        host: state.host.clone(),
        started_at_ms: state.started_at_ms,
        uptime_s: state.uptime_s,
        grpc_addr: state.grpc_addr.clone(),
        http_addr: state.http_addr.clone(),
        os: state.os.clone(),
        cpus: state.cpus,
        auth_required: state.auth_required,
        pid: state.pid,
    }
}

fn role_of(name: &str) -> Option<Role> {
    match name {
        "etl" => Some(Role::Etl),
        "tracking" => Some(Role::Tracking),
        "inference" => Some(Role::Inference),
        _ => None,
    }
}

impl Backend {
    /// Follows the fleet (its reconnecting task included) and starts the role streams;
    /// returns at once.
    pub fn start(fleet: Arc<Fleet>, tx: UnboundedSender<Action>) -> Self {
        let backend = Self {
            tx,
            fleet,
            scrapers: Arc::default(),
        };
        drop(backend.fleet.follow());
        tokio::spawn(backend.clone().follow_fleet());
        for slot in 0..backend.fleet.snapshot().len() {
            tokio::spawn(backend.clone().status(slot));
        }
        tokio::spawn(backend.clone().watch_runs());
        tokio::spawn(backend.clone().watch_registry());
        backend
    }

    pub(super) fn send(&self, action: Action) {
        // The state is gone only when the TUI is closing: nothing left to tell.
        let _ = self.tx.send(action);
    }

    /// Each agent's ups and downs as the fleet publishes them.
    async fn follow_fleet(self) {
        let mut changes = self.fleet.subscribe();
        let mut last: Vec<Option<(bool, String, Vec<String>)>> = Vec::new();
        loop {
            let now: Vec<AgentState> = changes.borrow_and_update().clone();
            last.resize(now.len(), None);
            for (slot, state) in now.iter().enumerate() {
                let key = (state.up, state.reason.clone(), state.roles.clone());
                if last[slot].as_ref() == Some(&key) {
                    continue;
                }
                last[slot] = Some(key);
                if state.up {
                    self.send(Action::AgentUp {
                        slot,
                        info: info_of(state),
                    });
                } else {
                    self.send(Action::AgentDown {
                        slot,
                        reason: state.reason.clone(),
                    });
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// One agent's status stream while it is up; a broken stream tells the fleet, which
    /// marks the agent down until its next probe reaches it.
    async fn status(self, slot: usize) {
        loop {
            let name = self.fleet.snapshot().get(slot).map(|s| s.name.clone());
            let Some(name) = name else { return };
            match self.fleet.client_of(&name) {
                Some(client) => {
                    let reason = self.follow_status(slot, &client).await;
                    self.fleet.report_down(&name, &reason);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Forwards status samples until the stream breaks; returns why it did.
    async fn follow_status(&self, slot: usize, client: &Client) -> String {
        let url = client.url().to_owned();
        let stream = client
            .agent()
            .watch_status(v1::WatchStatusRequest { interval_ms: 1000 })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) => return crate::output::status_error(&url, &s),
        };
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(Ok(status))) => self.send(Action::AgentStatus { slot, status }),
                Ok(Some(Err(s))) => return crate::output::status_error(&url, &s),
                Ok(None) => return "the agent ended its status stream (shutting down?)".into(),
                Err(_) => return "no status sample for 5 s".into(),
            }
        }
    }

    /// The first agent that is up and runs `role`, or why there is none.
    pub(super) fn route(&self, role: &str) -> Result<Client, String> {
        let Some(role) = role_of(role) else {
            return Err(format!("no such role {role}"));
        };
        if let Some(routed) = self.fleet.clients(role).into_iter().next() {
            return Ok(routed.client);
        }
        let tried: Vec<String> = self
            .fleet
            .snapshot()
            .iter()
            .map(|a| {
                if a.up {
                    format!("{} runs {}", a.name, a.roles.join(", "))
                } else {
                    format!("{} is down: {}", a.name, a.reason)
                }
            })
            .collect();
        Err(format!(
            "no agent up with the {role} role ({})",
            tried.join("; ")
        ))
    }

    /// Waits until an agent with `role` is up.
    async fn route_wait(&self, role: &str) -> Client {
        loop {
            if let Ok(c) = self.route(role) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every run's state changes and log lines, from the etl agent, reopened when it breaks.
    async fn watch_runs(self) {
        loop {
            let client = self.route_wait("etl").await;
            if let Ok(stream) = client.watch_runs(None).await {
                let mut stream = std::pin::pin!(stream);
                while let Some(Ok(event)) = stream.next().await {
                    self.send(Action::RunEvent(event));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Registry changes from the tracking agent, reopened when it breaks.
    async fn watch_registry(self) {
        loop {
            let client = self.route_wait("tracking").await;
            if let Ok(stream) = client
                .tracking()
                .watch_registry(v1::WatchRegistryRequest::default())
                .await
            {
                let mut stream = stream.into_inner();
                while let Some(Ok(event)) = stream.next().await {
                    self.send(Action::RegistryEvent(event));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The HTTP base URL of the agent behind `client`, as the fleet learned it.
    pub(super) fn http_of(&self, client: &Client) -> String {
        self.fleet
            .snapshot()
            .iter()
            .find(|a| a.up && a.url == client.url())
            .map(|a| http_base(&a.url, &a.http_addr))
            .unwrap_or_default()
    }

    /// The `/metrics` client of the agent called `name`.
    fn scraper(&self, name: &str) -> Result<Scraper, String> {
        let mut scrapers = self
            .scrapers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = scrapers.get(name) {
            return Ok(found.clone());
        }
        let spec = self
            .fleet
            .spec_of(name)
            .ok_or_else(|| format!("no agent {name}"))?;
        let made = Scraper::new(&spec)?;
        scrapers.insert(name.to_owned(), made.clone());
        Ok(made)
    }

    /// Scrapes `/metrics` of every agent that is up.
    pub(super) async fn scrape_all(&self) {
        for (slot, agent) in self.fleet.snapshot().into_iter().enumerate() {
            if !agent.up || agent.http_addr.is_empty() {
                continue;
            }
            let base = http_base(&agent.url, &agent.http_addr);
            let at_ms = now_ms();
            let scrape = match self.scraper(&agent.name) {
                Ok(scraper) => scraper.metrics(&base).await.map(|text| prom::parse(&text)),
                Err(e) => Err(e),
            };
            self.send(Action::Metrics {
                slot,
                at_ms,
                scrape,
            });
        }
    }

    /// Asks every inference agent that is up what it serves.
    pub(super) async fn served_all(&self) {
        for (slot, agent) in self.fleet.snapshot().into_iter().enumerate() {
            if !agent.up || !agent.has(Role::Inference) {
                continue;
            }
            let Some(client) = self.fleet.client_of(&agent.name) else {
                continue;
            };
            let served = client
                .served_model()
                .await
                .map_err(|e| crate::output::call_error(client.url(), &e));
            self.send(Action::Served { slot, served });
        }
    }
}

/// The HTTP base URL from a gRPC URL and the agent's bound HTTP address: an unspecified bind
/// address (`0.0.0.0`) is reached at the gRPC URL's host.
fn http_base(grpc_url: &str, http_addr: &str) -> String {
    let scheme = if grpc_url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let host_of_url = grpc_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.rsplit_once(':').map(|(h, _)| h.to_owned()))
        .unwrap_or_else(|| "127.0.0.1".into());
    let addr = match http_addr.rsplit_once(':') {
        Some((host, port)) if host == "0.0.0.0" || host == "[::]" => {
            format!("{host_of_url}:{port}")
        }
        _ => http_addr.to_owned(),
    };
    format!("{scheme}://{addr}")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_base_uses_the_url_host_for_unspecified_binds() {
        assert_eq!(
            http_base("http://10.0.0.5:50051", "0.0.0.0:8080"),
            "http://10.0.0.5:8080"
        );
        assert_eq!(
            http_base("https://a:1", "127.0.0.1:8443"),
            "https://127.0.0.1:8443"
        );
    }
}
