//! A client session: login, then a loop that attaches a backend connection for each transaction (or
//! for the whole session), relays, and detaches.
//!
//! This is the state machine between the listener and the pool. Protocol details live in `tracker`
//! (what the messages mean for state) and `relay` (moving bytes); this module decides when to check a
//! backend connection out, when it may go back, and what the client is told when something fails.

mod audit;
mod cancel;
mod client;
mod consistency;
mod console;
mod error;
mod handshake;
mod local;
mod prepared;
mod relay;
mod route;
mod sql_prepared;
mod statement;
mod traced;
mod tracker;
mod vars;

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a read waiting for a replica to catch up (`fallback = wait`) looks again.
const WAIT_STEP: Duration = Duration::from_millis(10);
/// After a read-your-writes probe found the replica behind, how long reads skip probing.
const PROBE_QUIET: Duration = Duration::from_millis(50);
/// Why a transaction ended when its backend was marked down by health checks or stopped being the
/// primary (`BackendHealth::end_transactions`).
const BACKEND_GONE: &str =
    "the backend was marked down by health checks or stopped being the primary";
/// While waiting for a primary (`failover.timeout`), how often the primary is tried again when nothing
/// announced a change.
const FAILOVER_STEP: Duration = Duration::from_millis(100);

use pgroute_protocol::backend::{self, TxStatus};
use pgroute_protocol::frontend;
use pgroute_protocol::startup::StartupParams;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use cancel::{CancelHandle, CancelRegistry, CancelTarget};
pub use error::SessionError;
pub use prepared::BackendStatements;
pub use vars::SessionVars;

use crate::classify::{Decision, Reason, Route};
use crate::config::{AuthType, DefaultRoute, HashKey, LagFallback, PoolMode};
use crate::pool::{Pool, PoolError, PoolKey, PooledConn, Priority};
use crate::proxy::{ClientSlot, Proxy};
use crate::router::Candidate;
use crate::topology::{Lsn, ReplicaState};
use client::{ClientConn, ClientStream};
use consistency::Requirement;
use handshake::Opening;
use relay::{RelayEnd, RelayError};
use tracker::Tracker;

/// Serves one client connection to the end. Never panics on client input; every failure the client can
/// still hear about is sent as an ErrorResponse.
///
/// Everything but the idle wait runs in boxed futures, so while a logged-in client says nothing its
/// task holds a pointer and the socket's readiness future, not the largest state login or a
/// transaction could need: thousands of idle clients are the normal case for a pooler. The price is
/// paid per transaction, not per message: one allocation for the step's future and the read buffer
/// taken again when the client next speaks; within a transaction buffers are reused.
pub async fn serve(stream: TcpStream, proxy: Arc<Proxy>) {
    let Some(mut conn) = Box::pin(open(stream, proxy)).await else {
        return;
    };
    let ended = loop {
        // Plain sockets wait for readiness outside the boxed step. TLS may already hold decrypted
        // bytes that the socket's readiness cannot show, so it waits inside the step's read instead.
        if conn.client.reader.buffered() == 0 {
            if let ClientStream::Plain(tcp) = &conn.client.stream {
                // Shutdown wakes idle clients too; the step then tells them 57P01.
                tokio::select! {
                    r = tcp.readable() => if let Err(e) = r {
                        break Err(SessionError::ClientIo(e));
                    },
                    () = conn.session.proxy.gate().shutting_down() => {}
                }
            }
        }
        let c = &mut *conn;
        match Box::pin(c.session.step(&mut c.client)).await {
            Ok(true) => c.client.release_buffers(),
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    Box::pin(conn.close(ended)).await;
}

/// A logged-in client and its session, allocated together.
struct Connection {
    client: ClientConn,
    session: Session,
}

impl Connection {
    /// Ends the session: resets a held backend connection (session mode), tells the client why if it
    /// can still hear it, closes the socket.
    async fn close(mut self: Box<Self>, ended: Result<(), SessionError>) {
        if let Some(server) = self.session.held.take() {
            self.session.reset_and_release(server).await;
        }
        if let (Some(m), Err(e)) = (&self.session.metrics, &ended) {
            count_error(m.metrics(), e);
        }
        finish(&mut self.client, ended).await;
    }
}

/// Logs the client in; on failure tells it why and closes, returning `None`.
async fn open(stream: TcpStream, proxy: Arc<Proxy>) -> Option<Box<Connection>> {
    let _ = stream.set_nodelay(true);
    if let Err(e) = crate::keepalive::apply(&stream, &proxy.config().server.tcp_keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive on client socket");
    }
    let mut client = ClientConn::new(stream, proxy.config().server.max_message_size);
    match login_within_timeout(&mut client, &proxy).await {
        Ok(Some(Opened::Session(session))) => {
            client.release_buffers();
            Some(Box::new(Connection { client, session }))
        }
        Ok(Some(Opened::Console(console))) => {
            let ended = console.serve(&mut client, &proxy).await;
            finish(&mut client, ended).await;
            None
        }
        Ok(None) => {
            finish(&mut client, Ok(())).await;
            None
        }
        Err(e) => {
            if let Some(m) = proxy.metrics() {
                count_error(m, &e);
            }
            finish(&mut client, Err(e)).await;
            None
        }
    }
}

/// An error pgroute itself sends a client, counted by SQLSTATE class.
fn count_error(metrics: &crate::metrics::Metrics, err: &SessionError) {
    if let Some((_, code)) = err.response() {
        metrics.error(crate::metrics::ErrorSource::Proxy, &code);
    }
}

async fn finish(client: &mut ClientConn, ended: Result<(), SessionError>) {
    if let Err(err) = ended {
        tracing::debug!(peer = ?client.stream.tcp().and_then(|t| t.peer_addr().ok()), error = %err, "client session ended with an error");
        client.out.clear();
        client.queue_error(&err);
        let _ = client.flush_out().await;
    }
    let _ = client.stream.shutdown().await;
}

/// A logged-in client: a pooled session, or the admin console. Moved once per login, so the size
/// difference between the two costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Opened {
    Session(Session),
    Console(console::ConsoleSession),
}

async fn login_within_timeout(
    client: &mut ClientConn,
    proxy: &Arc<Proxy>,
) -> Result<Option<Opened>, SessionError> {
    let timeout = proxy.config().server.client_login_timeout;
    match tokio::time::timeout(timeout, login(client, proxy)).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::LoginTimeout(timeout)),
    }
}

