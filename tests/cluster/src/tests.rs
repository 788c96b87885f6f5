//! End-to-end check of the kit itself against the installed PostgreSQL.
//!
//! The brief for this crate asks for it here, next to the code: the kit's only behaviour is starting real
//! servers, so there is no fake to test it against.

use std::thread;
use std::time::{Duration, Instant};

use crate::{Cluster, ClusterError, ClusterOptions, Node};

/// Polls `sql` on `node` until it prints `expected`, treating errors (e.g. the table not replayed yet)
/// as "not yet".
fn wait_for(cluster: &Cluster, node: &Node, sql: &str, expected: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cluster.psql(node, sql).ok().as_deref() == Some(expected) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn replica_follows_promotes_restarts_and_everything_is_removed() -> Result<(), ClusterError> {
    let mut cluster = Cluster::start(ClusterOptions::default())?;
    let Some(root) = cluster.primary().data_dir.parent().map(|p| p.to_path_buf()) else {
        panic!("data dir has no parent");
    };
    assert_eq!(cluster.replicas().len(), 1);
    assert!(cluster.primary().pid().is_some());
    assert_eq!(
        cluster.psql(cluster.primary(), "show max_connections")?,
        "300"
    );

    cluster.psql(
        cluster.primary(),
        "create table t(x int); insert into t values (1)",
    )?;
    let replica = &cluster.replicas()[0];
    assert!(wait_for(&cluster, replica, "select count(*) from t", "1"));
    assert_eq!(cluster.psql(replica, "select pg_is_in_recovery()")?, "t");

    replica.promote()?;
    // The cluster runs with synchronous_commit=off; without this the row dies with the immediate stop.
    let durable_insert = "set synchronous_commit = on; insert into t values (2)";
    cluster.psql(replica, durable_insert)?;

    replica.stop_immediate()?;
    assert_eq!(replica.pid(), None);
    replica.start()?;
    assert_eq!(cluster.psql(replica, "select count(*) from t")?, "2");

    cluster.stop();
    cluster.stop();
    assert!(!root.exists(), "{} left behind", root.display());
    drop(cluster);
    Ok(())
}

#[test]
fn caller_settings_apply_and_drop_removes_the_directory() -> Result<(), ClusterError> {
    let opts = ClusterOptions {
        replicas: 0,
        settings: vec![("work_mem".into(), "7MB".into())],
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(opts)?;
    assert_eq!(
        cluster.psql(cluster.primary(), "show application_name")?,
        "psql"
    );
    let data_dir = cluster.primary().data_dir.clone();
    assert!(data_dir.is_dir());
    drop(cluster);
    assert!(!data_dir.exists());
    Ok(())
}

#[test]
fn a_panicking_test_still_tears_down() {
    let mut data_dir = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let opts = ClusterOptions {
            replicas: 0,
            ..ClusterOptions::default()
        };
        if let Ok(cluster) = Cluster::start(opts) {
            data_dir = Some(cluster.primary().data_dir.clone());
            panic!("deliberate panic while a cluster is running");
        }
    }));
    assert!(result.is_err());
    let Some(data_dir) = data_dir else {
        panic!("cluster did not start");
    };
    assert!(!data_dir.exists(), "{} left behind", data_dir.display());
}

#[test]
fn a_failed_start_reports_the_server_log() {
    let opts = ClusterOptions {
        replicas: 0,
        settings: vec![("shared_buffers".into(), "lots".into())],
        ..ClusterOptions::default()
    };
    match Cluster::start(opts) {
        Err(ClusterError::CommandFailed { stderr, .. }) => {
            assert!(stderr.contains("shared_buffers"), "{stderr}");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
}
