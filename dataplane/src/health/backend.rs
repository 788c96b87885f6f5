//! What the proxy knows about one backend's health: the health-check verdict (with hysteresis), the role
//! it last reported (primary or in recovery), its circuit breaker, the rehydration pace after it comes
//! back, and the signal that ends transactions running on it when it is marked down or retired.
//!
//! Shared by every pool on the backend (`pool::Pool` holds it), the health checker and the router, so
//! the read side is atomics; the locks are taken per connection attempt and per check, not per query.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::breaker::{Breaker, BreakerLimits, BreakerState, Refused};
use crate::config::{BackendAddr, HealthConfig};

/// The role a backend reported in its last answered check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not checked yet (or checks are off).
    Unknown,
    /// `pg_is_in_recovery()` was true.
    Replica,
    /// `pg_is_in_recovery()` was false.
    Primary,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Replica => "replica",
            Role::Primary => "primary",
        }
    }
}

/// What a check result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    WentDown,
    CameUp,
}

#[derive(Debug)]
pub struct BackendHealth {
    pub address: BackendAddr,
    breaker: Breaker,
    up: AtomicBool,
    role: AtomicU8,
    checks: Mutex<Checks>,
    max_failing: u32,
    min_passing: u32,
    /// Bumped, with `gone` notified, whenever transactions on this backend must end.
    gone_generation: AtomicU64,
    gone: Notify,
    rehydration: Mutex<Option<Rehydration>>,
    /// DRAIN: no new transactions; running ones finish, connections close as they come back.
    drained: AtomicBool,
    rehydration_batch: u32,
    rehydration_delay: Duration,
}

#[derive(Debug, Default)]
struct Checks {
    failing: u32,
    passing: u32,
    last_error: Option<String>,
}

impl BackendHealth {
    pub fn new(address: BackendAddr, config: &HealthConfig) -> Arc<BackendHealth> {
        Arc::new(BackendHealth {
            address,
            breaker: Breaker::new(BreakerLimits::from(config), Instant::now()),
            up: AtomicBool::new(true),
            role: AtomicU8::new(Role::Unknown as u8),
            checks: Mutex::new(Checks::default()),
            max_failing: config.max_failing_checks.max(1),
            min_passing: config.min_passing_checks.max(1),
            gone_generation: AtomicU64::new(0),
            gone: Notify::new(),
            rehydration: Mutex::new(None),
            drained: AtomicBool::new(false),
            rehydration_batch: config.rehydration_batch.max(1),
            rehydration_delay: config.rehydration_delay,
        })
    }

    /// Whether health checks consider it up (true until they say otherwise).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            1 => Role::Replica,
            2 => Role::Primary,
            _ => Role::Unknown,
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// Times its breaker opened since start.
    pub fn breaker_opened(&self) -> u64 {
        self.breaker.opened_count()
    }

    /// The last failed check's error, while it is failing.
    pub fn last_error(&self) -> Option<String> {
        self.lock_checks().last_error.clone()
    }

