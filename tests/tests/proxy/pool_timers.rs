//! The pool's timers, as a user would check them: backend connections idle past `server_idle_timeout` are
//! closed (but never below `min_idle`), and connections older than `server_lifetime` are replaced.
//!
//! Every test looks at the real backends through a direct connection and `pg_stat_activity`, and at the
//! pool's own counters, and waits by polling with short sleeps (the maintenance tick is 1 s).
//!
//! `server_connect_timeout` is covered by `faults::blackholed_backend_fails_fast_with_08001` (a cold login
//! through a blackhole fails with 08001 after the configured 1 s, not later), so it is not repeated here.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute::pool::Pool;
use pgroute_tests::Stack;
use tokio::time::timeout;

const HANG: Duration = Duration::from_secs(5);

/// The pids of the proxy's backend connections (every client backend but the asking one: each test has
/// its own cluster, so nobody else is connected).
async fn backend_pids(direct: &tokio_postgres::Client) -> anyhow::Result<BTreeSet<i32>> {
    let rows = timeout(
        HANG,
        direct.query(
            "select pid from pg_stat_activity \
             where backend_type = 'client backend' and pid <> pg_backend_pid() and application_name NOT LIKE 'pgroute %'",
            &[],
        ),
    )
    .await
    .context("pg_stat_activity hung")??;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The stack's only pool (postgres/postgres), which exists once a client logged in.
fn the_pool(stack: &Stack) -> anyhow::Result<Arc<Pool>> {
    let pools = stack.proxy.proxy.pools().all();
    match pools.as_slice() {
        [pool] => Ok(pool.clone()),
        other => anyhow::bail!("expected one pool, got {}", other.len()),
    }
}

fn open(pool: &Pool) -> u32 {
    pool.stats().open.load(Ordering::Relaxed)
}

/// Polls the backends every 50 ms until `done` holds for their pids, for at most `within`; returns them.
async fn wait_for_backends(
    direct: &tokio_postgres::Client,
    within: Duration,
    what: &str,
    mut done: impl FnMut(&BTreeSet<i32>) -> bool,
) -> anyhow::Result<BTreeSet<i32>> {
    let deadline = Instant::now() + within;
    loop {
        let pids = backend_pids(direct).await?;
        if done(&pids) {
            return Ok(pids);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} not reached within {within:?}: backends {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn backend_pid(client: &tokio_postgres::Client) -> anyhow::Result<i32> {
    Ok(
        timeout(HANG, client.query_one("select pg_backend_pid()", &[]))
            .await
            .context("select pg_backend_pid() hung")??
            .get(0),
    )
}

#[tokio::test]
async fn idle_backend_connections_are_closed_after_server_idle_timeout() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = NonZeroU32::new(5).expect("non-zero");
        c.pool.server_idle_timeout = Duration::from_secs(1);
    })
    .await?;
    let direct = stack.connect_direct().await?;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(timeout(HANG, stack.connect()).await??);
    }
    // A burst: five transactions at once need five backend connections.
    let burst: Vec<_> = clients
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                c.simple_query("select pg_sleep(0.2)").await?;
                anyhow::Ok(c)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for task in burst {
        clients.push(timeout(HANG, task).await.context("the burst hung")???);
    }
    let pool = the_pool(&stack)?;
    let busy = backend_pids(&direct).await?;
    assert_eq!(busy.len(), 5, "{busy:?}");
    assert_eq!(open(&pool), 5);
    assert_eq!(pool.idle_count(), 5);

    // Idle for 1 s, closed at the next 1 s tick: gone within about 2 s, in PostgreSQL and in the pool.
    let started = Instant::now();
    wait_for_backends(&direct, Duration::from_secs(3), "no backends", |p| {
        p.is_empty()
    })
    .await?;
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "closed before server_idle_timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(open(&pool), 0);
    assert_eq!(pool.idle_count(), 0);

    // The clients stay connected, and the next query opens a fresh backend connection.
    let connects = pool.stats().connects.load(Ordering::Relaxed);
    let pid = backend_pid(&clients[0]).await?;
    assert!(
        !busy.contains(&pid),
        "a closed backend {pid} served a query"
    );
    assert_eq!(pool.stats().connects.load(Ordering::Relaxed), connects + 1);
    assert_eq!(backend_pids(&direct).await?, BTreeSet::from([pid]));
    Ok(())
}

#[tokio::test]
async fn min_idle_connections_outlive_server_idle_timeout() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.min_idle = 2;
        c.pool.server_idle_timeout = Duration::from_secs(1);
    })
    .await?;
    let direct = stack.connect_direct().await?;
    let client = timeout(HANG, stack.connect()).await??;
    backend_pid(&client).await?;
    let pool = the_pool(&stack)?;

    // The upkeep tops the pool up to two connections...
    let kept = wait_for_backends(&direct, Duration::from_secs(3), "two backends", |p| {
        p.len() == 2
    })
    .await?;
    // ...and keeps those same two, idle well past the timeout: never fewer, never replaced.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(backend_pids(&direct).await?, kept);
        assert_eq!(open(&pool), 2);
        assert_eq!(pool.idle_count(), 2);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pool.stats().connects.load(Ordering::Relaxed), 2);
    // And they serve queries.
    let pid = backend_pid(&client).await?;
    assert!(kept.contains(&pid), "{pid} is not one of {kept:?}");
    Ok(())
}

#[tokio::test]
async fn connections_past_server_lifetime_are_replaced() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = NonZeroU32::MIN;
        c.pool.server_lifetime = Duration::from_secs(1);
    })
    .await?;
    let direct = stack.connect_direct().await?;
    let client = timeout(HANG, stack.connect()).await??;
    let a = backend_pid(&client).await?;
    // Still young: reused.
    assert_eq!(backend_pid(&client).await?, a);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = backend_pid(&client).await?;
    assert_ne!(
        a, b,
        "a connection older than server_lifetime served a query"
    );
    wait_for_backends(
        &direct,
        Duration::from_secs(2),
        "the old backend gone",
        |p| !p.contains(&a),
    )
    .await?;
    let pool = the_pool(&stack)?;
    assert_eq!(open(&pool), 1);
    Ok(())
}

/// Idle connections are validated while idle: backends terminated from outside are noticed and replaced
/// by the upkeep (here up to `min_idle`) before any client needs them.
#[tokio::test]
async fn dead_idle_connections_are_replaced_while_idle() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| c.pool.min_idle = 2).await?;
    let direct = stack.connect_direct().await?;
    let client = timeout(HANG, stack.connect()).await??;
    backend_pid(&client).await?;
    let pool = the_pool(&stack)?;
    let first = wait_for_backends(&direct, Duration::from_secs(3), "two backends", |p| {
        p.len() == 2
    })
    .await?;
    direct
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name NOT LIKE 'pgroute %'",
        )
        .await?;
    let second = wait_for_backends(&direct, Duration::from_secs(5), "two new backends", |p| {
        p.len() == 2 && p.is_disjoint(&first)
    })
    .await?;
    assert_eq!(open(&pool), 2);
    assert_eq!(pool.stats().connects.load(Ordering::Relaxed), 4);
    // The client, which never touched the dead ones, lands on a live one.
    let pid = backend_pid(&client).await?;
    assert!(second.contains(&pid));
    Ok(())
}
