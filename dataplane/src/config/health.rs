//! `[health]` and `[failover]`: how pgroute decides a backend is down, stops hammering it, lets it back
//! in, and follows a new primary. Kept apart from the rest of the tree because these settings are read
//! only by `health::*` and the session's write path.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Health checks, circuit breakers and rehydration, per backend. Restart to change (each backend's
/// checks and breaker are built with them).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Run health checks at all: one connection per backend (as `consistency.monitor_user`) running
    /// `SELECT pg_is_in_recovery()`. Default true. Without them the breaker still works from pool
    /// connection failures, but no backend is ever marked down and no failover is followed.
    pub checks: bool,
    /// Time between checks of each backend. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A check not answered within this counts as failed (connect and query together). Default `1s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed checks before a backend is marked down: its breaker opens, it leaves the read
    /// pool, and transactions running on it get an error at once. Default 3.
    pub max_failing_checks: u32,
    /// Consecutive passing checks before a backend marked down is back (hysteresis). Default 2.
    pub min_passing_checks: u32,
    /// Consecutive connection failures (pool connects and checks) that open a backend's breaker.
    /// Default 5.
    pub breaker_failures: u32,
    /// Or: this share of connection attempts failing within `breaker_window` (once at least
    /// `breaker_min_attempts` were made) opens it. Default 0.5; 0 disables the rate rule.
    pub breaker_failure_rate: f64,
    /// Default 20.
    pub breaker_min_attempts: u32,
    /// Default `10s`.
    #[serde(with = "humantime_serde")]
    pub breaker_window: Duration,
    /// How long an open breaker fails connection attempts at once before letting probes through
    /// (half-open). Default `5s`.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Connection attempts allowed at once while half-open; the first success closes the breaker, a
    /// failure opens it for another cooldown. Default 1.
    pub breaker_half_open_probes: u32,
    /// After a backend comes back, new connections to it are opened at most this many per
    /// `rehydration_delay`, so a recovered server is not met by every waiting client at once. Default 5.
    pub rehydration_batch: u32,
    /// Default `200ms`.
    #[serde(with = "humantime_serde")]
    pub rehydration_delay: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            checks: true,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_failing_checks: 3,
            min_passing_checks: 2,
            breaker_failures: 5,
            breaker_failure_rate: 0.5,
            breaker_min_attempts: 20,
            breaker_window: Duration::from_secs(10),
            breaker_cooldown: Duration::from_secs(5),
            breaker_half_open_probes: 1,
            rehydration_batch: 5,
            rehydration_delay: Duration::from_millis(200),
        }
    }
}

/// Following a new primary in standalone mode (pgroute never promotes anything itself). Reloadable.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// When the primary is down (or reports it is in recovery), follow whichever configured backend
    /// (`backends.primary` or a replica) health checks find out of recovery. Default true. Ignored in
    /// managed mode (`[control]`): the control plane moves the primary.
    pub follow: bool,
    /// While no primary can be reached, a transaction that needs one waits up to this long for it to
    /// come back or for a new one, then fails with SQLSTATE 57P03. Reads keep going to replicas.
    /// Default `30s`; `0s` fails at once (SQLSTATE 08001, as without failover).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most clients waiting for a primary at once; more fail at once with SQLSTATE 57P03. Default 1000.
    pub max_waiting: u32,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            follow: true,
            timeout: Duration::from_secs(30),
            max_waiting: 1000,
        }
    }
}
