//! The gate every transaction passes before it gets a backend connection: open while serving, closed
//! while paused (PAUSE, for switchovers: new transactions wait, those in flight finish), and closed for
//! good once shutdown begins (waiters and idle clients are told 57P01 and closed).
//!
//! The phase is a `watch` channel, so a waiter never misses a change and a late subscriber sees the
//! current phase at once; transactions in flight are an atomic counter with a `Notify` for "it reached
//! zero", which is what `pause()` waits for. Passing an open gate costs two atomic operations and no
//! lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// What the gate lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Transactions start normally.
    Serving,
    /// New transactions wait; those in flight finish.
    Paused,
    /// No new transactions; idle clients are closed. Final.
    ShuttingDown,
}

/// The transaction gate of one proxy.
#[derive(Debug)]
pub struct Gate {
    phase: watch::Sender<Phase>,
    in_flight: Arc<InFlight>,
}

#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    /// Notified whenever `count` drops to zero.
    idle: Notify,
}

/// Held by a transaction from before its backend is chosen until it is back at rest; dropping it lets
/// a pending `pause()` finish.
#[derive(Debug)]
#[must_use = "the transaction counts as in flight only while the guard lives"]
pub struct InFlightGuard {
    in_flight: Arc<InFlight>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.in_flight.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.in_flight.idle.notify_waiters();
        }
    }
}

/// The gate is closed for good: the proxy is shutting down.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("pgroute is shutting down")]
pub struct ShuttingDown;

impl Default for Gate {
    fn default() -> Self {
        Gate {
            phase: watch::Sender::new(Phase::Serving),
            in_flight: Arc::default(),
        }
    }
}

impl Gate {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Transactions between [`Gate::enter`] and the drop of their guard.
    pub fn in_flight(&self) -> usize {
        self.in_flight.count.load(Ordering::SeqCst)
    }

    /// Waits while paused, then counts the caller as in flight. Fails once shutdown has begun.
    pub async fn enter(&self) -> Result<InFlightGuard, ShuttingDown> {
        loop {
            match self.phase() {
                Phase::ShuttingDown => return Err(ShuttingDown),
                Phase::Paused => {
                    let mut rx = self.phase.subscribe();
                    // The sender lives as long as `self`, so this cannot fail while we are borrowed.
                    let _ = rx.wait_for(|p| *p != Phase::Paused).await;
                }
                Phase::Serving => {
                    self.in_flight.count.fetch_add(1, Ordering::SeqCst);
                    let guard = InFlightGuard {
                        in_flight: self.in_flight.clone(),
                    };
                    // `pause()` sets the phase before it reads the count; reading the phase after
                    // counting (both SeqCst) means either it sees us or we see it.
                    if self.phase() == Phase::Serving {
                        return Ok(guard);
                    }
                    drop(guard);
                }
            }
        }
    }

    /// Closes the gate for new transactions and returns once none is in flight. Idempotent; does not
    /// reopen a gate that is shutting down.
    pub async fn pause(&self) {
        self.phase.send_if_modified(|p| {
            let changed = *p == Phase::Serving;
            if changed {
                *p = Phase::Paused;
            }
            changed
        });
        self.drained().await;
    }

    /// Opens a paused gate; the waiting transactions go ahead. `false` if it was not paused.
    pub fn resume(&self) -> bool {
        self.phase.send_if_modified(|p| {
            let changed = *p == Phase::Paused;
            if changed {
                *p = Phase::Serving;
            }
            changed
        })
    }

    /// Closes the gate for good: waiters and later callers of [`Gate::enter`] fail, and
    /// [`Gate::shutting_down`] completes.
    pub fn shut_down(&self) {
        self.phase.send_replace(Phase::ShuttingDown);
    }

    /// Completes once shutdown has begun (at once if it already has).
    pub async fn shutting_down(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::ShuttingDown).await;
    }

    /// Returns once no transaction is in flight.
    pub async fn drained(&self) {
        loop {
            let idle = self.in_flight.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn pause_waits_for_transactions_in_flight_and_holds_new_ones() {
        let gate = Arc::new(Gate::default());
        let running = gate.enter().await.expect("serving");
        let pausing = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pause().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !pausing.is_finished(),
            "pause returned with a transaction in flight"
        );
        assert_eq!(gate.phase(), Phase::Paused);
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(drop) }
        });
        drop(running);
        pausing.await.expect("pause task");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !waiting.is_finished(),
            "a new transaction started while paused"
        );
        assert!(gate.resume());
        waiting.await.expect("task").expect("admitted after resume");
        assert!(!gate.resume(), "not paused any more");
    }

    #[tokio::test]
    async fn shutdown_fails_waiters_and_newcomers() {
        let gate = Arc::new(Gate::default());
        gate.pause().await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        gate.shut_down();
        assert!(waiting.await.expect("task").is_err());
        assert!(gate.enter().await.is_err());
        gate.shutting_down().await;
        gate.resume();
        assert_eq!(
            gate.phase(),
            Phase::ShuttingDown,
            "resume does not undo shutdown"
        );
    }
}
