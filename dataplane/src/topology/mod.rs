//! What the proxy knows about each replica right now: how far behind the primary it is, and whether it
//! may take reads. Written by the lag monitor (`health::lag`), read by every routing decision, so it is
//! atomics only: no lock on the request path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BackendAddr;

mod primary;
pub use primary::{Primary, WaitSlot};

/// A WAL position (`pg_lsn`) as a number, so positions compare and subtract.
pub type Lsn = u64;

/// Parses PostgreSQL's `X/Y` text form of an LSN.
pub fn parse_lsn(text: &str) -> Option<Lsn> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Why a replica is not taking reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    /// Never measured yet, or the monitor cannot reach it.
    Unknown,
    /// Over `max_replica_lag` (time or bytes).
    Lagging,
    /// Back under the threshold, waiting out the hysteresis window.
    Recovering,
}

/// One replica's replication state.
#[derive(Debug)]
pub struct ReplicaState {
    pub address: BackendAddr,
    /// Its share of reads (`backends.replicas[].weight`).
    pub weight: u32,
    /// Its own lag limit (`backends.replicas[].max_lag`), over `consistency.max_replica_lag`.
    pub max_lag: Option<Duration>,
    replay_lsn: AtomicU64,
    lag_bytes: AtomicU64,
    lag_millis: AtomicU64,
    eligible: AtomicBool,
    /// What the monitor last decided, with the time the replica went back under the threshold.
    verdict: Mutex<(Option<Ineligible>, Option<Instant>)>,
}

impl ReplicaState {
    /// A replica not yet measured. With no lag monitor configured it is eligible from the start
    /// (nothing will ever measure it); otherwise it waits for its first measurement.
    pub fn new(address: BackendAddr, monitored: bool) -> ReplicaState {
        ReplicaState {
            address,
            weight: 1,
            max_lag: None,
            replay_lsn: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            lag_millis: AtomicU64::new(0),
            eligible: AtomicBool::new(!monitored),
            verdict: Mutex::new(((monitored).then_some(Ineligible::Unknown), None)),
        }
    }

    /// A configured replica, not yet measured.
    pub fn configured(replica: &crate::config::ReplicaConfig, monitored: bool) -> ReplicaState {
        ReplicaState {
            weight: replica.weight,
            max_lag: replica.max_lag,
            ..ReplicaState::new(replica.address.clone(), monitored)
        }
    }

    /// The last WAL position the replica was seen to have replayed.
    pub fn replay_lsn(&self) -> Lsn {
        self.replay_lsn.load(Ordering::Acquire)
    }

    /// A replay position seen outside the monitor (a read-your-writes probe): positions only move on.
    pub fn saw_replay(&self, lsn: Lsn) {
        self.replay_lsn.fetch_max(lsn, Ordering::AcqRel);
    }

    pub fn lag(&self) -> (u64, Duration) {
        (
            self.lag_bytes.load(Ordering::Relaxed),
            Duration::from_millis(self.lag_millis.load(Ordering::Relaxed)),
        )
    }

    /// Whether the replica is within the configured lag (after hysteresis).
    pub fn eligible(&self) -> bool {
        self.eligible.load(Ordering::Acquire)
    }

    /// Why it is not eligible, `None` when it is.
    pub fn ineligible(&self) -> Option<Ineligible> {
        self.verdict
            .lock()
            .map(|v| v.0)
            .unwrap_or(Some(Ineligible::Unknown))
    }

    /// A replica whose measured lag is at most `max_lag` (hints that accept more lag than configured).
    pub fn within(&self, max_lag: Duration) -> bool {
        self.ineligible() != Some(Ineligible::Unknown) && self.lag().1 <= max_lag
    }

    /// Records a measurement and applies the threshold: over it, the replica leaves the read pool at
    /// once; back under it, it returns only after staying under for `hysteresis`.
    pub fn record(&self, m: Measurement, limits: &LagLimits, now: Instant) {
        self.replay_lsn.fetch_max(m.replay_lsn, Ordering::AcqRel);
        self.lag_bytes.store(m.lag_bytes, Ordering::Relaxed);
        self.lag_millis.store(
            m.lag.as_millis().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        let over = limits.exceeded(m.lag_bytes, m.lag);
        let Ok(mut v) = self.verdict.lock() else {
            return;
        };
        *v = match (over, *v) {
            (true, _) => (Some(Ineligible::Lagging), None),
            // First measurement: no history to wait out.
            (false, (Some(Ineligible::Unknown), _)) => (None, None),
            (false, (None, _)) => (None, None),
            (false, (_, Some(since))) if now.duration_since(since) >= limits.hysteresis => {
                (None, None)
            }
            (false, (_, since)) => (Some(Ineligible::Recovering), Some(since.unwrap_or(now))),
        };
        self.eligible.store(v.0.is_none(), Ordering::Release);
    }

    /// The monitor could not measure the replica: it leaves the read pool until measured again.
    pub fn unreachable(&self) {
        if let Ok(mut v) = self.verdict.lock() {
            *v = (Some(Ineligible::Unknown), None);
        }
        self.eligible.store(false, Ordering::Release);
    }
}

/// One reading of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    pub replay_lsn: Lsn,
    pub lag_bytes: u64,
    pub lag: Duration,
}

