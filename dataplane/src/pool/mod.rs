//! Backend connection pools, one per (backend, database, user).
//!
//! The size limit is a FIFO `tokio::sync::Semaphore`, so waiting clients are served in arrival order and
//! a queue timeout is a plain `tokio::time::timeout`. The reserve pool is a second semaphore that a
//! waiter also races once it has waited `reserve_pool_timeout`. Whether a client may wait at all
//! (`queue_mode`, `max_waiting`, shedding of low-priority clients) is decided by [`admit`], a pure
//! function of the configuration and the queue length. Idle connections sit in a LIFO stack behind a
//! synchronous mutex that is never held across an `.await` (the hot path takes it twice per transaction,
//! for a push and a pop). A checked-out connection is a [`PooledConn`] guard: returning it is explicit,
//! and dropping it without returning closes the connection, because a connection whose protocol state is
//! unknown must never reach another client.

mod admit;
mod connect;
mod maintain;
mod query;
mod resize;
mod server;
mod servers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Keyring;
use crate::config::{BackendAddr, PoolConfig, QueueMode};
use crate::health::{BackendHealth, Backends};

pub use crate::stream::ServerStream;
pub use admit::{admit, Priority, Rejection};
pub(crate) use connect::read_frame;
pub use connect::{connect, ConnectError, ConnectOptions};
pub use query::{QueryError, Row};
pub use server::{BackendKey, ServerConn};
pub use servers::{ServerInfo, ServerList};

/// ParameterStatus values a backend reported at login, shared by every client of the pool.
pub type ServerParams = Arc<Vec<(String, String)>>;

/// Which pool: the backend, and the database and user the connections are logged in as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub backend: BackendAddr,
    pub database: String,
    pub user: String,
}

/// Why a connection could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no backend connection became free within queue_timeout ({waited:?}); all {size} connections of the pool for {key} are busy")]
    QueueTimeout {
        key: String,
        size: u32,
        waited: Duration,
    },
    #[error("cannot connect to backend {backend}")]
    Connect {
        backend: BackendAddr,
        #[source]
        source: ConnectError,
    },
    #[error("pool for {0} is closed")]
    Closed(String),
    #[error("backend {backend} is failing (circuit breaker open after {failures} failed attempts); not trying again for {retry_in:?}")]
    BreakerOpen {
        backend: BackendAddr,
        failures: u32,
        retry_in: Duration,
    },
    #[error("pgroute: no backend connection for {key}: {why}; try again later")]
    Rejected { key: String, why: Rejection },
}

/// Counters read by the admin console, metrics and `pgroute demo`. Plain atomics: bumped on the hot path
/// without locks.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections open (idle plus checked out).
    pub open: AtomicU32,
    /// Clients waiting for a connection right now.
    pub waiting: AtomicU32,
    /// Connections checked out right now.
    pub active: AtomicU32,
    /// Checkouts served (transactions in transaction mode, sessions in session mode).
    pub checkouts: AtomicU64,
    /// Queries forwarded (simple Query messages and extended-protocol Syncs).
    pub queries: AtomicU64,
    /// Connections opened since start.
    pub connects: AtomicU64,
    /// Connections being opened right now (counted so `min_idle` upkeep and clients do not both open
    /// the same missing connection).
    pub connecting: AtomicU32,
    /// Reserve connections (beyond `pool_size`) checked out right now.
    pub reserve_active: AtomicU32,
    /// Checkouts served by a reserve connection since start.
    pub reserve_checkouts: AtomicU64,
    /// Clients turned away at once by `queue_mode = fail-fast` or `max_waiting`, since start.
    pub rejected: AtomicU64,
    /// Low-priority clients shed (`shed_queue_depth`), since start.
    pub shed: AtomicU64,
    /// Time clients spent queued for a connection, in microseconds, since start (`SHOW STATS`
    /// `total_wait_time`); a checkout that finds a free connection adds nothing.
    pub wait_us: AtomicU64,
}

