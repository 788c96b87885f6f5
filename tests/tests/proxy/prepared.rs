//! Named prepared statements in transaction mode beyond the protocol-level basics (`clients.rs`): SQL
//! `PREPARE`/`EXECUTE`/`DEALLOCATE`, eviction under `max_prepared_statements`, the per-client limit,
//! statements moving from the primary to a replica, and Python drivers (psycopg 3, asyncpg).

use pgroute_tests::Stack;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

fn pool_of(size: u32) -> impl FnOnce(&mut pgroute_tests::Config) {
    move |c| c.pool.pool_size = std::num::NonZeroU32::new(size).expect("non-zero")
}

/// The single value a simple query returned, and how many CommandCompletes the client saw.
async fn value(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<(String, usize)> {
    let messages = client.simple_query(sql).await?;
    let completes = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    let v = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no row from {sql}"))?;
    Ok((v, completes))
}

/// Terminates every backend the proxy holds and waits until they are gone, so the next checkout opens
/// a fresh connection instead of meeting one that is still shutting down.
async fn kill_pooled_backends(direct: &tokio_postgres::Client) -> anyhow::Result<()> {
    let others =
        "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name NOT LIKE 'pgroute %'";
    direct
        .batch_execute(&format!("SELECT pg_terminate_backend(pid) {others}"))
        .await?;
    for _ in 0..100 {
        let left: i64 = direct
            .query_one(&format!("SELECT count(*) {others}"), &[])
            .await?
            .get(0);
        if left == 0 {
            // The proxy notices the closed sockets when it next checks them out.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("backends did not exit")
}

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

#[tokio::test]
async fn sql_prepare_execute_and_deallocate_work_across_transactions() -> anyhow::Result<()> {
    // One backend connection for both clients: their statements meet on it.
    let stack = Stack::start(0, pool_of(1)).await?;
    let a = stack.connect().await?;
    let b = stack.connect().await?;
    a.batch_execute("PREPARE q (int) AS SELECT $1 * 2").await?;
    b.batch_execute("PREPARE q (int) AS SELECT $1 + 1000")
        .await?;
    assert_eq!(value(&a, "EXECUTE q(21)").await?, ("42".into(), 1));
    assert_eq!(value(&b, "EXECUTE q(1)").await?, ("1001".into(), 1));
    assert_eq!(value(&a, "execute Q (1);").await?, ("2".into(), 1));
    // Inside an explicit transaction too.
    a.batch_execute("BEGIN").await?;
    assert_eq!(value(&a, "EXECUTE q(5)").await?.0, "10");
    a.batch_execute("COMMIT").await?;

    // The same name twice: PostgreSQL's 42P05.
    let err = a
        .batch_execute("PREPARE q AS SELECT 1")
        .await
        .expect_err("duplicate");
    assert_eq!(code(&err), Some(&SqlState::DUPLICATE_PSTATEMENT), "{err:?}");

    // The backend connection is replaced (terminated from outside): EXECUTE prepares again, unseen.
    let direct = stack.connect_direct().await?;
    kill_pooled_backends(&direct).await?;
    assert_eq!(
        value(&a, "EXECUTE q(4)").await?,
        ("8".into(), 1),
        "one CommandComplete: the added PREPARE stays hidden"
    );

    // A failing EXECUTE right after the re-prepare keeps the statement (PREPARE is not transactional).
    b.batch_execute("PREPARE n (int) AS SELECT $1").await?;
    kill_pooled_backends(&direct).await?;
    let err = b
        .simple_query("EXECUTE n('x')")
        .await
        .expect_err("bad argument");
    assert_eq!(
        code(&err),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{err:?}"
    );
    assert_eq!(value(&b, "EXECUTE n(5)").await?, ("5".into(), 1));

    // DEALLOCATE forgets the client's name only; DEALLOCATE ALL all of them.
    b.batch_execute("PREPARE m AS SELECT 'm'").await?;
    b.batch_execute("DEALLOCATE n").await?;
    let err = b.simple_query("EXECUTE n(1)").await.expect_err("gone");
    assert_eq!(
        code(&err),
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err:?}"
    );
    assert_eq!(value(&b, "EXECUTE m").await?.0, "m");
    b.batch_execute("DEALLOCATE ALL").await?;
    let err = b.simple_query("EXECUTE m").await.expect_err("gone");
    assert_eq!(
        code(&err),
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err:?}"
    );
    b.batch_execute("PREPARE m AS SELECT 'new m'").await?;
    assert_eq!(value(&b, "EXECUTE m").await?.0, "new m");

    // Inside a multi-statement query it cannot be rewritten: refused, clearly.
    let err = b
        .batch_execute("SELECT 1; PREPARE z AS SELECT 2")
        .await
        .expect_err("refused");
    assert_eq!(
        code(&err),
        Some(&SqlState::FEATURE_NOT_SUPPORTED),
        "{err:?}"
    );

    // psql, one statement per -c, in one session.
    let out = pgroute_tests::tools::psql(
        stack.cluster.bin_dir(),
        stack.addr(),
        &[
            "-c",
            "PREPARE p (text) AS SELECT upper($1)",
            "-c",
            "EXECUTE p('via psql')",
        ],
        None,
    )
    .await?;
    assert!(out.ends_with("VIA PSQL"), "{out}");
    Ok(())
}

#[tokio::test]
async fn eviction_keeps_backends_bounded_and_statements_working() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = std::num::NonZeroU32::new(1).expect("non-zero");
        c.pool.max_prepared_statements = 10;
        c.pool.max_client_prepared_statements = 60;
    })
    .await?;
    let client = stack.connect().await?;
    let mut statements = Vec::new();
    for i in 0..50 {
        statements.push(client.prepare(&format!("SELECT $1::int + {i}")).await?);
    }
    for round in 0..2 {
        for (i, stmt) in statements.iter().enumerate() {
            let v: i32 = client.query_one(stmt, &[&round]).await?.get(0);
            assert_eq!(v, round + i as i32);
        }
    }
    // SQL-level ones share the same bound.
    for i in 0..5 {
        client
            .batch_execute(&format!("PREPARE sq{i} AS SELECT {i}"))
            .await?;
        assert_eq!(
            value(&client, &format!("EXECUTE sq{i}")).await?.0,
            i.to_string()
        );
    }
    let on_backend: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await?
        .get(0);
    assert!(
        on_backend <= 10,
        "{on_backend} statements on the backend connection"
    );

    // The per-client limit: 50 + 5 held, room for 5 more (kept alive: a dropped statement is closed).
    let mut extra = Vec::new();
    for i in 0..5 {
        extra.push(client.prepare(&format!("SELECT {i} + 100")).await?);
    }
    let err = client
        .prepare("SELECT 'one too many'")
        .await
        .expect_err("over the per-client limit");
    assert_eq!(
        code(&err),
        Some(&SqlState::CONFIGURATION_LIMIT_EXCEEDED),
        "{err:?}"
    );
    // Closing makes room again.
    drop(statements);
    client.batch_execute("SELECT 1").await?; // lets tokio-postgres send its Closes
    client.prepare("SELECT 'fits again'").await?;
    Ok(())
}

