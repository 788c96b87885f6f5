//! Health checks, circuit breakers and failover, with real faults: replicas stopped, killed with
//! SIGKILL and frozen with SIGSTOP under load; the primary crashed and a replica promoted with
//! `pg_ctl promote`; the old primary back as a standby; a backend refusing connections for 30 s.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute::config::Config;
use pgroute::health::BreakerState;
use pgroute_tests::fault::{Fault, FaultProxy};
use pgroute_tests::{ClusterOptions, Stack};
use tokio::time::timeout;

/// Longest any single query may take in these tests before it counts as hung.
const QUERY_LIMIT: Duration = Duration::from_secs(15);

/// What a looping client saw.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    errors: Vec<(Instant, String)>,
    /// (when it finished, the server port that answered)
    answers: Vec<(Instant, i32)>,
    slowest: Duration,
}

/// `n` clients running `sql` (one row, one int4 column: the answering server's port) in a loop
/// through `addr` until `stop`, reconnecting after an error.
fn spawn_clients(
    addr: std::net::SocketAddr,
    n: usize,
    sql: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut client = None;
                while !stop.load(Ordering::Relaxed) {
                    if client.is_none() {
                        match pgroute_tests::connect(addr).await {
                            Ok(c) => client = Some(c),
                            Err(e) => {
                                seen.errors
                                    .push((Instant::now(), format!("connect: {e:#}")));
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                    let Some(c) = &client else { continue };
                    let started = Instant::now();
                    let result = timeout(QUERY_LIMIT, c.query_one(sql, &[])).await;
                    seen.slowest = seen.slowest.max(started.elapsed());
                    match result {
                        Ok(Ok(row)) => {
                            seen.ok += 1;
                            seen.answers.push((Instant::now(), row.get(0)));
                        }
                        Ok(Err(e)) => {
                            // A FATAL error closes the connection, though the driver may not
                            // have noticed yet.
                            let fatal = e.as_db_error().is_some_and(|d| d.severity() == "FATAL");
                            seen.errors.push((Instant::now(), format!("{e:?}")));
                            if fatal || c.is_closed() {
                                client = None;
                            }
                        }
                        Err(_) => {
                            seen.errors.push((Instant::now(), "hung".into()));
                            client = None;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Seen>>) -> anyhow::Result<Vec<Seen>> {
    let mut all = Vec::new();
    for h in handles {
        all.push(h.await?);
    }
    Ok(all)
}

const READ_PORT: &str = "SELECT inet_server_port()";

async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !f() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Runs reads through the proxy until one is answered by `port`.
async fn until_reads_reach(stack: &Stack, port: u16, limit: Duration) -> anyhow::Result<()> {
    let client = stack.connect().await?;
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(row) = client.query_one(READ_PORT, &[]).await {
            if row.get::<_, i32>(0) == i32::from(port) {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "reads never reached port {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replica dies under read load (`how` does it): reads go on, on the primary; only statements that
/// were running on the replica fail; the replica rejoins once it is back.
async fn replica_dies_under_load(how: &str) -> anyhow::Result<()> {
    let stack = Stack::start(1, |_| {}).await?;
    let replica = stack.cluster.replicas()[0].clone();
    let primary_port = i32::from(stack.cluster.primary().port);
    until_reads_reach(&stack, replica.port, Duration::from_secs(20)).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let clients = 8;
    let handles = spawn_clients(stack.addr(), clients, READ_PORT, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    let node = replica.clone();
    let how_owned = how.to_owned();
    tokio::task::spawn_blocking(move || match how_owned.as_str() {
        "stop" => node.stop_immediate(),
        _ => node.signal("KILL", false),
    })
    .await??;
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = collect(handles).await?;

    let errors: Vec<_> = seen
        .iter()
        .flat_map(|s| s.errors.iter())
        .filter(|(at, _)| *at >= killed_at)
        .collect();
    assert!(
        errors.len() <= clients,
        "more errors than statements in flight at the kill: {errors:?}"
    );
    let after: Vec<i32> = seen
        .iter()
        .flat_map(|s| s.answers.iter())
        .filter(|(at, _)| *at >= killed_at + Duration::from_secs(1))
        .map(|(_, port)| *port)
        .collect();
    assert!(
        after.len() > 50,
        "reads did not go on: {} answered",
        after.len()
    );
    assert!(after.iter().all(|p| *p == primary_port), "{after:?}");

    // Back: reads reach it again, without restarting anything.
    let node = replica.clone();
    tokio::task::spawn_blocking(move || {
        // After SIGKILL the old server processes take a moment to notice and exit.
        let mut tries = 0;
        loop {
            match node.start() {
                Ok(()) => return Ok(()),
                Err(e) if tries < 10 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    })
    .await??;
    until_reads_reach(&stack, replica.port, Duration::from_secs(30)).await
}

#[tokio::test]
async fn replica_stopped_immediately_under_load() -> anyhow::Result<()> {
    replica_dies_under_load("stop").await
}

#[tokio::test]
async fn replica_killed_with_sigkill_under_load() -> anyhow::Result<()> {
    replica_dies_under_load("kill").await
}

#[tokio::test]
async fn a_frozen_replica_opens_its_breaker_and_no_client_hangs() -> anyhow::Result<()> {
    let stack = Stack::start(1, |_| {}).await?;
    let replica = stack.cluster.replicas()[0].clone();
    let primary_port = i32::from(stack.cluster.primary().port);
    until_reads_reach(&stack, replica.port, Duration::from_secs(20)).await?;
    let health = stack
        .proxy
        .proxy
        .backends()
        .get(&replica.host_port().parse().map_err(anyhow::Error::msg)?);
    let config = stack.proxy.proxy.config().health.clone();
    // Detection: max_failing_checks checks, each at most `timeout` late, one interval apart.
    let detection = config.interval * config.max_failing_checks + config.timeout;

    let stop = Arc::new(AtomicBool::new(false));
    let handles = spawn_clients(stack.addr(), 8, READ_PORT, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen_at = Instant::now();
    let node = replica.clone();
    tokio::task::spawn_blocking(move || node.signal("STOP", true)).await??;
    let opened = until(
        "the breaker to open",
        detection + Duration::from_secs(3),
        || health.breaker_state() == BreakerState::Open,
    )
    .await
    .map(|()| frozen_at.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = collect(handles).await;
    // Thaw before asserting, so the cluster can be stopped whatever happens.
    let node = replica.clone();
    tokio::task::spawn_blocking(move || node.signal("CONT", true)).await??;
    let opened_after = opened?;
    let seen = seen?;

    assert!(
        opened_after <= detection + Duration::from_secs(2),
        "{opened_after:?}"
    );
    let slowest = seen.iter().map(|s| s.slowest).max().unwrap_or_default();
    assert!(
        slowest <= detection + Duration::from_secs(2),
        "a client waited {slowest:?}, longer than the health checks take to see the replica is gone ({detection:?})"
    );
    let late: Vec<i32> = seen
        .iter()
        .flat_map(|s| s.answers.iter())
        .filter(|(at, _)| *at >= frozen_at + detection + Duration::from_secs(1))
        .map(|(_, p)| *p)
        .collect();
    assert!(
        !late.is_empty(),
        "no reads once the replica was marked down"
    );
    assert!(late.iter().all(|p| *p == primary_port), "{late:?}");

    // Thawed: health checks pass again and reads come back to it.
    until_reads_reach(&stack, replica.port, Duration::from_secs(30)).await
}

#[tokio::test]
async fn primary_crash_and_promotion_lose_no_acknowledged_commit() -> anyhow::Result<()> {
    // Synchronous replication: a commit is acknowledged only once the replica has it.
    let stack = Stack::start_with(
        ClusterOptions {
            replicas: 1,
            settings: vec![
                ("synchronous_standby_names".into(), "*".into()),
                ("synchronous_commit".into(), "on".into()),
            ],
            ..ClusterOptions::default()
        },
        |_| {},
    )
    .await?;
    let old_primary = stack.cluster.primary().clone();
    let replica = stack.cluster.replicas()[0].clone();
    stack
        .connect_direct()
        .await?
        .batch_execute("CREATE TABLE acks (id bigint PRIMARY KEY)")
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(Instant, i64)>::new()));
    let next = Arc::new(AtomicUsize::new(1));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, acked, next, addr) =
                (stop.clone(), acked.clone(), next.clone(), stack.addr());
            tokio::spawn(async move {
                let mut client = None;
                while !stop.load(Ordering::Relaxed) {
                    if client.is_none() {
                        client = pgroute_tests::connect(addr).await.ok();
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                    let Some(c) = &client else { continue };
                    let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                    match timeout(
                        QUERY_LIMIT,
                        c.execute("INSERT INTO acks VALUES ($1)", &[&id]),
                    )
                    .await
                    {
                        Ok(Ok(_)) => acked
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((Instant::now(), id)),
                        _ => {
                            if c.is_closed() {
                                client = None;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (p, r) = (old_primary.clone(), replica.clone());
    let promoted_at = tokio::task::spawn_blocking(move || -> anyhow::Result<Instant> {
        p.stop_immediate()?;
        r.promote()?;
        Ok(Instant::now())
    })
    .await??;
    // Nobody is left to confirm synchronous commits: what an HA manager does on promotion.
    let promoted = pgroute_tests::connect(replica.addr()).await?;
    promoted
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        .await?;
    promoted.batch_execute("SELECT pg_reload_conf()").await?;
    until(
        "a commit after the promotion",
        Duration::from_secs(5),
        || {
            acked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|(at, _)| *at > promoted_at)
        },
    )
    .await
    .context("writes did not resume within 5 s of the promotion")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    assert_eq!(
        stack.proxy.proxy.primary().address().to_string(),
        replica.host_port()
    );

    // Every acknowledged commit is on the new primary.
    let acked: Vec<i64> = acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(_, id)| *id)
        .collect();
    let direct = pgroute_tests::connect(replica.addr()).await?;
    let present: Vec<i64> = direct
        .query("SELECT id FROM acks", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<_> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(acked.len() > 20, "only {} commits", acked.len());
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");

    // The old primary comes back as a standby: it gets no writes.
    let (p, r) = (old_primary.clone(), replica.clone());
    tokio::task::spawn_blocking(move || p.start_as_standby(&r)).await??;
    let old_health = stack.proxy.proxy.backends().get(
        &old_primary
            .host_port()
            .parse()
            .map_err(anyhow::Error::msg)?,
    );
    until(
        "the old primary to be seen in recovery",
        Duration::from_secs(10),
        || old_health.is_up() && old_health.role() == pgroute::health::Role::Replica,
    )
    .await?;
    let client = stack.connect().await?;
    for _ in 0..10 {
        let port: i32 = client
            .query_one(
                "INSERT INTO acks VALUES (-1 - (random() * 1e9)::bigint) RETURNING inet_server_port()",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(port, i32::from(replica.port));
    }
    Ok(())
}

#[tokio::test]
async fn without_a_primary_writes_wait_then_fail_while_reads_go_on() -> anyhow::Result<()> {
    let stack = Stack::start(1, |c: &mut Config| {
        c.failover.timeout = Duration::from_secs(2);
        c.failover.max_waiting = 1;
    })
    .await?;
    let replica = stack.cluster.replicas()[0].clone();
    until_reads_reach(&stack, replica.port, Duration::from_secs(20)).await?;
    let reader = stack.connect().await?;
    let writer = stack.connect().await?;
    let other_writer = stack.connect().await?;
    writer.batch_execute("CREATE TABLE t (x int)").await?;

    let primary = stack.cluster.primary().clone();
    tokio::task::spawn_blocking(move || primary.stop_immediate()).await??;

    // Reads go on from the replica.
    let port: i32 = reader.query_one(READ_PORT, &[]).await?.get(0);
    assert_eq!(port, i32::from(replica.port));

    // One write waits failover.timeout and then fails with 57P03; a second finds the queue full.
    let started = Instant::now();
    let (first, second) = tokio::join!(writer.execute("INSERT INTO t VALUES (1)", &[]), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at = Instant::now();
        (
            other_writer.execute("INSERT INTO t VALUES (2)", &[]).await,
            at.elapsed(),
        )
    });
    let took = started.elapsed();
    let first = first.err().context("a write succeeded without a primary")?;
    assert_eq!(
        first.code(),
        Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW)
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        first.to_string().contains("failover.timeout")
            || format!("{first:?}").contains("failover.timeout"),
        "{first:?}"
    );
    let (second, second_took) = second;
    let second = second.err().context("the second write succeeded")?;
    assert_eq!(
        second.code(),
        Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW)
    );
    assert!(second_took < Duration::from_millis(500), "{second_took:?}");
    assert!(
        format!("{second:?}").contains("failover.max_waiting"),
        "{second:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_write_rides_through_a_primary_restart() -> anyhow::Result<()> {
    let stack = Stack::start(1, |_| {}).await?;
    let writer = stack.connect().await?;
    writer.batch_execute("CREATE TABLE t (x int)").await?;
    // The kit runs synchronous_commit = off: make the table survive the crash.
    stack
        .connect_direct()
        .await?
        .batch_execute("CHECKPOINT")
        .await?;
    let primary = stack.cluster.primary().clone();
    tokio::task::spawn_blocking(move || primary.stop_immediate()).await??;
    // Down long enough for health checks to mark it so (and open its breaker).
    let health = stack
        .proxy
        .proxy
        .backends()
        .get(&stack.proxy.proxy.primary().address());
    until(
        "the primary to be marked down",
        Duration::from_secs(10),
        || !health.is_up(),
    )
    .await?;

    let primary = stack.cluster.primary().clone();
    let restart = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(500));
        primary.start()
    });
    let started = Instant::now();
    writer.execute("INSERT INTO t VALUES (1)", &[]).await?;
    restart.await??;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let n: i64 = stack
        .connect_direct()
        .await?
        .query_one("SELECT count(*) FROM t", &[])
        .await?
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test]
async fn a_backend_refusing_connections_for_30s_meets_no_connection_storm() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let fault = FaultProxy::start(stack.cluster.primary().addr()).await?;
    let proxy = pgroute_tests::start_proxy(fault.addr(), |c| {
        c.failover.timeout = Duration::ZERO;
        c.pool.server_connect_timeout = Duration::from_secs(1);
    })
    .await?;
    // Logged in while the backend is fine, so only queries need it.
    let stop = Arc::new(AtomicBool::new(false));
    let handles = spawn_clients(proxy.addr, 20, READ_PORT, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault.reset_all();
    fault.set(Fault::Refuse);
    let before = fault.attempts();
    let refusing = Duration::from_secs(30);
    tokio::time::sleep(refusing).await;
    let attempts = fault.attempts() - before;
    fault.set(Fault::None);
    let healed_at = Instant::now();
    // Everyone is served again soon after (the breaker's cooldown, then health checks).
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = collect(handles).await?;

    let per_second = attempts as f64 / refusing.as_secs_f64();
    assert!(
        per_second <= 4.0,
        "{attempts} connection attempts in {refusing:?} ({per_second:.1}/s) from 20 busy clients"
    );
    let errors: usize = seen.iter().map(|s| s.errors.len()).sum();
    assert!(
        errors > 20,
        "clients were not told the backend is failing ({errors} errors)"
    );
    let slowest = seen.iter().map(|s| s.slowest).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(2),
        "a client waited {slowest:?}"
    );
    for s in &seen {
        assert!(
            s.answers.iter().any(|(at, _)| *at > healed_at),
            "a client was never served again after the backend came back"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_replica_back_from_an_outage_is_rehydrated_in_batches() -> anyhow::Result<()> {
    let stack = Stack::start(1, |_| {}).await?;
    let replica = stack.cluster.replicas()[0].clone();
    let fault = FaultProxy::start(replica.addr()).await?;
    let (batch, delay) = (2u32, Duration::from_millis(500));
    let proxy = pgroute_tests::start_proxy(stack.cluster.primary().addr(), |c| {
        c.backends.replicas = vec![pgroute::config::ReplicaConfig::from(
            fault
                .addr()
                .to_string()
                .parse::<pgroute::config::BackendAddr>()
                .expect("address"),
        )];
        c.health.interval = Duration::from_millis(200);
        c.health.rehydration_batch = batch;
        c.health.rehydration_delay = delay;
    })
    .await?;
    let replica_addr: pgroute::config::BackendAddr = fault
        .addr()
        .to_string()
        .parse()
        .map_err(anyhow::Error::msg)?;
    let health = proxy.proxy.backends().get(&replica_addr);
    let opened = || -> u64 {
        proxy
            .proxy
            .pools()
            .all()
            .iter()
            .filter(|p| p.key().backend == replica_addr)
            .map(|p| p.stats().connects.load(Ordering::Relaxed))
            .sum()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let handles = spawn_clients(proxy.addr, 20, READ_PORT, stop.clone());
    until("reads on the replica", Duration::from_secs(20), || {
        opened() > 0
    })
    .await?;
    // An outage: every connection cut and new ones refused until the checks mark it down.
    fault.set(Fault::Refuse);
    fault.reset_all();
    until("the replica marked down", Duration::from_secs(10), || {
        !health.is_up()
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = opened();
    fault.set(Fault::None);
    until("the replica back up", Duration::from_secs(10), || {
        health.is_up()
    })
    .await?;
    let back = Instant::now();
    // Sample the pace: never more than `batch` per `delay` window (one window of slack for the
    // moment the recovery was noticed here).
    let mut samples = Vec::new();
    while back.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = back.elapsed();
        let windows = (elapsed.as_millis() / delay.as_millis()) as u64 + 2;
        samples.push((elapsed, opened() - before, u64::from(batch) * windows));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = opened() - before;
    stop.store(true, Ordering::Relaxed);
    collect(handles).await?;

    for (elapsed, n, allowed) in &samples {
        assert!(
            n <= allowed,
            "{n} connections opened {elapsed:?} after recovery; the pace allows {allowed}: {samples:?}"
        );
    }
    assert!(
        later > u64::from(batch) * 2,
        "the pool never grew past the first batches ({later} connections): the pace must end when demand is met"
    );
    Ok(())
}
