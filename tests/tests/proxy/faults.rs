//! Backends failing under pgroute: real PostgreSQL faults (a terminated backend, a crashed and restarted
//! primary) and network faults from the test kit's [`FaultProxy`] placed between pgroute and the primary
//! (blackhole, refused connections, latency, resets, a connection cut mid-result).
//!
//! What each test checks is what an application would: the affected client gets a prompt, clear error
//! (never a hang, never a truncated result reported as success), nothing half-done is committed, other
//! clients carry on, and pgroute recovers without a restart once the backend is back.

use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute_tests::fault::{Fault, FaultProxy};
use pgroute_tests::raw::{Msg, RawClient};
use pgroute_tests::{Running, Stack};
use tokio::time::timeout;
use tokio_postgres::SimpleQueryMessage;

use crate::bad_input::{db_error, select_one};

const HANG: Duration = Duration::from_secs(5);

/// A cluster, a fault proxy in front of its primary, and a pgroute in front of the fault proxy.
struct Faulty {
    /// Its own proxy (straight to the primary) is unused; its cluster is what matters.
    stack: Stack,
    fault: FaultProxy,
    proxy: Running,
}

impl Faulty {
    async fn start() -> anyhow::Result<Faulty> {
        let stack = Stack::start(0, |_| {}).await?;
        let fault = FaultProxy::start(stack.cluster.primary().addr()).await?;
        let proxy = pgroute_tests::start_proxy(fault.addr(), |cfg| {
            cfg.pool.server_connect_timeout = Duration::from_secs(1);
            // These tests check the fail-fast answer; waiting for a primary is `resilience`'s.
            cfg.failover.timeout = Duration::ZERO;
        })
        .await?;
        Ok(Faulty {
            stack,
            fault,
            proxy,
        })
    }

    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        timeout(HANG, pgroute_tests::connect(self.proxy.addr)).await?
    }

    /// Opens a backend connection through the fault proxy (so logins no longer need one), then cuts
    /// every connection so the next query must open a new one.
    async fn warm_then_cut(&self) -> anyhow::Result<()> {
        // Simple protocol: a dropped prepared statement would send a late Close that needs a backend.
        let client = self.connect().await?;
        timeout(HANG, client.simple_query("select 1")).await??;
        drop(client);
        self.fault.reset_all();
        wait_until(|| self.fault.connections() == 0).await
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..100 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("condition not reached within 2s")
}

/// Runs `sql` and returns the error, failing if it succeeded or hung.
async fn query_error(
    client: &tokio_postgres::Client,
    sql: &str,
) -> anyhow::Result<(anyhow::Error, Duration)> {
    let started = Instant::now();
    let result = timeout(HANG, client.simple_query(sql))
        .await
        .with_context(|| format!("{sql:?} hung"))?;
    match result {
        Ok(rows) => anyhow::bail!("{sql:?} succeeded with {} messages", rows.len()),
        Err(e) => Ok((e.into(), started.elapsed())),
    }
}

fn is_closed(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(tokio_postgres::Error::is_closed)
}

fn first_value(rows: &[SimpleQueryMessage]) -> Option<&str> {
    rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0),
        _ => None,
    })
}

/// Logs in raw and opens a transaction; returns the client and its backend's pid.
async fn raw_in_transaction(
    addr: std::net::SocketAddr,
    sql: &str,
) -> anyhow::Result<(RawClient, i32)> {
    let mut raw = RawClient::login(addr).await?;
    raw.query(sql).flush().await?;
    let mut pid = None;
    loop {
        let Msg { tag, body } = raw.recv().await?.context("closed")?;
        match tag {
            b'D' => {
                // One column: i16 count, i32 length, text.
                let text = std::str::from_utf8(body.get(6..).context("short DataRow")?)?;
                pid = Some(text.parse()?);
            }
            b'E' => anyhow::bail!("{:?}", pgroute_protocol::backend::error_fields(&body)),
            b'Z' => {
                anyhow::ensure!(body.as_ref() == b"T", "not in a transaction");
                break;
            }
            _ => {}
        }
    }
    Ok((raw, pid.context("no pid row")?))
}

