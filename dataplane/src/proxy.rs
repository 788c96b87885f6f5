//! The proxy's shared state: configuration, pools, users, cancel keys and the client count, and the
//! operations on it (pause, resume, reload, shutdown; see `ops`).
//!
//! Passed to every session as `Arc<Proxy>`; there is no global state, so tests run many proxies in one
//! process.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::auth::Users;
use crate::config::{BackendAddr, Config, ConfigError};
use crate::health::Backends;
use crate::limits::{NamedCounts, NamedSlot};
use crate::pool::Pools;
use crate::session::{CancelRegistry, SessionError};

#[derive(Debug)]
pub struct Proxy {
    /// Swapped whole by [`Proxy::reload`]; sessions read it at login and per use.
    config: arc_swap::ArcSwap<Config>,
    /// Where writes go; moves on failover.
    primary: crate::topology::Primary,
    /// Health and circuit breaker of every backend.
    backends: Arc<Backends>,
    /// Spans over OTLP (`None`: tracing off).
    tracing: Option<crate::trace::Tracing>,
    pools: Pools,
    users: Users,
    /// Rebuilt and swapped by [`Proxy::reload`] when `[routing]` changes; read once per batch.
    classifier: arc_swap::ArcSwap<crate::classify::Classifier>,
    router: crate::router::Router,
    /// Lag and eligibility of each replica, in `backends.replicas` order; swapped whole when the
    /// replicas change (RELOAD, the control plane).
    replicas: arc_swap::ArcSwap<Vec<Arc<crate::topology::ReplicaState>>>,
    /// Last write positions shared by connections (`consistency.scope` user or token).
    causal: crate::topology::CausalRegistry,
    cancels: Arc<CancelRegistry>,
    clients: Arc<AtomicU32>,
    /// Clients per user and per database, for the per-name limits.
    per_user: Arc<NamedCounts>,
    per_database: Arc<NamedCounts>,
    /// Swapped whole by [`Proxy::reload_tls`]; read once per SSLRequest.
    tls: std::sync::RwLock<Option<crate::tls::Acceptor>>,
    /// PAUSE/RESUME and shutdown: what each new transaction passes.
    gate: crate::ops::Gate,
    /// Logged-in clients, for the admin console (`SHOW CLIENTS`, `SHOW POOLS`).
    registry: Arc<crate::clients::Clients>,
    /// What RELOAD re-reads (set by the binary; none in-process).
    config_source: std::sync::OnceLock<crate::ops::ConfigSource>,
    /// Set by the admin console's SHUTDOWN; whoever runs the proxy (the binary) waits on it.
    shutdown_request: tokio::sync::watch::Sender<bool>,
    /// Query-path metrics; `None` without `server.metrics_listen` (the hooks then cost a branch).
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Managed mode: the control-plane link's state (see [`Proxy::control_status`]).
    control: crate::control::ControlStatus,
}

/// Why a backend cannot be drained.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("{0} is the primary: move the primary first (a switchover), then drain it")]
    Primary(BackendAddr),
    #[error("{0} is not a configured replica")]
    Unknown(BackendAddr),
}

/// Errors building a proxy from configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] crate::auth::UserListError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Tracing(#[from] crate::trace::TraceError),
}

