//! Read/write splitting with a primary and two streaming replicas: which server answered is read from
//! `inet_server_port()`, so every assertion is about where a statement really ran.

use std::collections::HashMap;

use pgroute::classify::{Reason, Route};
use pgroute::config::{ConsistencyMode, DefaultRoute, HashKey, LoadBalancing, ReplicaConfig};
use pgroute_tests::{tools, Stack};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

const SETUP: &str = "
    CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
    INSERT INTO items SELECT g, 0 FROM generate_series(1, 100) g;
    CREATE SEQUENCE ids;
    CREATE ROLE reporter LOGIN;
    GRANT SELECT ON items TO reporter;
";

async fn stack(tweak: impl FnOnce(&mut pgroute::Config)) -> anyhow::Result<Stack> {
    let stack = Stack::start(2, tweak).await?;
    stack.connect_direct().await?.batch_execute(SETUP).await?;
    stack.wait_for_replicas().await?;
    Ok(stack)
}

/// The port of the server that ran a simple query whose first column is `inet_server_port()`.
async fn port_of(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<u16> {
    let messages = client.simple_query(sql).await?;
    let value = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no row from {sql}"))?;
    Ok(value.parse()?)
}

struct Ports {
    primary: u16,
    replicas: Vec<u16>,
}

fn ports(stack: &Stack) -> Ports {
    Ports {
        primary: stack.cluster.primary().addr().port(),
        replicas: stack
            .cluster
            .replicas()
            .iter()
            .map(|r| r.addr().port())
            .collect(),
    }
}

#[tokio::test]
async fn reads_go_to_replicas_and_everything_else_to_the_primary() -> anyhow::Result<()> {
    // Classification alone: without read-your-writes, reads after this client's writes still go to
    // replicas (consistency.rs tests what read-your-writes adds).
    let stack = stack(|c| c.consistency.mode = ConsistencyMode::None).await?;
    let p = ports(&stack);
    let client = stack.connect().await?;

    for sql in [
        "SELECT inet_server_port()",
        "SELECT inet_server_port(), count(*) FROM items WHERE v >= 0",
        "WITH x AS (SELECT id FROM items WHERE id < 5) SELECT inet_server_port() FROM x LIMIT 1",
        "/* pgroute: route=replica */ SELECT inet_server_port()",
    ] {
        let port = port_of(&client, sql).await?;
        assert!(p.replicas.contains(&port), "{sql}: ran on {port}");
    }
    for sql in [
        "SELECT inet_server_port() FROM items WHERE id = 1 FOR UPDATE",
        "SELECT inet_server_port() FROM items WHERE id = 1 FOR NO KEY UPDATE",
        "SELECT inet_server_port(), nextval('ids')",
        "SELECT inet_server_port(), pg_try_advisory_xact_lock(7)",
        "WITH x AS (UPDATE items SET v = v + 1 WHERE id = 1 RETURNING id) SELECT inet_server_port() FROM x",
        "/* pgroute: route=primary */ SELECT inet_server_port()",
        "SELECT inet_server_port(); UPDATE items SET v = v + 1 WHERE id = 2",
    ] {
        assert_eq!(port_of(&client, sql).await?, p.primary, "{sql}");
    }
    let read_only: String = client
        .query_one("SHOW transaction_read_only", &[])
        .await?
        .get(0);
    assert_eq!(
        read_only, "off",
        "SHOW transaction_read_only answered by the primary"
    );

    // Extended protocol: the Parse carries the SQL; the prepared statement keeps its route.
    let read = client
        .prepare("SELECT inet_server_port() FROM items WHERE id = $1")
        .await?;
    for id in 1..=5 {
        let port: i32 = client.query_one(&read, &[&id]).await?.get(0);
        assert!(
            p.replicas.contains(&(port as u16)),
            "prepared read ran on {port}"
        );
    }
    let write = client
        .prepare("UPDATE items SET v = v + 1 WHERE id = $1 RETURNING inet_server_port()")
        .await?;
    let port: i32 = client.query_one(&write, &[&3]).await?.get(0);
    assert_eq!(port as u16, p.primary);

    let counters = stack.proxy.proxy.router().counters();
    assert!(counters.get(Route::Replica, Reason::ReadOnly) >= 8);
    assert!(counters.get(Route::Primary, Reason::LockClause) >= 1);
    assert!(counters.get(Route::Primary, Reason::WriteFunction) >= 2);
    assert!(counters.get(Route::Primary, Reason::WritingCte) >= 1);
    assert!(counters.get(Route::Primary, Reason::ParseFailure) >= 1);
    assert!(counters.get(Route::Primary, Reason::Hint) >= 1);
    assert!(counters.get(Route::Replica, Reason::Hint) >= 1);
    Ok(())
}

#[tokio::test]
async fn transactions_stay_on_one_server() -> anyhow::Result<()> {
    let stack = stack(|c| c.consistency.mode = ConsistencyMode::None).await?;
    let p = ports(&stack);
    let mut client = stack.connect().await?;

    // A read-write transaction runs on the primary from BEGIN to COMMIT, reads included.
    let tx = client.transaction().await?;
    for _ in 0..5 {
        let port: i32 = tx.query_one("SELECT inet_server_port()", &[]).await?.get(0);
        assert_eq!(port as u16, p.primary);
    }
    tx.execute("UPDATE items SET v = v + 1 WHERE id = 4", &[])
        .await?;
    tx.commit().await?;

    // A read-only transaction may use a replica, and all of it stays there.
    client.batch_execute("BEGIN READ ONLY").await?;
    let first = port_of(&client, "SELECT inet_server_port()").await?;
    assert!(
        p.replicas.contains(&first),
        "read-only transaction on {first}"
    );
    for _ in 0..5 {
        assert_eq!(port_of(&client, "SELECT inet_server_port()").await?, first);
    }
    // Writing in it gets PostgreSQL's own answer, not a silent move to the primary.
    let err = client
        .batch_execute("UPDATE items SET v = v + 1 WHERE id = 5")
        .await
        .expect_err("write in a read-only transaction");
    assert_eq!(
        err.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err:?}"
    );
    // The failed transaction stays pinned until ROLLBACK.
    let err = client.simple_query("SELECT 1").await.expect_err("aborted");
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err:?}"
    );
    client.batch_execute("ROLLBACK").await?;

    // Savepoints and SET TRANSACTION work inside a pinned transaction.
    client
        .batch_execute(
            "BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SAVEPOINT a;
             UPDATE items SET v = v + 1 WHERE id = 6; ROLLBACK TO SAVEPOINT a; COMMIT",
        )
        .await?;
    let v: i32 = client
        .query_one(
            "/* pgroute: route=primary */ SELECT v FROM items WHERE id = 6",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(v, 0, "the rolled-back savepoint did not write");
    Ok(())
}