/// The thresholds a replica is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagLimits {
    /// `None`: no time limit.
    pub max_lag: Option<Duration>,
    /// `None`: no byte limit.
    pub max_lag_bytes: Option<u64>,
    pub hysteresis: Duration,
}

impl LagLimits {
    fn exceeded(&self, bytes: u64, lag: Duration) -> bool {
        self.max_lag.is_some_and(|m| lag > m) || self.max_lag_bytes.is_some_and(|m| bytes > m)
    }
}

/// The last write of each user or causal token (`consistency.scope`), so another connection's reads
/// can wait for it. Bounded: entries older than [`CAUSAL_TTL`] are dropped when it fills.
#[derive(Debug, Default)]
pub struct CausalRegistry {
    writes: Mutex<std::collections::HashMap<String, (Lsn, Instant)>>,
}

/// How long a shared write position is kept (reads long after a write find every replica caught up).
pub const CAUSAL_TTL: Duration = Duration::from_secs(600);
const MAX_CAUSAL_KEYS: usize = 100_000;

impl CausalRegistry {
    pub fn record(&self, key: &str, lsn: Lsn) {
        let Ok(mut w) = self.writes.lock() else {
            return;
        };
        if w.len() >= MAX_CAUSAL_KEYS {
            w.retain(|_, (_, at)| at.elapsed() < CAUSAL_TTL);
            if w.len() >= MAX_CAUSAL_KEYS {
                w.clear();
            }
        }
        let now = Instant::now();
        let entry = w.entry(key.to_owned()).or_insert((lsn, now));
        *entry = (entry.0.max(lsn), now);
    }

    pub fn get(&self, key: &str) -> Option<(Lsn, Instant)> {
        self.writes.lock().ok()?.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> BackendAddr {
        "10.0.0.1:5432".parse().expect("addr")
    }

    fn m(lag_ms: u64) -> Measurement {
        Measurement {
            replay_lsn: 100,
            lag_bytes: 0,
            lag: Duration::from_millis(lag_ms),
        }
    }

    #[test]
    fn lsn_text_round_trips_as_numbers_that_compare() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x0300_0060));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(parse_lsn("1/0") > parse_lsn("0/FFFFFFFF"));
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn over_the_threshold_leaves_at_once_and_returns_after_the_hysteresis() {
        let limits = LagLimits {
            max_lag: Some(Duration::from_millis(500)),
            max_lag_bytes: None,
            hysteresis: Duration::from_secs(5),
        };
        let r = ReplicaState::new(addr(), true);
        assert!(!r.eligible(), "unmeasured");
        let t0 = Instant::now();
        r.record(m(100), &limits, t0);
        assert!(r.eligible());
        r.record(m(2_000), &limits, t0 + Duration::from_secs(1));
        assert_eq!(r.ineligible(), Some(Ineligible::Lagging));
        r.record(m(100), &limits, t0 + Duration::from_secs(2));
        assert_eq!(r.ineligible(), Some(Ineligible::Recovering));
        r.record(m(100), &limits, t0 + Duration::from_secs(6));
        assert!(!r.eligible(), "4 s under is not yet 5 s");
        r.record(m(100), &limits, t0 + Duration::from_secs(7));
        assert!(r.eligible());
        r.unreachable();
        assert_eq!(r.ineligible(), Some(Ineligible::Unknown));
    }

    #[test]
    fn byte_limit_and_unmonitored_replicas() {
        let limits = LagLimits {
            max_lag: None,
            max_lag_bytes: Some(1_000),
            hysteresis: Duration::ZERO,
        };
        let r = ReplicaState::new(addr(), true);
        r.record(
            Measurement {
                replay_lsn: 5,
                lag_bytes: 5_000,
                lag: Duration::ZERO,
            },
            &limits,
            Instant::now(),
        );
        assert!(!r.eligible());
        assert!(ReplicaState::new(addr(), false).eligible());
    }
}