#[tokio::test]
async fn backend_terminated_mid_transaction() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let direct = stack.connect_direct().await?;
    direct
        .batch_execute("create table victims (id int)")
        .await?;
    let a = stack.connect().await?;
    let b = stack.connect().await?;
    a.batch_execute("begin; insert into victims values (1)")
        .await?;
    let pid: i32 = a.query_one("select pg_backend_pid()", &[]).await?.get(0);
    // A raw client in the same situation, to see exactly what pgroute sends.
    let (mut raw, raw_pid) = raw_in_transaction(
        stack.addr(),
        "begin; insert into victims values (2); select pg_backend_pid()",
    )
    .await?;
    let killed: i64 = direct
        .query_one(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
             where pid in ($1, $2)) t",
            &[&pid, &raw_pid],
        )
        .await?
        .get(0);
    assert_eq!(killed, 2);

    // The raw client hears, unprompted, PostgreSQL's own FATAL (passed through) as the only explanation,
    // then EOF: pgroute adds no 08006 of its own when the backend already said why it ends.
    let errors = raw.errors_until_closed().await?;
    let [theirs] = errors.as_slice() else {
        anyhow::bail!("expected PostgreSQL's FATAL alone, got {errors:?}")
    };
    assert_eq!(
        (theirs.severity.as_str(), theirs.code.as_str()),
        ("FATAL", "57P01")
    );
    assert!(
        theirs.message.contains("administrator command"),
        "{}",
        theirs.message
    );

    // The driver: the next statement fails, either with that error or because the connection closed.
    let (err, took) = query_error(&a, "insert into victims values (3)").await?;
    assert!(took < Duration::from_secs(2));
    let code = db_error(&err).map(|(_, code, _)| code);
    assert!(
        is_closed(&err) || matches!(code.as_deref(), Some("08006" | "57P01")),
        "{err:?}"
    );
    // The close follows the error on the socket; the driver's connection task sees it a moment later.
    wait_until(|| a.is_closed())
        .await
        .context("the proxy left the dead client's connection open")?;

    // Others carry on, nothing of the dead transactions was committed, and the pool serves new work.
    select_one(&b).await?;
    b.batch_execute("begin; insert into victims values (4); commit")
        .await?;
    let ids: Vec<i32> = direct
        .query("select id from victims order by id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![4]);
    select_one(&stack.connect().await?).await
}

#[tokio::test]
async fn primary_crash_and_restart() -> anyhow::Result<()> {
    let stack = Stack::start(0, |cfg| {
        cfg.pool.server_connect_timeout = Duration::from_secs(1);
        cfg.failover.timeout = Duration::ZERO;
    })
    .await?;
    let client = stack.connect().await?;
    select_one(&client).await?;
    let primary = stack.cluster.primary().clone();
    tokio::task::spawn_blocking(move || primary.stop_immediate()).await??;

    // While it is down: a prompt ERROR 08001 naming the backend, and the client stays connected.
    let (err, took) = query_error(&client, "select 1").await?;
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let (severity, code, message) = db_error(&err).context("no ErrorResponse")?;
    assert_eq!((severity.as_str(), code.as_str()), ("ERROR", "08001"));
    assert!(message.contains("cannot connect to backend"), "{message}");
    assert!(!client.is_closed());
    // A client arriving now logs in (the server's parameters are known) and gets the same error.
    let newcomer = stack.connect().await?;
    let (err, _) = query_error(&newcomer, "select 1").await?;
    assert_eq!(
        db_error(&err).map(|(_, code, _)| code).as_deref(),
        Some("08001")
    );

    let primary = stack.cluster.primary().clone();
    tokio::task::spawn_blocking(move || primary.start()).await??;
    // Back: the same clients work, without restarting pgroute.
    select_one(&client).await?;
    select_one(&newcomer).await?;
    select_one(&stack.connect().await?).await
}

#[tokio::test]
async fn blackholed_backend_fails_fast_with_08001() -> anyhow::Result<()> {
    let f = Faulty::start().await?;
    // Cold: nothing known about the backend yet, so the login itself needs a connection.
    f.fault.set(Fault::Blackhole);
    let started = Instant::now();
    let refused = timeout(HANG, pgroute_tests::connect(f.proxy.addr))
        .await?
        .err()
        .context("logged in through a blackhole")?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(
        db_error(&refused).map(|(_, code, _)| code).as_deref(),
        Some("08001"),
        "{refused:?}"
    );

    // Warm: the login needs no backend, the first query does.
    f.fault.set(Fault::None);
    f.warm_then_cut().await?;
    f.fault.set(Fault::Blackhole);
    let client = f.connect().await?;
    let (err, took) = query_error(&client, "select 1").await?;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let (severity, code, message) = db_error(&err).context("no ErrorResponse")?;
    assert_eq!((severity.as_str(), code.as_str()), ("ERROR", "08001"));
    assert!(message.contains("timed out"), "{message}");

    // The network heals: the same client carries on.
    f.fault.set(Fault::None);
    select_one(&client).await
}