#[tokio::test]
async fn user_defaults_and_query_rules_override_classification() -> anyhow::Result<()> {
    let stack = stack(|c| {
        c.routing
            .users
            .insert("reporter".into(), DefaultRoute::Replica);
        c.routing
            .databases
            .insert("postgres".into(), DefaultRoute::Primary);
        c.routing.rules.push(pgroute::classify::RuleMatch {
            pattern: Some(r"^select inet_server_port\(\) as pinned".into()),
            fingerprint: None,
            route: Route::Primary,
        });
    })
    .await?;
    let p = ports(&stack);
    let app = stack.connect().await?;
    assert_eq!(
        port_of(&app, "SELECT inet_server_port() AS pinned").await?,
        p.primary
    );
    // The database's default sends even plain reads to the primary...
    assert_eq!(port_of(&app, "SELECT inet_server_port()").await?, p.primary);
    // ...but a user's own default wins over it.
    let reporter = stack.connect_with("user=reporter").await?;
    // Even a transaction goes to a replica for this user.
    let messages = reporter
        .simple_query("BEGIN; SELECT inet_server_port(); COMMIT")
        .await?;
    let port: u16 = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert!(
        p.replicas.contains(&port),
        "reporter ran on {port}; routes so far: {:?}",
        stack.proxy.proxy.router().counters().snapshot()
    );
    // A hint still wins over the user's default.
    assert_eq!(
        port_of(
            &reporter,
            "/* pgroute: route=primary */ SELECT inet_server_port()"
        )
        .await?,
        p.primary
    );
    Ok(())
}

