//! `pgroute-bench`: pgroute against PgBouncer and a direct connection, on one throwaway cluster.
//!
//! One run first times pgroute's statement classifier in this process, cache warm and cold, against the
//! issue's targets ([`classify::measure`]; `--skip-classify` leaves it out). Then it starts a PostgreSQL
//! primary with two streaming replicas (`pgroute-cluster`), loads `pgbench -i -s 10` and waits until the
//! replicas have replayed it, starts PgBouncer and pgroute in front of the primary only with the same pool
//! (transaction mode, 20 server connections), runs `pgbench` through each target for the workloads of
//! [`matrix::WORKLOADS`] and prints throughput, latency and the ratios pgroute/PgBouncer and
//! pgroute/direct. Through the same two proxies it then runs select-only with prepared statements against
//! the simple protocol ([`prepared::run`]: pgroute's prepared/simple ratio, PgBouncer's row beside it;
//! `--skip-prepared` leaves it out). Next it compares select-only throughput of pgroute with the primary
//! only and pgroute sending reads to both replicas ([`replicas::run`]; `--skip-replicas` leaves it out and
//! gives the cluster one replica, as before that step). Then, on a cluster of its own whose replica applies
//! WAL 1 s late, it runs a 90/10 read/write workload through pgroute that checks every read against the
//! client's own last write, against the same workload with every read on the primary
//! ([`consistency::run`]: stale reads, target 0, and the throughput ratio; `--skip-consistency` leaves it
//! out). Before the read-scaling step it runs select-only through pgroute with `/metrics` off and on
//! ([`overhead::run`]: the on/off ratio against the 5% target; `--skip-overhead` leaves it out). Last it holds thousands of idle clients on each proxy and compares the memory each idle client
//! costs (`--skip-memory` leaves it out).
//!
//! Flow: [`cli::Args`] → [`classify::measure`] → cluster → [`proxies::Proxies::start`] → [`matrix::run`]
//! (each run is [`pgbench::run`](pgbench::Pgbench::run), printed by [`report`]) → [`prepared::run`] →
//! [`replicas::run`] → [`consistency::run`] → fresh proxies → [`idle::measure`].
//! Every proxy sits in a [`process::ChildGuard`], so an early return on error still stops it. A proxy that
//! does not start only fails its own rows. Run it through `tests/bench/run.sh`, which builds in release
//! mode and raises the open-file limit.

mod classify;
mod cli;
mod consistency;
mod idle;
mod matrix;
mod overhead;
mod pgbench;
mod pgbouncer;
mod pgroute;
mod prepared;
mod process;
mod proxies;
mod replicas;
mod report;
mod workdir;

use anyhow::{Context, Result};
use clap::Parser;
use pgroute_cluster::{Cluster, ClusterOptions};

use crate::cli::Args;
use crate::matrix::Targets;
use crate::process::ChildGuard;
use crate::proxies::{not_started, Proxies};
use crate::workdir::WorkDir;

/// `pgbench -i -s`: 1,000,000 rows in `pgbench_accounts`.
const SCALE: u32 = 10;

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.skip_memory {
        idle::check_fd_limit(args.idle)?;
    }
    let pgroute_bin = args.pgroute_binary()?;
    let work = WorkDir::create("pgroute-bench")?;

    if !args.skip_classify {
        eprintln!("timing the statement classifier (about 2 s) ...");
        report::print_classification(&classify::measure());
    }

    let defaults = ClusterOptions::default();
    let replica_count = if args.skip_replicas {
        defaults.replicas
    } else {
        replicas::REPLICAS
    };
    eprintln!("starting PostgreSQL (replicas: {replica_count}, max_connections=300) ...");
    let cluster = Cluster::start(ClusterOptions {
        replicas: replica_count,
        max_connections: 300,
        ..defaults
    })
    .context("start the PostgreSQL cluster")?;
    let primary = cluster.primary().addr();
    let pgbench = pgbench::Pgbench::new(cluster.bin_dir(), work.path());
    eprintln!("pgbench -i -s {SCALE} on the primary ({primary}) ...");
    pgbench.init(primary, SCALE)?;
    // Replaying a million rows takes the replicas a while; let them finish before anything is timed.
    eprintln!("waiting for the replicas to replay pgbench -i ...");
    if let Err(e) = replicas::wait_for_replay(&cluster) {
        eprintln!("replicas still replaying (the first runs may be slowed by it): {e:#}");
    }

    let proxies = Proxies::start(primary, &pgroute_bin, work.path().join("throughput"))?;
    let address =
        |proxy: &Result<ChildGuard>| proxy.as_ref().map(ChildGuard::addr).map_err(not_started);
    let targets = Targets {
        direct: Ok(primary),
        pgbouncer: address(&proxies.pgbouncer),
        pgroute: address(&proxies.pgroute),
    };
    let run_options = args.run_options();
    matrix::run(&pgbench, &targets, &run_options);
    if !args.skip_prepared {
        prepared::run(&pgbench, &targets, run_options.duration);
    }
    drop(proxies);

    if !args.skip_overhead {
        overhead::run(
            &overhead::Setup {
                primary,
                pgbench: &pgbench,
                pgroute_binary: &pgroute_bin,
                dir: work.path().join("overhead"),
            },
            &run_options,
        );
    }

    if !args.skip_replicas {
        let setup = replicas::Setup {
            cluster: &cluster,
            pgbench: &pgbench,
            pgroute_binary: &pgroute_bin,
            dir: work.path().join("replicas"),
        };
        replicas::run(&setup, &args.run_options());
    }

    if !args.skip_consistency {
        consistency::run(&consistency::Setup {
            pgroute_binary: &pgroute_bin,
            dir: work.path().join("consistency"),
            duration: run_options.duration,
        });
    }

    if !args.skip_memory {
        // Fresh processes: after the 1,000-client run both would hold freed client memory for reuse,
        // which would hide what an idle client costs.
        eprintln!("starting fresh proxies for the idle-client memory comparison ...");
        let fresh = Proxies::start(primary, &pgroute_bin, work.path().join("memory"))?;
        let results = fresh.named().map(|(name, proxy)| {
            let result = match proxy {
                Ok(guard) => idle::measure(guard, args.idle),
                Err(e) => Err(anyhow::anyhow!(not_started(e))),
            };
            (name, result)
        });
        report::print_memory(args.idle, &results);
    }
    report::print_how_to_read();
    Ok(())
}
