//! Limits and backpressure: the reserve pool, fail-fast and bounded queues, shedding of low-priority
//! clients, and TCP keepalives on both sides. Every rejection must be an ERROR 53300 that names the
//! pool and the setting, after which the same client can simply retry.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute::config::QueueMode;
use pgroute_tests::Stack;
use tokio::time::timeout;

use crate::bad_input::db_error;

/// Longest any single step may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(30);

async fn select_one(c: &tokio_postgres::Client) -> anyhow::Result<()> {
    let v: i32 = timeout(HANG, c.query_one("select 1::int", &[]))
        .await??
        .get(0);
    anyhow::ensure!(v == 1);
    Ok(())
}

async fn backend_pid(c: &tokio_postgres::Client) -> anyhow::Result<i32> {
    Ok(timeout(HANG, c.query_one("select pg_backend_pid()", &[]))
        .await??
        .get(0))
}

/// The (severity, SQLSTATE, message) of a query that must fail, and how long it took.
async fn rejected(
    c: &tokio_postgres::Client,
) -> anyhow::Result<(String, String, String, Duration)> {
    let started = Instant::now();
    let err = timeout(HANG, c.query_one("select 1::int", &[]))
        .await?
        .err()
        .context("the query was served, not rejected")?;
    let (severity, code, message) = db_error(&err.into()).context("no ErrorResponse")?;
    Ok((severity, code, message, started.elapsed()))
}

/// Waits until `n` clients queue on the stack's only pool.
async fn until_waiting(stack: &Stack, n: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + HANG;
    loop {
        let waiting: u32 = stack
            .proxy
            .proxy
            .pools()
            .all()
            .iter()
            .map(|p| p.stats().waiting.load(Ordering::Relaxed))
            .sum();
        if waiting >= n {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{n} clients never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reserve_pool_gives_an_extra_connection_only_after_reserve_pool_timeout(
) -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = NonZeroU32::MIN;
        c.pool.reserve_pool_size = 1;
        c.pool.reserve_pool_timeout = Duration::from_secs(2);
        c.pool.queue_timeout = Duration::from_secs(20);
    })
    .await?;
    let holder = stack.connect().await?;
    let waiter = stack.connect().await?;
    holder.batch_execute("begin").await?;
    let holder_pid = backend_pid(&holder).await?;
    let started = Instant::now();
    waiter.batch_execute("begin").await?;
    let waiter_pid = backend_pid(&waiter).await?;
    let waited = started.elapsed();
    assert_ne!(holder_pid, waiter_pid, "served by the busy connection");
    // Not before reserve_pool_timeout (with a small allowance for timer granularity), and well
    // before queue_timeout would have failed it.
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(15),
        "served after {waited:?}"
    );
    let pools = stack.proxy.proxy.pools().all();
    let stats = pools.first().context("no pool")?.stats();
    assert_eq!(stats.reserve_checkouts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.reserve_active.load(Ordering::Relaxed), 1);
    waiter.batch_execute("commit").await?;
    holder.batch_execute("commit").await?;
    assert_eq!(stats.reserve_active.load(Ordering::Relaxed), 0);
    select_one(&waiter).await
}

#[tokio::test]
async fn fail_fast_rejects_at_once_with_53300_while_saturated_and_serves_after(
) -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = NonZeroU32::MIN;
        c.pool.queue_mode = QueueMode::FailFast;
    })
    .await?;
    let holder = stack.connect().await?;
    let other = stack.connect().await?;
    holder.batch_execute("begin; select 1").await?;
    let (severity, code, message, took) = rejected(&other).await?;
    assert_eq!((severity.as_str(), code.as_str()), ("ERROR", "53300"));
    assert!(message.contains("fail-fast"), "{message}");
    assert!(message.contains("pool.pool_size"), "{message}");
    assert!(
        message.contains("database postgres, user postgres"),
        "{message}"
    );
    // queue_timeout is 30 s: anything this short is "at once".
    assert!(took < Duration::from_secs(5), "rejected after {took:?}");
    holder.batch_execute("commit").await?;
    // The same client, still connected, is served now that a connection is free.
    select_one(&other).await?;
    select_one(&holder).await
}

#[tokio::test]
async fn max_waiting_rejects_arrivals_at_a_full_queue_and_serves_those_in_it() -> anyhow::Result<()>
{
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = NonZeroU32::MIN;
        c.pool.max_waiting = 1;
        c.pool.queue_timeout = Duration::from_secs(25);
    })
    .await?;
    let holder = stack.connect().await?;
    let queued = stack.connect().await?;
    let late = stack.connect().await?;
    holder.batch_execute("begin; select 1").await?;
    let in_queue = tokio::spawn(async move {
        select_one(&queued).await?;
        Ok::<_, anyhow::Error>(queued)
    });
    until_waiting(&stack, 1).await?;
    let (severity, code, message, took) = rejected(&late).await?;
    assert_eq!((severity.as_str(), code.as_str()), ("ERROR", "53300"));
    assert!(message.contains("pool.max_waiting"), "{message}");
    assert!(took < Duration::from_secs(5), "rejected after {took:?}");
    holder.batch_execute("commit").await?;
    let queued = timeout(HANG, in_queue).await???;
    select_one(&late).await?;
    select_one(&queued).await
}

