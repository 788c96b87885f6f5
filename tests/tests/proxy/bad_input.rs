//! Bad input from clients: garbage instead of a startup packet, oversized and undersized lengths, unknown
//! messages, old protocol versions, clients that stall or vanish, and clients over the limits.
//!
//! Each test checks what the misbehaving client sees (a FATAL ErrorResponse with the SQLSTATE a driver
//! would report, then a closed socket) and that a well-behaved client connected before the abuse, and
//! one connecting after it, are served as if nothing happened.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use pgroute_protocol::startup;
use pgroute_tests::raw::RawClient;
use pgroute_tests::Stack;
use tokio::time::timeout;

/// How long anything in these tests may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(5);

/// A well-behaved client connected before the abuse; [`Bystander::check`] proves it and a newcomer are
/// still served.
struct Bystander {
    client: tokio_postgres::Client,
}

impl Bystander {
    async fn join(stack: &Stack) -> anyhow::Result<Bystander> {
        let client = stack.connect().await?;
        select_one(&client).await?;
        Ok(Bystander { client })
    }

    async fn check(&self, stack: &Stack) -> anyhow::Result<()> {
        select_one(&self.client)
            .await
            .context("the client connected before the abuse")?;
        let newcomer = timeout(HANG, stack.connect()).await??;
        select_one(&newcomer)
            .await
            .context("a client connected after the abuse")
    }
}

pub(crate) async fn select_one(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let row = timeout(HANG, client.query_one("select 1::int", &[]))
        .await
        .context("select 1 hung")??;
    anyhow::ensure!(row.get::<_, i32>(0) == 1);
    Ok(())
}

/// The SQLSTATE and message of a tokio-postgres error (also inside an anyhow chain), if the server or
/// proxy sent one.
pub(crate) fn db_error(e: &anyhow::Error) -> Option<(String, String, String)> {
    e.chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .and_then(|e| e.as_db_error())
        .map(|d| {
            (
                d.severity().to_owned(),
                d.code().code().to_owned(),
                d.message().to_owned(),
            )
        })
}

#[tokio::test]
async fn http_request_instead_of_startup_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let bystander = Bystander::join(&stack).await?;
    let mut raw = RawClient::connect(stack.addr()).await?;
    raw.raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .flush()
        .await?;
    let errors = raw.errors_until_closed().await?;
    for e in &errors {
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "08P01"));
    }
    assert!(errors.len() <= 1, "{errors:?}");
    bystander.check(&stack).await
}

#[tokio::test]
async fn startup_packet_over_the_limit_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let bystander = Bystander::join(&stack).await?;
    // Only the length is sent: the proxy must refuse before waiting for 10 kB it will never get.
    let mut raw = RawClient::connect(stack.addr()).await?;
    raw.raw(&10_001u32.to_be_bytes()).flush().await?;
    let message = raw.expect_fatal("08P01").await?;
    assert!(
        message.contains("10001") && message.contains("10000"),
        "{message}"
    );
    // A declared length of 2^31 bytes: refused at once, nothing allocated for it.
    let mut raw = RawClient::connect(stack.addr()).await?;
    raw.raw(&(1u32 << 31).to_be_bytes()).flush().await?;
    let message = raw.expect_fatal("08P01").await?;
    assert!(message.contains("2147483648"), "{message}");
    // Too short to hold even a protocol version.
    let mut raw = RawClient::connect(stack.addr()).await?;
    raw.raw(&4u32.to_be_bytes()).flush().await?;
    raw.expect_fatal("08P01").await?;
    bystander.check(&stack).await
}

#[tokio::test]
async fn protocol_version_2_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let bystander = Bystander::join(&stack).await?;
    let mut raw = RawClient::connect(stack.addr()).await?;
    // A 2.0 startup packet: length, version 0x00020000, then (in real ones) fixed-size fields.
    let mut packet = Vec::new();
    packet.extend_from_slice(&296u32.to_be_bytes());
    packet.extend_from_slice(&0x0002_0000u32.to_be_bytes());
    packet.extend_from_slice(b"postgres");
    packet.resize(296, 0);
    raw.raw(&packet).flush().await?;
    let message = raw.expect_fatal("08P01").await?;
    assert!(
        message.contains("unsupported frontend protocol 2.0"),
        "{message}"
    );
    bystander.check(&stack).await
}

