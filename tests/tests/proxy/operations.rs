//! Operations on a running proxy under load: PAUSE/RESUME, RELOAD and graceful shutdown, each with
//! real clients that must see no error they did not ask for.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute::classify::{Route, RuleMatch};
use pgroute::pool::Pool;
use pgroute_tests::raw::RawClient;
use pgroute_tests::Stack;

/// Clients running transactions in a loop until stopped, recording when each one completed and
/// counting errors.
struct Load {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    done: Arc<Mutex<Vec<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` connections, each running `sqls` in turn (one simple-query batch each).
    async fn start(
        stack: &Stack,
        clients: usize,
        sqls: &'static [&'static str],
    ) -> anyhow::Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = stack.connect().await?;
            let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    match client.batch_execute(sqls[i % sqls.len()]).await {
                        Ok(()) => done.lock().expect("lock").push(Instant::now()),
                        Err(e) => {
                            eprintln!("client error: {e:?}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
            }));
        }
        Ok(Load {
            stop,
            errors,
            done,
            tasks,
        })
    }

    fn completed_between(&self, from: Instant, to: Instant) -> usize {
        let done = self.done.lock().expect("lock");
        done.iter().filter(|t| **t > from && **t <= to).count()
    }

    /// Stops the clients and returns how many errors they saw.
    async fn finish(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .context("load client did not stop")??;
        }
        Ok(self.errors.load(Ordering::Relaxed))
    }
}

/// Polls `check` until it holds, for up to `limit`.
async fn eventually(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn pause_holds_new_transactions_until_resume_with_no_client_errors() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| c.pool.pool_size = NonZeroU32::new(4).expect("4")).await?;
    let proxy = stack.proxy.proxy.clone();
    let open = stack.connect().await?;
    open.batch_execute("BEGIN; SELECT 1").await?;
    let load = Load::start(&stack, 20, &["BEGIN; SELECT 1; COMMIT", "SELECT 2"]).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pausing = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            proxy.pause().await;
            Instant::now()
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pausing.is_finished(),
        "pause() returned while a transaction was still open"
    );
    // The transaction that was open when the pause began finishes normally.
    tokio::time::timeout(
        Duration::from_secs(10),
        open.batch_execute("SELECT 3; COMMIT"),
    )
    .await
    .context("open transaction did not finish during the pause")??;
    let paused_at = tokio::time::timeout(Duration::from_secs(10), pausing)
        .await
        .context("pause() did not return after the open transaction ended")??;
    assert_eq!(proxy.gate().in_flight(), 0);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let resumed_at = Instant::now();
    // A client answer read just after pause() returned may have been sent just before: allow the
    // client tasks a moment to record it.
    let margin = Duration::from_millis(250);
    let during = load.completed_between(paused_at + margin, resumed_at);
    assert_eq!(during, 0, "transactions completed while paused");
    assert!(proxy.resume());

    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = load.completed_between(resumed_at, Instant::now());
    assert!(after > 20, "only {after} transactions after resume");
    assert_eq!(load.finish().await?, 0, "client errors");
    Ok(())
}

fn primary_pool(stack: &Stack) -> anyhow::Result<Arc<Pool>> {
    let proxy = &stack.proxy.proxy;
    proxy
        .pools()
        .all()
        .into_iter()
        .find(|p| p.key().backend == proxy.primary().address() && p.key().user == "postgres")
        .context("no pool for the primary")
}

/// Backend connections on the primary other than the asking one.
async fn primary_backends(direct: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name NOT LIKE 'pgroute %'",
            &[],
        )
        .await?
        .get(0))
}

async fn on_replica(c: &tokio_postgres::Client) -> anyhow::Result<bool> {
    Ok(c.query_one("select pg_is_in_recovery()", &[]).await?.get(0))
}

#[tokio::test]
async fn reload_resizes_pools_and_reroutes_under_load_with_no_client_errors() -> anyhow::Result<()>
{
    let stack = Stack::start(1, |c| {
        c.pool.pool_size = NonZeroU32::new(4).expect("4");
        c.consistency.monitor = false;
    })
    .await?;
    let proxy = stack.proxy.proxy.clone();
    let direct = stack.connect_direct().await?;
    let probe = stack.connect().await?;
    assert!(
        on_replica(&probe).await?,
        "a plain read goes to the replica"
    );
    // Transactions hold primary connections for a while, so the pool stays busy.
    let load = Load::start(
        &stack,
        20,
        &["BEGIN; SELECT pg_sleep(0.02); COMMIT", "SELECT 1"],
    )
    .await?;
    let pool = primary_pool(&stack)?;
    eventually(Duration::from_secs(15), "pool of 4 busy", || {
        pool.stats().open.load(Ordering::Relaxed) == 4
    })
    .await?;

    let mut bigger = (*proxy.config()).clone();
    bigger.pool.pool_size = NonZeroU32::new(8).expect("8");
    let report = proxy.reload(bigger)?;
    assert_eq!(report.applied, ["pool.pool_size"]);
    assert_eq!(pool.size(), 8);
    eventually(Duration::from_secs(15), "pool grown to 8", || {
        pool.stats().open.load(Ordering::Relaxed) == 8
    })
    .await?;
    assert!(primary_backends(&direct).await? <= 8);

    let mut smaller = (*proxy.config()).clone();
    smaller.pool.pool_size = NonZeroU32::new(2).expect("2");
    smaller.routing.rules.push(RuleMatch {
        pattern: Some("pg_is_in_recovery".into()),
        fingerprint: None,
        route: Route::Primary,
    });
    let report = proxy.reload(smaller)?;
    assert_eq!(report.applied, ["pool.pool_size", "routing.rules"]);
    eventually(Duration::from_secs(15), "pool shrunk to 2", || {
        pool.shrink_pending() == 0 && pool.stats().open.load(Ordering::Relaxed) <= 2
    })
    .await?;
    // The closed connections' backends exit shortly after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while primary_backends(&direct).await? > 2 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "primary still has more than 2 pool connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert!(
            pool.stats().active.load(Ordering::Relaxed) <= 2,
            "more than 2 busy after shrinking"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The new rule applies to a client logged in before the reload, from its next batch.
    assert!(
        !on_replica(&probe).await?,
        "the new rule sends the probe to the primary"
    );

    // An invalid configuration is refused whole; a restart-only key keeps its value and is reported.
    let mut invalid = (*proxy.config()).clone();
    invalid.pool.pool_size = NonZeroU32::new(9).expect("9");
    invalid.pool.min_idle = 10;
    assert!(proxy.reload(invalid).is_err());
    assert_eq!(pool.size(), 2, "a rejected reload changed the pool");
    let mut moved = (*proxy.config()).clone();
    moved.server.listen = "127.0.0.1:1".into();
    let report = proxy.reload(moved)?;
    assert_eq!(report.needs_restart, ["server.listen"]);
    assert_eq!(proxy.config().server.listen, "127.0.0.1:0");

    assert_eq!(load.finish().await?, 0, "client errors");
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_open_transactions_commit_and_closes_idle_clients_with_57p01(
) -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let Stack {
        proxy,
        cluster: _cluster,
    } = stack;
    let addr = proxy.addr;
    let primary = pgroute_tests::connect(_cluster.primary().addr()).await?;
    primary
        .batch_execute("CREATE TABLE shutdown_t (x int)")
        .await?;
    let open = pgroute_tests::connect(addr).await?;
    open.batch_execute("BEGIN; INSERT INTO shutdown_t VALUES (1)")
        .await?;
    let mut idle = RawClient::login(addr).await?;

    let shutting = tokio::spawn(proxy.shutdown(Duration::from_secs(30)));
    let message = tokio::time::timeout(Duration::from_secs(10), idle.expect_fatal("57P01"))
        .await
        .context("idle client not closed")??;
    assert!(message.contains("shutting down"), "{message}");
    // The listener is closed: new clients are refused.
    let refused = tokio::time::timeout(Duration::from_secs(10), pgroute_tests::connect(addr)).await;
    assert!(matches!(refused, Ok(Err(_))), "a new client was accepted");
    // The open transaction commits, then its client is closed too.
    open.batch_execute("INSERT INTO shutdown_t VALUES (2); COMMIT")
        .await?;
    let after = open.batch_execute("SELECT 1").await;
    assert!(after.is_err(), "client kept after its transaction");
    let cut = tokio::time::timeout(Duration::from_secs(20), shutting)
        .await
        .context("shutdown did not finish")??;
    assert_eq!(cut, 0, "sessions cut at the deadline");
    let rows: i64 = primary
        .query_one("SELECT count(*) FROM shutdown_t", &[])
        .await?
        .get(0);
    assert_eq!(rows, 2);
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_what_is_left_at_its_deadline() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let Stack {
        proxy,
        cluster: _cluster,
    } = stack;
    let stuck = pgroute_tests::connect(proxy.addr).await?;
    stuck.batch_execute("BEGIN; SELECT 1").await?;
    let started = Instant::now();
    let cut = tokio::time::timeout(
        Duration::from_secs(20),
        proxy.shutdown(Duration::from_secs(1)),
    )
    .await
    .context("shutdown did not finish")?;
    assert_eq!(cut, 1);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(
        stuck.batch_execute("COMMIT").await.is_err(),
        "the stuck client is still connected"
    );
    Ok(())
}

/// The port of the server that answers `c`'s next read.
async fn read_port(c: &tokio_postgres::Client) -> anyhow::Result<u16> {
    let port: i32 = c.query_one("SELECT inet_server_port()", &[]).await?.get(0);
    Ok(u16::try_from(port)?)
}

/// Reads through `c` until one is answered by `port`.
async fn reads_reach(c: &tokio_postgres::Client, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_port(c).await? != port {
        anyhow::ensure!(Instant::now() < deadline, "reads never reached port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn reload_adds_and_removes_replicas_and_moves_the_primary_without_dropping_clients(
) -> anyhow::Result<()> {
    // The cluster has a replica, but pgroute starts without it: reads go to the primary.
    let stack = Stack::start(1, |c| c.backends.replicas.clear()).await?;
    let proxy = stack.proxy.proxy.clone();
    let replica = stack.cluster.replicas()[0].clone();
    let primary_port = stack.cluster.primary().port;
    let client = stack.connect().await?;
    assert_eq!(read_port(&client).await?, primary_port);
    let load = Load::start(&stack, 8, &["SELECT 1", "BEGIN; SELECT 2; COMMIT"]).await?;

    // Added: the same connected client's reads reach it once the lag monitor has measured it.
    let mut with_replica = (*proxy.config()).clone();
    with_replica.backends.replicas = vec![pgroute::config::ReplicaConfig::from(
        replica
            .host_port()
            .parse::<pgroute::config::BackendAddr>()
            .map_err(anyhow::Error::msg)?,
    )];
    let report = proxy.reload(with_replica.clone())?;
    assert_eq!(report.applied, ["backends.replicas"]);
    assert!(report.needs_restart.is_empty());
    reads_reach(&client, replica.port).await?;

    // The primary moves (here: to a fault proxy in front of the same server, so the data is there).
    let front = pgroute_tests::fault::FaultProxy::start(stack.cluster.primary().addr()).await?;
    let mut moved = with_replica.clone();
    moved.backends.primary = Some(
        front
            .addr()
            .to_string()
            .parse()
            .map_err(anyhow::Error::msg)?,
    );
    proxy.reload(moved.clone())?;
    let before = front.attempts();
    client
        .execute("SELECT pg_advisory_xact_lock(1)", &[])
        .await?;
    assert!(
        front.attempts() > before,
        "the write did not go to the new primary address"
    );
    assert_eq!(
        proxy.primary().address().to_string(),
        front.addr().to_string()
    );

    // Removed: reads come back to the primary, and the replica's connections are closed.
    let mut without = moved.clone();
    without.backends.replicas.clear();
    proxy.reload(without)?;
    for _ in 0..20 {
        assert_eq!(read_port(&client).await?, primary_port);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let errors = load.finish().await?;
    assert_eq!(errors, 0, "clients saw errors during the reloads");
    Ok(())
}

#[tokio::test]
async fn drain_sends_new_reads_elsewhere_and_lets_running_ones_finish() -> anyhow::Result<()> {
    let stack = Stack::start(1, |_| {}).await?;
    let proxy = stack.proxy.proxy.clone();
    let replica = stack.cluster.replicas()[0].clone();
    let replica_addr: pgroute::config::BackendAddr =
        replica.host_port().parse().map_err(anyhow::Error::msg)?;
    let reader = stack.connect().await?;
    reads_reach(&reader, replica.port).await?;

    // A read-only transaction running on the replica when it is drained finishes there.
    let running = stack.connect().await?;
    loop {
        running.batch_execute("BEGIN READ ONLY").await?;
        if read_port(&running).await? == replica.port {
            break;
        }
        running.batch_execute("COMMIT").await?;
    }
    proxy.drain(&replica_addr)?;
    assert_eq!(read_port(&running).await?, replica.port);
    running.batch_execute("COMMIT").await?;

    // New reads go to the primary while drained; the primary itself cannot be drained.
    for _ in 0..20 {
        assert_eq!(read_port(&reader).await?, stack.cluster.primary().port);
    }
    let err = proxy
        .drain(&proxy.primary().address())
        .expect_err("drained the primary");
    assert!(err.to_string().contains("switchover"), "{err}");

    proxy.undrain(&replica_addr)?;
    reads_reach(&reader, replica.port).await
}
