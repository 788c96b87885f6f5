//! Replication lag and read-your-writes, with real lag: a replica that applies WAL 2 s late
//! (`recovery_min_apply_delay`), or one whose replay is paused (`pg_wal_replay_pause()`).

use std::time::{Duration, Instant};

use pgroute::classify::{Reason, Route};
use pgroute::config::{CausalScope, Config, LagFallback};
use pgroute_tests::{ClusterOptions, Stack};
use tokio_postgres::error::SqlState;

const SETUP: &str = "CREATE TABLE notes (id int PRIMARY KEY, body text)";

/// A primary and one replica that applies WAL `delay` late; lag limits loose enough that the delayed
/// replica still takes reads, so only read-your-writes keeps a writer's reads fresh.
async fn delayed_stack(delay: &str, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Stack> {
    let stack = Stack::start_with(
        ClusterOptions {
            replicas: 1,
            settings: vec![("recovery_min_apply_delay".into(), delay.into())],
            ..ClusterOptions::default()
        },
        |c| {
            c.consistency.max_replica_lag = Duration::from_secs(30);
            c.consistency.lag_check_interval = Duration::from_millis(100);
            tweak(c);
        },
    )
    .await?;
    stack.connect_direct().await?.batch_execute(SETUP).await?;
    // The table must exist on the replica before anything reads there (it applies 2 s late).
    stack.wait_for_replicas().await?;
    Ok(stack)
}

/// Waits until the proxy's lag monitor counts the replica as taking reads.
async fn until_eligible(stack: &Stack) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stack.proxy.proxy.replicas().iter().all(|r| r.eligible()) {
        anyhow::ensure!(Instant::now() < deadline, "replica never became eligible");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Writes note `id` with `writer`, then asks `reader` whether it sees it.
async fn write_then_read(
    writer: &tokio_postgres::Client,
    reader: &tokio_postgres::Client,
    id: i32,
) -> anyhow::Result<bool> {
    writer
        .execute("INSERT INTO notes VALUES ($1, 'x')", &[&id])
        .await?;
    let n: i64 = reader
        .query_one("SELECT count(*) FROM notes WHERE id = $1", &[&id])
        .await?
        .get(0);
    Ok(n == 1)
}

async fn port(client: &tokio_postgres::Client) -> anyhow::Result<u16> {
    let p: i32 = client
        .query_one("SELECT inet_server_port()", &[])
        .await?
        .get(0);
    Ok(p as u16)
}

#[tokio::test]
async fn a_writer_always_reads_its_own_writes_from_a_lagging_replica_setup() -> anyhow::Result<()> {
    let stack = delayed_stack("2s", |_| {}).await?;
    until_eligible(&stack).await?;
    let replica = stack.cluster.replicas()[0].addr();

    // Through pgroute: 1,000 write-then-read cycles, not one stale read.
    let client = stack.connect().await?;
    let insert = client.prepare("INSERT INTO notes VALUES ($1, 'x')").await?;
    let read = client
        .prepare("SELECT count(*) FROM notes WHERE id = $1")
        .await?;
    let mut stale = 0;
    for id in 0..1000 {
        client.execute(&insert, &[&id]).await?;
        let n: i64 = client.query_one(&read, &[&id]).await?.get(0);
        if n == 0 {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "stale reads through pgroute");

    // The same loop straight at the replica: its 2 s delay shows.
    let direct = stack.connect_direct().await?;
    let on_replica = pgroute_tests::connect(replica).await?;
    let mut direct_stale = 0;
    for id in 1000..1020 {
        if !write_then_read(&direct, &on_replica, id).await? {
            direct_stale += 1;
        }
    }
    assert!(direct_stale > 0, "the replica really lags");

    // A client that did not write still reads from the replica.
    let reader = stack.connect().await?;
    assert_eq!(port(&reader).await?, replica.port());
    let counters = stack.proxy.proxy.router().counters();
    assert!(counters.get(Route::Primary, Reason::ReadYourWrites) >= 1);
    Ok(())
}

#[tokio::test]
async fn a_causal_token_makes_another_connection_see_the_write() -> anyhow::Result<()> {
    let stack = delayed_stack("2s", |c| c.consistency.scope = CausalScope::Token).await?;
    until_eligible(&stack).await?;
    let writer = stack
        .connect_with("options='-c pgroute.causal_token=request-7'")
        .await?;
    let reader = stack.connect().await?;
    reader
        .batch_execute("SET pgroute.causal_token = 'request-7'")
        .await?;
    let stranger = stack.connect().await?;
    for id in 0..20 {
        assert!(
            write_then_read(&writer, &reader, id).await?,
            "a connection with the writer's token sees write {id}"
        );
    }
    // Without the token, the delayed replica answers, and the last write is not there yet.
    let n: i64 = stranger
        .query_one("SELECT count(*) FROM notes WHERE id = 19", &[])
        .await?
        .get(0);
    assert_eq!(n, 0, "no token: the replica's (stale) answer");
    Ok(())
}

/// A replica whose replay is paused falls behind: it leaves the read pool, `max_lag` hints may still use
/// it, `fallback = error` says why, and once it catches up it returns only after the hysteresis.
#[tokio::test]
async fn a_lagging_replica_leaves_and_returns_after_the_hysteresis() -> anyhow::Result<()> {
    let stack = Stack::start(1, |c| {
        c.consistency.max_replica_lag = Duration::from_millis(500);
        c.consistency.hysteresis = Duration::from_secs(2);
        c.consistency.lag_check_interval = Duration::from_millis(100);
        c.consistency.fallback = LagFallback::Error;
    })
    .await?;
    stack.connect_direct().await?.batch_execute(SETUP).await?;
    until_eligible(&stack).await?;
    let primary = stack.cluster.primary().addr();
    let replica = stack.cluster.replicas()[0].addr();
    let reader = stack.connect().await?;
    assert_eq!(port(&reader).await?, replica.port());

    let on_replica = pgroute_tests::connect(replica).await?;
    on_replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await?;
    let direct = pgroute_tests::connect(primary).await?;
    let state = stack.proxy.proxy.replicas()[0].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut id = 0;
    while state.eligible() {
        anyhow::ensure!(Instant::now() < deadline, "replica never left the pool");
        direct
            .execute("INSERT INTO notes VALUES ($1, 'x')", &[&id])
            .await?;
        id += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Lagging: a plain read fails with the documented error (fallback = error)...
    let err = reader
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect_err("no replica qualifies");
    assert_eq!(
        err.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{err:?}"
    );
    // ...while a read that accepts the lag still uses the replica.
    let p: i32 = reader
        .query_one("/* pgroute: max_lag=1h */ SELECT inet_server_port()", &[])
        .await?
        .get(0);
    assert_eq!(p as u16, replica.port());

    on_replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await?;
    let caught_up = Instant::now();
    let deadline = caught_up + Duration::from_secs(20);
    while !state.eligible() {
        anyhow::ensure!(Instant::now() < deadline, "replica never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        caught_up.elapsed() >= Duration::from_secs(2),
        "back after {:?}, before the 2 s hysteresis",
        caught_up.elapsed()
    );
    assert_eq!(port(&reader).await?, replica.port());
    Ok(())
}

#[tokio::test]
async fn fallback_wait_reads_from_the_replica_once_it_caught_up() -> anyhow::Result<()> {
    let stack = delayed_stack("500ms", |c| {
        c.consistency.fallback = LagFallback::Wait;
        c.consistency.wait_timeout = Duration::from_secs(5);
    })
    .await?;
    until_eligible(&stack).await?;
    let replica = stack.cluster.replicas()[0].addr();
    let client = stack.connect().await?;
    client
        .execute("INSERT INTO notes VALUES (1, 'waited for')", &[])
        .await?;
    let started = Instant::now();
    let row = client
        .query_one(
            "SELECT body, inet_server_port() FROM notes WHERE id = 1",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, String>(0), "waited for");
    assert_eq!(
        row.get::<_, i32>(1) as u16,
        replica.port(),
        "served by the replica"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited for the replay"
    );
    Ok(())
}
