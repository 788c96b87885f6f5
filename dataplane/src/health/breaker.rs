//! A circuit breaker per backend: after repeated connection failures, connection attempts fail at once
//! instead of each client waiting out a connect timeout against a server that is not there, and the
//! server is not met by a storm of reconnects when it comes back.
//!
//! Closed → (N consecutive failures, or a failure rate over a window) → Open → (cooldown) → HalfOpen,
//! where a few probe attempts go through → Closed on the first success, Open again on a failure. Time
//! is passed in, so the state machine is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::HealthConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// Why the breaker refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Until the breaker lets a probe through (zero while half-open probes are all in use).
    pub retry_in: Duration,
    /// What opened it.
    pub failures: u32,
}

/// The limits, copied out of [`HealthConfig`].
#[derive(Debug, Clone, Copy)]
pub struct BreakerLimits {
    pub failures: u32,
    pub failure_rate: f64,
    pub min_attempts: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub half_open_probes: u32,
}

impl From<&HealthConfig> for BreakerLimits {
    fn from(c: &HealthConfig) -> Self {
        BreakerLimits {
            failures: c.breaker_failures.max(1),
            failure_rate: c.breaker_failure_rate,
            min_attempts: c.breaker_min_attempts.max(1),
            window: c.breaker_window,
            cooldown: c.breaker_cooldown,
            half_open_probes: c.breaker_half_open_probes.max(1),
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    limits: BreakerLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive: u32,
    /// Failures that opened the breaker (for the error message).
    opened_by: u32,
    opened_at: Instant,
    probes_in_flight: u32,
    window_start: Instant,
    window_attempts: u32,
    window_failures: u32,
    /// Times the breaker opened, for metrics.
    opened_count: u64,
}

impl Breaker {
    pub fn new(limits: BreakerLimits, now: Instant) -> Breaker {
        Breaker {
            limits,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive: 0,
                opened_by: 0,
                opened_at: now,
                probes_in_flight: 0,
                window_start: now,
                window_attempts: 0,
                window_failures: 0,
                opened_count: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state as of `now` (an open breaker past its cooldown reads half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        let inner = self.lock();
        match inner.state {
            BreakerState::Open if now >= inner.opened_at + self.limits.cooldown => {
                BreakerState::HalfOpen
            }
            s => s,
        }
    }

    /// How many times it opened since start.
    pub fn opened_count(&self) -> u64 {
        self.lock().opened_count
    }

    /// May a connection attempt start now? Every `Ok` must be followed by [`Breaker::success`] or
    /// [`Breaker::failure`].
    pub fn admit(&self, now: Instant) -> Result<(), Refused> {
        let mut inner = self.lock();
        if inner.state == BreakerState::Open {
            let reopens = inner.opened_at + self.limits.cooldown;
            if now < reopens {
                return Err(Refused {
                    retry_in: reopens - now,
                    failures: inner.opened_by,
                });
            }
            inner.state = BreakerState::HalfOpen;
            inner.probes_in_flight = 0;
        }
        if inner.state == BreakerState::HalfOpen {
            if inner.probes_in_flight >= self.limits.half_open_probes {
                return Err(Refused {
                    retry_in: Duration::ZERO,
                    failures: inner.opened_by,
                });
            }
            inner.probes_in_flight += 1;
        }
        Ok(())
    }

    pub fn success(&self, now: Instant) {
        let mut inner = self.lock();
        self.count(&mut inner, now, false);
        inner.consecutive = 0;
        if inner.state != BreakerState::Closed {
            inner.state = BreakerState::Closed;
            inner.probes_in_flight = 0;
        }
    }

    pub fn failure(&self, now: Instant) {
        let mut inner = self.lock();
        self.count(&mut inner, now, true);
        inner.consecutive = inner.consecutive.saturating_add(1);
        let rate_tripped = self.limits.failure_rate > 0.0
            && inner.window_attempts >= self.limits.min_attempts
            && f64::from(inner.window_failures)
                >= self.limits.failure_rate * f64::from(inner.window_attempts);
        let trip = match inner.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => inner.consecutive >= self.limits.failures || rate_tripped,
            BreakerState::Open => false,
        };
        if trip {
            let failures = inner.consecutive;
            Self::open(&mut inner, now, failures);
        }
    }

    /// Opens the breaker whatever its counts say (health checks marked the backend down).
    pub fn trip(&self, now: Instant, failures: u32) {
        let mut inner = self.lock();
        if inner.state != BreakerState::Open {
            Self::open(&mut inner, now, failures);
        }
    }

    fn open(inner: &mut Inner, now: Instant, failures: u32) {
        inner.state = BreakerState::Open;
        inner.opened_at = now;
        inner.opened_by = failures;
        inner.probes_in_flight = 0;
        inner.opened_count += 1;
    }

    fn count(&self, inner: &mut Inner, now: Instant, failed: bool) {
        if now.duration_since(inner.window_start) >= self.limits.window {
            inner.window_start = now;
            inner.window_attempts = 0;
            inner.window_failures = 0;
        }
        inner.window_attempts = inner.window_attempts.saturating_add(1);
        if failed {
            inner.window_failures = inner.window_failures.saturating_add(1);
        }
        if inner.state == BreakerState::HalfOpen {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BreakerLimits {
        BreakerLimits {
            failures: 3,
            failure_rate: 0.5,
            min_attempts: 10,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_refuses_until_the_cooldown() {
        let t0 = Instant::now();
        let b = Breaker::new(limits(), t0);
        for _ in 0..2 {
            b.admit(t0).expect("admitted");
            b.failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.admit(t0).expect("admitted");
        b.failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        let refused = b.admit(t0 + Duration::from_secs(1)).expect_err("refused");
        assert_eq!(refused.retry_in, Duration::from_secs(4));
        assert_eq!(refused.failures, 3);
        assert_eq!(b.opened_count(), 1);
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let t0 = Instant::now();
        let b = Breaker::new(limits(), t0);
        for _ in 0..5 {
            b.failure(t0);
            b.failure(t0);
            b.success(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn half_open_lets_limited_probes_through_then_closes_on_success() {
        let t0 = Instant::now();
        let b = Breaker::new(limits(), t0);
        b.trip(t0, 3);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        b.admit(later).expect("admitted");
        assert_eq!(
            b.admit(later).expect_err("refused").retry_in,
            Duration::ZERO
        );
        b.success(later);
        assert_eq!(b.state(later), BreakerState::Closed);
        b.admit(later).expect("admitted");
        b.admit(later).expect("admitted");
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cooldown() {
        let t0 = Instant::now();
        let b = Breaker::new(limits(), t0);
        b.trip(t0, 3);
        let probe_at = t0 + Duration::from_secs(6);
        b.admit(probe_at).expect("admitted");
        b.failure(probe_at);
        assert_eq!(b.state(probe_at), BreakerState::Open);
        assert!(b.admit(probe_at + Duration::from_secs(4)).is_err());
        assert!(b.admit(probe_at + Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it() {
        let t0 = Instant::now();
        let b = Breaker::new(limits(), t0);
        // Alternating: never 3 in a row, but half of 10 attempts failed.
        for i in 0..10 {
            if i % 2 == 0 {
                b.success(t0);
            } else {
                b.failure(t0);
            }
        }
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn the_rate_window_restarts() {
        let t0 = Instant::now();
        let b = Breaker::new(limits(), t0);
        for i in 0..9 {
            let now = t0 + Duration::from_secs(2 * i);
            if i % 2 == 0 {
                b.success(now);
            } else {
                b.failure(now);
            }
        }
        assert_eq!(b.state(t0 + Duration::from_secs(20)), BreakerState::Closed);
    }
}