    /// May take reads: up, not drained, its breaker not open, and not (any longer) a primary.
    pub fn accepts_reads(&self) -> bool {
        self.is_up()
            && !self.is_drained()
            && self.role() != Role::Primary
            && self.breaker_state() != BreakerState::Open
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Sets or clears DRAIN; `true` when that changed something.
    pub fn set_drained(&self, drained: bool) -> bool {
        self.drained.swap(drained, Ordering::AcqRel) != drained
    }

    /// Before a pool opens a connection: the rehydration pace, then the breaker. Every `Ok` is followed
    /// by [`BackendHealth::connected`] or [`BackendHealth::connect_failed`].
    pub async fn before_connect(&self) -> Result<(), Refused> {
        loop {
            let wait = {
                let mut slot = self
                    .rehydration
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match slot.as_mut().map(|r| {
                    r.grant(
                        Instant::now(),
                        self.rehydration_batch,
                        self.rehydration_delay,
                    )
                }) {
                    None | Some(Grant::Now) => None,
                    Some(Grant::Over) => {
                        *slot = None;
                        None
                    }
                    Some(Grant::Wait(d)) => Some(d),
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => break,
            }
        }
        self.breaker.admit(Instant::now())
    }

    pub fn connected(&self) {
        let now = Instant::now();
        let was_open = self.breaker.state(now) != BreakerState::Closed;
        if was_open {
            self.start_rehydration(now);
        }
        self.breaker.success(now);
        if was_open {
            tracing::info!(event = "breaker_closed", backend = %self.address, "circuit breaker closed: a connection attempt succeeded");
        }
    }

    pub fn connect_failed(&self) {
        let now = Instant::now();
        let before = self.breaker.state(now);
        self.breaker.failure(now);
        if before != BreakerState::Open && self.breaker.state(now) == BreakerState::Open {
            tracing::warn!(event = "breaker_opened", backend = %self.address, "circuit breaker opened: connections to this backend fail at once until it recovers");
        }
    }

    /// A check answered; `in_recovery` is `None` when the server answered but the check could not
    /// ask it (for example the monitor user cannot log in): alive, role unknown.
    pub fn check_passed(&self, in_recovery: Option<bool>) -> Transition {
        if let Some(r) = in_recovery {
            let role = if r { Role::Replica } else { Role::Primary };
            self.role.store(role as u8, Ordering::Release);
        }
        let mut checks = self.lock_checks();
        checks.failing = 0;
        checks.last_error = None;
        checks.passing = checks.passing.saturating_add(1);
        if !self.is_up() && checks.passing >= self.min_passing {
            self.up.store(true, Ordering::Release);
            drop(checks);
            let now = Instant::now();
            self.breaker.success(now);
            self.start_rehydration(now);
            return Transition::CameUp;
        }
        Transition::None
    }

    pub fn check_failed(&self, error: String) -> Transition {
        let mut checks = self.lock_checks();
        checks.passing = 0;
        checks.failing = checks.failing.saturating_add(1);
        checks.last_error = Some(error);
        if self.is_up() && checks.failing >= self.max_failing {
            let failing = checks.failing;
            self.up.store(false, Ordering::Release);
            drop(checks);
            self.breaker.trip(Instant::now(), failing);
            return Transition::WentDown;
        }
        Transition::None
    }

    /// Ends every transaction running on this backend (they get an error); called when it is marked
    /// down, and when it stops being the primary.
    pub fn end_transactions(&self) {
        self.gone_generation.fetch_add(1, Ordering::AcqRel);
        self.gone.notify_waiters();
    }

    /// Notified by [`BackendHealth::end_transactions`]. Create the `notified()` future before reading
    /// [`BackendHealth::gone_generation`], then compare, so an ending in between is not missed.
    pub fn gone(&self) -> &Notify {
        &self.gone
    }

    pub fn gone_generation(&self) -> u64 {
        self.gone_generation.load(Ordering::Acquire)
    }

    fn start_rehydration(&self, now: Instant) {
        *self
            .rehydration
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Rehydration {
            started: now,
            granted: 0,
        });
    }

    fn lock_checks(&self) -> std::sync::MutexGuard<'_, Checks> {
        self.checks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The pace of new connections after a backend came back: `batch` per `delay`, until demand falls
/// below that pace (a whole batch window went by without using its share), when it ends.
#[derive(Debug, Clone, Copy)]
struct Rehydration {
    started: Instant,
    granted: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Now,
    Wait(Duration),
    Over,
}

impl Rehydration {
    fn grant(&mut self, now: Instant, batch: u32, delay: Duration) -> Grant {
        if delay.is_zero() {
            return Grant::Over;
        }
        let elapsed = now.duration_since(self.started);
        let window = (elapsed.as_nanos() / delay.as_nanos()).min(u128::from(u32::MAX)) as u32;
        if window >= 1 && self.granted < batch.saturating_mul(window) {
            return Grant::Over;
        }
        if self.granted < batch.saturating_mul(window + 1) {
            self.granted += 1;
            return Grant::Now;
        }
        Grant::Wait(delay * (window + 1) - elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HealthConfig {
        HealthConfig {
            max_failing_checks: 3,
            min_passing_checks: 2,
            ..HealthConfig::default()
        }
    }

    #[test]
    fn down_after_max_failing_checks_and_up_after_min_passing() {
        let h = BackendHealth::new("127.0.0.1:1".parse().expect("address"), &config());
        assert_eq!(h.check_failed("x".into()), Transition::None);
        assert_eq!(h.check_failed("x".into()), Transition::None);
        assert_eq!(h.check_failed("x".into()), Transition::WentDown);
        assert!(!h.is_up());
        assert_eq!(h.breaker_state(), BreakerState::Open);
        assert!(!h.accepts_reads());
        // Hysteresis: one good check is not enough.
        assert_eq!(h.check_passed(Some(true)), Transition::None);
        assert!(!h.is_up());
        assert_eq!(h.check_passed(Some(true)), Transition::CameUp);
        assert!(h.accepts_reads());
        assert_eq!(h.role(), Role::Replica);
    }

    #[test]
    fn a_failure_between_passes_restarts_the_hysteresis() {
        let h = BackendHealth::new("127.0.0.1:1".parse().expect("address"), &config());
        for _ in 0..3 {
            h.check_failed("x".into());
        }
        h.check_passed(Some(true));
        h.check_failed("x".into());
        assert_eq!(h.check_passed(Some(true)), Transition::None);
        assert_eq!(h.check_passed(Some(true)), Transition::CameUp);
    }

    #[test]
    fn a_promoted_replica_takes_no_reads() {
        let h = BackendHealth::new("127.0.0.1:1".parse().expect("address"), &config());
        h.check_passed(Some(false));
        assert_eq!(h.role(), Role::Primary);
        assert!(!h.accepts_reads());
    }

    #[test]
    fn rehydration_paces_connections_by_batch_and_ends_when_demand_falls() {
        let t0 = Instant::now();
        let delay = Duration::from_millis(100);
        let mut r = Rehydration {
            started: t0,
            granted: 0,
        };
        for _ in 0..3 {
            assert_eq!(r.grant(t0, 3, delay), Grant::Now);
        }
        assert_eq!(r.grant(t0, 3, delay), Grant::Wait(delay));
        let second = t0 + delay;
        for _ in 0..3 {
            assert_eq!(r.grant(second, 3, delay), Grant::Now);
        }
        assert!(matches!(r.grant(second, 3, delay), Grant::Wait(_)));
        // Only one more taken in the third window: in the fourth, the pace is no longer needed.
        assert_eq!(r.grant(t0 + 2 * delay, 3, delay), Grant::Now);
        assert_eq!(r.grant(t0 + 3 * delay, 3, delay), Grant::Over);
    }
}
