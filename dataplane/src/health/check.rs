//! Health checks: every `health.interval`, each known backend answers `SELECT pg_is_in_recovery()` over
//! a connection of its own (as `consistency.monitor_user`), within `health.timeout`. The answers move
//! each backend up or down (with hysteresis, `backend::BackendHealth`) and tell which is the primary,
//! from which `failover::decide` says whether to follow a new one.
//!
//! All backends are checked at once, so a server that hangs (a stopped process: the kernel still
//! accepts the TCP connection) costs its own timeout, not everyone's.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinSet;

use super::failover::{self, Seen, Verdict};
use super::{BackendHealth, Transition};
use crate::config::BackendAddr;
use crate::pool::{connect, ConnectOptions, PoolKey, ServerConn};
use crate::proxy::Proxy;

/// Starts the checker; it ends when the proxy is dropped.
pub fn spawn(proxy: Weak<Proxy>) {
    tokio::spawn(async move {
        let Some(interval) = proxy.upgrade().map(|p| p.backends().config().interval) else {
            return;
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conns: Vec<(BackendAddr, Option<ServerConn>)> = Vec::new();
        let mut no_primary_logged = false;
        loop {
            tick.tick().await;
            let Some(proxy) = proxy.upgrade() else { return };
            conns = check_all(&proxy, conns).await;
            follow_primary(&proxy, &mut no_primary_logged);
        }
    });
}

/// One round of checks; returns the connections to keep for the next.
async fn check_all(
    proxy: &Arc<Proxy>,
    mut conns: Vec<(BackendAddr, Option<ServerConn>)>,
) -> Vec<(BackendAddr, Option<ServerConn>)> {
    let config = proxy.config();
    let timeout = proxy.backends().config().timeout;
    let options = crate::pool::ConnectOptions {
        application_name: Some("pgroute health check"),
        ..proxy.pools().connect_options()
    };
    let mut round = JoinSet::new();
    for health in proxy.backends().all() {
        let conn = conns
            .iter_mut()
            .find(|(a, _)| *a == health.address)
            .and_then(|(_, c)| c.take());
        let key = PoolKey {
            backend: health.address.clone(),
            database: config.consistency.monitor_database.clone(),
            user: config.consistency.monitor_user.clone(),
        };
        let options = options.clone();
        round.spawn(async move {
            let (conn, result) = check(conn, &key, &options, timeout).await;
            (health, conn, result)
        });
    }
    conns.clear();
    while let Some(done) = round.join_next().await {
        let Ok((health, conn, result)) = done else {
            continue;
        };
        record(proxy, &health, result);
        conns.push((health.address.clone(), conn));
    }
    conns
}

fn record(proxy: &Proxy, health: &BackendHealth, result: Result<Option<bool>, String>) {
    let transition = match result {
        Ok(in_recovery) => health.check_passed(in_recovery),
        Err(error) => health.check_failed(error),
    };
    match transition {
        Transition::WentDown => {
            proxy.pools().drop_idle(&health.address);
            // A replica's reads are ended at once (a frozen server would hold them until TCP gives
            // up; the client can retry elsewhere). The primary's transactions are ended only if a
            // failover moves away from it: a primary too slow to answer checks may still commit them.
            let primary = health.address == proxy.primary().address();
            if !primary {
                health.end_transactions();
            }
            tracing::warn!(event = "backend_down", backend = %health.address, primary, error = health.last_error().unwrap_or_default(), "backend marked down by health checks: it takes no new transactions");
        }
        Transition::CameUp => {
            tracing::info!(event = "backend_up", backend = %health.address, "backend back up: health checks pass again")
        }
        Transition::None => {}
    }
}

/// Follows a promoted backend when the primary is gone, or marks writes as waiting when there is none.
fn follow_primary(proxy: &Proxy, no_primary_logged: &mut bool) {
    // Managed mode: the control plane decides where the primary is (`control::apply`).
    if !proxy.config().failover.follow || proxy.config().control.enabled() {
        return;
    }
    let current = proxy.primary().address();
    let seen: Vec<Seen> = proxy
        .backends()
        .all()
        .iter()
        .map(|h| Seen {
            address: h.address.clone(),
            up: h.is_up(),
            role: h.role(),
        })
        .collect();
    match failover::decide(&current, &seen) {
        Verdict::Keep => {
            proxy.primary().set_available(true);
            *no_primary_logged = false;
        }
        Verdict::Follow(next) => {
            proxy.follow_primary(next);
            *no_primary_logged = false;
        }
        Verdict::NoPrimary => {
            proxy.primary().set_available(false);
            if !*no_primary_logged {
                *no_primary_logged = true;
                tracing::warn!(event = "no_primary", backend = %current, "the primary is down or in recovery and no other backend is a primary: writes wait (failover.timeout) for one; reads continue on replicas");
            }
        }
    }
}

/// One check of one backend: `Ok(Some(in_recovery))`, `Ok(None)` when the server answered but the
/// check could not log in (alive, role unknown), `Err` when it did not answer properly in time.
async fn check(
    conn: Option<ServerConn>,
    key: &PoolKey,
    options: &ConnectOptions,
    timeout: Duration,
) -> (Option<ServerConn>, Result<Option<bool>, String>) {
    let attempt = async {
        let mut conn = match conn {
            Some(c) => c,
            None => match connect(key, options, timeout).await {
                Ok(c) => c,
                Err(e) if !e.backend_unavailable() => {
                    tracing::debug!(backend = %key.backend, error = %crate::error_chain(&e), "health check cannot log in; the server answers, so it counts as up");
                    return (None, Ok(None));
                }
                Err(e) => return (None, Err(crate::error_chain(&e))),
            },
        };
        match conn.query_rows("SELECT pg_is_in_recovery()", &[]).await {
            Ok(rows) => {
                let value = rows.first().and_then(|r| r.first().cloned().flatten());
                (Some(conn), Ok(value.map(|v| v == "t")))
            }
            Err(e) => (None, Err(crate::error_chain(&e))),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => (None, Err(format!("no answer within {timeout:?}"))),
    }
}