#[tokio::test]
async fn refused_backend_fails_fast_with_08001() -> anyhow::Result<()> {
    let f = Faulty::start().await?;
    f.warm_then_cut().await?;
    f.fault.set(Fault::Refuse);
    let client = f.connect().await?;
    let (err, took) = query_error(&client, "select 1").await?;
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (severity, code, message) = db_error(&err).context("no ErrorResponse")?;
    assert_eq!((severity.as_str(), code.as_str()), ("ERROR", "08001"));
    assert!(message.contains("cannot connect to backend"), "{message}");
    f.fault.set(Fault::None);
    select_one(&client).await
}

#[tokio::test]
async fn latency_slows_but_does_not_break() -> anyhow::Result<()> {
    let f = Faulty::start().await?;
    let client = f.connect().await?;
    select_one(&client).await?;
    f.fault.set(Fault::Latency(Duration::from_millis(100)));
    for _ in 0..3 {
        let started = Instant::now();
        let rows = timeout(HANG, client.simple_query("select 42")).await??;
        let took = started.elapsed();
        assert_eq!(first_value(&rows), Some("42"));
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
    // New backend connections (login included) work through the latency too.
    let other = f.connect().await?;
    let both = tokio::join!(
        client.simple_query("begin; select pg_sleep(0.1); commit"),
        other.simple_query("select 1"),
    );
    both.0?;
    both.1?;
    Ok(())
}

#[tokio::test]
async fn reset_while_idle_in_transaction() -> anyhow::Result<()> {
    let f = Faulty::start().await?;
    let bystander = f.connect().await?;
    select_one(&bystander).await?;
    let (mut raw, _) = raw_in_transaction(f.proxy.addr, "begin; select pg_backend_pid()").await?;
    let driver = f.connect().await?;
    driver.batch_execute("begin; select 1").await?;
    f.fault.reset_all();

    // Both clients in a transaction lose it, and are told so.
    let errors = raw.errors_until_closed().await?;
    let [e] = errors.as_slice() else {
        anyhow::bail!("expected one error, got {errors:?}")
    };
    assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "08006"));
    assert!(
        e.message.starts_with("server connection to"),
        "{}",
        e.message
    );
    assert!(e.message.contains("rolled back"), "{}", e.message);
    let (err, _) = query_error(&driver, "select 1").await?;
    assert!(
        is_closed(&err) || db_error(&err).map(|(_, c, _)| c).as_deref() == Some("08006"),
        "{err:?}"
    );

    // The client that was between transactions never notices.
    select_one(&bystander).await?;
    select_one(&f.connect().await?).await
}

#[tokio::test]
async fn connection_cut_mid_result_is_an_error_not_a_short_result() -> anyhow::Result<()> {
    let f = Faulty::start().await?;
    let client = f.connect().await?;
    select_one(&client).await?;
    f.fault.set(Fault::CloseAfterBytes(64 * 1024));
    let (err, _) = query_error(&client, "select generate_series(1, 100000)").await?;
    let (severity, code, message) = db_error(&err).context("no ErrorResponse")?;
    assert_eq!(
        (severity.as_str(), code.as_str()),
        ("FATAL", "08006"),
        "{message}"
    );
    assert!(message.starts_with("server connection to"), "{message}");

    // Extended protocol too.
    f.fault.set(Fault::CloseAfterBytes(64 * 1024));
    let other = f.connect().await?;
    let result = timeout(HANG, other.query("select generate_series(1, 100000)", &[])).await?;
    assert!(result.is_err(), "a cut result was reported as success");

    f.fault.set(Fault::None);
    let fresh = f.connect().await?;
    let rows = timeout(
        HANG,
        fresh.simple_query("select count(*) from (select generate_series(1, 100000)) t"),
    )
    .await??;
    assert_eq!(first_value(&rows), Some("100000"));
    let rows = timeout(HANG, fresh.query("select generate_series(1, 100000)", &[])).await??;
    assert_eq!(rows.len(), 100_000);
    // The cluster itself was never at fault.
    select_one(&f.stack.connect_direct().await?).await
}
