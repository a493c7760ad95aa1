//! Following the registry: the versions as they stand, then every change after, as one
//! stream the inference role (over gRPC's `WatchRegistry`) consumes.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::Stream;
use tokio_util::sync::CancellationToken;

use super::RegistrySearch;
use crate::tracking::TrackingStore;
use crate::tracking::entities::{ModelVersion, RegistryEvent, RegistryEventKind, Result};

/// How often a watch looks for new events: they may come from another agent sharing the
/// database, so there is nothing to wake on but time.
const POLL: Duration = Duration::from_millis(200);
/// Events read per look, so one look after a long pause stays bounded.
const EVENTS_PER_POLL: i64 = 500;
/// Registered models read per page of the snapshot.
const MODELS_PER_PAGE: u32 = 1000;

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// One registered model, or every one.
    pub name: Option<String>,
    /// Start with every version as it stands now.
    pub include_current: bool,
}

/// One item of a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum Watched {
    /// A version as it stood when the watch began, read at `timestamp`.
    Current {
        timestamp: i64,
        version: ModelVersion,
    },
    /// A change after the watch began, with the version as it stands when the change is read:
    /// `None` when it is gone (deleted, or its model was).
    Changed {
        event: RegistryEvent,
        version: Option<ModelVersion>,
    },
}

/// Watches the registry until `shutdown` (or until the stream is dropped).
///
/// The snapshot is read after noting the newest event, and changes are read from that event
/// on: a change made while the snapshot is read shows in both (a version's current state and
/// then the change that led to it) but none falls between them. A failed look for changes
/// ends the stream with its error.
pub async fn watch(
    store: TrackingStore,
    what: Watch,
    shutdown: CancellationToken,
) -> Result<impl Stream<Item = Result<Watched>> + Send + 'static> {
    let after = store.latest_registry_seq().await?;
    let current = if what.include_current {
        snapshot(&store, what.name.as_deref()).await?
    } else {
        Vec::new()
    };
    let live = Live {
        store,
        only: what.name,
        after,
        tick: tokio::time::interval(POLL),
        pending: VecDeque::new(),
        shutdown,
        failed: false,
    };
    let live = futures_util::stream::unfold(live, |mut live| async move {
        live.next().await.map(|item| (item, live))
    });
    Ok(futures_util::StreamExt::chain(
        futures_util::stream::iter(current.into_iter().map(Ok)),
        live,
    ))
}

/// Every version of `only` (or of every registered model), oldest first per model.
async fn snapshot(store: &TrackingStore, only: Option<&str>) -> Result<Vec<Watched>> {
    let names = match only {
        Some(name) => vec![name.to_owned()],
        None => {
            let mut names = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let (page, next) = store
                    .search_registered_models(&RegistrySearch {
                        max_results: MODELS_PER_PAGE,
                        page_token: token.clone(),
                        ..RegistrySearch::default()
                    })
                    .await?;
                names.extend(page.into_iter().map(|m| m.name));
                match next {
                    Some(t) => token = Some(t),
                    None => break names,
                }
            }
        }
    };
    let mut current = Vec::new();
    for name in names {
        for version in store.model_versions(&name).await? {
            current.push(Watched::Current {
                timestamp: crate::now_ms(),
                version,
            });
        }
    }
    Ok(current)
}

/// The live half of a watch: looks for events after `after` on every tick.
struct Live {
    store: TrackingStore,
    only: Option<String>,
    after: i64,
    tick: tokio::time::Interval,
    pending: VecDeque<RegistryEvent>,
    shutdown: CancellationToken,
    failed: bool,
}

impl Live {
    async fn next(&mut self) -> Option<Result<Watched>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(self.resolve(event).await));
            }
            if self.failed {
                return None;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                _ = self.tick.tick() => {}
            }
            match self
                .store
                .registry_events_after(self.after, EVENTS_PER_POLL)
                .await
            {
                Ok(events) => {
                    for event in events {
                        self.after = event.seq;
                        if self.only.as_ref().is_none_or(|n| *n == event.name) {
                            self.pending.push_back(event);
                        }
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// The event with its version as it stands now. A version that cannot be read is reported
    /// as gone rather than ending the watch: it may have been deleted since.
    async fn resolve(&self, event: RegistryEvent) -> Watched {
        let version = match event.kind {
            RegistryEventKind::ModelDeleted | RegistryEventKind::VersionDeleted => None,
            RegistryEventKind::VersionCreated
            | RegistryEventKind::StageChanged
            | RegistryEventKind::AliasSet
            | RegistryEventKind::AliasDeleted => self
                .store
                .get_model_version(&event.name, event.version)
                .await
                .ok(),
        };
        Watched::Changed { event, version }
    }
}
