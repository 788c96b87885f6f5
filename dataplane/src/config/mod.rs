//! pgroute's configuration: one serde tree, the single source of defaults.
//!
//! Every field documents its default, its unit, and whether a reload (SIGHUP, `Proxy::reload`) applies
//! it or it needs a restart; the keys that need a restart are listed once, in `ops::RESTART_ONLY`, and
//! everything else applies (see `Proxy::reload` for when: next checkout, next batch, new logins).
//! The same model is what the control plane will push to managed sidecars, so it stays plain data:
//! typed values, no I/O beyond
//! [`Config::load`]. `validate()` names the offending key so a bad file fails with a one-line error.

mod address;
mod admin;
mod control;
mod health;
mod tracing;

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use address::BackendAddr;
pub use admin::AdminConfig;
pub use control::ControlConfig;
pub use health::{FailoverConfig, HealthConfig};
pub use tracing::TracingConfig;

/// Errors loading or validating configuration. Each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub backends: BackendsConfig,
    pub pool: PoolConfig,
    pub routing: RoutingConfig,
    pub consistency: ConsistencyConfig,
    pub timeouts: TimeoutsConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub health: HealthConfig,
    pub failover: FailoverConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub tracing: TracingConfig,
    /// Managed mode: the control plane to follow (`[control]`).
    pub control: ControlConfig,
}

/// The client-facing side.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address clients connect to. Default `127.0.0.1:6432` (the sidecar port). Restart to change.
    pub listen: String,
    /// Address of the Prometheus `/metrics` endpoint. Default: none (disabled). Restart to change.
    pub metrics_listen: Option<String>,
    /// Most client connections at once; one more gets SQLSTATE 53300 and is closed. Default 1000.
    /// Reloadable.
    pub max_client_conn: u32,
    /// Time a client has to finish startup and authentication. Default `15s`: shorter than PostgreSQL's
    /// own 60 s `authentication_timeout`, so half-open logins cannot pile up in the proxy. Reloadable.
    #[serde(with = "humantime_serde")]
    pub client_login_timeout: Duration,
    /// Largest message a client or server may send, in bytes. Default 1 GiB (PostgreSQL's own limit for a
    /// field). Reloadable for new connections.
    pub max_message_size: usize,
    /// Largest startup packet, in bytes. Default 10000. Reloadable for new connections.
    pub max_startup_packet: usize,
    /// Most clients logged in as one user at once; one more gets SQLSTATE 53300. Default 0
    /// (unlimited). PgBouncer's name. Reloadable.
    pub max_user_client_connections: u32,
    /// Most clients connected to one database at once; one more gets SQLSTATE 53300. Default 0
    /// (unlimited). PgBouncer's name. Reloadable.
    pub max_db_client_connections: u32,
    /// CancelRequests forwarded per second, across all clients; more are dropped (and logged), so a
    /// flood of cancels cannot become a flood of backend connections. Default 100. Restart to change.
    pub max_cancels_per_second: NonZeroU32,
    /// Threads serving clients. Default 1: like PgBouncer, one core relays tens of thousands of
    /// transactions a second, and a sidecar should not compete with its application for CPU; raise it for
    /// very busy pods. Restart to change.
    pub workers: NonZeroUsize,
    /// On SIGTERM (graceful shutdown): how long transactions in flight may take to finish before every
    /// connection is closed. Clients idle between transactions are closed at once with SQLSTATE 57P01.
    /// Default `30s`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// TCP keepalives on client sockets, so a client whose host vanished without closing its connection
    /// (a killed pod, a dropped NAT entry) is noticed and its place freed. Default on, `60s` idle, then
    /// a probe every `10s`, given up after 6: about two minutes. PgBouncer's `tcp_keepalive`,
    /// `tcp_keepidle`, `tcp_keepintvl`, `tcp_keepcnt`. Applies to new connections on reload.
    pub tcp_keepalive: KeepaliveConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:6432".into(),
            metrics_listen: None,
            max_client_conn: 1000,
            client_login_timeout: Duration::from_secs(15),
            max_message_size: 1 << 30,
            max_startup_packet: 10_000,
            max_user_client_connections: 0,
            max_db_client_connections: 0,
            max_cancels_per_second: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            workers: NonZeroUsize::MIN,
            shutdown_timeout: Duration::from_secs(30),
            tcp_keepalive: KeepaliveConfig::default(),
        }
    }
}

