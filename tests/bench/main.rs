//! `pgroute-bench`: pgroute against PgBouncer and a direct connection, on one throwaway cluster.
//!
//! One run starts a PostgreSQL primary (`pgroute-cluster`), loads `pgbench -i -s 10`, starts PgBouncer and
//! pgroute with the same pool (transaction mode, 20 server connections), then runs `pgbench` through each
//! target for the workloads of [`matrix::WORKLOADS`] and prints throughput, latency and the ratios
//! pgroute/PgBouncer and pgroute/direct. Last it holds thousands of idle clients on each proxy and
//! compares the memory each idle client costs.
//!
//! Flow: [`cli::Args`] → cluster → [`pgbouncer::start`] / [`pgroute::start`] → [`matrix::run`] (each run is
//! [`pgbench::run`], printed by [`report`]) → [`idle::measure`]. Every child process sits in a
//! [`process::ChildGuard`], so an early return on error still stops it. A proxy that does not
//! start only fails its own rows. Run it through `tests/bench/run.sh`, which builds in release mode and
//! raises the open-file limit.

mod cli;
mod idle;
mod matrix;
mod pgbench;
mod pgbouncer;
mod pgroute;
mod process;
mod report;
mod workdir;

use anyhow::{Context, Result};
use clap::Parser;
use pgroute_cluster::{Cluster, ClusterOptions};

use crate::cli::Args;
use crate::matrix::Targets;
use crate::process::ChildGuard;
use crate::workdir::WorkDir;

/// Pool size of both proxies (`default_pool_size`, `--pool-size`).
const POOL_SIZE: u32 = 20;
/// Client limit of both proxies (`max_client_conn`), above the largest workload and `--idle`.
const MAX_CLIENT_CONN: u32 = 10_000;
/// `pgbench -i -s`: 1,000,000 rows in `pgbench_accounts`.
const SCALE: u32 = 10;

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.skip_memory {
        idle::check_fd_limit(args.idle)?;
    }
    let pgroute_bin = args.pgroute_binary()?;
    let work = WorkDir::create("pgroute-bench")?;

    eprintln!("starting PostgreSQL (1 replica, max_connections=300) ...");
    let cluster = Cluster::start(ClusterOptions {
        max_connections: 300,
        ..ClusterOptions::default()
    })
    .context("start the PostgreSQL cluster")?;
    let primary = cluster.primary().addr();
    let pgbench = pgbench::Pgbench::new(cluster.bin_dir(), work.path());
    eprintln!("pgbench -i -s {SCALE} on the primary ({primary}) ...");
    pgbench.init(primary, SCALE)?;

    let pgbouncer = pgbouncer::start(&pgbouncer::Options {
        primary,
        pool_size: POOL_SIZE,
        max_client_conn: MAX_CLIENT_CONN,
        dir: work.path().join("pgbouncer"),
    });
    let pgroute = pgroute::start(&pgroute::Options {
        binary: pgroute_bin,
        primary,
        pool_size: POOL_SIZE,
        max_client_conn: MAX_CLIENT_CONN,
        log: work.path().join("pgroute.log"),
    });
    report_start("PgBouncer", &pgbouncer);
    report_start("pgroute", &pgroute);

    let targets = Targets {
        direct: Ok(primary),
        pgbouncer: pgbouncer.as_ref().map(ChildGuard::addr).map_err(error_text),
        pgroute: pgroute.as_ref().map(ChildGuard::addr).map_err(error_text),
    };
    matrix::run(&pgbench, &targets, &args.run_options());

    if !args.skip_memory {
        let proxies = [("PgBouncer", &pgbouncer), ("pgroute", &pgroute)];
        let results = proxies.map(|(name, proxy)| {
            let result = match proxy {
                Ok(guard) => idle::measure(guard, args.idle),
                Err(e) => Err(anyhow::anyhow!("not started: {}", error_text(e))),
            };
            (name, result)
        });
        report::print_memory(args.idle, &results);
    }
    report::print_how_to_read();
    Ok(())
}

fn report_start(name: &str, result: &Result<ChildGuard>) {
    match result {
        Ok(guard) => eprintln!("{name} listening on {}", guard.addr()),
        Err(e) => eprintln!("{name} did not start (its rows will show the error): {e:#}"),
    }
}

/// One line with the whole cause chain, for a table cell.
fn error_text(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}
