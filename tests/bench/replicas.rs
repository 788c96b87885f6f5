//! Read scaling: pgbench select-only through pgroute with the primary alone, then with two replicas.
//!
//! The issue asks that sending reads to two streaming replicas give at least [`TARGET_RATIO`] times the
//! select-only throughput of the primary alone. Both layouts are fresh pgroute processes from the release
//! binary with the same flags as in the PgBouncer comparison (transaction pooling, the same pool size, which
//! pgroute applies per backend), so the two rows differ only in `--replica`; reads then go to the replicas
//! by pgroute's default policy (least connections), writes and anything unsure to the primary.
//!
//! A replica must have replayed the primary's WAL before it serves reads ([`wait_for_replay`]): pgbench
//! reads its scale from `pgbench_branches` at start-up. After each run the step reports how many
//! transactions each node committed meanwhile (growth of `pg_stat_database.xact_commit`, read once that
//! run's pgroute has stopped and its server connections have closed), so the rows show where reads went.
//!
//! On the 2-core machine the benchmark targets, all three servers, pgbench and pgroute share the same
//! cores: replicas add servers but hardly any CPU, so the ratio there mostly shows what routing costs,
//! not what more servers buy. `--skip-replicas` leaves the step out (and the cluster at one replica).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pgroute_cluster::{Cluster, Node};

use crate::matrix::RunOptions;
use crate::pgbench::{Pgbench, RunSpec, Script};
use crate::proxies::{not_started, MAX_CLIENT_CONN, POOL_SIZE};
use crate::report::{self, Outcome};

/// Streaming replicas the cluster gets when this step runs.
pub const REPLICAS: usize = 2;
/// The target: TPS with the replicas over TPS with the primary only.
pub const TARGET_RATIO: f64 = 1.5;
/// pgbench clients, as in the matrix's select-only row.
pub const CLIENTS: u32 = 50;
/// How long replicas get to replay up to the primary's current WAL position.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Time for the server backends of a stopped pgroute to exit and flush their statistics.
const STATS_SETTLE: Duration = Duration::from_secs(1);

/// What the step runs against.
pub struct Setup<'a> {
    pub cluster: &'a Cluster,
    pub pgbench: &'a Pgbench,
    pub pgroute_binary: &'a Path,
    /// Created here; holds the pgroute logs.
    pub dir: PathBuf,
}

/// Which backends one pgroute is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    PrimaryOnly,
    WithReplicas,
}

impl Layout {
    /// The baseline first.
    pub const ALL: [Layout; 2] = [Layout::PrimaryOnly, Layout::WithReplicas];

    /// Row label; fits the table's target column.
    pub fn label(self) -> &'static str {
        match self {
            Layout::PrimaryOnly => "pgroute primary",
            Layout::WithReplicas => "pgroute 2 replicas",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Layout::PrimaryOnly => "primary-only",
            Layout::WithReplicas => "with-replicas",
        }
    }
}

/// One layout's run: pgbench's outcome and the transactions each node (by name) committed meanwhile.
#[derive(Debug)]
pub struct LayoutRun {
    pub layout: Layout,
    pub outcome: Outcome,
    pub served: Result<Vec<(String, u64)>, String>,
}

/// Runs both layouts and prints their rows, the ratio and whether the target was met.
pub fn run(setup: &Setup<'_>, opts: &RunOptions) {
    report::print_replica_header(opts);
    let prepared = std::fs::create_dir(&setup.dir)
        .with_context(|| format!("create {}", setup.dir.display()))
        .and_then(|()| wait_for_replay(setup.cluster));
    if let Err(e) = prepared {
        report::print_replica_error(&e);
        return;
    }
    let workload = format!("select-only, {CLIENTS} clients");
    let runs = Layout::ALL.map(|layout| {
        let run = run_layout(setup, opts, layout);
        report::print_row(&workload, layout.label(), &run.outcome);
        report::print_served(&run.served);
        run
    });
    report::print_replica_scaling(&runs);
}