/// TCP keepalive probes on one side's sockets. Without them a peer that disappears without a FIN or RST
/// (host crash, network partition) keeps its socket open until the OS gives up, hours later on Linux
/// (`tcp_keepalive_time` is 2 h by default).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    /// Send keepalive probes at all. Default true.
    pub enabled: bool,
    /// Idle time before the first probe (`TCP_KEEPIDLE`). Default `60s`; whole seconds, at least 1.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// Time between unanswered probes (`TCP_KEEPINTVL`). Default `10s`; whole seconds, at least 1.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`). Default 6.
    pub count: u32,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            enabled: true,
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            count: 6,
        }
    }
}

impl KeepaliveConfig {
    /// What is wrong with these values, if anything, for `validate()`: the kernel counts in whole
    /// seconds and refuses 0.
    fn problem(&self) -> Option<&'static str> {
        if !self.enabled {
            None
        } else if self.idle < Duration::from_secs(1) {
            Some("idle must be at least 1s")
        } else if self.interval < Duration::from_secs(1) {
            Some("interval must be at least 1s")
        } else if self.count == 0 {
            Some("count must be at least 1")
        } else {
            None
        }
    }
}

/// Where the databases are.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackendsConfig {
    /// The primary, `host:port`. Required, except in managed mode (`[control]`). Reloadable: new transactions go to the new address, those
    /// running on the old one finish. Health checks may move it on failover (`[failover]`).
    pub primary: Option<BackendAddr>,
    /// Streaming replicas: `"host:port"`, or `{ address = "host:port", weight = 2 }` for a share of
    /// reads other than 1. Default none (everything runs on the primary). Reloadable.
    pub replicas: Vec<ReplicaConfig>,
}

/// One replica and its share of reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "ReplicaForm")]
pub struct ReplicaConfig {
    pub address: BackendAddr,
    /// Relative share of reads for weighted policies (`round-robin`, `random`, `hash`; least-connections
    /// divides by it). Default 1; 0 takes the replica out of the read pool.
    pub weight: u32,
    /// This replica's own lag limit, instead of `consistency.max_replica_lag`. Default none.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_lag: Option<std::time::Duration>,
}

impl From<BackendAddr> for ReplicaConfig {
    fn from(address: BackendAddr) -> Self {
        ReplicaConfig {
            address,
            weight: 1,
            max_lag: None,
        }
    }
}

/// The two ways to write a replica in the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum ReplicaForm {
    Address(BackendAddr),
    Full {
        address: BackendAddr,
        #[serde(default = "one")]
        weight: u32,
        #[serde(default, with = "humantime_serde")]
        max_lag: Option<std::time::Duration>,
    },
}

fn one() -> u32 {
    1
}

impl From<ReplicaForm> for ReplicaConfig {
    fn from(form: ReplicaForm) -> Self {
        match form {
            ReplicaForm::Address(address) => address.into(),
            ReplicaForm::Full {
                address,
                weight,
                max_lag,
            } => ReplicaConfig {
                address,
                weight,
                max_lag,
            },
        }
    }
}

/// How reads are spread over the replicas (and the primary's share, if any).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancing {
    /// Fewest busy connections per unit of weight (default): adapts to slow replicas; ties rotate.
    #[default]
    LeastConnections,
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Consistent (rendezvous) hashing on `routing.hash_key`: a session keeps its replica, and only the
    /// sessions of a replica that leaves move.
    Hash,
}

