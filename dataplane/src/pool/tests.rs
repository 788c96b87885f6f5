//! Queueing decisions without a backend: permits are taken by hand, and time is paused so waits are
//! exact.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::auth::Keyring;

fn config(pool_size: u32) -> PoolConfig {
    PoolConfig {
        pool_size: NonZeroU32::new(pool_size).expect("nonzero"),
        ..PoolConfig::default()
    }
}

fn pool(config: PoolConfig) -> Arc<Pool> {
    let key = PoolKey {
        backend: "127.0.0.1:1".parse().expect("addr"),
        database: "app".into(),
        user: "app".into(),
    };
    let connect = ConnectOptions {
        keyring: Arc::new(Keyring::default()),
        max_message_size: 1 << 20,
        tls: None,
        keepalive: config.server_tcp_keepalive,
        application_name: None,
    };
    let health = crate::health::BackendHealth::new(key.backend.clone(), &Default::default());
    Pool::new(key, config, connect, Arc::default(), health)
}

/// Takes every regular permit, as clients holding all connections would.
fn fill(pool: &Arc<Pool>) -> OwnedSemaphorePermit {
    pool.permits
        .clone()
        .try_acquire_many_owned(pool.size())
        .expect("pool starts empty")
}

async fn until_waiting(pool: &Pool, n: u32) {
    while pool.stats.waiting.load(Ordering::Relaxed) < n {
        tokio::task::yield_now().await;
    }
}

#[test]
fn admit_sheds_low_priority_only_at_the_configured_depth() {
    let c = PoolConfig {
        shed_queue_depth: 2,
        ..config(1)
    };
    assert_eq!(admit(&c, 1, Priority::Low), Ok(()));
    assert_eq!(
        admit(&c, 2, Priority::Low),
        Err(Rejection::Shed {
            waiting: 2,
            depth: 2
        })
    );
    assert_eq!(admit(&c, 50, Priority::Normal), Ok(()));
    let never = PoolConfig {
        shed_queue_depth: 0,
        ..config(1)
    };
    assert_eq!(admit(&never, 50, Priority::Low), Ok(()));
}

#[test]
fn admit_bounds_the_queue_for_everyone_when_max_waiting_is_set() {
    let c = PoolConfig {
        max_waiting: 3,
        ..config(4)
    };
    assert_eq!(admit(&c, 2, Priority::Normal), Ok(()));
    assert_eq!(
        admit(&c, 3, Priority::Normal),
        Err(Rejection::QueueFull { size: 4, max: 3 })
    );
    assert_eq!(admit(&config(4), 10_000, Priority::Normal), Ok(()));
}

#[test]
fn priority_comes_from_user_or_application_name() {
    let c = PoolConfig {
        low_priority_users: vec!["reporting".into()],
        low_priority_application_names: vec!["nightly-batch".into()],
        ..PoolConfig::default()
    };
    assert_eq!(Priority::of(&c, "reporting", None), Priority::Low);
    assert_eq!(
        Priority::of(&c, "app", Some("nightly-batch")),
        Priority::Low
    );
    assert_eq!(Priority::of(&c, "app", Some("web")), Priority::Normal);
    assert_eq!(Priority::of(&c, "app", None), Priority::Normal);
}

#[tokio::test(start_paused = true)]
async fn reserve_is_used_only_after_reserve_pool_timeout() {
    let pool = pool(PoolConfig {
        reserve_pool_size: 1,
        reserve_pool_timeout: Duration::from_secs(5),
        ..config(1)
    });
    let _held = fill(&pool);
    let started = Instant::now();
    let (_permit, reserve) = pool
        .wait_for_permit(Priority::Normal)
        .await
        .expect("reserve permit");
    assert!(reserve);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    // The reserve is now taken too: the next client waits the whole queue_timeout.
    let started = Instant::now();
    let err = pool
        .wait_for_permit(Priority::Normal)
        .await
        .expect_err("no permit left");
    assert!(matches!(err, PoolError::QueueTimeout { .. }), "{err}");
    assert_eq!(started.elapsed(), pool.config.load().queue_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_regular_connection_freed_before_the_reserve_timeout_wins() {
    let pool = pool(PoolConfig {
        reserve_pool_size: 1,
        ..config(1)
    });
    let held = fill(&pool);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
    });
    let started = Instant::now();
    let (_permit, reserve) = pool
        .wait_for_permit(Priority::Normal)
        .await
        .expect("regular permit");
    assert!(!reserve);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn fail_fast_takes_a_free_reserve_then_rejects_at_once() {
    let pool = pool(PoolConfig {
        queue_mode: QueueMode::FailFast,
        reserve_pool_size: 1,
        ..config(2)
    });
    let _held = fill(&pool);
    let started = Instant::now();
    let (_reserve, from_reserve) = pool
        .wait_for_permit(Priority::Normal)
        .await
        .expect("reserve");
    assert!(from_reserve);
    let err = pool
        .wait_for_permit(Priority::Normal)
        .await
        .expect_err("full");
    assert!(
        matches!(
            err,
            PoolError::Rejected {
                why: Rejection::FailFast {
                    size: 2,
                    reserve: 1
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(pool.stats.rejected.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn max_waiting_rejects_the_client_after_the_limit_and_admits_again_when_it_drains() {
    let pool = pool(PoolConfig {
        max_waiting: 1,
        ..config(1)
    });
    let held = fill(&pool);
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.wait_for_permit(Priority::Normal).await.map(|_| ()) }
    });
    until_waiting(&pool, 1).await;
    let err = pool
        .wait_for_permit(Priority::Normal)
        .await
        .expect_err("queue full");
    assert!(
        matches!(
            err,
            PoolError::Rejected {
                why: Rejection::QueueFull { max: 1, .. },
                ..
            }
        ),
        "{err}"
    );
    drop(held);
    first.await.expect("task").expect("first waiter served");
    assert_eq!(pool.stats.waiting.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn low_priority_is_shed_while_normal_clients_keep_queueing() {
    let pool = pool(PoolConfig {
        shed_queue_depth: 1,
        ..config(1)
    });
    let held = fill(&pool);
    let normal = tokio::spawn({
        let pool = pool.clone();
        async move { pool.wait_for_permit(Priority::Normal).await.map(|_| ()) }
    });
    until_waiting(&pool, 1).await;
    let err = pool.wait_for_permit(Priority::Low).await.expect_err("shed");
    assert!(
        matches!(
            err,
            PoolError::Rejected {
                why: Rejection::Shed {
                    waiting: 1,
                    depth: 1
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(pool.stats.shed.load(Ordering::Relaxed), 1);
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.wait_for_permit(Priority::Normal).await.map(|_| ()) }
    });
    until_waiting(&pool, 2).await;
    drop(held);
    normal.await.expect("task").expect("normal client served");
    second
        .await
        .expect("task")
        .expect("second normal client served");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_goes_away_leaves_the_queue() {
    let pool = pool(PoolConfig {
        max_waiting: 1,
        ..config(1)
    });
    let _held = fill(&pool);
    let gone = tokio::spawn({
        let pool = pool.clone();
        async move { pool.wait_for_permit(Priority::Normal).await.map(|_| ()) }
    });
    until_waiting(&pool, 1).await;
    gone.abort();
    assert!(gone.await.is_err(), "aborted");
    assert_eq!(pool.stats.waiting.load(Ordering::Relaxed), 0);
    // Its place is free for the next client, which waits (and times out) instead of being rejected.
    let err = pool
        .wait_for_permit(Priority::Normal)
        .await
        .expect_err("still full");
    assert!(matches!(err, PoolError::QueueTimeout { .. }), "{err}");
}