#[tokio::test]
async fn a_statement_prepared_on_the_primary_runs_on_a_replica() -> anyhow::Result<()> {
    // Without read-your-writes: the transaction's statements may write, and the replica must take the
    // read at once rather than after it replays them (consistency.rs covers that).
    let stack = Stack::start(1, |c| {
        c.consistency.mode = pgroute::config::ConsistencyMode::None;
    })
    .await?;
    stack.wait_for_replicas().await?;
    let primary = stack.cluster.primary().addr().port() as i32;
    let replica = stack.cluster.replicas()[0].addr().port() as i32;
    let mut client = stack.connect().await?;
    // Prepared inside a read-write transaction, which runs on the primary...
    let tx = client.transaction().await?;
    let stmt = tx.prepare("SELECT inet_server_port()").await?;
    let port: i32 = tx.query_one(&stmt, &[]).await?.get(0);
    assert_eq!(port, primary);
    tx.commit().await?;
    // ...then executed on its own: a read, so on the replica, where the proxy prepares it first.
    let port: i32 = client.query_one(&stmt, &[]).await?.get(0);
    assert_eq!(port, replica);
    // SQL-level: PREPARE runs on the primary (it is not a read), EXECUTE of a read on the replica.
    client
        .batch_execute("PREPARE wherami AS SELECT inet_server_port()")
        .await?;
    assert_eq!(
        value(&client, "EXECUTE wherami").await?.0,
        replica.to_string()
    );
    Ok(())
}

#[tokio::test]
async fn python_drivers_psycopg3_and_asyncpg() -> anyhow::Result<()> {
    let stack = Stack::start(0, pool_of(2)).await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers/prepared.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(stack.addr().ip().to_string())
        .arg(stack.addr().port().to_string())
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}\n{}\n(the drivers come from .ci/install-deps)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    Ok(())
}

/// Unnamed statements pipelined before one Sync, a Flush mid-batch, and an error inside a pipeline whose
/// named statement the proxy must first prepare again: the client sees exactly the messages PostgreSQL
/// itself sends for the same bytes.
#[tokio::test]
async fn pipelines_flushes_and_errors_match_postgres() -> anyhow::Result<()> {
    use pgroute_tests::raw::{tags, RawClient};

    let stack = Stack::start(0, pool_of(1)).await?;
    let direct = stack.connect_direct().await?;
    let mut through = Vec::new();
    for (proxied, addr) in [
        (true, stack.addr()),
        (false, stack.cluster.primary().addr()),
    ] {
        let mut c = RawClient::login(addr).await?;
        let mut seen = Vec::new();
        // Several unnamed Parse/Bind/Execute before one Sync.
        c.parse("", "select 1").bind("", "").execute("");
        c.parse("", "select 2").bind("", "").execute("").sync();
        seen.push(tags(&c.until_ready().await?));
        // A Flush makes the answers so far arrive before any Sync.
        c.parse("s1", "select 3").describe_statement("s1");
        c.raw(&[b'H', 0, 0, 0, 4]).flush().await?;
        let mut flushed = Vec::new();
        for _ in 0..3 {
            flushed.push(c.recv().await?.ok_or_else(|| anyhow::anyhow!("closed"))?);
        }
        seen.push(tags(&flushed));
        c.bind("", "s1").execute("").sync();
        seen.push(tags(&c.until_ready().await?));
        if proxied {
            // The backend connection goes away: s1 must be prepared again on the next one, unseen.
            kill_pooled_backends(&direct).await?;
        }
        // An error mid-pipeline: the rest is skipped up to the Sync, as PostgreSQL does.
        c.bind("", "s1").execute("");
        c.parse("", "select 1/0").bind("", "").execute("");
        c.bind("", "s1").execute("").sync();
        let failed = c.until_ready().await?;
        assert_eq!(
            failed.iter().find_map(|m| m.error()).map(|e| e.code),
            Some("22012".into())
        );
        seen.push(tags(&failed));
        // And the session carries on.
        c.bind("", "s1").execute("").sync();
        seen.push(tags(&c.until_ready().await?));
        through.push(seen);
    }
    assert_eq!(
        through[0], through[1],
        "pgroute (left) and PostgreSQL (right)"
    );
    Ok(())
}