/// What `hash` load balancing keys a session on.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// The login user (default).
    #[default]
    User,
    Database,
    ApplicationName,
    ClientAddress,
    /// The `pgroute.affinity` startup parameter (`options=-c pgroute.affinity=…` or a startup
    /// parameter), falling back to the user when absent.
    Affinity,
}

/// A user's or database's routing default.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DefaultRoute {
    /// Classify each statement (default).
    #[default]
    Auto,
    /// Everything to the primary (e.g. a migrations user).
    Primary,
    /// Everything to replicas (e.g. a reporting user); writes then fail with PostgreSQL's read-only
    /// error. Hints and rules still override.
    Replica,
}

/// Read/write splitting.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Send reads to replicas. Default true; without replicas everything goes to the primary anyway.
    /// Reloadable (new clients).
    pub read_write_split: bool,
    /// Default `least-connections`. Restart to change.
    pub load_balancing: LoadBalancing,
    /// Session key for `hash`. Default `user`. Reloadable (new clients).
    pub hash_key: HashKey,
    /// The primary's share of reads, as a replica weight. Default 0 (reads only on replicas while any
    /// is available). Reloadable (new clients).
    pub primary_reads_weight: u32,
    /// Functions that keep a SELECT on the primary, added to the built-in list (`nextval`, advisory
    /// locks, `lo_*` writes…). Default none. Reloadable.
    pub write_functions: Vec<String>,
    /// Treat functions that are neither built-in reads nor listed writes as writes. Default false (a
    /// user function that writes then fails on the replica with PostgreSQL's read-only error rather than
    /// sending every report to the primary). Reloadable.
    pub unknown_functions_are_writes: bool,
    /// Per-user defaults, e.g. `{ reporting = "replica", migrator = "primary" }`. Default none.
    pub users: std::collections::BTreeMap<String, DefaultRoute>,
    /// Per-database defaults (a user's own default wins). Default none.
    pub databases: std::collections::BTreeMap<String, DefaultRoute>,
    /// Query rules, checked in order before the parser: `{ pattern = "regex", route = "replica" }` or
    /// `{ fingerprint = "16 hex digits", route = "primary" }`. Default none.
    pub rules: Vec<crate::classify::RuleMatch>,
    /// Routing decisions cached by query text. Default 10000.
    pub cache_size: usize,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            read_write_split: true,
            load_balancing: LoadBalancing::LeastConnections,
            hash_key: HashKey::User,
            primary_reads_weight: 0,
            write_functions: Vec::new(),
            unknown_functions_are_writes: false,
            users: Default::default(),
            databases: Default::default(),
            rules: Vec::new(),
            cache_size: 10_000,
        }
    }
}

/// What a client may read after it wrote.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ConsistencyMode {
    /// After a write commits, the client's reads go only to replicas that have replayed it (by WAL
    /// position), or to the primary (default).
    #[default]
    ReadYourWrites,
    /// After a write, the client's reads go to the primary for `causal_window` (the time-based guess
    /// some poolers use).
    CausalWindow,
    /// No read-after-write guarantee (lag thresholds still apply).
    None,
}

/// Whose writes a read must see.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CausalScope {
    /// The client connection's own writes (default).
    #[default]
    Connection,
    /// Any connection of the same user (through this proxy).
    User,
    /// Connections sharing a `pgroute.causal_token` (startup parameter or `SET pgroute.causal_token`),
    /// e.g. all connections serving one web request; connections without a token use their own writes.
    Token,
}

/// What a read does when no replica qualifies (lag, or not yet replayed the client's write).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LagFallback {
    /// Read from the primary (default).
    #[default]
    Primary,
    /// Wait up to `wait_timeout` for a replica to qualify, then read from the primary.
    Wait,
    /// Fail the read with SQLSTATE 55000 saying the replicas are lagging.
    Error,
}

