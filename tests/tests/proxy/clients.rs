//! Real client libraries through the proxy: tokio-postgres with named statements across transactions,
//! COPY both ways, notices, and the ParameterStatus values a client sees.

use std::time::Duration;

use bytes::Bytes;
use pgroute_tests::raw::{tags, RawClient};
use pgroute_tests::Stack;
use tokio_postgres::SimpleQueryMessage;

fn one_pool(size: u32) -> impl FnOnce(&mut pgroute_tests::Config) {
    move |c| c.pool.pool_size = std::num::NonZeroU32::new(size).expect("non-zero")
}

#[tokio::test]
async fn named_statements_survive_moving_between_backend_connections() -> anyhow::Result<()> {
    let stack = Stack::start(0, one_pool(3)).await?;
    let a = stack.connect().await?;
    let b = stack.connect().await?;
    let stmt_a = a.prepare("select $1::int * 2").await?;
    let stmt_b = b.prepare("select $1::int * 2").await?;
    // Many clients and transactions over 3 connections: statements must follow each client.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = stack.connect().await?;
        tasks.push(tokio::spawn(async move {
            let s = c.prepare("select $1::int + 1000").await?;
            for n in 0..20i32 {
                let v: i32 = c.query_one(&s, &[&n]).await?.get(0);
                anyhow::ensure!(v == n + 1000, "client {i}: got {v}");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for n in 0..10i32 {
        assert_eq!(a.query_one(&stmt_a, &[&n]).await?.get::<_, i32>(0), n * 2);
        assert_eq!(b.query_one(&stmt_b, &[&n]).await?.get::<_, i32>(0), n * 2);
    }
    for t in tasks {
        t.await??;
    }
    // Closing a client's statement leaves others' working.
    drop(stmt_a);
    assert_eq!(b.query_one(&stmt_b, &[&21i32]).await?.get::<_, i32>(0), 42);
    Ok(())
}

#[tokio::test]
async fn describe_reports_types_of_a_reprepared_statement() -> anyhow::Result<()> {
    let stack = Stack::start(0, one_pool(2)).await?;
    let c = stack.connect().await?;
    let s = c.prepare("select $1::text as t, $2::int8 as n").await?;
    assert_eq!(s.params().len(), 2);
    assert_eq!(s.columns()[0].name(), "t");
    assert_eq!(s.columns()[1].type_(), &tokio_postgres::types::Type::INT8);
    let row = c.query_one(&s, &[&"x", &7i64]).await?;
    assert_eq!(row.get::<_, &str>(0), "x");
    Ok(())
}

#[tokio::test]
async fn named_statement_protocol_answers_match_postgres() -> anyhow::Result<()> {
    let stack = Stack::start(0, one_pool(1)).await?;
    let mut c = RawClient::login(stack.addr()).await?;
    // Prepare, describe, execute, in one pipeline with two syncs.
    c.parse("s1", "select 41 + 1")
        .describe_statement("s1")
        .sync();
    c.bind("", "s1").execute("").sync();
    let first = c.until_ready().await?;
    assert_eq!(tags(&first), "1tTZ");
    let second = c.until_ready().await?;
    assert_eq!(tags(&second), "2DCZ");
    // A second client preparing the same SQL under the same name on the same backend connection.
    let mut d = RawClient::login(stack.addr()).await?;
    d.parse("s1", "select 41 + 1")
        .bind("", "s1")
        .execute("")
        .sync();
    assert_eq!(tags(&d.until_ready().await?), "12DCZ");
    // Same name again in the same session: PostgreSQL's 42P05, then the rest of the batch skipped.
    c.parse("s1", "select 1").bind("", "s1").execute("").sync();
    let dup = c.until_ready().await?;
    assert_eq!(tags(&dup), "EZ");
    assert_eq!(dup[0].error().map(|e| e.code), Some("42P05".into()));
    // Close, then the name is free again.
    c.close_statement("s1").sync();
    assert_eq!(tags(&c.until_ready().await?), "3Z");
    c.parse("s1", "select 2").bind("", "s1").execute("").sync();
    let again = c.until_ready().await?;
    assert_eq!(tags(&again), "12DCZ");
    // Unknown statement: the server's own error.
    c.bind("", "nope").execute("").sync();
    let unknown = c.until_ready().await?;
    assert_eq!(unknown[0].error().map(|e| e.code), Some("26000".into()));
    Ok(())
}

#[tokio::test]
async fn copy_in_and_out() -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    let stack = Stack::start(0, one_pool(2)).await?;
    let c = stack.connect().await?;
    c.batch_execute("create table t (id int, name text)")
        .await?;
    let sink = c.copy_in("copy t from stdin").await?;
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\tname-{i}\n"));
    }
    sink.send(Bytes::from(data.clone())).await?;
    let copied = sink.finish().await?;
    assert_eq!(copied, 5000);
    let stream = c.copy_out("copy t to stdout").await?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    assert_eq!(String::from_utf8(out)?, data);
    // The connection is usable afterwards (COPY state fully ended).
    assert_eq!(
        c.query_one("select count(*) from t", &[])
            .await?
            .get::<_, i64>(0),
        5000
    );
    Ok(())
}

#[tokio::test]
async fn failed_copy_leaves_the_session_usable() -> anyhow::Result<()> {
    use futures_util::SinkExt;
    let stack = Stack::start(0, one_pool(1)).await?;
    let c = stack.connect().await?;
    c.batch_execute("create table t (id int)").await?;
    let sink = c.copy_in("copy t from stdin").await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"not-a-number\n")).await?;
    let err = sink.finish().await.expect_err("bad data must fail");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION)
    );
    assert_eq!(c.query_one("select 7", &[]).await?.get::<_, i32>(0), 7);
    Ok(())
}

