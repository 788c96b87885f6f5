//! Read-your-writes under replication lag: the 90/10 read/write workload through pgroute with a
//! replica that applies WAL [`REPLICA_DELAY_SECS`] seconds late, against the same workload with every
//! read on the primary.
//!
//! The issue asks for zero stale reads, with the throughput reported against all reads on the primary.
//! The step starts its own cluster (one replica with `recovery_min_apply_delay`), so the delay touches no
//! other step, and pgroute twice from the release binary with the same flags and config file as each
//! other, so the two runs differ only in `--replica`. The file raises `consistency.max_replica_lag` to
//! [`MAX_REPLICA_LAG`]: a replica that is always a second behind sits close to the default 2 s limit
//! under load, and one that left the read pool would test nothing. The rest is pgroute's default:
//! read-your-writes by WAL position, per connection, falling back to the primary.
//!
//! The clients ([`workload`]) count stale reads themselves. Where reads went comes from the servers: each
//! read and each write of `kv` is one scan of it (`seq_scan + idx_scan` in `pg_stat_user_tables`, which a
//! standby counts for the queries it runs), so a replica's scans are the reads it served and the
//! primary's are its reads plus the writes. They are read once that run's pgroute has stopped and its
//! server connections have flushed their statistics, as in `replicas`. `--skip-consistency` leaves the
//! step out.

mod report;
mod workload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pgroute_cluster::{Cluster, ClusterOptions};
use tokio::runtime::Runtime;

use crate::proxies::{MAX_CLIENT_CONN, POOL_SIZE};
use crate::replicas;

pub use workload::Workload;

/// `recovery_min_apply_delay` of the replica, in seconds: the lag.
pub const REPLICA_DELAY_SECS: u64 = 1;
/// `consistency.max_replica_lag` of both pgroute runs, well above [`REPLICA_DELAY_SECS`].
pub const MAX_REPLICA_LAG: &str = "10s";
/// How long the delayed replica gets to start taking reads through a fresh pgroute (its lag monitor
/// must have measured it first).
const ELIGIBLE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Time for the server backends of a stopped pgroute to exit and flush their statistics.
const STATS_SETTLE: Duration = Duration::from_secs(1);
/// Scans of the workload's table on one node.
const SCANS_SQL: &str = "select coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) \
                         from pg_stat_user_tables where relname = 'kv'";

/// What the step needs from the rest of the benchmark.
pub struct Setup<'a> {
    pub pgroute_binary: &'a Path,
    /// Created here; holds the config file and the pgroute logs.
    pub dir: PathBuf,
    /// Length of each run.
    pub duration: Duration,
}

/// Which backends one pgroute is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    PrimaryOnly,
    DelayedReplica,
}

impl Layout {
    /// The baseline first.
    pub const ALL: [Layout; 2] = [Layout::PrimaryOnly, Layout::DelayedReplica];

    /// Row label; fits the table's target column.
    pub fn label(self) -> &'static str {
        match self {
            Layout::PrimaryOnly => "pgroute primary",
            Layout::DelayedReplica => "pgroute replica 1s",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Layout::PrimaryOnly => "primary-only",
            Layout::DelayedReplica => "delayed-replica",
        }
    }
}

/// One layout's run.
#[derive(Debug)]
pub struct LayoutRun {
    pub layout: Layout,
    /// What the clients did, or why they could not run.
    pub workload: Result<Workload, String>,
    /// Reads each node served, by name, the primary first; or why that is not known.
    pub reads: Result<Vec<(String, u64)>, String>,
}

/// The cluster, the config file and the runtime both runs share.
struct Prepared {
    cluster: Cluster,
    config: PathBuf,
    runtime: Runtime,
}

/// Runs both layouts, printing each as it finishes, then the ratio and the verdict.
pub fn run(setup: &Setup<'_>) {
    report::print_header(setup.duration);
    let prepared = match prepare(setup) {
        Ok(prepared) => prepared,
        Err(e) => {
            report::print_error(&e);
            return;
        }
    };
    let runs = Layout::ALL.map(|layout| {
        let run = run_layout(setup, &prepared, layout);
        report::print_run(&run);
        run
    });
    report::print_summary(&runs);
}