/// Replication lag awareness and read-your-writes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsistencyConfig {
    /// Default `read-your-writes`. Reloadable (new clients).
    pub mode: ConsistencyMode,
    /// Default `connection`. Reloadable (new clients).
    pub scope: CausalScope,
    /// For `causal-window`: how long after a write reads stay on the primary. Default `1500ms`.
    #[serde(with = "humantime_serde")]
    pub causal_window: std::time::Duration,
    /// Default `primary`. Reloadable.
    pub fallback: LagFallback,
    /// For `fallback = wait`. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: std::time::Duration,
    /// A replica further behind than this leaves the read pool at once. Default `2s`; `0s` disables the
    /// time limit. A replica may override it (`backends.replicas[].max_lag`).
    #[serde(with = "humantime_serde")]
    pub max_replica_lag: std::time::Duration,
    /// The same limit in bytes of WAL not yet replayed. Default 0 (no byte limit).
    pub max_replica_lag_bytes: u64,
    /// How long a replica must stay under the limits before it takes reads again. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub hysteresis: std::time::Duration,
    /// How often the lag monitor measures every replica. Default `1s`. Restart to change.
    #[serde(with = "humantime_serde")]
    pub lag_check_interval: std::time::Duration,
    /// Measure lag at all. Default true; false treats every replica as current (no thresholds, no
    /// read-your-writes by WAL position). Restart to change.
    pub monitor: bool,
    /// User the lag monitor logs in as (its password comes from the auth file like any user's).
    /// Default `postgres`. Reloadable (when the monitor next connects).
    pub monitor_user: String,
    /// Database the lag monitor connects to. Default `postgres`.
    pub monitor_database: String,
    /// Users who accept staler reads, with how much lag they tolerate, e.g. `{ reporting = "60s" }`:
    /// their reads may use replicas up to that far behind (their own writes still count). Default none.
    pub user_max_lag:
        std::collections::BTreeMap<String, humantime_serde::Serde<std::time::Duration>>,
    /// Lag limits per database, stricter or looser than `max_replica_lag`, e.g. `{ billing = "200ms",
    /// analytics = "5m" }`: reads in that database use replicas measured within it (no hysteresis of
    /// their own). A user's own limit wins. Default none.
    pub database_max_lag:
        std::collections::BTreeMap<String, humantime_serde::Serde<std::time::Duration>>,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        use std::time::Duration;
        ConsistencyConfig {
            mode: ConsistencyMode::ReadYourWrites,
            scope: CausalScope::Connection,
            causal_window: Duration::from_millis(1500),
            fallback: LagFallback::Primary,
            wait_timeout: Duration::from_secs(1),
            max_replica_lag: Duration::from_secs(2),
            max_replica_lag_bytes: 0,
            hysteresis: Duration::from_secs(5),
            lag_check_interval: Duration::from_secs(1),
            monitor: true,
            monitor_user: "postgres".into(),
            monitor_database: "postgres".into(),
            user_max_lag: Default::default(),
            database_max_lag: Default::default(),
        }
    }
}

/// Server-side timeouts pgroute sets for each client session.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionTimeouts {
    /// PostgreSQL's `statement_timeout` for the client's statements: over it, SQLSTATE 57014.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<std::time::Duration>,
    /// PostgreSQL's `idle_in_transaction_session_timeout`: a client idle inside a transaction this long
    /// is ended (FATAL 25P03), so it cannot hold a pooled connection and its locks forever.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub idle_transaction_timeout: Option<std::time::Duration>,
}

impl SessionTimeouts {
    /// `self`, with what it leaves unset taken from `fallback`.
    pub fn or(self, fallback: SessionTimeouts) -> SessionTimeouts {
        SessionTimeouts {
            statement_timeout: self.statement_timeout.or(fallback.statement_timeout),
            idle_transaction_timeout: self
                .idle_transaction_timeout
                .or(fallback.idle_transaction_timeout),
        }
    }
}