impl Proxy {
    /// Builds the shared state; the auth file is read here so a bad one fails at start.
    pub fn new(config: Config) -> Result<Arc<Proxy>, StartError> {
        config.validate()?;
        let users = Users::new(&config.auth)?;
        let classifier = crate::classify::Classifier::new(&config.routing).map_err(|e| {
            ConfigError::Invalid {
                key: "routing.rules",
                problem: e.to_string(),
            }
        })?;
        let router = crate::router::Router::new(config.routing.load_balancing);
        let monitored = config.consistency.monitor;
        let replicas = config
            .backends
            .replicas
            .iter()
            .map(|r| Arc::new(crate::topology::ReplicaState::configured(r, monitored)))
            .collect::<Vec<_>>();
        // Managed mode may start without a primary: a placeholder stands in (unavailable, never
        // dialled: logins wait for the first snapshot) and is not health-checked.
        let awaiting_control_plane = config.control.enabled() && config.backends.primary.is_none();
        let primary = match config.backends.primary.clone() {
            Some(p) => p,
            None if awaiting_control_plane => crate::control::placeholder_primary(),
            None => {
                return Err(ConfigError::Invalid {
                    key: "backends.primary",
                    problem: "required".into(),
                }
                .into())
            }
        };
        let tls = crate::tls::acceptor(&config.tls)?;
        let tracing = crate::trace::Tracing::start(&config.tracing)?;
        let backends = Arc::new(Backends::new(
            config.health.clone(),
            config
                .backends
                .primary
                .iter()
                .cloned()
                .chain(config.backends.replicas.iter().map(|r| r.address.clone())),
        ));
        let cancels = CancelRegistry::new(config.server.max_cancels_per_second);
        let metrics = config
            .server
            .metrics_listen
            .is_some()
            .then(|| crate::metrics::Metrics::new(config.metrics.top_fingerprints as usize));
        let pools = Pools::new(
            config.pool.clone(),
            config.server.max_message_size,
            users.keyring().clone(),
            crate::tls::backend(&config.tls)?,
            backends.clone(),
        );
        let control =
            crate::control::ControlStatus::new(config.control.enabled(), awaiting_control_plane);
        let primary = crate::topology::Primary::new(primary);
        if awaiting_control_plane {
            primary.set_available(false);
        }
        Ok(Arc::new(Proxy {
            config: arc_swap::ArcSwap::from_pointee(config),
            primary,
            backends,
            tracing,
            pools,
            users,
            classifier: arc_swap::ArcSwap::from_pointee(classifier),
            router,
            replicas: arc_swap::ArcSwap::from_pointee(replicas),
            causal: crate::topology::CausalRegistry::default(),
            cancels: Arc::new(cancels),
            clients: Arc::new(AtomicU32::new(0)),
            per_user: Arc::default(),
            per_database: Arc::default(),
            tls: std::sync::RwLock::new(tls),
            gate: crate::ops::Gate::default(),
            registry: Arc::default(),
            config_source: std::sync::OnceLock::new(),
            shutdown_request: tokio::sync::watch::Sender::new(false),
            metrics,
            control,
        }))
    }

    /// The configuration in effect (a snapshot: a reload swaps in a new one).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Query-path metrics, when `server.metrics_listen` is set.
    pub fn metrics(&self) -> Option<&Arc<crate::metrics::Metrics>> {
        self.metrics.as_ref()
    }

    /// The primary right now (it moves on failover).
    pub fn primary(&self) -> &crate::topology::Primary {
        &self.primary
    }

    /// The OTLP exporter, when `tracing.otlp_endpoint` is set.
    pub fn tracing(&self) -> Option<&crate::trace::Tracing> {
        self.tracing.as_ref()
    }

    /// Managed mode: whether the control plane is connected, the snapshot version in force and the
    /// last error (`ControlStatus::state`); for metrics and `/readyz`. Standalone: `managed` is false.
    pub fn control_status(&self) -> &crate::control::ControlStatus {
        &self.control
    }

    /// Health and circuit breaker of every backend.
    pub fn backends(&self) -> &Arc<Backends> {
        &self.backends
    }

    /// Makes `next` the primary: transactions running on the old one are ended (never replayed: the
    /// client gets an error and decides), its connections are closed, and sessions move to `next`
    /// before their next transaction. Health checks call it in standalone mode; the control plane
    /// in managed mode.
    pub fn follow_primary(&self, next: BackendAddr) {
        let old = self.primary.address();
        if !self.primary.set(next.clone()) {
            self.primary.set_available(true);
            return;
        }
        self.backends.get(&old).end_transactions();
        self.pools.retire(&old);
        self.primary.set_available(true);
        tracing::warn!(event = "failover_followed", old = %old, new = %next, "failover followed: writes now go to the new primary; transactions that were running on the old one were ended");
    }