/// The step's cluster with `kv` loaded and replayed, pgroute's config file, and a tokio runtime with two
/// worker threads (pgbench's `-j 2` elsewhere in the benchmark).
fn prepare(setup: &Setup<'_>) -> Result<Prepared> {
    std::fs::create_dir(&setup.dir).with_context(|| format!("create {}", setup.dir.display()))?;
    eprintln!("starting PostgreSQL with a replica applying WAL {REPLICA_DELAY_SECS} s late ...");
    let cluster = Cluster::start(ClusterOptions {
        replicas: 1,
        settings: vec![(
            "recovery_min_apply_delay".into(),
            format!("{REPLICA_DELAY_SECS}s"),
        )],
        ..ClusterOptions::default()
    })
    .context("start the cluster with a delayed replica")?;
    cluster
        .psql(cluster.primary(), &workload::setup_sql())
        .context("create and load kv")?;
    // The replica must have the table before it serves a read of it.
    replicas::wait_for_replay(&cluster)?;
    let config = setup.dir.join("pgroute.toml");
    std::fs::write(&config, config_file())
        .with_context(|| format!("write {}", config.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("build a tokio runtime")?;
    Ok(Prepared {
        cluster,
        config,
        runtime,
    })
}

/// pgroute's config for both runs: what has no flag.
fn config_file() -> String {
    format!(
        "# pgroute-bench, read-your-writes step: the replica applies WAL {REPLICA_DELAY_SECS} s late; a lag \
         limit above that keeps it in the read pool.\n\
         [consistency]\n\
         max_replica_lag = \"{MAX_REPLICA_LAG}\"\n"
    )
}

fn run_layout(setup: &Setup<'_>, prepared: &Prepared, layout: Layout) -> LayoutRun {
    let cluster = &prepared.cluster;
    let before = replicas::per_node(cluster, SCANS_SQL);
    let workload = measure(setup, prepared, layout).map_err(|e| one_line(&e));
    thread::sleep(STATS_SETTLE);
    let reads = match &workload {
        Ok(workload) => before
            .and_then(|before| Ok((before, replicas::per_node(cluster, SCANS_SQL)?)))
            .map(|(before, after)| {
                let scans = replicas::growth(&before, &after);
                reads_from_scans(scans, &cluster.primary().name, workload.tally.writes)
            })
            .map_err(|e| one_line(&e)),
        Err(_) => Err("no workload ran".to_owned()),
    };
    LayoutRun {
        layout,
        workload,
        reads,
    }
}

/// Starts pgroute for `layout`, runs the clients through it, and stops it again.
fn measure(setup: &Setup<'_>, prepared: &Prepared, layout: Layout) -> Result<Workload> {
    let cluster = &prepared.cluster;
    let replicas: Vec<SocketAddr> = match layout {
        Layout::PrimaryOnly => Vec::new(),
        Layout::DelayedReplica => cluster.replicas().iter().map(|r| r.addr()).collect(),
    };
    let pgroute = crate::pgroute::start(&crate::pgroute::Options {
        binary: setup.pgroute_binary.to_path_buf(),
        primary: cluster.primary().addr(),
        replicas: replicas.clone(),
        pool_size: POOL_SIZE,
        max_client_conn: MAX_CLIENT_CONN,
        log: setup.dir.join(format!("pgroute-{}.log", layout.tag())),
        config: Some(prepared.config.clone()),
    })
    .with_context(|| format!("{} did not start", layout.label()))?;
    eprintln!("{} listening on {}", layout.label(), pgroute.addr());
    for replica in replicas {
        let eligible = prepared
            .runtime
            .block_on(wait_for_replica_reads(pgroute.addr(), replica));
        if let Err(e) = eligible {
            eprintln!("running anyway (its reads line shows where reads went): {e:#}");
        }
    }
    prepared
        .runtime
        .block_on(workload::run(pgroute.addr(), setup.duration))
}

/// Returns once a client that has not written gets its reads answered by `replica` through `pgroute`:
/// the lag monitor has measured the replica and counts it as taking reads.
async fn wait_for_replica_reads(pgroute: SocketAddr, replica: SocketAddr) -> Result<()> {
    let client = pgroute_tests::connect(pgroute).await?;
    let deadline = Instant::now() + ELIGIBLE_TIMEOUT;
    loop {
        let port: i32 = client
            .query_one("SELECT inet_server_port()", &[])
            .await
            .and_then(|row| row.try_get(0))
            .context("ask which server answers reads")?;
        if port == i32::from(replica.port()) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "reads through pgroute still not on the replica {replica} after {ELIGIBLE_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Reads per node from scans of `kv` per node: the primary's scans less the `writes`, a replica's as
/// they are.
fn reads_from_scans(scans: Vec<(String, u64)>, primary: &str, writes: u64) -> Vec<(String, u64)> {
    scans
        .into_iter()
        .map(|(name, count)| {
            let reads = if name == primary {
                count.saturating_sub(writes)
            } else {
                count
            };
            (name, reads)
        })
        .collect()
}

fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_scanned_for_writes_too() {
        let scans = vec![("primary".to_owned(), 1_100), ("replica1".to_owned(), 40)];
        assert_eq!(
            reads_from_scans(scans, "primary", 100),
            [("primary".to_owned(), 1_000), ("replica1".to_owned(), 40)]
        );
    }

    #[test]
    fn the_config_file_sets_the_lag_limit_under_consistency() {
        let file = config_file();
        let section = file.find("[consistency]");
        let key = file.find(&format!("max_replica_lag = \"{MAX_REPLICA_LAG}\""));
        assert!(section.is_some() && key > section, "{file}");
    }

    #[test]
    fn labels_fit_the_target_column() {
        for layout in Layout::ALL {
            assert!(
                layout.label().len() <= crate::report::TARGET_WIDTH,
                "{}",
                layout.label()
            );
        }
        let delay = format!(" {REPLICA_DELAY_SECS}s");
        assert!(Layout::DelayedReplica.label().ends_with(&delay));
    }
}