/// Timeouts set on the server for each client, as if the client had sent the `SET` itself: replayed
/// with its other settings on whichever backend connection it lands on, so they never leak to another
/// client. A client's own `SET` (or startup option) wins.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// For every client. Default none (the server's own settings).
    #[serde(flatten)]
    pub default: SessionTimeouts,
    /// Per user, over the database's and the default, e.g.
    /// `{ reporting = { statement_timeout = "5m" } }`. Default none.
    pub users: std::collections::BTreeMap<String, SessionTimeouts>,
    /// Per database, over the default. Default none.
    pub databases: std::collections::BTreeMap<String, SessionTimeouts>,
}

impl TimeoutsConfig {
    /// What applies to `user` in `database`.
    pub fn for_session(&self, user: &str, database: &str) -> SessionTimeouts {
        let user = self.users.get(user).copied().unwrap_or_default();
        let db = self.databases.get(database).copied().unwrap_or_default();
        user.or(db).or(self.default)
    }
}

/// How client sessions share backend connections.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A backend connection per transaction (default): the pooling that makes a small pool serve many
    /// clients. Session state (SET) is tracked and replayed; state that cannot be replayed is refused.
    #[default]
    Transaction,
    /// A backend connection for the client's whole session, reset with `server_reset_query` on return.
    Session,
}

/// What a client does when every connection of its pool is busy.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QueueMode {
    /// Wait in line (FIFO) up to `queue_timeout` (default).
    #[default]
    Queue,
    /// Fail the transaction at once with SQLSTATE 53300 (after trying the reserve pool), for callers
    /// that would rather retry elsewhere or shed load than wait.
    FailFast,
}

