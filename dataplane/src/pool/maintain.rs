//! Background upkeep of one pool: close connections idle past `server_idle_timeout` or found dead while
//! idle (one non-blocking read each, no round trip, so no thundering herd of validation queries), and
//! keep `min_idle` connections open. Runs on a timer, not on the request path, so a checkout never waits for it.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::Pool;

const TICK: Duration = Duration::from_secs(1);

/// Spawns the upkeep task; it ends when the pool is dropped.
pub(super) fn spawn(pool: Weak<Pool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            if pool.is_closed() {
                return;
            }
            close_idle(&pool);
            fill_min_idle(&pool).await;
        }
    });
}

fn close_idle(pool: &Pool) {
    let config = pool.config.load();
    let min = config.min_idle as usize;
    let Ok(mut idle) = pool.idle.lock() else {
        return;
    };
    let before = idle.len();
    // Oldest are at the front (LIFO stack); keep the `min` most recently used.
    let mut keep = idle.len();
    idle.retain(|c| {
        // A connection the server closed (or sent something unprompted on) is dead whatever `min_idle`
        // says: dropped here, while idle, rather than met by the next client (`fill_min_idle` below
        // replaces it).
        if !c.looks_alive() {
            keep -= 1;
            return false;
        }
        let stale = c.idle_for() >= config.server_idle_timeout || c.expired(config.server_lifetime);
        if stale && keep > min {
            keep -= 1;
            false
        } else {
            true
        }
    });
    let closed = before - idle.len();
    pool.stats.open.fetch_sub(closed as u32, Ordering::Relaxed);
}

async fn fill_min_idle(pool: &Pool) {
    if !pool.health.is_up() {
        return;
    }
    while pool.stats.open.load(Ordering::Relaxed) + pool.stats.connecting.load(Ordering::Relaxed)
        < pool.config.load().min_idle
    {
        let Ok(permit) = pool.permits.clone().try_acquire_owned() else {
            return;
        };
        match pool.open().await {
            Ok(conn) => {
                pool.stats.active.fetch_add(1, Ordering::Relaxed);
                pool.checkin(conn);
            }
            Err(e) => {
                tracing::warn!(pool = %pool.describe(), error = %e, "cannot open min_idle connection");
                return;
            }
        }
        drop(permit);
    }
}
