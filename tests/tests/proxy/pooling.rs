//! Pooling semantics: what a client's session state does (and does not do) to other clients.

use std::num::NonZeroU32;
use std::time::Duration;

use pgroute_tests::raw::{tags, RawClient};
use pgroute_tests::{PoolMode, Stack};
use tokio_postgres::error::SqlState;

async fn show(c: &tokio_postgres::Client, setting: &str) -> anyhow::Result<String> {
    Ok(
        c.query_one(&format!("select current_setting('{setting}')"), &[])
            .await?
            .get(0),
    )
}

#[tokio::test]
async fn set_follows_its_client_and_never_leaks_in_transaction_mode() -> anyhow::Result<()> {
    // One backend connection shared by two clients: every statement of both runs on it.
    let stack = Stack::start(0, |c| c.pool.pool_size = NonZeroU32::MIN).await?;
    let a = stack.connect().await?;
    let b = stack.connect().await?;
    let default_timeout = show(&b, "statement_timeout").await?;
    a.batch_execute("SET statement_timeout = '1234ms'; SET search_path TO pg_catalog, public")
        .await?;
    a.batch_execute("SET application_name = 'client-a'").await?;
    for _ in 0..3 {
        assert_eq!(show(&a, "statement_timeout").await?, "1234ms");
        assert_eq!(show(&b, "statement_timeout").await?, default_timeout);
        assert_eq!(show(&a, "search_path").await?, "pg_catalog, public");
        assert_eq!(show(&b, "search_path").await?, "\"$user\", public");
        assert_eq!(show(&b, "application_name").await?, "");
    }
    // RESET returns to the default, and SET LOCAL stays inside its transaction.
    a.batch_execute("RESET statement_timeout").await?;
    assert_eq!(show(&a, "statement_timeout").await?, default_timeout);
    a.batch_execute("BEGIN; SET LOCAL work_mem = '7MB'; COMMIT")
        .await?;
    assert_ne!(show(&a, "work_mem").await?, "7MB");
    // A SET in a transaction that rolls back is forgotten, as in PostgreSQL.
    a.batch_execute("BEGIN; SET work_mem = '9MB'; ROLLBACK")
        .await?;
    assert_ne!(show(&a, "work_mem").await?, "9MB");
    Ok(())
}

#[tokio::test]
async fn state_that_cannot_be_replayed_is_refused_with_0a000() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let c = stack.connect().await?;
    for sql in [
        "LISTEN jobs",
        // SQL PREPARE works on its own (see prepared.rs), not inside a multi-statement query.
        "SELECT 1; PREPARE q AS SELECT 1",
        "CREATE TEMP TABLE scratch (x int)",
        "SELECT pg_advisory_lock(42)",
    ] {
        let err = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{sql}");
        let msg = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("transaction pooling mode"), "{sql}: {msg}");
    }
    // The session carries on, and the transaction-scoped forms are allowed.
    c.batch_execute("BEGIN; CREATE TEMP TABLE t (x int) ON COMMIT DROP; SELECT pg_advisory_xact_lock(1); COMMIT")
        .await?;
    // The refusal arrives in order inside a pipeline too.
    let mut raw = RawClient::login(stack.addr()).await?;
    raw.query("select 1").query("LISTEN x").query("select 2");
    let a = raw.until_ready().await?;
    let b = raw.until_ready().await?;
    let c2 = raw.until_ready().await?;
    assert_eq!(
        (tags(&a).as_str(), tags(&b).as_str(), tags(&c2).as_str()),
        ("TDCZ", "EZ", "TDCZ")
    );
    Ok(())
}

#[tokio::test]
async fn session_mode_keeps_state_and_resets_it_for_the_next_client() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.mode = PoolMode::Session;
        c.pool.pool_size = NonZeroU32::MIN;
    })
    .await?;
    let a = stack.connect().await?;
    a.batch_execute("SET work_mem = '5MB'; LISTEN anything; PREPARE q AS SELECT 42")
        .await?;
    let pid: i32 = a.query_one("select pg_backend_pid()", &[]).await?.get(0);
    assert_eq!(show(&a, "work_mem").await?, "5MB");
    let v: i32 = a.query_one("EXECUTE q", &[]).await?.get(0);
    assert_eq!(v, 42);
    drop(a);
    // The single backend connection is reused by the next client, reset by DISCARD ALL.
    let b = stack.connect().await?;
    let pid_b: i32 = b.query_one("select pg_backend_pid()", &[]).await?.get(0);
    assert_eq!(pid, pid_b, "the connection should have been pooled");
    assert_ne!(show(&b, "work_mem").await?, "5MB");
    let err = b
        .simple_query("EXECUTE q")
        .await
        .expect_err("prepared statement reset");
    assert_eq!(err.code(), Some(&SqlState::INVALID_SQL_STATEMENT_NAME));
    Ok(())
}