/// Backend connection pools, one per (backend, database, user).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Default `transaction`. Applies to new clients on reload.
    pub mode: PoolMode,
    /// Most backend connections per pool. Default 20 (PgBouncer's `default_pool_size`). Reloadable.
    #[serde(alias = "default_pool_size")]
    pub pool_size: NonZeroU32,
    /// Backend connections kept open even when idle. Default 0. Reloadable.
    #[serde(alias = "min_pool_size")]
    pub min_idle: u32,
    /// How long a client waits for a backend connection before it gets SQLSTATE 53300. Default `30s`
    /// (PgBouncer's `query_wait_timeout` is 120 s; a sidecar's callers usually time out sooner). Also
    /// accepted under PgBouncer's name, `query_wait_timeout` (one setting, two names). Reloadable.
    #[serde(with = "humantime_serde", alias = "query_wait_timeout")]
    pub queue_timeout: Duration,
    /// Timeout for opening a backend connection, TCP and login together. Default `5s`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub server_connect_timeout: Duration,
    /// Idle backend connections older than this are closed (down to `min_idle`). Default `10m`.
    /// Reloadable.
    #[serde(with = "humantime_serde")]
    pub server_idle_timeout: Duration,
    /// Backend connections older than this are closed when next returned. Default `1h`. Reloadable.
    #[serde(with = "humantime_serde")]
    pub server_lifetime: Duration,
    /// Run on a backend connection when a session-mode client leaves. Default `DISCARD ALL`. Reloadable.
    pub server_reset_query: String,
    /// Named prepared statements kept per backend connection in transaction mode; the least recently
    /// used is closed past this. Default 200 (as PgBouncer's `max_prepared_statements`). Reloadable.
    pub max_prepared_statements: usize,
    /// Named prepared statements (protocol-level and SQL `PREPARE` together) one client may hold in
    /// transaction mode; one more is refused with SQLSTATE 53400, so a client that never closes its
    /// statements cannot grow the proxy without bound. Default 10000. Reloadable for new clients.
    pub max_client_prepared_statements: usize,
    /// Extra connections per pool beyond `pool_size`, for clients that have waited
    /// `reserve_pool_timeout`: a burst is absorbed after a short wait instead of queueing until
    /// `queue_timeout`, while steady load stays within `pool_size`. Default 0 (no reserve). PgBouncer's
    /// name and meaning. Reloadable.
    pub reserve_pool_size: u32,
    /// How long a client waits in a full pool before it may use a reserve connection. Default `5s`
    /// (PgBouncer's default); must be shorter than `queue_timeout` when `reserve_pool_size` is set.
    /// Reloadable.
    #[serde(with = "humantime_serde")]
    pub reserve_pool_timeout: Duration,
    /// `queue` (default): a client that finds the pool full waits (FIFO, up to `queue_timeout`).
    /// `fail-fast`: it takes a free reserve connection if there is one, and otherwise gets SQLSTATE
    /// 53300 at once and may retry. Reloadable.
    pub queue_mode: QueueMode,
    /// Most clients waiting per pool; one more gets SQLSTATE 53300 at once instead of queueing, so a
    /// backlog cannot grow past what `queue_timeout` could ever serve. Default 0 (unbounded).
    /// Reloadable.
    pub max_waiting: u32,
    /// Users whose clients are shed first when a pool's queue is long (`shed_queue_depth`), e.g. batch
    /// jobs and reporting. Default none. Applies to clients logging in after a reload.
    pub low_priority_users: Vec<String>,
    /// The same by the `application_name` a client sent at login. Default none.
    pub low_priority_application_names: Vec<String>,
    /// A low-priority client that would wait behind this many clients already waiting gets SQLSTATE
    /// 53300 at once, while other clients keep queueing. Default 1: a low-priority client waits only
    /// when nobody else does (and takes a free connection like anyone); 0 never sheds. Has no effect
    /// until a low-priority list names someone. Reloadable.
    pub shed_queue_depth: u32,
    /// TCP keepalives on backend sockets, so a backend host that vanished (failover by network cut,
    /// crash) is noticed on idle pool connections and on a client waiting for a result. Default as
    /// `server.tcp_keepalive`: on, `60s` idle, `10s` interval, 6 probes. Applies to new connections.
    pub server_tcp_keepalive: KeepaliveConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PoolMode::Transaction,
            pool_size: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            min_idle: 0,
            queue_timeout: Duration::from_secs(30),
            server_connect_timeout: Duration::from_secs(5),
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            server_reset_query: "DISCARD ALL".into(),
            max_prepared_statements: 200,
            max_client_prepared_statements: 10_000,
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_secs(5),
            queue_mode: QueueMode::Queue,
            max_waiting: 0,
            low_priority_users: Vec::new(),
            low_priority_application_names: Vec::new(),
            shed_queue_depth: 1,
            server_tcp_keepalive: KeepaliveConfig::default(),
        }
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    /// Anyone who can reach the listener may connect as any user (default: the sidecar listens on
    /// loopback, inside the pod's network namespace).
    #[default]
    Trust,
    /// MD5 challenge against the auth file's password or md5 hash.
    Md5,
    /// SCRAM-SHA-256 against the auth file's password or SCRAM verifier.
    #[value(name = "scram-sha-256")]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

/// Client authentication and the credentials used towards backends.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Default `trust`. Restart to change.
    #[serde(rename = "type", alias = "auth_type")]
    pub auth_type: AuthType,
    /// PgBouncer-format userlist (`"user" "password-or-hash"` per line). Plain passwords and MD5 hashes in
    /// it are also used to log in to backends. Default none. Re-read on SIGHUP.
    #[serde(alias = "auth_file")]
    pub file: Option<PathBuf>,
    /// User pgroute logs in as to run `query` for clients not in `file`; its own password (plain or MD5
    /// hash) comes from `file`, unless the backend trusts it. Default none: `auth_query` is off.
    /// Restart to change.
    #[serde(alias = "auth_user")]
    pub user: Option<String>,
    /// Looks up a client's secret: `$1` is the user name (bound as a parameter, never spliced into the
    /// SQL); the second column of the first row is the secret (SCRAM verifier or MD5 hash; NULL: may not
    /// log in). Default: PgBouncer's, which honours `VALID UNTIL` and `NOLOGIN` but needs `auth.user` to
    /// read `pg_authid` (a superuser, or a `SECURITY DEFINER` function in its place; see the README).
    /// Restart to change.
    #[serde(alias = "auth_query")]
    pub query: String,
    /// Database `query` runs in. Default none: the database the client asked for. Restart to change.
    #[serde(alias = "auth_dbname")]
    pub dbname: Option<String>,
    /// How long a secret found by `query` is reused before asking again; a failed login forgets it at
    /// once, so a changed password works from the next attempt. `0s` asks on every login. Default `1m`.
    /// Restart to change.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

