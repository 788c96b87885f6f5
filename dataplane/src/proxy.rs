//! The proxy's shared state: configuration, pools, users, cancel keys and the client count.
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
    config: Arc<Config>,
    /// Where writes go; moves on failover.
    primary: crate::topology::Primary,
    /// Health and circuit breaker of every backend.
    backends: Arc<Backends>,
    pools: Pools,
    users: Users,
    classifier: crate::classify::Classifier,
    router: crate::router::Router,
    /// Lag and eligibility of each replica, in `backends.replicas` order.
    replicas: Vec<Arc<crate::topology::ReplicaState>>,
    /// Last write positions shared by connections (`consistency.scope` user or token).
    causal: crate::topology::CausalRegistry,
    cancels: Arc<CancelRegistry>,
    clients: Arc<AtomicU32>,
    /// Clients per user and per database, for the per-name limits.
    per_user: Arc<NamedCounts>,
    per_database: Arc<NamedCounts>,
    /// Swapped whole by [`Proxy::reload_tls`]; read once per SSLRequest.
    tls: std::sync::RwLock<Option<crate::tls::Acceptor>>,
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
            .map(|r| {
                Arc::new(crate::topology::ReplicaState::new(
                    r.address.clone(),
                    monitored,
                ))
            })
            .collect();
        let primary = config
            .backends
            .primary
            .clone()
            .ok_or(ConfigError::Invalid {
                key: "backends.primary",
                problem: "required".into(),
            })?;
        let tls = crate::tls::acceptor(&config.tls)?;
        let backends = Arc::new(Backends::new(
            config.health.clone(),
            std::iter::once(primary.clone())
                .chain(config.backends.replicas.iter().map(|r| r.address.clone())),
        ));
        let cancels = CancelRegistry::new(config.server.max_cancels_per_second);
        let pools = Pools::new(
            config.pool.clone(),
            config.server.max_message_size,
            users.keyring().clone(),
            crate::tls::backend(&config.tls)?,
            backends.clone(),
        );
        Ok(Arc::new(Proxy {
            config: Arc::new(config),
            primary: crate::topology::Primary::new(primary),
            backends,
            pools,
            users,
            classifier,
            router,
            replicas,
            causal: crate::topology::CausalRegistry::default(),
            cancels: Arc::new(cancels),
            clients: Arc::new(AtomicU32::new(0)),
            per_user: Arc::default(),
            per_database: Arc::default(),
            tls: std::sync::RwLock::new(tls),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The primary right now (it moves on failover).
    pub fn primary(&self) -> &crate::topology::Primary {
        &self.primary
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
        tracing::warn!(old = %old, new = %next, "failover followed: writes now go to the new primary; transactions that were running on the old one were ended");
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Decides where statements may run.
    pub fn classifier(&self) -> &crate::classify::Classifier {
        &self.classifier
    }

    /// Picks replicas and counts where transactions went.
    pub fn router(&self) -> &crate::router::Router {
        &self.router
    }

    /// Each replica's lag and eligibility, in `backends.replicas` order.
    pub fn replicas(&self) -> &[Arc<crate::topology::ReplicaState>] {
        &self.replicas
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
        let fresh = crate::tls::acceptor(&self.config.tls)?;
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

    /// Clients logged in right now.
    pub fn client_count(&self) -> u32 {
        self.clients.load(Ordering::Relaxed)
    }

    /// Admits one more client under `max_client_conn`, or refuses with SQLSTATE 53300.
    pub fn admit(&self) -> Result<ClientSlot, SessionError> {
        let max = self.config.server.max_client_conn;
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
        let server = &self.config.server;
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
