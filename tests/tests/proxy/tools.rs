//! The PostgreSQL command-line tools through the proxy: psql (including `\copy`) and pgbench with
//! many more clients than backend connections.

use pgroute_tests::tools::{pgbench, psql};
use pgroute_tests::Stack;

fn pool(size: u32) -> impl FnOnce(&mut pgroute_tests::Config) {
    move |c| c.pool.pool_size = std::num::NonZeroU32::new(size).expect("non-zero")
}

#[tokio::test]
async fn psql_scripts_and_copy_round_trip() -> anyhow::Result<()> {
    let stack = Stack::start(0, pool(2)).await?;
    let bin = stack.cluster.bin_dir();
    let dir = std::env::temp_dir().join(format!("pgroute-psql-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("in.csv");
    let dst = dir.join("out.csv");
    let rows: String = (1..=1000).map(|i| format!("{i},item {i}\n")).collect();
    std::fs::write(&src, &rows)?;
    let script = format!(
        "create table items (id int primary key, name text);\n\
         \\copy items from '{}' with (format csv)\n\
         \\copy (select * from items order by id) to '{}' with (format csv)\n\
         select count(*), sum(id) from items;\n",
        src.display(),
        dst.display()
    );
    let out = psql(bin, stack.addr(), &["-f", "-"], Some(script.as_bytes())).await?;
    assert_eq!(out.lines().last(), Some("1000|500500"));
    assert_eq!(std::fs::read_to_string(&dst)?, rows);
    // Errors come back with psql's usual text and exit code.
    let err = psql(
        bin,
        stack.addr(),
        &["-c", "select * from no_such_table"],
        None,
    )
    .await
    .expect_err("missing table");
    assert!(
        err.to_string()
            .contains("relation \"no_such_table\" does not exist"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// pgbench with 100 clients over a pool of 5, in every query protocol, must finish every transaction
/// with no error, and the database must show each committed transaction exactly once.
#[tokio::test]
async fn pgbench_many_clients_over_a_small_pool() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.pool.pool_size = std::num::NonZeroU32::new(5).expect("non-zero");
        c.server.max_client_conn = 500;
    })
    .await?;
    let bin = stack.cluster.bin_dir();
    let init = pgbench(
        bin,
        stack.cluster.primary().addr(),
        &["-i", "-s", "1", "-q", "postgres"],
    )
    .await;
    init?;
    let direct = stack.connect_direct().await?;
    let mut expected_history = 0i64;
    for (mode, select_only) in [
        ("simple", false),
        ("extended", false),
        ("prepared", false),
        ("simple", true),
        ("extended", true),
    ] {
        let mut args = vec!["-n", "-c", "100", "-j", "2", "-t", "20", "-M", mode];
        if select_only {
            args.push("-S");
        }
        args.push("postgres");
        let r = pgbench(bin, stack.addr(), &args).await?;
        assert_eq!(
            r.transactions, 2000,
            "{mode} select_only={select_only}: {}",
            r.stdout
        );
        assert_eq!(r.failed, 0, "{mode}: {}", r.stdout);
        if !select_only {
            expected_history += 2000;
        }
        let history: i64 = direct
            .query_one("select count(*) from pgbench_history", &[])
            .await?
            .get(0);
        assert_eq!(history, expected_history, "after {mode}");
    }
    // The pool never opened more than 5 backend connections for those 100 clients.
    let pools = stack.proxy.proxy.pools().all();
    let opened: u64 = pools
        .iter()
        .map(|p| {
            p.stats()
                .connects
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(opened <= 5, "opened {opened} backend connections");
    Ok(())
}