/// PgBouncer's default `auth_query` (since 1.21).
pub const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname = $1 AND rolcanlogin";

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            auth_type: AuthType::Trust,
            file: None,
            user: None,
            query: DEFAULT_AUTH_QUERY.into(),
            dbname: None,
            cache_ttl: Duration::from_secs(60),
        }
    }
}

/// What the proxy does with a client's request for TLS (the `sslmode` it sent is the client's side).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// SSLRequest is answered `N`: plaintext only (default: a sidecar's clients share its pod).
    #[default]
    Disable,
    /// TLS when the client asks for it, plaintext otherwise.
    Allow,
    /// Same as `allow` on the server side (the client decides whether to ask); kept because PgBouncer
    /// users know the name.
    Prefer,
    /// Plaintext logins are refused with SQLSTATE 28000.
    Require,
}

/// TLS towards backends, with libpq's `sslmode` meanings.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plaintext only.
    Disable,
    /// TLS when the backend offers it, plaintext otherwise, certificate not checked (default, as
    /// PgBouncer's `server_tls_sslmode` and libpq's `sslmode`).
    #[default]
    Prefer,
    /// TLS or no connection; certificate not checked.
    Require,
    /// TLS with a certificate signed by `server_ca_file`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the backend's host.
    VerifyFull,
}

/// What `/metrics` reports (served when `server.metrics_listen` is set).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Query fingerprints (normalised query text) with a latency histogram of their own: the busiest
    /// ones, re-ranked at each scrape; the rest are `fingerprint="other"`. Bounds the series count
    /// (each histogram is 18 series). Default 50; 0 puts every query in `other`. Restart to change.
    pub top_fingerprints: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            top_fingerprints: 50,
        }
    }
}