#[tokio::test]
async fn message_over_max_message_size_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start(0, |cfg| cfg.server.max_message_size = 64 * 1024).await?;
    let bystander = Bystander::join(&stack).await?;
    let mut raw = RawClient::login(stack.addr()).await?;
    // The header alone: the proxy must refuse on the length, not buffer 100 kB first.
    let mut header = vec![b'Q'];
    header.extend_from_slice(&100_000u32.to_be_bytes());
    raw.raw(&header).flush().await?;
    let message = raw.expect_fatal("08P01").await?;
    assert!(
        message.contains("exceeds the maximum of 65536 bytes"),
        "{message}"
    );
    // A query just under the limit still works for a well-behaved client.
    let big = format!("select length('{}')", "x".repeat(60 * 1024));
    let rows = timeout(HANG, bystander.client.simple_query(&big)).await??;
    assert!(rows.iter().any(|m| matches!(m,
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("61440"))));
    bystander.check(&stack).await
}

#[tokio::test]
async fn unknown_message_type_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let bystander = Bystander::join(&stack).await?;
    let mut raw = RawClient::login(stack.addr()).await?;
    raw.raw(&[b'?', 0, 0, 0, 4]).flush().await?;
    let message = raw.expect_fatal("08P01").await?;
    assert!(message.contains("unexpected message type"), "{message}");
    bystander.check(&stack).await
}

#[tokio::test]
async fn message_length_below_four_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let bystander = Bystander::join(&stack).await?;
    let mut raw = RawClient::login(stack.addr()).await?;
    raw.raw(&[b'Q', 0, 0, 0, 2]).flush().await?;
    let message = raw.expect_fatal("08P01").await?;
    assert!(message.contains("below the minimum"), "{message}");
    bystander.check(&stack).await
}