    /// Applies a new `[backends]` (RELOAD; the control plane later): a new primary address takes new
    /// transactions while those running on the old one finish (a planned move, unlike a failover);
    /// replicas added join the read pool once measured, removed ones take no new reads and their
    /// connections close as they come back. Sessions switch before their next transaction.
    pub fn set_backends(&self, backends: &crate::config::BackendsConfig) {
        let monitored = self.config().consistency.monitor;
        let old = self.replicas.load_full();
        let replicas: Vec<_> = backends
            .replicas
            .iter()
            .map(|r| {
                old.iter()
                    .find(|s| {
                        s.address == r.address && s.weight == r.weight && s.max_lag == r.max_lag
                    })
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(crate::topology::ReplicaState::configured(r, monitored))
                    })
            })
            .collect();
        let primary = backends
            .primary
            .clone()
            .unwrap_or_else(|| self.primary.address());
        let wanted: Vec<&BackendAddr> = std::iter::once(&primary)
            .chain(backends.replicas.iter().map(|r| &r.address))
            .collect();
        for addr in &wanted {
            self.backends.get(addr);
        }
        let old_primary = self.primary.address();
        for gone in old
            .iter()
            .map(|s| &s.address)
            .chain(std::iter::once(&old_primary))
            .filter(|a| !wanted.contains(a))
        {
            self.backends.forget(gone);
            self.pools.retire(gone);
        }
        self.replicas.store(Arc::new(replicas));
        if self.primary.set(primary.clone()) {
            tracing::info!(event = "primary_moved", old = %old_primary, new = %primary, "primary moved by configuration");
        } else {
            self.primary.replicas_changed();
        }
    }

    /// DRAIN: `backend` takes no new transactions; those running finish, and its connections close
    /// as they come back. Only replicas: the primary is moved with a switchover, not drained.
    pub fn drain(&self, backend: &BackendAddr) -> Result<(), DrainError> {
        if *backend == self.primary.address() {
            return Err(DrainError::Primary(backend.clone()));
        }
        if !self.replicas().iter().any(|r| r.address == *backend) {
            return Err(DrainError::Unknown(backend.clone()));
        }
        let health = self.backends.get(backend);
        if health.set_drained(true) {
            self.pools.drop_idle(backend);
            tracing::info!(%backend, "backend drained: no new transactions go to it");
        }
        Ok(())
    }

    /// Ends a DRAIN: the backend takes reads again.
    pub fn undrain(&self, backend: &BackendAddr) -> Result<(), DrainError> {
        if !self.replicas().iter().any(|r| r.address == *backend) {
            return Err(DrainError::Unknown(backend.clone()));
        }
        if self.backends.get(backend).set_drained(false) {
            tracing::info!(%backend, "backend no longer drained");
        }
        Ok(())
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Decides where statements may run.
    pub fn classifier(&self) -> Arc<crate::classify::Classifier> {
        self.classifier.load_full()
    }

    /// Picks replicas and counts where transactions went.
    pub fn router(&self) -> &crate::router::Router {
        &self.router
    }

    /// Each replica's lag and eligibility, in `backends.replicas` order (a snapshot).
    pub fn replicas(&self) -> Arc<Vec<Arc<crate::topology::ReplicaState>>> {
        self.replicas.load_full()
    }

    /// Write positions shared between connections.
    pub fn causal(&self) -> &crate::topology::CausalRegistry {
        &self.causal
    }

    /// Client secrets (auth file, `auth_query`) and backend logins.
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// The TLS acceptor, when client-facing TLS is enabled.
    pub fn tls(&self) -> Option<crate::tls::Acceptor> {
        let tls = self
            .tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tls.clone()
    }

    /// Re-reads the TLS certificate and key (SIGHUP). Connections already using TLS keep their
    /// sessions; new handshakes use the new files. On error the old certificate stays in use.
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsError> {
        let fresh = crate::tls::acceptor(&self.config().tls)?;
        let mut tls = self
            .tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *tls = fresh;
        Ok(())
    }

    /// Re-reads the auth file (SIGHUP). Logged-in clients are unaffected; on error the old file stays
    /// in use.
    pub fn reload_users(&self) -> Result<(), crate::auth::UserListError> {
        self.users.reload()
    }

    pub fn cancels(&self) -> &Arc<CancelRegistry> {
        &self.cancels
    }

    /// Every logged-in client (admin console sessions included), with what it is doing.
    pub fn clients(&self) -> &Arc<crate::clients::Clients> {
        &self.registry
    }

    /// Clients admitted right now (logging in or logged in).
    pub fn client_count(&self) -> u32 {
        self.clients.load(Ordering::Relaxed)
    }

    /// Admits one more client under `max_client_conn`, or refuses with SQLSTATE 53300.
    pub fn admit(&self) -> Result<ClientSlot, SessionError> {
        let max = self.config().server.max_client_conn;
        let admitted = self
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Ok(ClientSlot {
                clients: self.clients.clone(),
            })
        } else {
            Err(SessionError::TooManyClients { max })
        }
    }
}

impl Proxy {
    /// Takes the client's places under the per-user and per-database limits (after authentication,
    /// so the user name is proven), or refuses with SQLSTATE 53300 naming the limit.
    pub fn admit_login(&self, user: &str, database: &str) -> Result<LoginSlots, SessionError> {
        let config = self.config();
        let server = &config.server;
        let user_slot = match server.max_user_client_connections {
            0 => None,
            max => Some(self.per_user.admit(user, max).ok_or_else(|| {
                SessionError::TooManyForName {
                    what: "user",
                    name: user.to_owned(),
                    key: "max_user_client_connections",
                    max,
                }
            })?),
        };
        let db_slot = match server.max_db_client_connections {
            0 => None,
            max => Some(self.per_database.admit(database, max).ok_or_else(|| {
                SessionError::TooManyForName {
                    what: "database",
                    name: database.to_owned(),
                    key: "max_db_client_connections",
                    max,
                }
            })?),
        };
        Ok(LoginSlots {
            _user: user_slot,
            _database: db_slot,
        })
    }
}