/// One pool of backend connections.
#[derive(Debug)]
pub struct Pool {
    key: PoolKey,
    /// Swapped whole by [`Pool::reconfigure`] (RELOAD); read at each use.
    config: arc_swap::ArcSwap<PoolConfig>,
    connect: ConnectOptions,
    permits: Arc<Semaphore>,
    /// `reserve_pool_size` permits, for clients that waited `reserve_pool_timeout`.
    reserve: Arc<Semaphore>,
    /// Boxed so checkout and checkin move a pointer, not the whole connection state.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<ServerConn>>>,
    stats: PoolStats,
    /// ParameterStatus values of the first connection, replayed to clients at login so logging in does not
    /// need a backend connection once the pool has one.
    server_params: Mutex<Option<ServerParams>>,
    /// Backend statement names that some connection prepared successfully, shared by the pools of one
    /// (database, user) on every backend (primary and replicas have the same schema): a client Parse of
    /// one of these can be answered without a backend (see `session::prepared`).
    valid_statements: Arc<ValidStatements>,
    /// The backend's health and circuit breaker, shared with its other pools and the router.
    health: Arc<BackendHealth>,
    /// Set when the backend stopped being what this pool was for (the primary moved away): connections
    /// go back to no one and [`Pools::get`] makes a new pool if the backend is needed again.
    closed: AtomicBool,
    /// Permits still to be taken out of circulation after the pool shrank.
    resize: resize::Resize,
    /// Every open connection of this pool, for `SHOW SERVERS`.
    servers: Arc<ServerList>,
}

/// Statement names known to prepare, per (database, user).
type ValidStatements = Mutex<std::collections::HashSet<String>>;

/// Most statement names remembered per pool as known to prepare; the set is cleared when full (a
/// forgotten statement only costs a round trip the next time).
const MAX_VALID_STATEMENTS: usize = 10_000;

