//! What each sidecar last said: the version it applied or refused, and its health. The operator's
//! status ("N of M proxies in sync") is computed from here.
//!
//! A sidecar counts towards M while it reported within `stale_after`, so pods that went away drop out
//! without an explicit goodbye.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::control::ProxyKey;

/// A sidecar: namespace and pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SidecarId {
    pub namespace: String,
    pub pod: String,
}

/// A sidecar's last report.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarState {
    /// The DatabaseProxy it follows.
    pub proxy: ProxyKey,
    /// The version in force there (0: none yet).
    pub applied: u64,
    /// The last snapshot it refused, and why (cleared when it applies a newer one).
    pub rejected: Option<(u64, String)>,
    pub ready: bool,
    pub clients: u32,
    pub transactions: u32,
    pub sidecar_version: String,
    pub seen: Instant,
}

/// Reports by sidecar.
#[derive(Debug)]
pub struct Reports {
    stale_after: Duration,
    sidecars: Mutex<HashMap<SidecarId, SidecarState>>,
}

impl Reports {
    pub fn new(stale_after: Duration) -> Reports {
        Reports {
            stale_after,
            sidecars: Mutex::default(),
        }
    }

    /// Records a report (the latest per sidecar wins).
    pub fn record(&self, id: SidecarId, state: SidecarState) {
        let mut sidecars = self.lock();
        let previous = sidecars.remove(&id);
        let mut state = state;
        // A report of health alone keeps what the sidecar said about versions before.
        if let Some(prev) = previous.filter(|p| p.proxy == state.proxy) {
            if state.applied == 0 {
                state.applied = prev.applied;
            }
            if state.rejected.is_none() && state.applied <= prev.applied {
                state.rejected = prev.rejected.filter(|(v, _)| *v > state.applied);
            }
        }
        sidecars.insert(id, state);
    }

    /// A sidecar's last report.
    pub fn get(&self, id: &SidecarId) -> Option<SidecarState> {
        self.lock().get(id).cloned()
    }

    /// `(n, m)`: of the `m` sidecars of `proxy` that reported recently, `n` have `version` in force.
    pub fn in_sync(&self, proxy: &ProxyKey, version: u64) -> (usize, usize) {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|s| s.proxy == *proxy && now.duration_since(s.seen) <= self.stale_after)
            .fold((0, 0), |(n, m), s| {
                (n + usize::from(s.applied == version), m + 1)
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SidecarId, SidecarState>> {
        self.sidecars.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(proxy: &ProxyKey, applied: u64, rejected: Option<(u64, String)>) -> SidecarState {
        SidecarState {
            proxy: proxy.clone(),
            applied,
            rejected,
            ready: true,
            clients: 0,
            transactions: 0,
            sidecar_version: "test".into(),
            seen: Instant::now(),
        }
    }

    fn id(pod: &str) -> SidecarId {
        SidecarId {
            namespace: "ns".into(),
            pod: pod.into(),
        }
    }

    #[test]
    fn in_sync_counts_sidecars_of_the_proxy_with_the_version() {
        let reports = Reports::new(Duration::from_secs(60));
        let db = ProxyKey::new("ns", "db");
        let other = ProxyKey::new("ns", "other");
        reports.record(id("a"), state(&db, 7, None));
        reports.record(id("b"), state(&db, 6, Some((7, "bad".into()))));
        reports.record(id("c"), state(&other, 7, None));
        assert_eq!(reports.in_sync(&db, 7), (1, 2));
        // A health-only report keeps the versions said before.
        reports.record(id("b"), state(&db, 0, None));
        let b = reports.get(&id("b")).expect("recorded");
        assert_eq!((b.applied, b.rejected), (6, Some((7, "bad".into()))));
        reports.record(id("b"), state(&db, 8, None));
        assert_eq!(reports.get(&id("b")).expect("recorded").rejected, None);
    }

    #[test]
    fn stale_sidecars_drop_out() {
        let reports = Reports::new(Duration::ZERO);
        let db = ProxyKey::new("ns", "db");
        let mut old = state(&db, 7, None);
        old.seen = Instant::now() - Duration::from_secs(1);
        reports.record(id("a"), old);
        assert_eq!(reports.in_sync(&db, 7), (0, 0));
    }
}
