//! The replication-lag monitor: every `lag_check_interval`, the primary's WAL position and each
//! replica's replay position, turned into lag in bytes and time per replica (`topology::ReplicaState`).
//!
//! Time lag is measured against the primary's own history, not `now() - pg_last_xact_replay_timestamp()`:
//! the monitor remembers when it first saw the primary reach each position, and a replica's lag is the
//! age of the oldest position it has not replayed. An idle primary therefore never makes a replica look
//! behind (its position does not move, so the replica is equal to it), and a replica delayed by
//! `recovery_min_apply_delay` shows its real delay.
//!
//! One connection per server, made like a pool's (same TLS, same credentials) as `monitor_user`; a
//! replica that cannot be measured leaves the read pool until it can be again.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::config::BackendAddr;
use crate::pool::{connect, PoolKey, ServerConn};
use crate::proxy::Proxy;
use crate::topology::{LagLimits, Lsn, Measurement};

/// Primary positions remembered: enough for lag far beyond any sane threshold at a 1 s interval.
const HISTORY: usize = 3_600;

/// Starts the monitor; it ends when the proxy is dropped.
pub fn spawn(proxy: Weak<Proxy>) {
    tokio::spawn(async move {
        let Some(interval) = proxy
            .upgrade()
            .map(|p| p.config().consistency.lag_check_interval)
        else {
            return;
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut monitor = Monitor::default();
        loop {
            tick.tick().await;
            let Some(proxy) = proxy.upgrade() else { return };
            monitor.measure(&proxy).await;
        }
    });
}

#[derive(Default)]
struct Monitor {
    primary: Option<ServerConn>,
    /// One connection per replica, by address (the replica list may change between rounds).
    replicas: Vec<(BackendAddr, Option<ServerConn>)>,
    /// (primary position, when first seen), oldest first.
    history: VecDeque<(Lsn, Instant)>,
}

impl Monitor {
    async fn measure(&mut self, proxy: &Arc<Proxy>) {
        if proxy.replicas().is_empty() {
            return;
        }
        let now = Instant::now();
        let Some(primary_lsn) = self.primary_lsn(proxy).await else {
            // Without the primary's position nothing can be compared; keep the last verdicts.
            return;
        };
        if self
            .history
            .back()
            .is_none_or(|(lsn, _)| *lsn < primary_lsn)
        {
            self.history.push_back((primary_lsn, now));
            if self.history.len() > HISTORY {
                self.history.pop_front();
            }
        }
        let replicas = proxy.replicas();
        self.replicas
            .retain(|(addr, _)| replicas.iter().any(|r| r.address == *addr));
        for state in replicas.iter() {
            let slot = match self.replicas.iter().position(|(a, _)| *a == state.address) {
                Some(i) => i,
                None => {
                    self.replicas.push((state.address.clone(), None));
                    self.replicas.len() - 1
                }
            };
            let replay = query_lsn(
                &mut self.replicas[slot].1,
                proxy,
                &state.address,
                "SELECT pg_last_wal_replay_lsn()::text",
            )
            .await;
            let Some(replay) = replay else {
                state.unreachable();
                continue;
            };
            let lag = self
                .history
                .iter()
                .find(|(lsn, _)| *lsn > replay)
                .map_or(Duration::ZERO, |(_, seen)| now.duration_since(*seen));
            let limits = LagLimits {
                max_lag: state
                    .max_lag
                    .or(Some(proxy.config().consistency.max_replica_lag))
                    .filter(|d| !d.is_zero()),
                max_lag_bytes: Some(proxy.config().consistency.max_replica_lag_bytes)
                    .filter(|b| *b > 0),
                hysteresis: proxy.config().consistency.hysteresis,
            };
            state.record(
                Measurement {
                    replay_lsn: replay,
                    lag_bytes: primary_lsn.saturating_sub(replay),
                    lag,
                },
                &limits,
                now,
            );
        }
    }

    async fn primary_lsn(&mut self, proxy: &Arc<Proxy>) -> Option<Lsn> {
        query_lsn(
            &mut self.primary,
            proxy,
            &proxy.primary().address(),
            "SELECT pg_current_wal_lsn()::text",
        )
        .await
    }
}

/// Runs `sql` (one LSN column) on the monitor's connection to `backend`, opening it when needed; on any
/// failure the connection is dropped (reopened next time) and `None` returned.
async fn query_lsn(
    conn: &mut Option<ServerConn>,
    proxy: &Proxy,
    backend: &BackendAddr,
    sql: &str,
) -> Option<Lsn> {
    if conn.is_none() {
        let config = &proxy.config().consistency;
        let key = PoolKey {
            backend: backend.clone(),
            database: config.monitor_database.clone(),
            user: config.monitor_user.clone(),
        };
        let pools = proxy.pools();
        let options = crate::pool::ConnectOptions {
            application_name: Some("pgroute lag monitor"),
            ..pools.connect_options()
        };
        match connect(&key, &options, pools.connect_timeout()).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                tracing::warn!(%backend, user = %key.user, error = %crate::error_chain(&e), "lag monitor cannot connect; this server gets no reads until it can");
                return None;
            }
        }
    }
    let c = conn.as_mut()?;
    // A hung server (stopped process, dead host) must not stall the measurement of the others.
    let answer = tokio::time::timeout(proxy.pools().connect_timeout(), c.query_lsn(sql)).await;
    let Ok(answer) = answer else {
        tracing::warn!(%backend, "lag monitor query got no answer in time");
        *conn = None;
        return None;
    };
    match answer {
        Ok(lsn) => {
            if lsn.is_none() {
                tracing::warn!(%backend, "lag monitor: no WAL position (is this server a replica of the primary?)");
            }
            lsn
        }
        Err(e) => {
            tracing::warn!(%backend, error = %crate::error_chain(&e), "lag monitor query failed");
            *conn = None;
            None
        }
    }
}
