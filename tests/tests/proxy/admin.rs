//! The admin console (`dbname=pgroute`) through real psql and tokio-postgres: reports after a known
//! number of clients and transactions, PAUSE/RESUME under load, DRAIN, and who may use it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute_tests::{connect_conninfo, sqlstate, Stack};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

type Row = HashMap<String, String>;

/// A stack whose `postgres` user may run every console command and `watcher` SHOW only.
async fn stack(replicas: usize) -> anyhow::Result<Stack> {
    Stack::start(replicas, |c| {
        c.pool.pool_size = NonZeroU32::new(4).expect("4");
        c.admin.users = vec!["postgres".into()];
        c.admin.stats_users = vec!["watcher".into()];
    })
    .await
}

fn console_conninfo(stack: &Stack, user: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} dbname=pgroute connect_timeout=10",
        stack.addr().port()
    )
}

async fn console(stack: &Stack, user: &str) -> anyhow::Result<tokio_postgres::Client> {
    connect_conninfo(&console_conninfo(stack, user)).await
}

/// A console command's rows, by column name (NULL as "").
async fn show(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for m in client
        .simple_query(sql)
        .await
        .with_context(|| sql.to_owned())?
    {
        if let SimpleQueryMessage::Row(r) = m {
            let mut row = Row::new();
            for (i, c) in r.columns().iter().enumerate() {
                row.insert(c.name().to_owned(), r.get(i).unwrap_or("").to_owned());
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// psql's unaligned output of a console command: the header's column names, then the rows.
async fn psql_show(stack: &Stack, sql: &str) -> anyhow::Result<(Vec<String>, Vec<Row>)> {
    let out = pgroute_tests::tools::run_tool(
        stack.cluster.bin_dir(),
        "psql",
        stack.addr(),
        &["-X", "-A", "-P", "footer=off", "-d", "pgroute", "-c", sql],
        None,
    )
    .await?;
    anyhow::ensure!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .context("no header")?
        .split('|')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split('|').map(str::to_owned))
                .collect()
        })
        .collect();
    Ok((header, rows))
}

fn num(row: &Row, column: &str) -> anyhow::Result<i64> {
    row.get(column)
        .with_context(|| format!("no column {column} in {row:?}"))?
        .parse()
        .with_context(|| format!("{column} in {row:?}"))
}

async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn psql_shows_pools_clients_and_servers_for_known_clients() -> anyhow::Result<()> {
    let stack = stack(0).await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let c = stack.connect().await?;
        c.simple_query("SELECT 1").await?;
        clients.push(c);
    }
    // One client holds a transaction open: linked to a server connection.
    clients[0].batch_execute("BEGIN").await?;
    let pid: i32 = clients[0]
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);

    let (header, pools) = psql_show(&stack, "SHOW POOLS").await?;
    assert_eq!(
        header[..16],
        [
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode"
        ]
    );
    let app = pools
        .iter()
        .find(|r| r["database"] == "postgres" && r["user"] == "postgres")
        .context("pool row")?;
    assert_eq!(num(app, "cl_active")?, 3, "{app:?}");
    assert_eq!(num(app, "cl_waiting")?, 0, "{app:?}");
    assert_eq!(num(app, "sv_active")?, 1, "{app:?}");
    assert!((1..=4).contains(&(num(app, "sv_active")? + num(app, "sv_idle")?)));
    assert_eq!(app["pool_mode"], "transaction");
    assert!(
        pools.iter().any(|r| r["database"] == "pgroute"),
        "the console's own row: {pools:?}"
    );

    let (_, clients_rows) = psql_show(&stack, "show clients").await?;
    let app_clients: Vec<&Row> = clients_rows
        .iter()
        .filter(|r| r["database"] == "postgres")
        .collect();
    assert_eq!(app_clients.len(), 3, "{clients_rows:?}");
    let active: Vec<&&Row> = app_clients
        .iter()
        .filter(|r| r["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{app_clients:?}");
    assert_eq!(active[0]["link"], format!("s{pid}"));
    assert_eq!(
        app_clients.iter().filter(|r| r["state"] == "idle").count(),
        2
    );
    assert!(app_clients
        .iter()
        .all(|r| r["type"] == "C" && r["user"] == "postgres" && r["addr"] == "127.0.0.1"));

    let (header, servers) = psql_show(&stack, "SHOW SERVERS").await?;
    assert_eq!(header[0], "type");
    assert_eq!(header[20], "id");
    let linked = servers
        .iter()
        .find(|r| r["remote_pid"] == pid.to_string())
        .context("the open transaction's server")?;
    assert_eq!(linked["state"], "active");
    assert_eq!(linked["link"], active[0]["ptr"]);
    assert_eq!(
        linked["port"],
        stack.cluster.primary().addr().port().to_string()
    );
    assert_eq!(
        servers.iter().filter(|r| r["state"] == "active").count(),
        1,
        "{servers:?}"
    );

    // The transaction ends: the client is idle and its server back in the pool.
    clients[0].batch_execute("COMMIT").await?;
    let (_, servers) = psql_show(&stack, "SHOW SERVERS").await?;
    assert!(servers.iter().all(|r| r["state"] == "idle"), "{servers:?}");
    drop(clients);
    Ok(())
}

