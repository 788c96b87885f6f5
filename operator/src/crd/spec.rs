//! `DatabaseProxySpec`: what a user asks for. Field docs become the CRD's schema descriptions, so
//! each says its default and unit. What the OpenAPI schema cannot say (one target kind, one primary,
//! `detectionDelay` only with `promote`, `poolSize >= minIdle`) is a CEL rule on the object it is about.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::DatabaseProxyStatus;

/// Matches durations such as `500ms`, `5s`, `1m30s`, `2h`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// A pgroute sidecar fleet in front of one PostgreSQL database: where the database is, how the
/// sidecars pool and route, and which pods get one.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pgroute.dev",
    version = "v1alpha1",
    kind = "DatabaseProxy",
    plural = "databaseproxies",
    shortname = "dbp",
    namespaced,
    status = "DatabaseProxyStatus",
    derive = "PartialEq",
    doc = "A DatabaseProxy: pgroute sidecars in front of one PostgreSQL database, kept in step with its topology by pgroute-operator.",
    // JSON strings rather than `printcolumn(name = ..)`: clippy's duplicated_attributes trips on
    // the repeated `type_` keys of the nested form.
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primary"}"#,
    printcolumn = r#"{"name":"Replicas ready","type":"integer","jsonPath":".status.replicasReady"}"#,
    printcolumn = r#"{"name":"Proxies in sync","type":"integer","jsonPath":".status.proxiesSynced"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseProxySpec {
    /// The database: exactly one of `endpoints`, `selector` or `cloudNativePG`.
    pub target: DatabaseTarget,
    /// The Secret the operator and the sidecars log in with.
    pub credentials: Credentials,
    /// Connection pool of each sidecar.
    #[serde(default)]
    pub pool: PoolSettings,
    /// Read/write splitting and load balancing across replicas.
    #[serde(default)]
    pub routing: RoutingSettings,
    /// Replication lag limits and the read-after-write guarantee.
    #[serde(default)]
    pub consistency: ConsistencySettings,
    /// What happens when the primary fails.
    #[serde(default)]
    pub failover: FailoverSettings,
    /// The injected sidecar container.
    #[serde(default)]
    pub sidecar: SidecarSettings,
    /// Pods in this namespace that get a sidecar.
    pub pod_selector: LabelSelector,
}

/// Where the database is: exactly one kind of target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "[has(self.endpoints), has(self.selector), has(self.cloudNativePG)].filter(x, x).size() == 1"
).message("exactly one of endpoints, selector or cloudNativePG must be set"))]
pub struct DatabaseTarget {
    /// Fixed instances, each with its role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.filter(e, e.role == 'primary').size() == 1"
    ).message("endpoints must have exactly one primary"))]
    pub endpoints: Option<Vec<Endpoint>>,
    /// Instances found through Services or EndpointSlices; each instance's role is found by asking it
    /// `pg_is_in_recovery()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<SelectorTarget>,
    /// A CloudNativePG `Cluster` in this namespace: its status and its `-rw`/`-ro` Services.
    #[serde(
        default,
        rename = "cloudNativePG",
        skip_serializing_if = "Option::is_none"
    )]
    pub cloud_native_pg: Option<CloudNativePgTarget>,
}

/// One fixed database instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Host name or IP address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port. Default 5432.
    #[serde(default = "default_pg_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// `primary` or `replica`.
    pub role: EndpointRole,
}

/// The role of a fixed instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EndpointRole {
    /// Takes writes.
    Primary,
    /// Streaming replica: takes reads.
    Replica,
}

/// Instances behind Services or EndpointSlices chosen by label.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectorTarget {
    /// What the selector selects: `service` (their endpoints) or `endpointSlice`. Default `service`.
    #[serde(default)]
    pub kind: SelectorKind,
    /// Labels of the Services or EndpointSlices.
    pub selector: LabelSelector,
    /// The PostgreSQL port, by name or number. Default 5432.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
}

/// What a [`SelectorTarget`] selects.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SelectorKind {
    /// Services.
    #[default]
    Service,
    /// EndpointSlices.
    EndpointSlice,
}

/// A CloudNativePG `Cluster` (postgresql.cnpg.io/v1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudNativePgTarget {
    /// Name of the `Cluster` in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Login credentials, read from a Secret in this namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key holding the user name. Default `username`.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key holding the password. Default `password`.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

/// Connection pool of each sidecar (per backend, database and user).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.poolSize >= self.minIdle")
    .message("poolSize must be at least minIdle"))]