/// Returns once every replica has replayed the primary's WAL up to where it is now.
pub fn wait_for_replay(cluster: &Cluster) -> Result<()> {
    let target = cluster
        .psql(cluster.primary(), "select pg_current_wal_insert_lsn()")
        .context("read the primary's WAL position")?;
    if target.is_empty() || !target.chars().all(|c| c == '/' || c.is_ascii_hexdigit()) {
        bail!("unexpected WAL position from the primary: {target:?}");
    }
    let sql = format!("select pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    for replica in cluster.replicas() {
        loop {
            let replayed = cluster
                .psql(replica, &sql)
                .with_context(|| format!("read the replay position of {}", replica.name))?;
            if replayed == "t" {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} had not replayed up to {target} after {REPLAY_TIMEOUT:?}",
                    replica.name
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
    Ok(())
}

fn run_layout(setup: &Setup<'_>, opts: &RunOptions, layout: Layout) -> LayoutRun {
    let before = committed(setup.cluster);
    let outcome = measure(setup, opts, layout);
    thread::sleep(STATS_SETTLE);
    let served = before
        .and_then(|before| Ok((before, committed(setup.cluster)?)))
        .map(|(before, after)| growth(&before, &after))
        .map_err(|e| format!("{e:#}").replace('\n', " "));
    LayoutRun {
        layout,
        outcome,
        served,
    }
}

/// Starts pgroute for `layout`, runs pgbench through it, and stops it again.
fn measure(setup: &Setup<'_>, opts: &RunOptions, layout: Layout) -> Outcome {
    let cluster = setup.cluster;
    let replicas: Vec<SocketAddr> = match layout {
        Layout::PrimaryOnly => Vec::new(),
        Layout::WithReplicas => cluster.replicas().iter().map(Node::addr).collect(),
    };
    let started = crate::pgroute::start(&crate::pgroute::Options {
        binary: setup.pgroute_binary.to_path_buf(),
        primary: cluster.primary().addr(),
        replicas,
        pool_size: POOL_SIZE,
        max_client_conn: MAX_CLIENT_CONN,
        log: setup.dir.join(format!("pgroute-{}.log", layout.tag())),
        config: None,
    });
    let pgroute = match started {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{} did not start: {e:#}", layout.label());
            return Outcome::Failed(not_started(&e));
        }
    };
    eprintln!("{} listening on {}", layout.label(), pgroute.addr());
    let spec = RunSpec {
        addr: pgroute.addr(),
        clients: CLIENTS,
        script: Script::SelectOnly,
        reconnect: false,
        duration: opts.duration,
        protocol: opts.protocol,
        tag: format!("replicas-{}", layout.tag()),
    };
    Outcome::from_run(setup.pgbench.run(&spec))
}

/// `sum(xact_commit)` of every node, the primary first, by node name.
fn committed(cluster: &Cluster) -> Result<Vec<(String, u64)>> {
    per_node(cluster, "select sum(xact_commit) from pg_stat_database")
}

/// The count `sql` returns on every node, the primary first, by node name.
pub fn per_node(cluster: &Cluster, sql: &str) -> Result<Vec<(String, u64)>> {
    std::iter::once(cluster.primary())
        .chain(cluster.replicas())
        .map(|node| {
            let text = cluster
                .psql(node, sql)
                .with_context(|| format!("run `{sql}` on {}", node.name))?;
            let count = text
                .parse()
                .with_context(|| format!("`{sql}` on {} gave {text:?}", node.name))?;
            Ok((node.name.clone(), count))
        })
        .collect()
}

/// Per node, `after - before` (nodes matched by name; a counter that went down counts as 0).
pub fn growth(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(name, a)| {
            let b = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, b)| *b);
            (name.clone(), a.saturating_sub(b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_per_node() {
        let before = [("primary".to_owned(), 100), ("replica1".to_owned(), 7)];
        let after = [("primary".to_owned(), 150), ("replica1".to_owned(), 5)];
        assert_eq!(
            growth(&before, &after),
            [("primary".to_owned(), 50), ("replica1".to_owned(), 0)]
        );
    }

    #[test]
    fn labels_fit_the_target_column() {
        for layout in Layout::ALL {
            assert!(
                layout.label().len() <= report::TARGET_WIDTH,
                "{}",
                layout.label()
            );
        }
    }
}