/// Client-facing TLS, and TLS towards backends.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Default `disable`. Restart to change.
    pub mode: TlsMode,
    /// PEM certificate chain presented to clients. Required unless mode is `disable`. Reloaded on
    /// SIGHUP.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `cert_file`. Reloaded on SIGHUP.
    pub key_file: Option<PathBuf>,
    /// TLS towards backends. Default `prefer`. Restart to change.
    pub server_mode: ServerTlsMode,
    /// PEM CA certificates for `verify-ca` / `verify-full`. Required by those modes.
    pub server_ca_file: Option<PathBuf>,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text (no validation: flags may still fill required keys).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.message().to_owned(),
        })
    }

    /// Checks what serde cannot: required keys and relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| ConfigError::Invalid {
            key,
            problem: problem.to_owned(),
        };
        if self.metrics.top_fingerprints > 10_000 {
            return Err(invalid(
                "metrics.top_fingerprints",
                "at most 10000 (each is a histogram of 18 series)",
            ));
        }
        if let Some((key, problem)) = self.control.problem() {
            return Err(invalid(key, problem));
        }
        // In managed mode the control plane's first snapshot names the primary.
        if self.backends.primary.is_none() && !self.control.enabled() {
            return Err(invalid(
                "backends.primary",
                "required (set it in the file or with --primary HOST:PORT, or follow a control plane with --control-plane URL)",
            ));
        }
        if self.health.interval.is_zero() {
            return Err(invalid("health.interval", "must be more than 0s"));
        }
        if self.health.timeout.is_zero() {
            return Err(invalid("health.timeout", "must be more than 0s"));
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            return Err(invalid("tracing.sample_ratio", "must be between 0 and 1"));
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "tracing.otlp_endpoint",
                    "expected an http:// or https:// URL of an OTLP/gRPC collector",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.health.breaker_failure_rate) {
            return Err(invalid(
                "health.breaker_failure_rate",
                "must be between 0 and 1",
            ));
        }
        if self.admin.database.is_empty() {
            return Err(invalid("admin.database", "must not be empty"));
        }
        if self.pool.min_idle > self.pool.pool_size.get() {
            return Err(invalid("pool.min_idle", "must not exceed pool.pool_size"));
        }
        if self.server.max_client_conn == 0 {
            return Err(invalid("server.max_client_conn", "must be at least 1"));
        }
        if self.server.max_startup_packet < 8 {
            return Err(invalid("server.max_startup_packet", "must be at least 8"));
        }
        if self.server.max_message_size < 1024 {
            return Err(invalid("server.max_message_size", "must be at least 1024"));
        }
        if self.pool.max_prepared_statements < 2 {
            return Err(invalid(
                "pool.max_prepared_statements",
                "must be at least 2",
            ));
        }
        if self.pool.max_client_prepared_statements == 0 {
            return Err(invalid(
                "pool.max_client_prepared_statements",
                "must be at least 1",
            ));
        }
        if self.pool.queue_timeout.is_zero() {
            return Err(invalid("pool.queue_timeout", "must be positive"));
        }
        if self.pool.reserve_pool_size > 0
            && self.pool.queue_mode == QueueMode::Queue
            && self.pool.reserve_pool_timeout >= self.pool.queue_timeout
        {
            return Err(invalid(
                "pool.reserve_pool_timeout",
                "must be shorter than pool.queue_timeout, or no client ever waits long enough to use the reserve",
            ));
        }
        for (key, keepalive) in [
            ("server.tcp_keepalive", &self.server.tcp_keepalive),
            ("pool.server_tcp_keepalive", &self.pool.server_tcp_keepalive),
        ] {
            if let Some(problem) = keepalive.problem() {
                return Err(invalid(key, problem));
            }
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                "expected IP:PORT, e.g. 127.0.0.1:6432",
            ));
        }
        if let Some(m) = &self.server.metrics_listen {
            if m.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("server.metrics_listen", "expected IP:PORT"));
            }
        }
        if self.tls.mode != TlsMode::Disable {
            if self.tls.cert_file.is_none() {
                return Err(invalid(
                    "tls.cert_file",
                    "required when tls.mode is not disable",
                ));
            }
            if self.tls.key_file.is_none() {
                return Err(invalid(
                    "tls.key_file",
                    "required when tls.mode is not disable",
                ));
            }
        }
        if matches!(
            self.tls.server_mode,
            ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull
        ) && self.tls.server_ca_file.is_none()
        {
            return Err(invalid(
                "tls.server_ca_file",
                "required when tls.server_mode is verify-ca or verify-full",
            ));
        }
        if self.auth.auth_type != AuthType::Trust
            && self.auth.file.is_none()
            && self.auth.user.is_none()
        {
            return Err(invalid(
                "auth.file",
                "required when auth.type is md5 or scram-sha-256 (or set auth.user to look users up with auth.query)",
            ));
        }
        if let Err(e) = crate::classify::Classifier::new(&self.routing) {
            return Err(ConfigError::Invalid {
                key: "routing.rules",
                problem: e.to_string(),
            });
        }
        if self.consistency.lag_check_interval.is_zero() {
            return Err(invalid(
                "consistency.lag_check_interval",
                "must be positive",
            ));
        }
        if self.routing.cache_size == 0 {
            return Err(invalid("routing.cache_size", "must be at least 1"));
        }
        if self.auth.user.is_some() {
            if self.auth.auth_type == AuthType::Trust {
                return Err(invalid(
                    "auth.user",
                    "auth_query only runs to check passwords: set auth.type to md5 or scram-sha-256",
                ));
            }
            if !self.auth.query.contains("$1") {
                return Err(invalid(
                    "auth.query",
                    "must take the user name as the parameter $1",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