/// Startup, admission, authentication and the login answer. `None` for a cancel request or a client
/// that went away.
async fn login(
    client: &mut ClientConn,
    proxy: &Arc<Proxy>,
) -> Result<Option<Opened>, SessionError> {
    let config = proxy.config();
    let tls = proxy.tls();
    let params =
        match handshake::opening(client, config.server.max_startup_packet, tls.as_ref()).await? {
            Opening::Startup(p) => p,
            Opening::Cancel { pid, secret } => {
                proxy.cancels().cancel(pid, secret).await;
                return Ok(None);
            }
            Opening::Gone => return Ok(None),
        };
    if config.tls.mode == crate::config::TlsMode::Require && !client.stream.is_tls() {
        return Err(SessionError::TlsRequired);
    }
    let slot = proxy.admit()?;
    if proxy.control_status().awaiting_first_snapshot() {
        return Err(SessionError::AwaitingControlPlane);
    }
    if params.get("replication").is_some_and(|r| {
        !matches!(
            r.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        )
    }) {
        return Err(SessionError::Replication);
    }
    let mut vars =
        SessionVars::from_startup(params.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(SessionError::StartupParameter)?;
    let user = params
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or(SessionError::NoUser)?
        .to_owned();
    let database = params
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    let auth_type = config.auth.auth_type;
    let users = proxy.users();
    let to_console = database == config.admin.database;
    let secret = match auth_type {
        AuthType::Trust => None,
        // The console is no database: its users come from the auth file only.
        _ if to_console => users.file_secret(&user),
        _ => users
            .secret(&user, &database, proxy.pools(), &proxy.primary().address())
            .await
            .map_err(|source| {
                tracing::warn!(user, database, error = %crate::error_chain(&source), "auth_query failed");
                SessionError::AuthLookup {
                    user: user.clone(),
                    source: Box::new(source),
                }
            })?,
    };
    match handshake::authenticate(client, &user, auth_type, secret.as_ref(), users).await {
        Ok(keys) => {
            if let Some(secret) = &secret {
                users.proven(&user, secret, keys);
            }
        }
        Err(e) => {
            if matches!(e, SessionError::AuthFailed { .. }) {
                users.failed(&user, &database);
            }
            return Err(e);
        }
    }
    if to_console {
        return console_login(client, proxy, &params, user, database, slot)
            .await
            .map(|c| Some(Opened::Console(c)));
    }
    let login_slots = proxy.admit_login(&user, &database)?;
    let timeouts = config.timeouts.for_session(&user, &database);
    for (name, value) in [
        ("statement_timeout", timeouts.statement_timeout),
        (
            "idle_in_transaction_session_timeout",
            timeouts.idle_transaction_timeout,
        ),
    ] {
        if let Some(v) = value {
            vars.set_default(name, &format!("{}ms", v.as_millis()));
        }
    }
    let routing = &config.routing;
    let default_route = match routing.users.get(&user) {
        Some(d) if *d != DefaultRoute::Auto => *d,
        _ => routing
            .databases
            .get(&database)
            .copied()
            .unwrap_or_default(),
    };
    let session_key = {
        let peer = client.stream.tcp().and_then(|t| t.peer_addr().ok());
        let key = match routing.hash_key {
            HashKey::User => user.clone(),
            HashKey::Database => database.clone(),
            HashKey::ApplicationName => params
                .get("application_name")
                .unwrap_or_default()
                .to_owned(),
            HashKey::ClientAddress => peer.map(|p| p.ip().to_string()).unwrap_or_default(),
            HashKey::Affinity => params.get("pgroute.affinity").unwrap_or(&user).to_owned(),
        };
        crate::router::hash64(0, key.as_bytes())
    };
    let primary_generation = proxy.primary().generation();
    let (pool, reads) = session_pools(proxy, &database, &user);
    let priority = Priority::of(&config.pool, &user, params.get("application_name"));
    let server_params = match pool.server_params() {
        Some(p) => p,
        None => {
            let conn = pool.checkout_as(priority).await?;
            conn.release();
            pool.server_params().unwrap_or_default()
        }
    };
    let cancel = proxy.cancels().register();
    let client_entry = proxy.clients().register(client_login(
        client,
        &params,
        cancel.pid(),
        &user,
        &database,
        false,
    ));
    answer_login(client, &params, &server_params, &cancel);
    client.flush_out().await?;
    let mode = config.pool.mode;
    Ok(Some(Opened::Session(Session {
        proxy: proxy.clone(),
        pool: pool.clone(),
        primary: pool,
        primary_generation,
        database: database.clone(),
        user: user.clone(),
        reads,
        default_route,
        session_key,
        causal: consistency::Causal::new(&config.consistency, &user, &database),
        last_decision: Decision::primary(Reason::Write),
        probe: None,
        probe_quiet_until: None,
        mode,
        priority,
        vars,
        tracker: Tracker::new(
            mode == PoolMode::Transaction,
            config.pool.max_prepared_statements,
        )
        .with_client_limit(config.pool.max_client_prepared_statements),
        cancel,
        held: None,
        attached_generation: 0,
        client_entry,
        metrics: proxy
            .metrics()
            .cloned()
            .map(crate::metrics::SessionMetrics::new),
        anomaly_log: audit::LogLimit::default(),
        _slot: slot,
        _login_slots: login_slots,
    })))
}

/// An authenticated login to `admin.database`: allowed for `admin.users` and `admin.stats_users`,
/// refused with FATAL 28000 for everyone else (after authentication, so the lists cannot be probed).
async fn console_login(
    client: &mut ClientConn,
    proxy: &Arc<Proxy>,
    params: &StartupParams,
    user: String,
    database: String,
    slot: ClientSlot,
) -> Result<console::ConsoleSession, SessionError> {
    let access = crate::admin::Access::of(&proxy.config().admin, &user).ok_or_else(|| {
        SessionError::NotAdmin {
            user: user.clone(),
            database: database.clone(),
        }
    })?;
    let cancel = proxy.cancels().register();
    let entry = proxy.clients().register(client_login(
        client,
        params,
        cancel.pid(),
        &user,
        &database,
        true,
    ));
    answer_login(
        client,
        params,
        &console::ConsoleSession::server_params(),
        &cancel,
    );
    client.flush_out().await?;
    tracing::info!(user, ?access, "admin console login");
    let console = crate::admin::Console::new(proxy.clone(), user, access);
    Ok(console::ConsoleSession::new(console, cancel, entry, slot))
}

/// What the client registry keeps of a login (`SHOW CLIENTS`).
fn client_login(
    client: &ClientConn,
    params: &StartupParams,
    pid: u32,
    user: &str,
    database: &str,
    admin: bool,
) -> crate::clients::ClientLogin {
    let tcp = client.stream.tcp();
    crate::clients::ClientLogin {
        pid,
        user: user.to_owned(),
        database: database.to_owned(),
        application_name: params
            .get("application_name")
            .unwrap_or_default()
            .to_owned(),
        addr: tcp.and_then(|t| t.peer_addr().ok()),
        local_addr: tcp.and_then(|t| t.local_addr().ok()),
        tls: client.stream.is_tls(),
        admin,
    }
}

/// A client's pool on the primary, and the places its reads may go: its pools on the replicas (and the
/// primary with its share of reads). No read places without replicas or with splitting off.
fn session_pools(proxy: &Proxy, database: &str, user: &str) -> (Arc<Pool>, Vec<Candidate>) {
    let config = proxy.config();
    let routing = &config.routing;
    let key = |backend: &crate::config::BackendAddr| PoolKey {
        backend: backend.clone(),
        database: database.to_owned(),
        user: user.to_owned(),
    };
    let pool = proxy.pools().get(&key(&proxy.primary().address()));
    let mut reads = Vec::new();
    let replicas = proxy.replicas();
    if routing.read_write_split && !replicas.is_empty() {
        for state in replicas.iter() {
            reads.push(Candidate {
                state: Some(state.clone()),
                pool: proxy.pools().get(&key(&state.address)),
                weight: state.weight,
                is_primary: false,
            });
        }
        if routing.primary_reads_weight > 0 {
            reads.push(Candidate {
                state: None,
                pool: pool.clone(),
                weight: routing.primary_reads_weight,
                is_primary: true,
            });
        }
    }
    (pool, reads)
}

/// Resolves when the client has closed its connection; pending while it is connected (after it first
/// sees pipelined input it stops looking, since the client is then evidently alive).
async fn client_gone(client: &ClientConn) {
    let Some(tcp) = client.stream.tcp() else {
        return;
    };
    let mut probe = [0u8; 1];
    match tcp.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Whether a read candidate's backend may take reads now (health checks, breaker, role); the
/// primary's share of reads follows the primary, not the replica rules.
fn healthy(c: &Candidate) -> bool {
    !c.pool.is_closed() && (c.is_primary || c.pool.health().accepts_reads())
}

/// Checks out a backend, giving up if the client closes its connection while queued: its statement
/// must not run after it left (nobody would see the result, and it may be a write).
async fn checkout_unless_gone(
    pool: &Arc<Pool>,
    client: &ClientConn,
    priority: Priority,
) -> Result<PooledConn, SessionError> {
    let checkout = pool.checkout_as(priority);
    tokio::pin!(checkout);
    let mut probe = [0u8; 1];
    let Some(tcp) = client.stream.tcp() else {
        return Err(SessionError::ClientGone);
    };
    let mut watch = true;
    loop {
        tokio::select! {
            biased;
            r = &mut checkout => return Ok(r?),
            r = tcp.peek(&mut probe), if watch => match r {
                Ok(0) | Err(_) => return Err(SessionError::ClientGone),
                // More pipelined input: the client is alive; only the checkout matters now.
                Ok(_) => watch = false,
            },
        }
    }
}

/// AuthenticationOk, protocol negotiation, ParameterStatus (the server's, with the client's own startup
/// values where it sent them), the proxy's BackendKeyData, ReadyForQuery.
fn answer_login(
    client: &mut ClientConn,
    params: &StartupParams,
    server_params: &[(String, String)],
    cancel: &CancelHandle,
) {
    let out = &mut client.out;
    backend::auth_ok(out);
    let options: Vec<&str> = params.protocol_options().collect();
    if params.minor_version > 0 || !options.is_empty() {
        backend::negotiate_protocol_version(out, 0, &options);
    }
    for (name, value) in server_params {
        let own = params
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        backend::parameter_status(out, name, own.unwrap_or(value));
    }
    backend::backend_key_data(out, cancel.pid(), cancel.secret());
    backend::ready_for_query(out, TxStatus::Idle);
}

struct Session {
    proxy: Arc<Proxy>,
    /// The pool of the batch in progress (or of the last one).
    pool: Arc<Pool>,
    /// This client's pool on the primary.
    primary: Arc<Pool>,
    /// `Primary::generation` when `primary` and `reads` were made; a change means they are stale.
    primary_generation: u64,
    database: String,
    user: String,
    /// Where reads may go: this client's pools on the replicas (and the primary with its share of
    /// reads). Empty without replicas or with splitting off.
    reads: Vec<Candidate>,
    default_route: DefaultRoute,
    /// Hash of the session key, for `hash` load balancing.
    session_key: u64,
    /// Read-your-writes state.
    causal: consistency::Causal,
    /// How the batch in progress (or the last one) was routed.
    last_decision: Decision,
    /// A replica picked on probation for read-your-writes: the write position it must have replayed.
    probe: Option<(Lsn, Arc<ReplicaState>)>,
    /// After a probe found the replica behind, none before this.
    probe_quiet_until: Option<Instant>,
    mode: PoolMode,
    /// Low-priority clients are shed first when a pool's queue is long (decided at login).
    priority: Priority,
    vars: SessionVars,
    tracker: Tracker,
    cancel: CancelHandle,
    /// Session mode: the connection held for the client's lifetime.
    held: Option<PooledConn>,
    /// The backend's `gone_generation` when the attached connection was checked out: if it moved, the
    /// backend was marked down (or retired) since, and the connection must not be used.
    attached_generation: u64,
    /// This client in the proxy's registry (`SHOW CLIENTS`/`POOLS`): idle, waiting or linked.
    client_entry: crate::clients::ClientHandle,
    /// This session's metric handles and query clock; `None` with metrics off.
    metrics: Option<crate::metrics::SessionMetrics>,
    /// Rate of the info-level anomaly log (stale reads prevented) for this session.
    anomaly_log: audit::LogLimit,
    _slot: ClientSlot,
    _login_slots: crate::proxy::LoginSlots,
}

impl Session {
    /// Serves the client's next batch: attach a backend, relay until it is at rest (transaction mode)
    /// or the client leaves, detach. `false` when the client is gone.
    async fn step(&mut self, client: &mut ClientConn) -> Result<bool, SessionError> {
        // Between transactions a shutdown ends the session (57P01); inside one it waits for its end.
        let tag = tokio::select! {
            biased;
            () = self.proxy.gate().shutting_down(), if self.tracker.at_rest() => {
                return Err(crate::ops::ShuttingDown.into())
            }
            tag = client.peek_tag() => tag?,
        };
        let Some(tag) = tag else {
            return Ok(false);
        };
        if tag == frontend::TERMINATE {
            return Ok(false);
        }
        if !frontend::is_known_tag(tag) {
            return Err(pgroute_protocol::ProtocolError::UnexpectedTag {
                tag: tag as char,
                context: "client message",
            }
            .into());
        }
        if self.held.is_none() && self.mode == PoolMode::Transaction && self.tracker.at_rest() {
            let answered = match tag {
                frontend::PARSE => {
                    local::answer_known_parses(client, &mut self.tracker, &self.primary)?
                }
                frontend::CLOSE => local::answer_closes(client, &mut self.tracker)?,
                _ => false,
            };
            if answered {
                client.flush_out().await?;
                return Ok(true);
            }
        }
        // Waiting (for PAUSE or a connection) until linked; idle again when the step ends.
        let activity = self.client_entry.waiting(self.mode == PoolMode::Session);
        // PAUSE holds a new transaction here; the guard counts it as in flight until the step ends.
        let _in_flight = match self.held.is_none() && self.tracker.at_rest() {
            true => Some(self.proxy.gate().enter().await?),
            false => None,
        };
        let timing = traced::begin(
            &self.proxy,
            client.reader.buffer(),
            client.reader.max_message_size(),
        );
        if self.held.is_none() && self.tracker.at_rest() {
            match self.choose_pool(client).await {
                Ok(pool) => self.pool = pool,
                Err(err) => {
                    self.trace_failed(timing, &err);
                    self.fail_batch(client, err).await?;
                    return Ok(true);
                }
            }
        }
        let asked = self.metrics.is_some().then(Instant::now);
        let mut server = match self.attach(client).await {
            Ok(s) => s,
            Err(SessionError::ClientGone) => return Ok(false),
            Err(err) => {
                self.trace_failed(timing, &err);
                self.fail_batch(client, err).await?;
                return Ok(true);
            }
        };
        let attached_at = timing.map(|_| Instant::now());
        let observed = asked.map(|t| self.begin_observation(&server, t.elapsed()));
        let conn = server.conn();
        activity.linked(conn.key().pid);
        self.cancel.set_target(Some(CancelTarget {
            addr: conn.addr(),
            key: conn.key(),
        }));
        let release_at_rest = self.mode == PoolMode::Transaction;
        let on_replica = release_at_rest && !Arc::ptr_eq(&self.pool, &self.primary);
        let classifier = self.proxy.classifier();
        let gate = on_replica.then(|| route::RouteGate {
            classifier: &classifier,
            default: self.default_route,
        });
        // Health checks marking the backend down, or a failover away from it, end the transaction.
        let health = self.pool.health().clone();
        let gone = health.gone().notified();
        let end = if health.gone_generation() != self.attached_generation {
            Err(RelayError::Server(BACKEND_GONE.into()))
        } else {
            tokio::select! {
                end = relay::run(
                    client,
                    conn,
                    &mut self.tracker,
                    &mut self.vars,
                    relay::Attached {
                        stats: self.pool.stats(),
                        release_at_rest,
                        gate,
                        metrics: self.metrics.as_mut(),
                    },
                ) => end,
                _ = gone => Err(RelayError::Server(BACKEND_GONE.into())),
            }
        };
        self.cancel.set_target(None);
        if let (Some(m), Some((role, wait))) = (&mut self.metrics, observed) {
            let tx = m.end(self.last_decision, server.pool(), role, wait);
            // The hook for per-transaction tracing: `tx` has route, reason, backend, pool wait,
            // backend time and fingerprint.
            tracing::trace!(?tx, "transaction observed");
        }
        if let Some(timing) = timing {
            let backend = server.pool().key().backend.to_string();
            traced::end(
                &self.proxy,
                timing,
                &traced::Outcome {
                    decision: self.last_decision,
                    attached: attached_at,
                    backend: &backend,
                    user: &self.user,
                    database: &self.database,
                    error: None,
                },
            );
        }
        if self.tracker.has_confirmed() {
            self.pool
                .record_valid_statements(self.tracker.take_confirmed());
        }
        match end {
            Ok(RelayEnd::AtRest { tail }) => {
                // The client gets its answer first; its next message waits in the socket until the
                // write position is recorded, so no read can overtake it.
                let sent = match tail {
                    Some(tail) => client.write_now(&tail).await,
                    None => Ok(()),
                };
                self.record_write(&mut server).await?;
                self.detach(server);
                sent.map(|()| true)
            }
            Ok(RelayEnd::ClientGone { clean }) => {
                if clean {
                    self.detach(server);
                }
                Ok(false)
            }
            Err(RelayError::Client(e)) => Err(SessionError::ClientIo(e)),
            Err(RelayError::ClientProtocol(e)) => Err(SessionError::Protocol(e)),
            Err(RelayError::Server(reason)) if self.tracker.server_sent_fatal() => {
                tracing::info!(pool = ?self.pool.key(), %reason, "backend ended the session with FATAL; closing the client");
                Ok(false)
            }
            Err(RelayError::Server(reason)) => Err(SessionError::ServerLost {
                backend: self.pool.key().backend.to_string(),
                reason,
            }),
        }
    }

    /// The span of a batch that failed before it reached a backend (tracing on).
    fn trace_failed(&self, timing: Option<traced::Timing>, err: &SessionError) {
        let Some(timing) = timing else { return };
        let code = err.response().map(|(_, code)| code);
        traced::end(
            &self.proxy,
            timing,
            &traced::Outcome {
                decision: self.last_decision,
                attached: None,
                backend: "",
                user: &self.user,
                database: &self.database,
                error: code.as_deref(),
            },
        );
    }

    /// Metrics for the transaction starting on `server`: its destination's handles and pool wait.
    fn begin_observation(
        &mut self,
        server: &PooledConn,
        wait: Duration,
    ) -> (crate::metrics::Role, Duration) {
        use crate::metrics::{QueryType, Role};
        let role = match Arc::ptr_eq(server.pool(), &self.primary) {
            true => Role::Primary,
            false => Role::Replica,
        };
        let kind = match self.reads.is_empty() {
            true => QueryType::Unclassified,
            false => QueryType::of(self.last_decision),
        };
        if let Some(m) = &mut self.metrics {
            m.begin(server.pool(), role, kind, wait);
        }
        (role, wait)
    }

    /// Where the next batch runs: its route (classification, then the user's or database's default),
    /// then a replica by the load-balancing policy among those within the lag the read accepts and that
    /// have replayed the client's last write; with none, `consistency.fallback` decides. Counted by
    /// route and reason.
    async fn choose_pool(&mut self, client: &ClientConn) -> Result<Arc<Pool>, SessionError> {
        self.refresh_pools();
        if self.reads.is_empty() {
            return Ok(self.primary.clone());
        }
        let decision = match self.mode {
            PoolMode::Session => match self.default_route {
                DefaultRoute::Replica => Decision::replica(Reason::Default),
                _ => Decision::primary(Reason::SessionMode),
            },
            PoolMode::Transaction => route::apply_default(
                route::classify_batch(
                    client.reader.buffer(),
                    client.reader.max_message_size(),
                    &self.proxy.classifier(),
                    &self.tracker,
                ),
                self.default_route,
            ),
        };
        let (pool, decision) = match decision.route {
            Route::Primary => (self.primary.clone(), decision),
            Route::Replica => self.pick_replica(decision).await?,
        };
        self.last_decision = decision;
        if self.probe.is_none() {
            self.proxy
                .router()
                .counters()
                .record(decision.route, decision.reason);
        }
        audit::routed(
            decision,
            &pool.key().backend,
            client.reader.buffer(),
            client.reader.max_message_size(),
        );
        if decision.reason == Reason::ReadYourWrites {
            self.stale_read_prevented();
        }
        Ok(pool)
    }

    /// A replica for a read, or the primary when none qualifies (or waits, or fails: `fallback`). When
    /// the only thing missing is the monitor having seen a replica replay this client's last write, a
    /// replica within the lag limits is picked on probation: `attach` asks it for its replay position.
    async fn pick_replica(
        &mut self,
        decision: Decision,
    ) -> Result<(Arc<Pool>, Decision), SessionError> {
        self.probe = None;
        let proxy = &self.proxy;
        let config = &proxy.config().consistency;
        let max_lag = decision.max_lag.or(self.causal.max_lag);
        let deadline = Instant::now() + config.wait_timeout;
        loop {
            let need = self.causal.requirement(&self.vars, proxy.causal());
            let usable = |c: &Candidate| {
                healthy(c)
                    && c.state
                        .as_ref()
                        .is_none_or(|s| consistency::replica_usable(s, need, max_lag))
            };
            match proxy
                .router()
                .pick_where(&self.reads, self.session_key, usable)
            {
                Some(c) if c.is_primary => {
                    return Ok((c.pool.clone(), Decision::primary(Reason::PrimaryShare)))
                }
                Some(c) => return Ok((c.pool.clone(), decision)),
                None => {}
            }
            // Why none: nobody replayed this client's write yet (as far as the monitor saw), or every
            // replica lags.
            let lag_only = |c: &Candidate| {
                healthy(c)
                    && c.state
                        .as_ref()
                        .is_some_and(|s| consistency::replica_usable(s, Requirement::None, max_lag))
            };
            let caught_up_somewhere = self.reads.iter().any(lag_only);
            let probe_allowed = self.probe_quiet_until.is_none_or(|t| Instant::now() >= t);
            if let (Requirement::Replayed(lsn), true) = (need, caught_up_somewhere) {
                if config.fallback != LagFallback::Wait && probe_allowed {
                    let picked = proxy
                        .router()
                        .pick_where(&self.reads, self.session_key, lag_only);
                    if let Some(c) = picked {
                        if let Some(state) = &c.state {
                            self.probe = Some((lsn, state.clone()));
                            return Ok((c.pool.clone(), decision));
                        }
                    }
                }
            }
            let reason = if caught_up_somewhere {
                Reason::ReadYourWrites
            } else {
                Reason::ReplicaLagging
            };
            match config.fallback {
                LagFallback::Wait if Instant::now() < deadline => {
                    tokio::time::sleep(WAIT_STEP).await;
                }
                LagFallback::Error => {
                    return Err(SessionError::NoFreshReplica {
                        read_your_writes: reason == Reason::ReadYourWrites,
                    })
                }
                _ => return Ok((self.primary.clone(), Decision::primary(reason))),
            }
        }
    }

    /// After a failover (or the control plane moving the primary), the pools of this client made for the
    /// old primary are replaced before the next transaction. One atomic load when nothing changed.
    fn refresh_pools(&mut self) {
        let generation = self.proxy.primary().generation();
        if generation == self.primary_generation {
            return;
        }
        let on_primary = Arc::ptr_eq(&self.pool, &self.primary);
        let (primary, reads) = session_pools(&self.proxy, &self.database, &self.user);
        self.primary = primary;
        self.reads = reads;
        self.primary_generation = generation;
        if on_primary {
            self.pool = self.primary.clone();
        }
    }

    /// A connection on the primary. While there is none to be had (it is down, or a failover is under
    /// way) the client waits up to `failover.timeout`, trying again when the primary moves or every
    /// `FAILOVER_STEP`; with `failover.timeout = 0s` the first failure is the answer.
    async fn checkout_primary(&mut self, client: &ClientConn) -> Result<PooledConn, SessionError> {
        let proxy = self.proxy.clone();
        let failover = &proxy.config().failover;
        let primary = proxy.primary();
        let mut waiting = None;
        let mut deadline = None;
        loop {
            // Registered before looking, so a change between the look and the wait is not missed.
            let changed = primary.changed().notified();
            self.refresh_pools();
            self.pool = self.primary.clone();
            // A primary that is down is still tried (its breaker paces the attempts), so a restart is
            // noticed at once; one that is up but in recovery is not (writes would fail there).
            let try_now =
                primary.available() || failover.timeout.is_zero() || !self.primary.health().is_up();
            let problem = if try_now {
                match checkout_unless_gone(&self.primary, client, self.priority).await {
                    Err(SessionError::Pool(
                        e @ (PoolError::Connect { .. }
                        | PoolError::BreakerOpen { .. }
                        | PoolError::Closed(_)),
                    )) if !failover.timeout.is_zero() => e.to_string(),
                    other => return other,
                }
            } else {
                format!(
                    "no backend is a primary (last primary {} is down or in recovery)",
                    self.primary.key().backend
                )
            };
            if waiting.is_none() {
                waiting = Some(primary.start_waiting(failover.max_waiting).ok_or(
                    SessionError::NoPrimaryQueueFull {
                        max: failover.max_waiting,
                    },
                )?);
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + failover.timeout);
            let now = Instant::now();
            if now >= deadline {
                return Err(SessionError::NoPrimary {
                    waited: failover.timeout,
                    last: problem,
                });
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(FAILOVER_STEP.min(deadline - now)) => {}
                _ = client_gone(client) => return Err(SessionError::ClientGone),
            }
        }
    }

    /// After a transaction that may have written committed on the primary: where the primary's WAL is
    /// now, so this client's next reads wait for a replica that has replayed it.
    async fn record_write(&mut self, server: &mut PooledConn) -> Result<(), SessionError> {
        if self.reads.is_empty()
            || !Arc::ptr_eq(&self.pool, &self.primary)
            || !self.causal.may_write(self.last_decision)
        {
            return Ok(());
        }
        let lsn = if self.causal.needs_lsn() {
            server
                .conn()
                .query_lsn("SELECT pg_current_wal_insert_lsn()::text")
                .await
                .map_err(|e| SessionError::ServerLost {
                    backend: self.primary.key().backend.to_string(),
                    reason: e.to_string(),
                })?
                .unwrap_or(u64::MAX)
        } else {
            0
        };
        self.causal.wrote(lsn, &self.vars, self.proxy.causal());
        Ok(())
    }

    /// The backend connection for the next batch, with this client's session variables applied. A
    /// replica that cannot be reached hands the batch to the primary.
    async fn attach(&mut self, client: &ClientConn) -> Result<PooledConn, SessionError> {
        let fresh = self.held.is_none();
        let mut server = match self.held.take() {
            Some(s) => {
                if s.pool().is_closed() || !s.pool().health().is_up() {
                    let backend = s.pool().key().backend.to_string();
                    return Err(SessionError::ServerLost {
                        backend,
                        reason: BACKEND_GONE.into(),
                    });
                }
                s
            }
            None if Arc::ptr_eq(&self.pool, &self.primary) => self.checkout_primary(client).await?,
            None => match checkout_unless_gone(&self.pool, client, self.priority).await {
                // Closed: the replica left the configuration between routing and checkout.
                Err(SessionError::Pool(
                    e @ (PoolError::Connect { .. }
                    | PoolError::BreakerOpen { .. }
                    | PoolError::Closed(_)),
                )) => {
                    tracing::warn!(backend = %self.pool.key().backend, error = %crate::error_chain(&e), "replica unreachable; running the batch on the primary");
                    let counters = self.proxy.router().counters();
                    counters.record(Route::Primary, Reason::NoReplica);
                    self.pool = self.primary.clone();
                    self.checkout_primary(client).await?
                }
                other => other?,
            },
        };
        if let Some((lsn, state)) = self.probe.take() {
            server = self.probe_replica(server, lsn, &state, client).await?;
        }
        if fresh {
            self.attached_generation = server.pool().health().gone_generation();
        }
        let conn = server.conn();
        if let Some(sql) = self.vars.sync_sql(&conn.applied) {
            match relay::run_internal(conn, &sql).await {
                Ok(None) => conn.applied = self.vars.clone(),
                Ok(Some(e)) => {
                    // Applied state is now unknown; dropping the guard closes the connection.
                    return Err(SessionError::StateReplay {
                        code: e.code,
                        message: e.message,
                    });
                }
                Err(e) => {
                    return Err(SessionError::ServerLost {
                        backend: self.pool.key().backend.to_string(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(server)
    }

    /// A replica picked on probation: it serves the read if it has replayed `lsn` (one round trip),
    /// otherwise the read goes to the primary (or fails, with `fallback = error`).
    async fn probe_replica(
        &mut self,
        mut server: PooledConn,
        lsn: Lsn,
        state: &ReplicaState,
        client: &ClientConn,
    ) -> Result<PooledConn, SessionError> {
        let replayed = server
            .conn()
            .query_lsn("SELECT pg_last_wal_replay_lsn()::text")
            .await
            .ok()
            .flatten();
        let counters = self.proxy.router().counters();
        if let Some(replayed) = replayed {
            state.saw_replay(replayed);
            if replayed >= lsn {
                counters.record(Route::Replica, self.last_decision.reason);
                return Ok(server);
            }
            server.release();
        }
        // Not there yet (an asynchronous commit may not even have left the primary): no more probes
        // for a moment, so a busy client does not pay a round trip to the replica on every read.
        self.probe_quiet_until = Some(Instant::now() + PROBE_QUIET);
        // Dropped unreleased when the probe itself failed: the connection's state is unknown.
        counters.record(Route::Primary, Reason::ReadYourWrites);
        self.last_decision = Decision::primary(Reason::ReadYourWrites);
        self.stale_read_prevented();
        if self.proxy.config().consistency.fallback == LagFallback::Error {
            return Err(SessionError::NoFreshReplica {
                read_your_writes: true,
            });
        }
        self.pool = self.primary.clone();
        self.checkout_primary(client).await
    }

    /// A read sent to the primary because no replica has replayed this client's last write: logged at
    /// info (at most once per `audit::ANOMALY_EVERY` per session; every one is counted in
    /// `pgroute_routing_decisions_total{reason="read_your_writes"}`).
    fn stale_read_prevented(&mut self) {
        if let Some(suppressed) = self.anomaly_log.allow(Instant::now()) {
            tracing::info!(
                event = "stale_read_prevented",
                user = %self.user,
                database = %self.database,
                backend = %self.primary.key().backend,
                suppressed,
                "read sent to the primary: no replica has replayed this client's last write yet"
            );
        }
    }

    /// Transaction mode returns the connection; session mode keeps it.
    fn detach(&mut self, mut server: PooledConn) {
        let conn = server.conn();
        if conn.applied != self.vars {
            conn.applied = self.vars.clone();
        }
        match self.mode {
            PoolMode::Transaction => server.release(),
            PoolMode::Session => self.held = Some(server),
        }
    }

    /// Session mode, client gone: reset the connection so nothing of this session reaches the next one.
    async fn reset_and_release(&self, mut server: PooledConn) {
        let reset = &self.proxy.config().pool.server_reset_query;
        let conn = server.conn();
        if !self.tracker.at_rest() {
            return; // dropped: closed
        }
        if !reset.is_empty() {
            match relay::run_internal(conn, reset).await {
                Ok(None) => {
                    conn.applied = SessionVars::default();
                    conn.prepared.clear();
                }
                _ => return,
            }
        }
        server.release();
    }

    /// No backend for this batch: discard the client's messages up to the end of the batch (a Query or
    /// a Sync) and answer with the error and ReadyForQuery, leaving the client connected.
    async fn fail_batch(
        &mut self,
        client: &mut ClientConn,
        err: SessionError,
    ) -> Result<(), SessionError> {
        tracing::info!(pool = ?self.pool.key(), error = %err, "batch failed without a backend");
        if let Some(m) = &self.metrics {
            count_error(m.metrics(), &err);
        }
        if matches!(err, SessionError::ServerLost { .. }) {
            return Err(err);
        }
        loop {
            let Some(frame) = client.next_frame().await? else {
                return Ok(());
            };
            match frame.tag {
                frontend::QUERY | frontend::SYNC => break,
                frontend::TERMINATE => return Ok(()),
                _ => {}
            }
        }
        client.queue_error(&err);
        backend::ready_for_query(&mut client.out, self.tracker.status());
        client.flush_out().await
    }
}