#[tokio::test]
async fn stalled_logins_time_out_and_vanished_ones_are_forgotten() -> anyhow::Result<()> {
    let stack = Stack::start(0, |cfg| {
        cfg.server.client_login_timeout = Duration::from_secs(1);
    })
    .await?;
    let bystander = Bystander::join(&stack).await?;
    // Half a startup packet, then gone.
    let mut startup = BytesMut::new();
    startup::startup_message(
        &mut startup,
        &[("user", "postgres"), ("database", "postgres")],
    );
    let mut vanished = RawClient::connect(stack.addr()).await?;
    vanished.raw(&startup[..startup.len() / 2]).flush().await?;
    drop(vanished);
    // Half a startup packet, then silence; and a client that never says anything.
    let mut half = RawClient::connect(stack.addr()).await?;
    half.raw(&startup[..startup.len() / 2]).flush().await?;
    let mut silent = RawClient::connect(stack.addr()).await?;
    let started = Instant::now();
    for client in [&mut half, &mut silent] {
        let message = client.expect_fatal("08P01").await?;
        assert!(message.contains("client_login_timeout"), "{message}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(stack.proxy.proxy.client_count(), 1, "only the bystander");
    bystander.check(&stack).await
}

#[tokio::test]
async fn client_gone_mid_query_does_not_block_the_pool() -> anyhow::Result<()> {
    let stack = Stack::start(0, |cfg| {
        cfg.pool.pool_size = NonZeroU32::MIN;
        cfg.pool.queue_timeout = Duration::from_secs(3);
    })
    .await?;
    let bystander = Bystander::join(&stack).await?;
    let direct = stack.connect_direct().await?;
    let mut quitter = RawClient::login(stack.addr()).await?;
    quitter
        .query("select pg_sleep(5) /* quitter */")
        .flush()
        .await?;
    // Wait until the query really runs on a backend, then vanish without a Terminate.
    let sleeper = wait_for_sleeper(&direct).await?;
    drop(quitter);
    // The only pool slot must be free again at once: the quitter's connection is not waited for (its
    // query runs for seconds) and certainly not handed to the next client mid-query.
    let started = Instant::now();
    let pid: i32 = timeout(
        Duration::from_secs(2),
        bystander.client.query_one("select pg_backend_pid()", &[]),
    )
    .await
    .context("the pool stayed blocked by a departed client")??
    .get(0);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_ne!(
        pid, sleeper,
        "a backend busy with a dead client's query was reused"
    );
    bystander.check(&stack).await?;
    // PostgreSQL notices the closed socket when pg_sleep ends and the result cannot be sent.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let n: i64 = direct
            .query_one(
                "select count(*) from pg_stat_activity where pid = $1",
                &[&sleeper],
            )
            .await?
            .get(0);
        if n == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the abandoned backend {sleeper} lives on"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The pid of the backend running the quitter's `pg_sleep`, once it runs.
async fn wait_for_sleeper(direct: &tokio_postgres::Client) -> anyhow::Result<i32> {
    for _ in 0..100 {
        let row = direct
            .query_opt(
                "select pid from pg_stat_activity \
                 where query like 'select pg_sleep(5) /* quitter */%' and state = 'active'",
                &[],
            )
            .await?;
        if let Some(row) = row {
            return Ok(row.get(0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the quitter's query never started")
}

#[tokio::test]
async fn max_client_conn_refuses_then_admits_again() -> anyhow::Result<()> {
    let stack = Stack::start(0, |cfg| cfg.server.max_client_conn = 2).await?;
    let first = stack.connect().await?;
    let second = stack.connect().await?;
    let refused = timeout(HANG, stack.connect())
        .await?
        .err()
        .context("a third client got in")?;
    let (severity, code, message) = db_error(&refused).context("no ErrorResponse")?;
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "53300"));
    assert_eq!(
        message,
        "sorry, too many clients already: max_client_conn (2) reached"
    );
    select_one(&first).await?;
    select_one(&second).await?;
    drop(first);
    // The slot frees when the proxy sees the client go; retry briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    let third = loop {
        match stack.connect().await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.context("no place freed after a client left")),
        }
    };
    select_one(&third).await?;
    select_one(&second).await
}

#[tokio::test]
async fn queue_timeout_fails_the_batch_but_keeps_the_client() -> anyhow::Result<()> {
    let stack = Stack::start(0, |cfg| {
        cfg.pool.pool_size = NonZeroU32::MIN;
        cfg.pool.queue_timeout = Duration::from_millis(500);
    })
    .await?;
    let holder = stack.connect().await?;
    let waiter = stack.connect().await?;
    holder.batch_execute("begin; select 1").await?;
    let started = Instant::now();
    let err = timeout(HANG, waiter.query_one("select 1::int", &[]))
        .await?
        .err()
        .context("the waiter got the busy connection")?;
    let waited = started.elapsed();
    let (severity, code, message) = db_error(&err.into()).context("no ErrorResponse")?;
    assert_eq!((severity.as_str(), code.as_str()), ("ERROR", "53300"));
    assert!(message.contains("queue_timeout"), "{message}");
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    holder.batch_execute("commit").await?;
    select_one(&waiter).await?;
    select_one(&holder).await
}

/// A client that sends a write while every backend connection is busy, then gives up and closes its
/// socket, must not have that write run later: the proxy still holds it and knows the client is gone.
#[tokio::test]
async fn client_gone_while_queued_does_not_run_its_statement_later() -> anyhow::Result<()> {
    let stack = Stack::start(0, |cfg| {
        cfg.pool.pool_size = NonZeroU32::MIN;
        cfg.pool.queue_timeout = Duration::from_secs(3);
    })
    .await?;
    let direct = stack.connect_direct().await?;
    direct.batch_execute("create table queued (id int)").await?;
    let holder = stack.connect().await?;
    holder.batch_execute("begin; select 1").await?;
    let mut quitter = RawClient::login(stack.addr()).await?;
    quitter
        .query("insert into queued values (1)")
        .flush()
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(quitter);
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.batch_execute("commit").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n: i64 = direct
        .query_one("select count(*) from queued", &[])
        .await?
        .get(0);
    assert_eq!(n, 0, "the departed client's insert ran after it left");
    select_one(&holder).await
}
