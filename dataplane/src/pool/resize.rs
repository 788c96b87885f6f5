//! Changing a pool's settings while it serves (RELOAD).
//!
//! Timings are read from the swapped config at each use, so only the size needs work. Growing adds
//! permits at once. Shrinking takes permits out of circulation: the free ones at once, and for the
//! rest a background task queues for permits like any client (FIFO) and forgets each one it gets, so a
//! busy connection is never killed: its client finishes, and its permit is not given back. Idle
//! connections above the new size are closed as permits disappear. A grow while a shrink is still
//! pending cancels that much of the shrink first.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::config::PoolConfig;

use super::Pool;

/// Shrink still owed: permits to take out of circulation as they come back.
#[derive(Debug, Default)]
pub(super) struct Resize {
    state: Mutex<Owed>,
}

#[derive(Debug, Default)]
struct Owed {
    permits: u32,
    /// A task is collecting `permits`.
    collecting: bool,
}

impl Pool {
    /// Applies new settings: timings from the next use, the size as described in the module doc.
    pub fn reconfigure(self: &Arc<Self>, config: PoolConfig) {
        let new = config.pool_size.get();
        let old = self.config.swap(Arc::new(config)).pool_size.get();
        if new == old {
            return;
        }
        tracing::info!(pool = %self.describe(), from = old, to = new, "pool size changed");
        let spawn = {
            let mut owed = self.resize.state.lock().unwrap_or_else(|e| e.into_inner());
            if new > old {
                let grow = new - old;
                let cancelled = grow.min(owed.permits);
                owed.permits -= cancelled;
                self.permits.add_permits((grow - cancelled) as usize);
                false
            } else {
                owed.permits += old - new;
                let forgotten = self.permits.forget_permits(owed.permits as usize) as u32;
                owed.permits -= forgotten;
                let spawn = owed.permits > 0 && !owed.collecting;
                owed.collecting |= spawn;
                spawn
            }
        };
        self.trim_idle();
        if spawn {
            tokio::spawn(collect(self.clone()));
        }
    }

    /// Closes the oldest idle connections while more are open than the pool's size.
    fn trim_idle(&self) {
        let size = self.size();
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        while self.stats.open.load(Ordering::Relaxed) > size && !idle.is_empty() {
            idle.remove(0);
            self.stats.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Permits still to be taken out of circulation after a shrink.
    pub fn shrink_pending(&self) -> u32 {
        self.resize
            .state
            .lock()
            .map(|o| o.permits)
            .unwrap_or_default()
    }
}

/// Takes owed permits one at a time as clients give them back.
async fn collect(pool: Arc<Pool>) {
    loop {
        {
            let mut owed = pool.resize.state.lock().unwrap_or_else(|e| e.into_inner());
            if owed.permits == 0 {
                owed.collecting = false;
                return;
            }
        }
        let Ok(permit) = pool.permits.acquire().await else {
            return; // the semaphore is never closed; nothing to collect for then
        };
        {
            let mut owed = pool.resize.state.lock().unwrap_or_else(|e| e.into_inner());
            if owed.permits > 0 {
                permit.forget();
                owed.permits -= 1;
            }
            // Otherwise the pool grew meanwhile: the permit goes back on drop.
        }
        pool.trim_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn pool(size: u32) -> Arc<Pool> {
        let config = PoolConfig {
            pool_size: NonZeroU32::new(size).expect("nonzero"),
            ..PoolConfig::default()
        };
        let pools = super::super::Pools::new(
            config,
            1 << 20,
            Arc::default(),
            None,
            Arc::new(crate::health::Backends::new(
                Default::default(),
                std::iter::empty(),
            )),
        );
        pools.get(&super::super::PoolKey {
            backend: "127.0.0.1:1".parse().expect("addr"),
            database: "d".into(),
            user: "u".into(),
        })
    }

    fn with_size(size: u32) -> PoolConfig {
        PoolConfig {
            pool_size: NonZeroU32::new(size).expect("nonzero"),
            ..PoolConfig::default()
        }
    }

    #[tokio::test]
    async fn grows_and_shrinks_free_permits_at_once() {
        let pool = pool(4);
        pool.reconfigure(with_size(6));
        assert_eq!((pool.size(), pool.permits.available_permits()), (6, 6));
        pool.reconfigure(with_size(2));
        assert_eq!((pool.size(), pool.permits.available_permits()), (2, 2));
        assert_eq!(pool.shrink_pending(), 0);
    }

    #[tokio::test]
    async fn shrinking_busy_permits_waits_for_them_to_come_back() {
        let pool = pool(3);
        let held: Vec<_> = (0..3)
            .map(|_| pool.permits.clone().try_acquire_owned().expect("free"))
            .collect();
        pool.reconfigure(with_size(1));
        assert_eq!(pool.shrink_pending(), 2);
        let mut held = held.into_iter();
        drop(held.next());
        drop(held.next());
        for _ in 0..100 {
            if pool.shrink_pending() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.shrink_pending(), 0);
        assert_eq!(
            pool.permits.available_permits(),
            0,
            "one permit is still held"
        );
        drop(held);
        assert_eq!(pool.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn growing_cancels_a_pending_shrink_first() {
        let pool = pool(2);
        let held: Vec<_> = (0..2)
            .map(|_| pool.permits.clone().try_acquire_owned().expect("free"))
            .collect();
        pool.reconfigure(with_size(1));
        pool.reconfigure(with_size(3));
        assert_eq!(pool.shrink_pending(), 0);
        assert_eq!(pool.permits.available_permits(), 1);
        drop(held);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.permits.available_permits(), 3);
    }
}