#[tokio::test]
async fn low_priority_client_is_shed_while_a_normal_client_waiting_is_served() -> anyhow::Result<()>
{
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = NonZeroU32::MIN;
        c.pool.queue_timeout = Duration::from_secs(25);
        c.pool.low_priority_application_names = vec!["nightly-batch".into()];
        c.pool.low_priority_users = vec!["reporting".into()];
        c.pool.shed_queue_depth = 1;
    })
    .await?;
    let holder = stack.connect().await?;
    let normal = stack.connect_with("application_name=web").await?;
    let batch = stack.connect_with("application_name=nightly-batch").await?;
    holder.batch_execute("begin; select 1").await?;
    let normal_task = tokio::spawn(async move {
        select_one(&normal).await?;
        Ok::<_, anyhow::Error>(normal)
    });
    until_waiting(&stack, 1).await?;
    let (severity, code, message, took) = rejected(&batch).await?;
    assert_eq!((severity.as_str(), code.as_str()), ("ERROR", "53300"));
    assert!(message.contains("low-priority"), "{message}");
    assert!(message.contains("pool.shed_queue_depth"), "{message}");
    assert!(took < Duration::from_secs(5), "shed after {took:?}");
    holder.batch_execute("commit").await?;
    let normal = timeout(HANG, normal_task).await???;
    // With nobody waiting, the low-priority client is served like anyone.
    select_one(&batch).await?;
    select_one(&normal).await?;

    // By user: a low-priority user's pool sheds its own clients past the same depth.
    let direct = stack.connect_direct().await?;
    direct.batch_execute("create role reporting login").await?;
    let reporting = |app: &'static str| {
        let stack = &stack;
        async move {
            stack
                .connect_with(&format!("user=reporting application_name={app}"))
                .await
        }
    };
    let r_holder = reporting("r1").await?;
    let r_queued = reporting("r2").await?;
    let r_shed = reporting("r3").await?;
    r_holder.batch_execute("begin; select 1").await?;
    let r_task = tokio::spawn(async move {
        select_one(&r_queued).await?;
        Ok::<_, anyhow::Error>(r_queued)
    });
    until_waiting(&stack, 1).await?;
    let (_, code, message, _) = rejected(&r_shed).await?;
    assert_eq!(code, "53300");
    assert!(message.contains("user reporting"), "{message}");
    r_holder.batch_execute("commit").await?;
    timeout(HANG, r_task).await???;
    select_one(&r_shed).await
}

/// A socket's keepalive timer as Linux shows it in /proc/net/tcp: `Some(ticks)` (1/100 s until the
/// next probe) when keepalive probes are armed, `None` when the socket has no keepalive timer.
fn keepalive_timer(local_port: u16, remote_port: u16) -> anyhow::Result<Option<Option<u64>>> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if f.len() < 6 || port(f[1]) != Some(local_port) || port(f[2]) != Some(remote_port) {
                continue;
            }
            let (active, when) = f[5].split_once(':').context("tr:when field")?;
            return Ok(Some(
                (active == "02").then(|| u64::from_str_radix(when, 16).unwrap_or(u64::MAX)),
            ));
        }
    }
    Ok(None)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn keepalive_options_are_set_on_client_and_server_sockets() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.server.tcp_keepalive.idle = Duration::from_secs(37);
        c.pool.server_tcp_keepalive.idle = Duration::from_secs(23);
    })
    .await?;
    let proxy_port = stack.addr().port();
    let primary_port = stack.cluster.primary().addr().port();

    // Server side: the port pgroute's backend connection uses, as the server sees it.
    let client = stack.connect().await?;
    let port: i32 = client
        .query_one("select inet_client_port()", &[])
        .await?
        .get(0);
    let port = u16::try_from(port)?;
    let ticks = keepalive_timer(port, primary_port)?
        .context("pgroute's backend socket not found")?
        .context("no keepalive timer on pgroute's backend socket")?;
    assert!(
        ticks > 0 && ticks <= 2300,
        "next probe in {ticks} ticks, not within the configured 23 s"
    );

    // Client side: pgroute's end of a freshly accepted client socket (set before login).
    let raw = tokio::net::TcpStream::connect(stack.addr()).await?;
    let client_port = raw.local_addr()?.port();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ticks = loop {
        match keepalive_timer(proxy_port, client_port)? {
            Some(Some(t)) => break t,
            other if Instant::now() >= deadline => {
                anyhow::bail!("no keepalive timer on pgroute's client socket: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(
        ticks > 0 && ticks <= 3700,
        "next probe in {ticks} ticks, not within the configured 37 s"
    );
    Ok(())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn disabled_keepalive_leaves_backend_sockets_without_probes() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| c.pool.server_tcp_keepalive.enabled = false).await?;
    let client = stack.connect().await?;
    let port: i32 = client
        .query_one("select inet_client_port()", &[])
        .await?
        .get(0);
    let timer = keepalive_timer(u16::try_from(port)?, stack.cluster.primary().addr().port())?
        .context("pgroute's backend socket not found")?;
    assert_eq!(timer, None, "keepalive armed although disabled");
    Ok(())
}