impl Pool {
    fn new(
        key: PoolKey,
        config: PoolConfig,
        connect: ConnectOptions,
        valid_statements: Arc<ValidStatements>,
        health: Arc<BackendHealth>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            permits: Arc::new(Semaphore::new(config.pool_size.get() as usize)),
            reserve: Arc::new(Semaphore::new(config.reserve_pool_size as usize)),
            key,
            config: arc_swap::ArcSwap::from_pointee(config),
            connect,
            idle: Mutex::new(Vec::new()),
            stats: PoolStats::default(),
            server_params: Mutex::new(None),
            valid_statements,
            health,
            closed: AtomicBool::new(false),
            resize: resize::Resize::default(),
            servers: Arc::default(),
        })
    }

    /// The backend's health, breaker and end-of-transactions signal.
    pub fn health(&self) -> &Arc<BackendHealth> {
        &self.health
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the idle connections (checked-out ones close when returned, if the pool is closed).
    fn drop_idle(&self) {
        let dropped = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle).len(),
            Err(_) => 0,
        };
        self.stats.open.fetch_sub(dropped as u32, Ordering::Relaxed);
    }

    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// The pool's open connections (`SHOW SERVERS`).
    pub fn servers(&self) -> &ServerList {
        &self.servers
    }

    pub fn size(&self) -> u32 {
        self.config.load().pool_size.get()
    }

    /// Idle connections right now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Server ParameterStatus values, if a connection has been made.
    pub fn server_params(&self) -> Option<ServerParams> {
        self.server_params.lock().ok().and_then(|p| p.clone())
    }

    /// Whether a statement with this backend name prepared successfully on this pool before.
    pub fn statement_known_valid(&self, server_name: &str) -> bool {
        self.valid_statements
            .lock()
            .map(|s| s.contains(server_name))
            .unwrap_or(false)
    }

    /// Records statements that prepared successfully.
    pub fn record_valid_statements(&self, names: impl Iterator<Item = String>) {
        if let Ok(mut set) = self.valid_statements.lock() {
            for n in names {
                if set.len() >= MAX_VALID_STATEMENTS {
                    set.clear();
                }
                set.insert(n);
            }
        }
    }

    /// Waits (FIFO, up to `queue_timeout`) for a slot, then hands out an idle connection or opens one.
    pub async fn checkout(self: &Arc<Self>) -> Result<PooledConn, PoolError> {
        self.checkout_as(Priority::Normal).await
    }

    /// [`Pool::checkout`] for a client of this priority: with every connection busy, it may be
    /// rejected at once (`queue_mode`, `max_waiting`, `shed_queue_depth`) instead of queueing.
    pub async fn checkout_as(
        self: &Arc<Self>,
        priority: Priority,
    ) -> Result<PooledConn, PoolError> {
        let (permit, reserve) = match self.permits.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => {
                let queued = Instant::now();
                let waited = self.wait_for_permit(priority).await;
                let us = queued.elapsed().as_micros() as u64;
                self.stats.wait_us.fetch_add(us, Ordering::Relaxed);
                waited?
            }
        };
        // Counted before anything can fail, so the guard's drop always has something to take back.
        if reserve {
            self.stats.reserve_active.fetch_add(1, Ordering::Relaxed);
            self.stats.reserve_checkouts.fetch_add(1, Ordering::Relaxed);
        }
        let mut guard = PooledConn {
            conn: None,
            pool: self.clone(),
            reserve,
            _permit: permit,
        };
        let conn = match self.pop_idle() {
            Some(conn) => conn,
            None => self.open().await?,
        };
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        conn.set_active(true);
        guard.conn = Some(conn);
        Ok(guard)
    }

    /// A permit for a client that found the pool full (`true`: from the reserve), or why it may not
    /// wait for one.
    async fn wait_for_permit(
        self: &Arc<Self>,
        priority: Priority,
    ) -> Result<(OwnedSemaphorePermit, bool), PoolError> {
        let rejected = |why| {
            match why {
                Rejection::Shed { .. } => self.stats.shed.fetch_add(1, Ordering::Relaxed),
                _ => self.stats.rejected.fetch_add(1, Ordering::Relaxed),
            };
            PoolError::Rejected {
                key: self.describe(),
                why,
            }
        };
        if self.config.load().queue_mode == QueueMode::FailFast {
            return match self.reserve.clone().try_acquire_owned() {
                Ok(p) => Ok((p, true)),
                Err(_) => Err(rejected(Rejection::FailFast {
                    size: self.size(),
                    reserve: self.config.load().reserve_pool_size,
                })),
            };
        }
        // Joining the queue is one atomic step, so concurrent arrivals cannot overshoot max_waiting.
        let mut refused = None;
        let joined = self
            .stats
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                match admit(&self.config.load(), n, priority) {
                    Ok(()) => Some(n + 1),
                    Err(why) => {
                        refused = Some(why);
                        None
                    }
                }
            });
        if let (Err(_), Some(why)) = (joined, refused) {
            return Err(rejected(why));
        }
        let _in_queue = InQueue(&self.stats.waiting);
        let waited =
            tokio::time::timeout(self.config.load().queue_timeout, self.race_for_permit()).await;
        match waited {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(PoolError::Closed(self.describe())),
            Err(_) => Err(PoolError::QueueTimeout {
                key: self.describe(),
                size: self.size(),
                waited: self.config.load().queue_timeout,
            }),
        }
    }

    /// The first free permit: a regular one in FIFO order, or, once this client has waited
    /// `reserve_pool_timeout`, a reserve one, whichever comes first.
    async fn race_for_permit(
        &self,
    ) -> Result<(OwnedSemaphorePermit, bool), tokio::sync::AcquireError> {
        let regular = self.permits.clone().acquire_owned();
        if self.config.load().reserve_pool_size == 0 {
            return regular.await.map(|p| (p, false));
        }
        let reserve = async {
            tokio::time::sleep(self.config.load().reserve_pool_timeout).await;
            self.reserve.clone().acquire_owned().await
        };
        tokio::select! {
            biased;
            p = regular => p.map(|p| (p, false)),
            p = reserve => p.map(|p| (p, true)),
        }
    }

    /// Pops the most recently used idle connection that is still usable; stale ones are closed.
    fn pop_idle(&self) -> Option<Box<ServerConn>> {
        loop {
            let conn = self.idle.lock().ok()?.pop()?;
            if conn.expired(self.config.load().server_lifetime) || !conn.looks_alive() {
                self.stats.open.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            return Some(conn);
        }
    }

    async fn open(&self) -> Result<Box<ServerConn>, PoolError> {
        if self.is_closed() {
            return Err(PoolError::Closed(self.describe()));
        }
        self.health
            .before_connect()
            .await
            .map_err(|refused| PoolError::BreakerOpen {
                backend: self.key.backend.clone(),
                failures: refused.failures,
                retry_in: refused.retry_in,
            })?;
        self.stats.connecting.fetch_add(1, Ordering::Relaxed);
        let conn = Box::pin(connect::connect(
            &self.key,
            &self.connect,
            self.config.load().server_connect_timeout,
        ))
        .await;
        self.stats.connecting.fetch_sub(1, Ordering::Relaxed);
        match &conn {
            Ok(_) => self.health.connected(),
            Err(e) if e.backend_unavailable() => self.health.connect_failed(),
            // The server answered: healthy, whatever it thought of this login.
            Err(_) => self.health.connected(),
        }
        let mut conn = conn.map_err(|source| PoolError::Connect {
            backend: self.key.backend.clone(),
            source,
        })?;
        conn.list_in(&self.servers);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut p) = self.server_params.lock() {
            if p.is_none() {
                *p = Some(Arc::new(conn.params().to_vec()));
            }
        }
        Ok(Box::new(conn))
    }

    fn checkin(&self, mut conn: Box<ServerConn>) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        if conn.expired(self.config.load().server_lifetime)
            || self.is_closed()
            || !self.health.is_up()
            || self.health.is_drained()
        {
            self.stats.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        conn.touch(Instant::now());
        conn.set_active(false);
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(_) => {
                self.stats.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn discard(&self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn describe(&self) -> String {
        format!(
            "{} (database {}, user {})",
            self.key.backend, self.key.database, self.key.user
        )
    }
}

/// A client's place in the `waiting` count, given back when its wait ends, also when the wait is
/// dropped because the client went away: a leaked count would shrink `max_waiting` for good.
struct InQueue<'a>(&'a AtomicU32);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A checked-out backend connection. [`PooledConn::release`] returns it to the pool; dropping it closes
/// it (the safe default for a connection in an unknown state).
#[derive(Debug)]
pub struct PooledConn {
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
    /// Holds a reserve permit (counted in `reserve_active` until dropped).
    reserve: bool,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    pub fn conn(&mut self) -> &mut ServerConn {
        // Invariant: `conn` is only taken by `release`, which consumes the guard.
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Returns the connection for reuse. The caller asserts it is idle and its session state is known.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.discard();
        }
        if self.reserve {
            self.pool
                .stats
                .reserve_active
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// All pools, created on first use.
#[derive(Debug)]
pub struct Pools {
    /// Settings for pools created from now on; swapped by [`Pools::reconfigure`].
    config: arc_swap::ArcSwap<PoolConfig>,
    keyring: Arc<Keyring>,
    max_message_size: usize,
    tls: Option<crate::tls::BackendTls>,
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    valid: Mutex<HashMap<(String, String), Arc<ValidStatements>>>,
    backends: Arc<Backends>,
}

impl Pools {
    /// `keyring` holds what pools log in to backends with, per user.
    pub fn new(
        config: PoolConfig,
        max_message_size: usize,
        keyring: Arc<Keyring>,
        tls: Option<crate::tls::BackendTls>,
        backends: Arc<Backends>,
    ) -> Pools {
        Pools {
            config: arc_swap::ArcSwap::from_pointee(config),
            keyring,
            tls,
            max_message_size,
            pools: Mutex::new(HashMap::new()),
            valid: Mutex::new(HashMap::new()),
            backends,
        }
    }

    /// How pools log in: used for every pool, and for connections the proxy makes outside any pool (the
    /// lag monitor).
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            keyring: self.keyring.clone(),
            max_message_size: self.max_message_size,
            tls: self.tls.clone(),
            keepalive: self.config.load().server_tcp_keepalive,
            application_name: None,
        }
    }

    /// Connect timeout of every pool.
    pub fn connect_timeout(&self) -> Duration {
        self.config.load().server_connect_timeout
    }

    /// The pool for `key`, created (with its maintenance task) on first use.
    pub fn get(&self, key: &PoolKey) -> Arc<Pool> {
        let mut pools = match self.pools.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(p) = pools.get(key).filter(|p| !p.is_closed()) {
            return p.clone();
        }
        let connect = self.connect_options();
        let valid = {
            let mut valid = self
                .valid
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            valid
                .entry((key.database.clone(), key.user.clone()))
                .or_default()
                .clone()
        };
        let health = self.backends.get(&key.backend);
        let pool = Pool::new(
            key.clone(),
            (**self.config.load()).clone(),
            connect,
            valid,
            health,
        );
        maintain::spawn(Arc::downgrade(&pool));
        pools.insert(key.clone(), pool.clone());
        pool
    }

    /// Closes the idle connections of every pool on `backend` (it was marked down: they are no use).
    pub fn drop_idle(&self, backend: &BackendAddr) {
        for pool in self.all().iter().filter(|p| &p.key.backend == backend) {
            pool.drop_idle();
        }
    }

    /// Closes the idle connections of every pool (the DatabaseProxy is being deleted: the database
    /// should not keep connections for a fleet nobody manages any more).
    pub fn drop_all_idle(&self) {
        for pool in self.all() {
            pool.drop_idle();
        }
    }

    /// Closes every pool on `backend`: it stopped being the primary. Idle connections close now,
    /// checked-out ones when returned (their transactions were ended); a later [`Pools::get`] for the
    /// backend starts a new pool.
    pub fn retire(&self, backend: &BackendAddr) {
        for pool in self.all().iter().filter(|p| &p.key.backend == backend) {
            pool.closed.store(true, Ordering::Release);
            pool.drop_idle();
        }
    }

    /// Applies new settings (RELOAD) to every pool and to the pools created from now on.
    pub fn reconfigure(&self, config: PoolConfig) {
        self.config.store(Arc::new(config.clone()));
        for pool in self.all() {
            pool.reconfigure(config.clone());
        }
    }

    /// Every pool, sorted by key (for reports).
    pub fn all(&self) -> Vec<Arc<Pool>> {
        let mut v: Vec<_> = match self.pools.lock() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

#[cfg(test)]
mod tests;