/// 10,000 reads over replicas weighted 1:3: each replica's share is within 10% of its weight's share.
#[tokio::test]
async fn reads_spread_by_weight() -> anyhow::Result<()> {
    for policy in [LoadBalancing::RoundRobin, LoadBalancing::Random] {
        let stack = stack(move |c| {
            c.routing.load_balancing = policy;
            for (r, w) in c.backends.replicas.iter_mut().zip([1, 3]) {
                r.weight = w;
            }
        })
        .await?;
        let p = ports(&stack);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = stack.connect().await?;
            tasks.push(tokio::spawn(async move {
                let stmt = client.prepare("SELECT inet_server_port()").await?;
                let mut seen = HashMap::<u16, usize>::new();
                for _ in 0..1250 {
                    let port: i32 = client.query_one(&stmt, &[]).await?.get(0);
                    *seen.entry(port as u16).or_default() += 1;
                }
                anyhow::Ok(seen)
            }));
        }
        let mut seen = HashMap::<u16, usize>::new();
        for t in tasks {
            for (port, n) in t.await?? {
                *seen.entry(port).or_default() += n;
            }
        }
        assert_eq!(
            seen.get(&p.primary),
            None,
            "{policy:?}: no read on the primary"
        );
        for (port, weight) in p.replicas.iter().zip([1.0, 3.0]) {
            let share = *seen.get(port).unwrap_or(&0) as f64 / 10_000.0;
            let expected = weight / 4.0;
            assert!(
                (share - expected).abs() <= expected * 0.10,
                "{policy:?}: replica {port} got {share:.3} of reads, weight share {expected:.3}; {seen:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn hash_balancing_keeps_a_session_key_on_one_replica() -> anyhow::Result<()> {
    let stack = stack(|c| {
        c.routing.load_balancing = LoadBalancing::Hash;
        c.routing.hash_key = HashKey::ApplicationName;
    })
    .await?;
    let p = ports(&stack);
    let mut used = HashMap::<u16, usize>::new();
    for app in 0..16 {
        let mut first = None;
        for _ in 0..2 {
            // Two separate connections with the same key land on the same replica.
            let client = stack
                .connect_with(&format!("application_name=app-{app}"))
                .await?;
            for _ in 0..5 {
                let port = port_of(&client, "SELECT inet_server_port()").await?;
                assert!(p.replicas.contains(&port));
                assert_eq!(*first.get_or_insert(port), port, "app-{app} moved");
            }
        }
        *used.entry(first.unwrap_or(0)).or_default() += 1;
    }
    assert_eq!(used.len(), 2, "16 keys used both replicas: {used:?}");
    Ok(())
}

#[tokio::test]
async fn psql_and_pgbench_reads_run_on_replicas() -> anyhow::Result<()> {
    let stack = stack(|_| {}).await?;
    let p = ports(&stack);
    let bin = stack.cluster.bin_dir().to_owned();
    tools::pgbench(
        &bin,
        stack.cluster.primary().addr(),
        &["-i", "-q", "-s", "1", "postgres"],
    )
    .await?;
    stack.wait_for_replicas().await?;

    let port: u16 = tools::psql(
        &bin,
        stack.addr(),
        &["-c", "select inet_server_port()"],
        None,
    )
    .await?
    .parse()?;
    assert!(p.replicas.contains(&port), "psql read ran on {port}");
    let out = tools::psql(
        &bin,
        stack.addr(),
        &[
            "-c",
            "insert into items values (1000, 1) returning inet_server_port()",
        ],
        None,
    )
    .await?;
    assert!(out.starts_with(&p.primary.to_string()), "{out}");

    let before: u64 = replica_transactions(&stack);
    let run = tools::pgbench(
        &bin,
        stack.addr(),
        &[
            "-S", "-M", "prepared", "-c", "4", "-j", "2", "-t", "250", "postgres",
        ],
    )
    .await?;
    assert_eq!(run.failed, 0, "{}", run.stdout);
    assert_eq!(run.transactions, 1000);
    assert!(
        replica_transactions(&stack) - before >= 1000,
        "select-only pgbench ran on the replicas"
    );
    // TPC-B-like (writes in transactions) through the same proxy still works.
    let run = tools::pgbench(
        &bin,
        stack.addr(),
        &["-c", "4", "-j", "2", "-t", "50", "postgres"],
    )
    .await?;
    assert_eq!(run.failed, 0, "{}", run.stdout);
    Ok(())
}

fn replica_transactions(stack: &Stack) -> u64 {
    let primary = stack.cluster.primary().addr().to_string();
    stack
        .proxy
        .proxy
        .pools()
        .all()
        .iter()
        .filter(|pool| pool.key().backend.to_string() != primary)
        .map(|pool| {
            pool.stats()
                .checkouts
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

#[tokio::test]
async fn an_unreachable_replica_hands_reads_to_the_primary() -> anyhow::Result<()> {
    let dead: ReplicaConfig = "127.0.0.1:1"
        .parse::<pgroute::config::BackendAddr>()
        .map_err(anyhow::Error::msg)?
        .into();
    let with_dead = dead.clone();
    let stack = Stack::start(0, move |c| c.backends.replicas = vec![with_dead]).await?;
    // The lag monitor cannot reach it, so it never takes reads.
    let client = stack.connect().await?;
    let port = port_of(&client, "SELECT inet_server_port()").await?;
    assert_eq!(port, stack.cluster.primary().addr().port());
    let counters = stack.proxy.proxy.router().counters();
    assert!(counters.get(Route::Primary, Reason::ReplicaLagging) >= 1);
    // Without the monitor it is picked, the connection fails, and the batch runs on the primary.
    let unmonitored = pgroute_tests::start_proxy(stack.cluster.primary().addr(), move |c| {
        c.backends.replicas = vec![dead];
        c.consistency.monitor = false;
    })
    .await?;
    let client = pgroute_tests::connect(unmonitored.addr).await?;
    let port = port_of(&client, "SELECT inet_server_port()").await?;
    assert_eq!(port, stack.cluster.primary().addr().port());
    let counters = unmonitored.proxy.router().counters();
    assert!(counters.get(Route::Primary, Reason::NoReplica) >= 1);
    Ok(())
}

/// A client that pipelines a write behind a read (tokio-postgres sends both before reading answers):
/// the write must never reach the replica running the read, whether both arrive together or the write
/// arrives while the read still runs.
#[tokio::test]
async fn a_write_pipelined_behind_a_read_runs_on_the_primary() -> anyhow::Result<()> {
    let stack = stack(|_| {}).await?;
    let p = ports(&stack);
    let client = stack.connect().await?;
    let read = client
        .prepare("SELECT inet_server_port(), pg_sleep(0.05)::text FROM items WHERE id = $1")
        .await?;
    let write = client
        .prepare("UPDATE items SET v = v + 1 WHERE id = $1 RETURNING inet_server_port()")
        .await?;
    for id in 1..=20 {
        let (r, w) = futures_util::future::join(
            client.query_one(&read, &[&id]),
            client.query_one(&write, &[&id]),
        )
        .await;
        let w: i32 = w?.get(0);
        assert_eq!(w as u16, p.primary, "pipelined write {id}");
        let r: i32 = r?.get(0);
        assert!(r as u16 == p.primary || p.replicas.contains(&(r as u16)));
    }
    Ok(())
}

/// The same, byte by byte: the write batch arrives while the read batch is still running on a replica
/// (a driver pipelining over a slow network), so it must be held back and routed on its own.
#[tokio::test]
async fn a_write_arriving_while_a_replica_runs_a_read_waits_for_the_primary() -> anyhow::Result<()>
{
    use pgroute_protocol::backend::DATA_ROW;
    use pgroute_tests::raw::RawClient;

    let stack = stack(|_| {}).await?;
    let p = ports(&stack);
    let mut c = RawClient::login(stack.addr()).await?;
    c.query("SELECT inet_server_port()::text, pg_sleep(0.3)::text");
    c.flush().await?;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.query("UPDATE items SET v = v + 1 WHERE id = 9 RETURNING inet_server_port()::text");
    let mut ports_seen = Vec::new();
    for _ in 0..2 {
        let msgs = c.until_ready().await?;
        if let Some(e) = msgs.iter().find_map(|m| m.error()) {
            anyhow::bail!("pipelined statement failed: {} ({})", e.message, e.code);
        }
        let row = msgs
            .iter()
            .find(|m| m.tag == DATA_ROW)
            .ok_or_else(|| anyhow::anyhow!("no row"))?;
        let values = pgroute_protocol::backend::data_row_values(&row.body)?;
        let port: u16 = std::str::from_utf8(values[0].unwrap_or_default())?.parse()?;
        ports_seen.push(port);
    }
    assert!(
        p.replicas.contains(&ports_seen[0]),
        "read ran on {}",
        ports_seen[0]
    );
    assert_eq!(ports_seen[1], p.primary, "the write ran on the primary");
    Ok(())
}