/// A client's places under the per-user and per-database limits.
#[derive(Debug)]
pub struct LoginSlots {
    _user: Option<NamedSlot>,
    _database: Option<NamedSlot>,
}

/// One admitted client; frees its place on drop.
#[derive(Debug)]
pub struct ClientSlot {
    clients: Arc<AtomicU32>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Operations: PAUSE/RESUME, RELOAD and the start of shutdown. The signals in `main.rs` and the admin
/// console call these.
impl Proxy {
    /// The transaction gate (pause, resume, shutdown phase, transactions in flight).
    pub fn gate(&self) -> &crate::ops::Gate {
        &self.gate
    }

    /// PAUSE: new transactions wait for [`Proxy::resume`] (no timeout, as in PgBouncer: clients still
    /// obey their own timeouts); returns once no transaction is in flight. In session mode a client's
    /// whole session is one transaction here.
    pub async fn pause(&self) {
        tracing::info!("pausing: new transactions wait");
        self.gate.pause().await;
        tracing::info!("paused: no transaction in flight");
    }

    /// RESUME: waiting transactions go ahead. `false` if the proxy was not paused.
    pub fn resume(&self) -> bool {
        let resumed = self.gate.resume();
        if resumed {
            tracing::info!("resumed");
        }
        resumed
    }

    /// Starts shutdown: new transactions and clients idle between transactions are told 57P01 and
    /// closed; transactions in flight finish. Stopping the listener and the deadline are
    /// [`crate::Running::shutdown`]'s.
    pub fn begin_shutdown(&self) {
        self.gate.shut_down();
    }

    /// Where RELOAD re-reads the configuration from (the binary: its file and flags). Set once; later
    /// calls are ignored.
    pub fn set_config_source(&self, source: crate::ops::ConfigSource) {
        let _ = self.config_source.set(source);
    }

    /// RELOAD from the configuration source (the admin console's RELOAD, SIGHUP in the binary).
    pub fn reload_from_source(&self) -> Result<crate::ops::ReloadReport, crate::ops::ReloadError> {
        use crate::ops::ReloadError;
        let source = self.config_source.get().ok_or(ReloadError::NoSource)?;
        let config = source.load().map_err(ReloadError::Invalid)?;
        self.reload(config)
    }

    /// Asks whoever runs the proxy to shut it down gracefully (the admin console's SHUTDOWN). The
    /// binary waits on [`Proxy::shutdown_requested`] next to SIGTERM and then runs
    /// [`crate::Running::shutdown`].
    pub fn request_shutdown(&self) {
        tracing::info!("shutdown requested from the admin console");
        self.shutdown_request.send_replace(true);
    }

    /// Completes once [`Proxy::request_shutdown`] was called (at once if it already was).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown_request.subscribe();
        let _ = rx.wait_for(|requested| *requested).await;
    }

    /// RELOAD: applies `new` without dropping clients, or rejects it as a whole (nothing changes). Keys
    /// that need a restart keep their old value and are listed in the report; the auth file and the
    /// TLS certificate are re-read too. Pool sizes and timings change on existing pools, routing for
    /// the next batch, everything read at login (timeouts, routing defaults, limits) for new logins.
    pub fn reload(&self, new: Config) -> Result<crate::ops::ReloadReport, crate::ops::ReloadError> {
        use crate::ops::ReloadError;
        new.validate().map_err(ReloadError::Invalid)?;
        let old = self.config();
        let (config, report) = crate::ops::plan(&old, new)?;
        // Everything that can fail comes first, so a failure leaves the proxy as it was.
        let classifier = match config.routing != old.routing {
            true => Some(
                crate::classify::Classifier::new(&config.routing).map_err(|e| {
                    ReloadError::Apply {
                        key: "routing.rules",
                        source: Box::new(e),
                    }
                })?,
            ),
            false => None,
        };
        let tls = crate::tls::acceptor(&config.tls).map_err(|e| ReloadError::Apply {
            key: "tls",
            source: Box::new(e),
        })?;
        self.users.reload().map_err(|e| ReloadError::Apply {
            key: "auth.file",
            source: Box::new(e),
        })?;
        if let Some(c) = classifier {
            self.classifier.store(Arc::new(c));
        }
        if config.pool != old.pool {
            self.pools.reconfigure(config.pool.clone());
        }
        let backends_changed = config.backends != old.backends;
        *self
            .tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tls;
        let backends = backends_changed.then(|| config.backends.clone());
        self.config.store(Arc::new(config));
        if let Some(backends) = backends {
            self.set_backends(&backends);
        }
        Ok(report)
    }
}