#[tokio::test]
async fn notices_and_errors_pass_through_with_their_sqlstate() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let c = stack.connect().await?;
    let err = c
        .simple_query("select 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    // A notice is delivered; tokio-postgres logs notices, so check via psql, which prints them.
    let out = pgroute_tests::tools::run_tool(
        stack.cluster.bin_dir(),
        "psql",
        stack.addr(),
        &[
            "-X",
            "-d",
            "postgres",
            "-c",
            "do $$ begin raise notice 'hello from plpgsql'; end $$",
        ],
        None,
    )
    .await?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOTICE:  hello from plpgsql"));
    Ok(())
}

#[tokio::test]
async fn clients_see_their_own_application_name_and_server_parameters() -> anyhow::Result<()> {
    let stack = Stack::start(0, one_pool(1)).await?;
    let client = stack.connect_with("application_name=reporting-job").await?;
    let other = stack.connect().await?;
    // The backend runs the query under the client's own application_name, even though the single
    // backend connection is shared with `other`.
    let name: String = client
        .query_one(
            "select application_name::text from pg_stat_activity where pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(name, "reporting-job");
    let name: String = other
        .query_one(
            "select application_name::text from pg_stat_activity where pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(name, "");
    let rows = client.simple_query("show server_version").await?;
    let version = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert!(version.is_some_and(|v| v.starts_with(char::is_numeric)));
    Ok(())
}

#[tokio::test]
async fn cancel_reaches_the_backend_running_the_query() -> anyhow::Result<()> {
    let stack = Stack::start(0, one_pool(2)).await?;
    let c = stack.connect().await?;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let err = c
        .simple_query("select pg_sleep(20)")
        .await
        .expect_err("cancelled");
    canceller.await??;
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A cancel for an idle client does nothing: the next query runs normally.
    c.cancel_token().cancel_query(tokio_postgres::NoTls).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.query_one("select 5", &[]).await?.get::<_, i32>(0), 5);
    Ok(())
}

/// A client preparing a statement the pool already knows is answered at once, even while every
/// backend connection is busy: pgbench -M prepared relies on this not to deadlock (it prepares
/// synchronously from one thread for many connections).
#[tokio::test]
async fn known_statement_parse_needs_no_free_backend() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = std::num::NonZeroU32::MIN;
        c.pool.queue_timeout = Duration::from_millis(500);
    })
    .await?;
    let mut a = RawClient::login(stack.addr()).await?;
    a.parse("s1", "select 1").sync();
    assert_eq!(tags(&a.until_ready().await?), "1Z");
    a.query("begin");
    assert_eq!(tags(&a.until_ready().await?), "CZ");
    // The only backend connection is inside A's transaction.
    let mut b = RawClient::login(stack.addr()).await?;
    b.parse("mine", "select 1").sync();
    assert_eq!(tags(&b.until_ready().await?), "1Z");
    b.close_statement("mine").sync();
    assert_eq!(tags(&b.until_ready().await?), "3Z");
    // A statement nobody prepared yet does need a backend, and times out in the queue.
    b.parse("other", "select 2").sync();
    let r = b.until_ready().await?;
    assert_eq!(r[0].error().map(|e| e.code), Some("53300".into()));
    a.query("commit");
    a.until_ready().await?;
    b.parse("again", "select 1")
        .bind("", "again")
        .execute("")
        .sync();
    assert_eq!(tags(&b.until_ready().await?), "12DCZ");
    Ok(())
}
