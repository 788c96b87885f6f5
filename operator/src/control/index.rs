//! The topology of every DatabaseProxy, in memory, with fan-out to any number of subscribers.
//!
//! Each proxy has a `tokio::sync::watch` channel holding its latest snapshot: publishing is one store,
//! never a send per subscriber, so a slow or stuck subscriber cannot delay the others — it simply
//! reads the latest value when it gets to it (intermediate versions are skipped, which is fine because
//! snapshots are complete).
//!
//! Ordinary changes are coalesced: the first one starts a `debounce` timer, later ones replace it, and
//! the latest is sent when the timer fires (a throttle: under constant change a snapshot still goes out
//! every `debounce`). Urgent ones (failover decisions) are sent at once and supersede anything pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pgroute_proto::v1::Snapshot;
use tokio::sync::watch;

/// A DatabaseProxy: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyKey {
    pub namespace: String,
    pub name: String,
}

impl ProxyKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ProxyKey {
        ProxyKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ProxyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What subscribers read: `None` until the first snapshot of the proxy is published.
pub type Current = Option<Arc<Snapshot>>;

/// Cheap to clone; clones share the index.
#[derive(Debug, Clone)]
pub struct TopologyIndex {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    debounce: Duration,
    proxies: Mutex<HashMap<ProxyKey, Entry>>,
}

#[derive(Debug)]
struct Entry {
    sender: watch::Sender<Current>,
    /// Last version handed out (sent or pending).
    version: u64,
    /// A debounced snapshot waiting for its timer.
    pending: Option<Snapshot>,
}

impl TopologyIndex {
    /// An index whose ordinary changes wait up to `debounce` (coalescing those that come meanwhile).
    pub fn new(debounce: Duration) -> TopologyIndex {
        TopologyIndex {
            inner: Arc::new(Inner {
                debounce,
                proxies: Mutex::default(),
            }),
        }
    }

    /// Publishes a new topology for `key` and returns the version it was given. The version in
    /// `snapshot` is ignored: versions are assigned here, strictly increasing per proxy, and the first
    /// one is the wall clock in milliseconds so an operator restarted with an empty index still hands
    /// out versions above those its sidecars hold. `urgent` (failover) sends at once; otherwise the
    /// snapshot is debounced. Must run inside a tokio runtime (the debounce timer is a task).
    pub fn publish(&self, key: &ProxyKey, mut snapshot: Snapshot, urgent: bool) -> u64 {
        let mut proxies = self.lock();
        let entry = proxies.entry(key.clone()).or_insert_with(Entry::new);
        entry.version = next_version(entry.version);
        snapshot.version = entry.version;
        if urgent || self.inner.debounce.is_zero() {
            entry.pending = None;
            entry.sender.send_replace(Some(Arc::new(snapshot)));
            return entry.version;
        }
        let timer_running = entry.pending.replace(snapshot).is_some();
        if !timer_running {
            let inner = Arc::downgrade(&self.inner);
            let key = key.clone();
            let delay = self.inner.debounce;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(inner) = inner.upgrade() {
                    let index = TopologyIndex { inner };
                    index.flush(&key);
                }
            });
        }
        entry.version
    }

    /// Sends the pending snapshot of `key`, if an urgent one did not supersede it meanwhile.
    fn flush(&self, key: &ProxyKey) {
        let mut proxies = self.lock();
        if let Some(entry) = proxies.get_mut(key) {
            if let Some(snapshot) = entry.pending.take() {
                entry.sender.send_replace(Some(Arc::new(snapshot)));
            }
        }
    }

    /// A receiver of `key`'s snapshots (created empty if nobody published it yet: the sidecar waits).
    pub fn subscribe(&self, key: &ProxyKey) -> watch::Receiver<Current> {
        self.lock()
            .entry(key.clone())
            .or_insert_with(Entry::new)
            .sender
            .subscribe()
    }

    /// The snapshot subscribers see now (a pending debounced one is not yet visible).
    pub fn current(&self, key: &ProxyKey) -> Current {
        self.lock().get(key).and_then(|e| e.sender.borrow().clone())
    }

    /// Forgets `key` (its DatabaseProxy was deleted): open streams end.
    pub fn remove(&self, key: &ProxyKey) {
        self.lock().remove(key);
    }

    /// Subscribers of `key` right now.
    pub fn subscribers(&self, key: &ProxyKey) -> usize {
        self.lock()
            .get(key)
            .map_or(0, |e| e.sender.receiver_count())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProxyKey, Entry>> {
        self.inner
            .proxies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entry {
    fn new() -> Entry {
        Entry {
            sender: watch::Sender::new(None),
            version: 0,
            pending: None,
        }
    }
}

/// The version after `last`: at least the wall clock in milliseconds (see [`TopologyIndex::publish`]).
fn next_version(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    (last + 1).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(primary: &str) -> Snapshot {
        Snapshot {
            primary: primary.into(),
            ..Snapshot::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ordinary_changes_are_coalesced_and_urgent_ones_are_not() {
        let index = TopologyIndex::new(Duration::from_millis(200));
        let key = ProxyKey::new("ns", "db");
        let mut rx = index.subscribe(&key);
        let v1 = index.publish(&key, snapshot("a:1"), false);
        let v2 = index.publish(&key, snapshot("b:1"), false);
        assert!(v2 > v1);
        assert!(rx.borrow().is_none(), "debounced: nothing visible yet");
        tokio::time::sleep(Duration::from_millis(201)).await;
        rx.changed().await.expect("sender alive");
        let seen = rx.borrow_and_update().clone().expect("a snapshot");
        assert_eq!((seen.version, seen.primary.as_str()), (v2, "b:1"));

        index.publish(&key, snapshot("c:1"), false);
        let v4 = index.publish(&key, snapshot("d:1"), true);
        let seen = rx.borrow_and_update().clone().expect("a snapshot");
        assert_eq!((seen.version, seen.primary.as_str()), (v4, "d:1"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !rx.has_changed().expect("alive"),
            "the superseded ordinary change is never sent"
        );
    }

    #[test]
    fn versions_strictly_increase_and_start_at_the_clock() {
        assert!(next_version(0) > 1_600_000_000_000);
        assert_eq!(next_version(u64::MAX - 1), u64::MAX);
        let far = 10_000_000_000_000;
        assert_eq!(next_version(far), far + 1);
    }
}