#[tokio::test]
async fn show_stats_counts_transactions_and_queries() -> anyhow::Result<()> {
    let stack = stack(0).await?;
    let admin = console(&stack, "postgres").await?;
    let client = stack.connect().await?;
    client.simple_query("SELECT 1").await?;
    let stats_of = |rows: Vec<Row>| -> anyhow::Result<(i64, i64)> {
        let row = rows
            .into_iter()
            .find(|r| r["database"] == "postgres")
            .context("stats row")?;
        Ok((
            num(&row, "total_xact_count")?,
            num(&row, "total_query_count")?,
        ))
    };
    let (xacts, queries) = stats_of(show(&admin, "SHOW STATS").await?)?;
    for _ in 0..25 {
        client.simple_query("SELECT 1").await?;
    }
    for _ in 0..5 {
        client.simple_query("BEGIN").await?;
        client.simple_query("SELECT 1").await?;
        client.simple_query("COMMIT").await?;
    }
    let rows = show(&admin, "SHOW STATS").await?;
    assert_eq!(rows[0].len(), 23, "PgBouncer's 23 columns");
    let (xacts2, queries2) = stats_of(rows)?;
    assert_eq!(
        xacts2 - xacts,
        30,
        "25 autocommit statements + 5 transactions"
    );
    assert_eq!(queries2 - queries, 40, "25 + 5 × 3");
    Ok(())
}

#[tokio::test]
async fn show_replicas_reports_lag_and_breaker_and_drain_works() -> anyhow::Result<()> {
    let stack = stack(1).await?;
    let admin = console(&stack, "postgres").await?;
    let replica = stack.cluster.replicas()[0].addr().to_string();
    eventually(
        Duration::from_secs(30),
        "replica measured and eligible",
        || {
            let admin = &admin;
            async move {
                let rows = show(admin, "SHOW REPLICAS").await?;
                Ok(rows
                    .iter()
                    .any(|r| r["configured_as"] == "replica" && r["eligible"] == "yes"))
            }
        },
    )
    .await?;
    let rows = show(&admin, "SHOW REPLICAS").await?;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["configured_as"], "primary");
    let r = &rows[1];
    assert_eq!(r["address"], replica);
    assert_eq!(r["up"], "yes");
    assert!(num(r, "lag_bytes")? >= 0 && num(r, "lag_ms")? >= 0, "{r:?}");
    assert_eq!(r["breaker_state"], "closed");
    assert_eq!(num(r, "breaker_opened")?, 0);
    assert_eq!(r["drained"], "no");

    // Reads go to the replica; SHOW ROUTES counts them.
    let client = stack.connect().await?;
    for _ in 0..5 {
        client.simple_query("SELECT 1").await?;
    }
    let routes = show(&admin, "SHOW ROUTES").await?;
    let to_replica: i64 = routes
        .iter()
        .filter(|r| r["route"] == "replica")
        .map(|r| num(r, "transactions"))
        .sum::<anyhow::Result<i64>>()?;
    assert!(to_replica >= 5, "{routes:?}");

    admin.simple_query(&format!("DRAIN {replica}")).await?;
    let rows = show(&admin, "SHOW REPLICAS").await?;
    assert_eq!(rows[1]["drained"], "yes");
    let health = stack
        .proxy
        .proxy
        .backends()
        .get(&replica.parse().map_err(anyhow::Error::msg)?);
    assert!(health.is_drained());
    // The primary cannot be drained: a clear error, and the console stays usable.
    let primary = stack.cluster.primary().addr().to_string();
    let err = admin
        .simple_query(&format!("DRAIN {primary}"))
        .await
        .expect_err("primary");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    admin.simple_query(&format!("UNDRAIN {replica}")).await?;
    assert!(!health.is_drained());
    Ok(())
}

