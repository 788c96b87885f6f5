//! The operator's own Prometheus metrics: leadership, reconcile outcomes, failovers, and per
//! DatabaseProxy what status also says (topology version, sidecars in sync, replica lag and
//! eligibility), so alerts need not scrape the API server.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::control::ProxyKey;
use crate::topology::ReplicaVerdict;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SidecarLabels {
    namespace: String,
    name: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    namespace: String,
    name: String,
    replica: String,
}

/// Every metric; cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    leader: Gauge,
    reconciles: Family<Outcome, Counter>,
    failovers: Counter,
    primary_lost: Counter,
    topology_version: Family<ProxyLabels, Gauge<u64, AtomicU64>>,
    failing_over: Family<ProxyLabels, Gauge>,
    sidecars: Family<SidecarLabels, Gauge>,
    replica_lag_bytes: Family<ReplicaLabels, Gauge<u64, AtomicU64>>,
    replica_lag_ms: Family<ReplicaLabels, Gauge<u64, AtomicU64>>,
    replica_eligible: Family<ReplicaLabels, Gauge>,
    /// Replica label sets per proxy, to remove those that went away.
    replicas: Mutex<HashMap<ProxyKey, Vec<String>>>,
}

impl Metrics {
    /// The metrics, registered in `registry` under `pgroute_operator_`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            leader: Gauge::default(),
            reconciles: Family::default(),
            failovers: Counter::default(),
            primary_lost: Counter::default(),
            topology_version: Family::default(),
            failing_over: Family::default(),
            sidecars: Family::default(),
            replica_lag_bytes: Family::default(),
            replica_lag_ms: Family::default(),
            replica_eligible: Family::default(),
            replicas: Mutex::default(),
        };
        let r = registry.sub_registry_with_prefix("pgroute_operator");
        r.register(
            "leader",
            "1 on the replica holding the leader Lease",
            m.leader.clone(),
        );
        r.register(
            "reconciles",
            "Reconcile rounds by result (ok, error)",
            m.reconciles.clone(),
        );
        r.register(
            "failovers",
            "Primaries replaced (followed or promoted)",
            m.failovers.clone(),
        );
        r.register(
            "primary_lost",
            "Times a primary stopped answering or went into recovery",
            m.primary_lost.clone(),
        );
        r.register(
            "topology_version",
            "Version of the topology last published per DatabaseProxy",
            m.topology_version.clone(),
        );
        r.register(
            "failover_in_progress",
            "1 while a DatabaseProxy has no primary taking writes",
            m.failing_over.clone(),
        );
        r.register("sidecars", "Sidecars per DatabaseProxy that report to this replica (state=reporting) and run the current version (state=synced)", m.sidecars.clone());
        r.register(
            "replica_lag_bytes",
            "WAL a replica has not replayed yet",
            m.replica_lag_bytes.clone(),
        );
        r.register(
            "replica_lag_milliseconds",
            "Replay lag of a replica",
            m.replica_lag_ms.clone(),
        );
        r.register(
            "replica_eligible",
            "1 if the replica takes reads",
            m.replica_eligible.clone(),
        );
        m
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn reconciled(&self, ok: bool) {
        self.reconciles
            .get_or_create(&Outcome {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    pub fn failover(&self) {
        self.failovers.inc();
    }

    pub fn primary_lost(&self) {
        self.primary_lost.inc();
    }

    /// One round's outcome for `key`.
    pub fn proxy(
        &self,
        key: &ProxyKey,
        version: u64,
        synced: usize,
        reporting: usize,
        replicas: &[ReplicaVerdict],
        failing_over: bool,
    ) {
        let p = proxy_labels(key);
        self.topology_version.get_or_create(&p).set(version);
        self.failing_over
            .get_or_create(&p)
            .set(i64::from(failing_over));
        for (state, n) in [("synced", synced), ("reporting", reporting)] {
            self.sidecars
                .get_or_create(&sidecar_labels(key, state))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for r in replicas {
            let l = replica_labels(key, &r.address);
            self.replica_lag_bytes
                .get_or_create(&l)
                .set(r.lag_bytes.unwrap_or(0));
            self.replica_lag_ms
                .get_or_create(&l)
                .set(r.lag_ms.unwrap_or(0));
            self.replica_eligible
                .get_or_create(&l)
                .set(i64::from(r.eligible));
        }
        let now: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();
        let before = self
            .lock()
            .insert(key.clone(), now.clone())
            .unwrap_or_default();
        for gone in before.iter().filter(|a| !now.contains(a)) {
            self.remove_replica(key, gone);
        }
    }

    /// `key` was deleted: its series go.
    pub fn forget(&self, key: &ProxyKey) {
        let p = proxy_labels(key);
        self.topology_version.remove(&p);
        self.failing_over.remove(&p);
        for state in ["synced", "reporting"] {
            self.sidecars.remove(&sidecar_labels(key, state));
        }
        for gone in self.lock().remove(key).unwrap_or_default() {
            self.remove_replica(key, &gone);
        }
    }

    fn remove_replica(&self, key: &ProxyKey, address: &str) {
        let l = replica_labels(key, address);
        self.replica_lag_bytes.remove(&l);
        self.replica_lag_ms.remove(&l);
        self.replica_eligible.remove(&l);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProxyKey, Vec<String>>> {
        self.replicas.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn proxy_labels(key: &ProxyKey) -> ProxyLabels {
    ProxyLabels {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

fn sidecar_labels(key: &ProxyKey, state: &'static str) -> SidecarLabels {
    SidecarLabels {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        state,
    }
}

fn replica_labels(key: &ProxyKey, replica: &str) -> ReplicaLabels {
    ReplicaLabels {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        replica: replica.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Reason;

    fn encode(registry: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, registry).expect("encode");
        s
    }

    #[test]
    fn replicas_that_go_away_lose_their_series() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry);
        let key = ProxyKey::new("ns", "db");
        let r = |a: &str| ReplicaVerdict {
            address: a.into(),
            lag_bytes: Some(7),
            lag_ms: Some(3),
            eligible: true,
            reason: Reason::Healthy,
        };
        m.proxy(&key, 5, 1, 2, &[r("a:1"), r("b:1")], false);
        let text = encode(&registry);
        assert!(
            text.contains(
                r#"pgroute_operator_replica_lag_bytes{namespace="ns",name="db",replica="b:1"} 7"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"pgroute_operator_sidecars{namespace="ns",name="db",state="synced"} 1"#
            ),
            "{text}"
        );
        m.proxy(&key, 6, 2, 2, &[r("a:1")], false);
        let text = encode(&registry);
        assert!(!text.contains(r#"replica="b:1""#), "{text}");
        m.forget(&key);
        let text = encode(&registry);
        assert!(!text.contains(r#"name="db""#), "{text}");
    }
}
