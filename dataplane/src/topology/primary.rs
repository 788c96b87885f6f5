//! Which backend is the primary right now. Standalone, health checks move it when they find another
//! configured backend promoted (`health::check`); managed, the control plane sets it.
//!
//! Sessions keep their pools and compare [`Primary::generation`] (one atomic load) before each
//! transaction, so the address behind its lock is only read when it changed.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::RwLock;

use tokio::sync::Notify;

use crate::config::BackendAddr;

#[derive(Debug)]
pub struct Primary {
    current: RwLock<BackendAddr>,
    generation: AtomicU64,
    /// False while health checks find no backend that can take writes.
    available: AtomicBool,
    changed: Notify,
    /// Clients waiting for a primary right now (bounded by `failover.max_waiting`).
    waiting: AtomicU32,
}

impl Primary {
    pub fn new(address: BackendAddr) -> Primary {
        Primary {
            current: RwLock::new(address),
            generation: AtomicU64::new(0),
            available: AtomicBool::new(true),
            changed: Notify::new(),
            waiting: AtomicU32::new(0),
        }
    }

    pub fn address(&self) -> BackendAddr {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Bumped on every change of address, and of the replicas ([`Primary::replicas_changed`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes `address` the primary; `false` when it already was.
    pub fn set(&self, address: BackendAddr) -> bool {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current == address {
            return false;
        }
        *current = address;
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(current);
        self.changed.notify_waiters();
        true
    }

    /// Announces a change of the replicas: sessions rebuild their read pools before their next
    /// transaction, as they do when the primary moves.
    pub fn replicas_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Whether some backend can take writes (false during a failover until a new primary is found).
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// Marks the primary (un)available; waiters are woken when it becomes available.
    pub fn set_available(&self, available: bool) {
        if self.available.swap(available, Ordering::AcqRel) != available && available {
            self.changed.notify_waiters();
        }
    }

    /// Woken by [`Primary::set`] and [`Primary::set_available`].
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Takes a place among the clients waiting for a primary, if fewer than `max` wait.
    pub fn start_waiting(&self, max: u32) -> Option<WaitSlot<'_>> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitSlot { primary: self })
    }

    /// Clients waiting for a primary right now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }
}

/// One client's place in the wait for a primary.
#[derive(Debug)]
pub struct WaitSlot<'a> {
    primary: &'a Primary,
}

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.primary.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