#[tokio::test]
async fn pause_and_resume_through_the_console_under_load_with_no_client_errors(
) -> anyhow::Result<()> {
    let stack = stack(0).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = stack.connect().await?;
        let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.batch_execute("BEGIN; SELECT 1; COMMIT").await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("client error: {e:?}");
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = console(&stack, "postgres").await?;
    let watcher = console(&stack, "watcher").await?;
    // PAUSE answers once no transaction is in flight.
    tokio::time::timeout(Duration::from_secs(30), admin.simple_query("PAUSE"))
        .await
        .context("PAUSE did not return")??;
    let state = show(&watcher, "SHOW STATE").await?;
    assert!(state
        .iter()
        .any(|r| r["key"] == "paused" && r["value"] == "yes"));
    eventually(Duration::from_secs(10), "clients wait while paused", || {
        let watcher = &watcher;
        async move {
            let pools = show(watcher, "SHOW POOLS").await?;
            Ok(pools
                .iter()
                .any(|r| r["database"] == "postgres" && r["cl_waiting"] != "0"))
        }
    })
    .await?;
    let held = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        done.load(Ordering::Relaxed),
        held,
        "no transaction while paused"
    );
    admin.simple_query("RESUME").await?;
    let resumed = done.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), "transactions after RESUME", || {
        let done = done.clone();
        async move { Ok(done.load(Ordering::Relaxed) > resumed + 10) }
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t).await??;
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    Ok(())
}

#[tokio::test]
async fn console_refuses_other_users_unknown_commands_and_the_extended_protocol(
) -> anyhow::Result<()> {
    let stack = stack(0).await?;
    // Not in admin.users nor admin.stats_users: refused at login.
    let err = console(&stack, "someone").await.expect_err("refused");
    assert_eq!(
        sqlstate(&err),
        Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err:?}"
    );
    let out = pgroute_tests::tools::run_tool(
        stack.cluster.bin_dir(),
        "psql",
        stack.addr(),
        &["-X", "-d", "pgroute", "-U", "someone", "-c", "SHOW POOLS"],
        None,
    )
    .await?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not allowed to use the pgroute admin console"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A stats user may look but not act.
    let watcher = console(&stack, "watcher").await?;
    assert!(!show(&watcher, "SHOW VERSION").await?.is_empty());
    let err = watcher.simple_query("PAUSE").await.expect_err("stats only");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    assert!(!stack.proxy.proxy.resume(), "not paused");

    // Unknown commands: PgBouncer's message, SQLSTATE 42601; the console goes on.
    let err = watcher
        .simple_query("SHOW NONSENSE")
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR));
    let db = err.as_db_error().context("db error")?;
    assert_eq!(
        db.message(),
        "invalid command 'SHOW NONSENSE', use SHOW HELP;"
    );

    // The extended protocol is refused with 0A000, and the connection stays usable.
    let err = watcher
        .query("SHOW POOLS", &[])
        .await
        .expect_err("extended");
    assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
    assert!(!show(&watcher, "show lists").await?.is_empty());

    // Several commands in one query each answer.
    let msgs = watcher.simple_query("SHOW VERSION; SHOW STATE").await?;
    let complete = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(complete, 2);

    // RELOAD in-process has no file to re-read: a clear error.
    let admin = console(&stack, "postgres").await?;
    let err = admin.simple_query("RELOAD").await.expect_err("no source");
    assert_eq!(err.code(), Some(&SqlState::CONFIG_FILE_ERROR));
    Ok(())
}
