//! `pgroute demo`: the embedded default. Starts a throwaway primary and streaming replica from the
//! installed PostgreSQL server binaries, puts pgroute in front, runs a short mixed workload through it
//! with many more clients than backend connections, and reports what happened. Everything is torn
//! down at the end, also on Ctrl-C.

mod workload;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use pgroute_cluster::{Cluster, ClusterOptions};

use crate::classify::{Reason, Route};
use crate::cli::DemoArgs;
use crate::config::{Config, PoolMode};
use crate::Running;

pub async fn run(args: DemoArgs) -> ExitCode {
    tokio::select! {
        code = demo(&args) => code,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the demo future drops the cluster, which stops the servers and removes the data.
            eprintln!("\ninterrupted: stopping PostgreSQL and cleaning up");
            ExitCode::from(130)
        }
    }
}

async fn demo(args: &DemoArgs) -> ExitCode {
    match demo_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgroute demo failed: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn demo_inner(args: &DemoArgs) -> anyhow::Result<()> {
    println!(
        "pgroute demo: starting a PostgreSQL primary and one streaming replica on loopback ..."
    );
    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::start(ClusterOptions {
            replicas: 1,
            ..ClusterOptions::default()
        })
    })
    .await??;
    let primary = cluster.primary().addr();
    let replica = cluster.replicas().first().map(|r| r.addr());
    println!(
        "  primary {primary}, replica {} (streaming), ready in {:.1}s",
        replica.map_or("-".into(), |r| r.to_string()),
        started.elapsed().as_secs_f64()
    );

    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.backends.primary = Some(primary.to_string().parse().map_err(anyhow::Error::msg)?);
    config.backends.replicas = replica
        .iter()
        .map(|r| {
            r.to_string()
                .parse::<crate::config::BackendAddr>()
                .map(Into::into)
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<_>>()?;
    config.pool.mode = PoolMode::Transaction;
    config.pool.pool_size = std::num::NonZeroU32::new(args.pool_size.max(1))
        .ok_or_else(|| anyhow::anyhow!("--pool-size must be at least 1"))?;
    let proxy = Running::start(config).await?;
    println!(
        "  pgroute listening on {} (transaction pooling, {} backend connections per pool)",
        proxy.addr, args.pool_size
    );

    println!(
        "running {} clients x {} transactions (70% reads, 20% autocommit writes, 10% multi-statement transactions) ...",
        args.clients, args.transactions
    );
    let report = workload::run(proxy.addr, replica, args.clients, args.transactions).await?;
    report.print();

    let pools = proxy.proxy.pools().all();
    println!("\nwhere it ran:");
    for pool in &pools {
        let s = pool.stats();
        let role = if Some(pool.key().backend.to_string()) == Some(primary.to_string()) {
            "primary"
        } else {
            "replica"
        };
        println!(
            "  {:<21} ({role})  {:>6} transactions, {:>6} queries, over {} backend connections (opened {})",
            pool.key().backend.to_string(),
            s.checkouts.load(Ordering::Relaxed),
            s.queries.load(Ordering::Relaxed),
            s.open.load(Ordering::Relaxed),
            s.connects.load(Ordering::Relaxed),
        );
    }
    println!("\nwhy (transactions by route and reason):");
    for (route, reason, n) in proxy.proxy.router().counters().snapshot() {
        println!(
            "  {:<8} {:<24} {n:>6}",
            format!("{route:?}").to_lowercase(),
            reason.as_str()
        );
    }
    let counters = proxy.proxy.router().counters();
    if counters.get(Route::Primary, Reason::ReadYourWrites) > 0 {
        println!(
            "  (read_your_writes: reads by a client that had just written, kept off the replica until it \
             has replayed that write; the demo's servers commit asynchronously, so the replica trails \
             by a few hundred milliseconds)"
        );
    }
    if let Some(replica) = replica {
        let rows = workload::replica_rows(replica).await?;
        println!("  the replica streamed the demo's writes: {rows} rows in demo_accounts there");
    }
    println!(
        "\n{} clients shared {} backend connections; {} errors.",
        args.clients,
        pools
            .iter()
            .map(|p| p.stats().connects.load(Ordering::Relaxed))
            .sum::<u64>(),
        report.errors
    );
    proxy.stop().await;
    drop(cluster);
    println!("cleaned up: servers stopped, data directory removed.");
    if report.errors > 0 {
        anyhow::bail!("{} statements failed", report.errors);
    }
    Ok(())
}
