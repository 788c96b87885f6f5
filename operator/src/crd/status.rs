//! `DatabaseProxyStatus`: what the operator observed and decided, written only by the leader. The
//! printer columns read `primary`, `replicasReady`, `proxiesSynced` and the `Ready` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition types a `DatabaseProxy` reports (standard `metav1.Condition`s).
pub mod condition {
    /// The database is reachable, a primary is known and the proxies are in sync.
    pub const READY: &str = "Ready";
    /// The target resolved to instances with known roles.
    pub const TOPOLOGY_RESOLVED: &str = "TopologyResolved";
    /// Every sidecar acknowledged the current topology version.
    pub const PROXIES_SYNCED: &str = "ProxiesSynced";
    /// Serving, but with fewer replicas or proxies than wanted.
    pub const DEGRADED: &str = "Degraded";
    /// The primary failed and a new one is being followed or promoted.
    pub const FAILOVER_IN_PROGRESS: &str = "FailoverInProgress";
    /// All of them, in the order `kubectl describe` shows best.
    pub const ALL: [&str; 5] = [
        READY,
        TOPOLOGY_RESOLVED,
        PROXIES_SYNCED,
        DEGRADED,
        FAILOVER_IN_PROGRESS,
    ];
}

/// Observed state of a `DatabaseProxy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseProxyStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, TopologyResolved, ProxiesSynced, Degraded, FailoverInProgress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The current primary, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Every replica with its lag and whether it takes reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// Replicas that take reads.
    #[serde(default)]
    pub replicas_ready: i32,
    /// Version of the topology last pushed to the sidecars.
    #[serde(default)]
    pub topology_version: i64,
    /// Sidecars that acknowledged `topologyVersion`.
    #[serde(default)]
    pub proxies_synced: i32,
    /// Sidecars connected to the operator.
    #[serde(default)]
    pub proxies_total: i32,
    /// When the last failover completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_time: Option<Time>,
    /// Why the last failover happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_reason: Option<String>,
}

/// One replica as the operator sees it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// `host:port`.
    pub address: String,
    /// WAL not yet replayed, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Replay lag in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_millis: Option<i64>,
    /// Whether the replica takes reads.
    pub eligible: bool,
    /// Why it does or does not, e.g. `LagOverLimit`, `Unreachable`, `Healthy`.
    pub reason: String,
}