#[tokio::test]
async fn session_mode_relays_notifications() -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let stack = Stack::start(0, |c| c.pool.mode = PoolMode::Session).await?;
    let (listener, mut conn) =
        tokio_postgres::connect(&stack.conninfo(), tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN jobs").await?;
    let sender = stack.connect().await?;
    sender.batch_execute("NOTIFY jobs, 'job-17'").await?;
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await?;
    assert_eq!(got.as_deref(), Some("job-17"));
    Ok(())
}

#[tokio::test]
async fn transaction_mode_multiplexes_and_keeps_transactions_whole() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| c.pool.pool_size = NonZeroU32::new(2).expect("2")).await?;
    let setup = stack.connect().await?;
    setup
        .batch_execute(
            "create table counter (id int primary key, n int); insert into counter values (1, 0)",
        )
        .await?;
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let c = stack.connect().await?;
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                // Read-modify-write inside a transaction: if statements of one transaction ran on
                // different backend connections, updates would be lost or the row lock would deadlock.
                c.batch_execute("BEGIN").await?;
                let n: i32 = c
                    .query_one("select n from counter where id = 1 for update", &[])
                    .await?
                    .get(0);
                c.execute("update counter set n = $1 where id = 1", &[&(n + 1)])
                    .await?;
                c.batch_execute("COMMIT").await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let n: i32 = setup
        .query_one("select n from counter where id = 1", &[])
        .await?
        .get(0);
    assert_eq!(n, 300);
    let direct = stack.connect_direct().await?;
    let backends: i64 = direct
        .query_one(
            "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid() and application_name NOT LIKE 'pgroute %'",
            &[],
        )
        .await?
        .get(0);
    assert!(
        backends <= 2,
        "{backends} backend connections for 31 clients"
    );
    Ok(())
}

#[tokio::test]
async fn protocol_minor_version_and_options_are_negotiated_down() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start(0, |_| {}).await?;
    let mut s = tokio::net::TcpStream::connect(stack.addr()).await?;
    let mut body = Vec::new();
    body.extend_from_slice(&((3 << 16) | 2i32).to_be_bytes());
    for kv in [
        "user",
        "postgres",
        "database",
        "postgres",
        "_pq_.future_option",
        "on",
        "",
    ] {
        body.extend_from_slice(kv.as_bytes());
        body.push(0);
    }
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    s.write_all(&packet).await?;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"Z\0\0\0\x05I") {
        let n = s.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    // AuthenticationOk, then NegotiateProtocolVersion naming 3.0 and the unrecognised option.
    assert_eq!(got[0], b'R');
    let v = got
        .iter()
        .position(|&b| b == b'v')
        .expect("NegotiateProtocolVersion");
    assert_eq!(&got[v + 5..v + 9], &(3i32 << 16).to_be_bytes());
    assert!(got.windows(18).any(|w| w == b"_pq_.future_option"));
    Ok(())
}