pub struct PoolSettings {
    /// Most server connections per pool. Default 20.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub pool_size: i32,
    /// Server connections kept open when idle. Default 0.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub min_idle: i32,
    /// How long a client waits for a connection before an error, e.g. `5s`. Default `5s`.
    #[serde(default = "default_queue_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub queue_timeout: String,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            pool_size: default_pool_size(),
            min_idle: 0,
            queue_timeout: default_queue_timeout(),
        }
    }
}

/// Read/write splitting and load balancing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSettings {
    /// Send reads to replicas. Default true; false sends everything to the primary.
    #[serde(default = "default_true")]
    pub read_write_split: bool,
    /// How reads spread over replicas. Default `leastConnections`.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// Weight of the primary among read targets, next to each replica's 100. Default 0 (the
    /// primary takes reads only when no replica qualifies).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub primary_reads_weight: i32,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            read_write_split: true,
            load_balancing: LoadBalancing::default(),
            primary_reads_weight: 0,
        }
    }
}

/// How reads spread over replicas (the sidecar's `routing.load_balancing`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancing {
    /// Fewest busy connections per unit of weight.
    #[default]
    LeastConnections,
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Consistent hashing on a session key: a session keeps its replica.
    ConsistentHash,
}

/// Replication lag limits and the read-after-write guarantee.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencySettings {
    /// Read-after-write guarantee. Default `readYourWrites`.
    #[serde(default)]
    pub mode: ConsistencyMode,
    /// A replica further behind than this leaves the read pool, e.g. `2s`; `0s` disables the time
    /// limit. Default `2s`.
    #[serde(default = "default_max_lag")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_lag: String,
    /// The same limit in bytes of WAL not yet replayed. Default 0 (no byte limit).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_lag_bytes: i64,
    /// How long a replica must stay under the limits before it takes reads again. Default `5s`.
    #[serde(default = "default_hysteresis")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub hysteresis: String,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        ConsistencySettings {
            mode: ConsistencyMode::default(),
            max_lag: default_max_lag(),
            max_lag_bytes: 0,
            hysteresis: default_hysteresis(),
        }
    }
}

/// Read-after-write guarantee (the sidecar's `consistency.mode`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConsistencyMode {
    /// After a write commits, the client's reads go only to replicas that have replayed it.
    #[default]
    ReadYourWrites,
    /// After a write, the client's reads go to the primary for a time window.
    CausalWindow,
    /// No read-after-write guarantee (lag limits still apply).
    None,
}

/// What happens when the primary fails.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.detectionDelay) || self.policy == 'promote'")
    .message("detectionDelay is only allowed with policy promote"))]
pub struct FailoverSettings {
    /// `follow` an external manager (CloudNativePG, Patroni), or `promote` the most advanced healthy
    /// replica with `pg_promote()`. Default `follow`.
    #[serde(default)]
    pub policy: FailoverPolicy,
    /// With `promote`: how long the primary must be unreachable before a replica is promoted, e.g.
    /// `10s`. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub detection_delay: Option<String>,
}

/// Who promotes a replica when the primary fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailoverPolicy {
    /// An external manager promotes; the operator follows the new primary.
    #[default]
    Follow,
    /// The operator promotes.
    Promote,
}

/// The injected sidecar container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSettings {
    /// Container image. Default: the operator's own version of pgroute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Requests and limits of the container. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Ports the sidecar listens on.
    #[serde(default)]
    pub ports: SidecarPorts,
}

/// Ports the sidecar listens on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarPorts {
    /// PostgreSQL clients, on 127.0.0.1. Default 6432.
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub postgres: i32,
    /// `/metrics`, `/healthz` and `/readyz`. Default 9432.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics: i32,
}

impl Default for SidecarPorts {
    fn default() -> Self {
        SidecarPorts {
            postgres: default_postgres_port(),
            metrics: default_metrics_port(),
        }
    }
}

fn default_pg_port() -> i32 {
    5432
}
fn default_username_key() -> String {
    "username".into()
}
fn default_password_key() -> String {
    "password".into()
}
fn default_pool_size() -> i32 {
    20
}
fn default_queue_timeout() -> String {
    "5s".into()
}
fn default_true() -> bool {
    true
}
fn default_max_lag() -> String {
    "2s".into()
}
fn default_hysteresis() -> String {
    "5s".into()
}
fn default_postgres_port() -> i32 {
    6432
}
fn default_metrics_port() -> i32 {
    9432
}