/// `options` in the startup packet (PGOPTIONS) are session settings like any other: applied for this
/// client only. Options that are not settings, and replication connections, are refused at login.
#[tokio::test]
async fn startup_options_apply_to_their_client_only() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| c.pool.pool_size = NonZeroU32::MIN).await?;
    let a = stack
        .connect_with("options='-c statement_timeout=4321 --work-mem=3MB'")
        .await?;
    let b = stack.connect().await?;
    assert_eq!(show(&a, "statement_timeout").await?, "4321ms");
    assert_eq!(show(&a, "work_mem").await?, "3MB");
    assert_ne!(show(&b, "statement_timeout").await?, "4321ms");
    assert_ne!(show(&b, "work_mem").await?, "3MB");

    let mut raw = RawClient::connect(stack.addr()).await?;
    raw.startup(&[
        ("user", "postgres"),
        ("database", "postgres"),
        ("options", "-B 100"),
    ]);
    raw.flush().await?;
    let msg = raw.expect_fatal("08P01").await?;
    assert!(msg.contains("-B"), "{msg}");

    let mut raw = RawClient::connect(stack.addr()).await?;
    raw.startup(&[
        ("user", "postgres"),
        ("database", "postgres"),
        ("replication", "database"),
    ]);
    raw.flush().await?;
    let msg = raw.expect_fatal("0A000").await?;
    assert!(msg.contains("replication"), "{msg}");
    Ok(())
}

/// `max_user_client_connections` and `max_db_client_connections` refuse one client too many with
/// FATAL 53300 naming the limit, count per user and per database, and free a place when a client leaves.
#[tokio::test]
async fn per_user_and_per_database_client_limits() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.server.max_user_client_connections = 2;
        c.server.max_db_client_connections = 2;
    })
    .await?;
    stack
        .connect_direct()
        .await?
        .batch_execute("CREATE ROLE other LOGIN")
        .await?;
    let first = stack.connect().await?;
    let _second = stack.connect().await?;
    let err = stack.connect().await.expect_err("third for user postgres");
    assert!(
        format!("{err:#}").contains("max_user_client_connections (2)"),
        "{err:#}"
    );
    // Another user may connect to another database...
    let elsewhere = pgroute_tests::connect_conninfo(&format!(
        "host={} port={} user=other dbname=template1",
        stack.addr().ip(),
        stack.addr().port()
    ))
    .await?;
    assert_eq!(
        elsewhere.query_one("select 1", &[]).await?.get::<_, i32>(0),
        1
    );
    // ...but not to the full one.
    let err = pgroute_tests::connect_conninfo(&format!(
        "host={} port={} user=other dbname=postgres",
        stack.addr().ip(),
        stack.addr().port()
    ))
    .await
    .expect_err("third for database postgres");
    assert!(
        format!("{err:#}").contains("max_db_client_connections (2)"),
        "{err:#}"
    );
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match stack.connect().await {
            Ok(c) => {
                assert_eq!(c.query_one("select 1", &[]).await?.get::<_, i32>(0), 1);
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.context("no place freed after a client left")),
        }
    }
    Ok(())
}

/// `[timeouts]`: pgroute sets `statement_timeout` / `idle_in_transaction_session_timeout` for each client
/// as if it had sent the SET, so the value follows the client across backend connections and never
/// reaches another client; a client's own setting wins.
#[tokio::test]
async fn session_timeouts_are_set_per_client_and_never_leak() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = std::num::NonZeroU32::new(1).expect("non-zero");
        c.timeouts.default.statement_timeout = Some(Duration::from_millis(500));
    })
    .await?;
    let a = stack.connect().await?;
    assert_eq!(show(&a, "statement_timeout").await?, "500ms");
    let err = a
        .simple_query("SELECT pg_sleep(2)")
        .await
        .expect_err("over the statement timeout");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    // A client's own value wins, on the same (only) backend connection...
    let b = stack
        .connect_with("options='-c statement_timeout=0'")
        .await?;
    assert_eq!(show(&b, "statement_timeout").await?, "0");
    b.simple_query("SELECT pg_sleep(0.7)").await?;
    // ...and does not leak back.
    assert_eq!(show(&a, "statement_timeout").await?, "500ms");

    // Idle inside a transaction past the limit: the server ends that session, and only that one.
    let idle = pgroute_tests::start_proxy(stack.cluster.primary().addr(), |c| {
        c.timeouts.default.idle_transaction_timeout = Some(Duration::from_millis(300));
    })
    .await?;
    let c = pgroute_tests::connect(idle.addr).await?;
    c.batch_execute("BEGIN").await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let err = c.simple_query("SELECT 1").await.expect_err("session ended");
    assert!(
        err.code() == Some(&SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT) || c.is_closed(),
        "{err:?}"
    );
    let fresh = pgroute_tests::connect(idle.addr).await?;
    fresh.simple_query("SELECT 1").await?;
    Ok(())
}
