//! `Prober` against real servers: roles, WAL positions and replay lag as PostgreSQL reports them,
//! kept connections, and instances that are gone, refuse, or hang.

use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute_operator::topology::{
    Eligibility, Instance, Limits, Login, Observation, Prober, Reason,
};
use pgroute_tests::{Cluster, ClusterOptions, Node};

async fn cluster(replicas: usize) -> anyhow::Result<Cluster> {
    tokio::task::spawn_blocking(move || {
        Cluster::start(ClusterOptions {
            replicas,
            ..ClusterOptions::default()
        })
    })
    .await
    .context("cluster start task")?
    .context("starting PostgreSQL")
}

/// The test kit's servers trust `postgres` on loopback.
fn login() -> Login {
    Login {
        user: "postgres".into(),
        password: String::new(),
        dbname: "postgres".into(),
    }
}

fn instance(address: impl Into<String>) -> Instance {
    Instance {
        address: address.into(),
        declared: None,
    }
}

fn instances(cluster: &Cluster) -> Vec<Instance> {
    std::iter::once(cluster.primary())
        .chain(cluster.replicas())
        .map(|n| instance(n.host_port()))
        .collect()
}

async fn lsn_now(node: &Node, sql: &str) -> anyhow::Result<u64> {
    let client = pgroute_tests::connect(node.addr()).await?;
    let text: String = client.query_one(sql, &[]).await?.get(0);
    pgroute_operator::topology::probe::parse_lsn(&text).context("an LSN")
}

/// Probes until `done` holds for the observations (primary first), or fails after 20 s.
async fn probe_until(
    prober: &mut Prober,
    instances: &[Instance],
    what: &str,
    done: impl Fn(&[Observation]) -> bool,
) -> anyhow::Result<Vec<Observation>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = prober.probe(&login(), instances).await;
        if done(&seen) {
            return Ok(seen);
        }
        anyhow::ensure!(Instant::now() < deadline, "never {what}: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The primary's insert position: what every replica must replay to have all that was written so
/// far (the kit commits with `synchronous_commit = off`, so the flush position may still be behind
/// a commit that returned).
async fn written(cluster: &Cluster) -> anyhow::Result<u64> {
    lsn_now(
        cluster.primary(),
        "SELECT pg_current_wal_insert_lsn()::text",
    )
    .await
}

/// Every replica has replayed `target` and all the primary flushed, and says it has no lag.
fn caught_up(target: u64) -> impl Fn(&[Observation]) -> bool {
    move |seen| {
        seen[1..].iter().all(|r| {
            r.lsn.is_some_and(|l| l >= target) && r.lsn == seen[0].lsn && r.replay_lag_ms == Some(0)
        })
    }
}

async fn backends_named(node: &Node, application_name: &str) -> anyhow::Result<i64> {
    let client = pgroute_tests::connect(node.addr()).await?;
    Ok(client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await?
        .get(0))
}

/// The pid of the one probe backend on `node`; `None` while there is none or more than one.
async fn probe_backend(node: &Node) -> anyhow::Result<Option<i32>> {
    let client = pgroute_tests::connect(node.addr()).await?;
    let pids: Vec<i32> = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgroute-operator'",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(match pids[..] {
        [pid] => Some(pid),
        _ => None,
    })
}

#[tokio::test]
async fn roles_positions_and_no_lag_once_idle_over_kept_connections() -> anyhow::Result<()> {
    let cluster = cluster(2).await?;
    let primary = cluster.primary();
    pgroute_tests::connect(primary.addr())
        .await?
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)")
        .await?;
    let all = instances(&cluster);
    let mut prober = Prober::new(Duration::from_secs(2), Duration::from_secs(2));

    let before = written(&cluster).await?;
    let seen = probe_until(&mut prober, &all, "caught up", caught_up(before)).await?;
    let after = lsn_now(primary, "SELECT pg_current_wal_flush_lsn()::text").await?;

    let p = &seen[0];
    assert_eq!(p.address, primary.host_port());
    assert!(p.reachable && p.error.is_none(), "{p:?}");
    assert_eq!(p.in_recovery, Some(false));
    assert_eq!(p.replay_lag_ms, Some(0));
    let lsn = p.lsn.context("the primary's flush position")?;
    assert!(
        before <= lsn && lsn <= after,
        "the flush position as PostgreSQL reports it: {before} <= {lsn} <= {after}"
    );
    for (r, node) in seen[1..].iter().zip(cluster.replicas()) {
        assert_eq!(r.address, node.host_port());
        assert!(r.reachable && r.error.is_none(), "{r:?}");
        assert_eq!(r.in_recovery, Some(true));
        let replayed = lsn_now(node, "SELECT pg_last_wal_replay_lsn()::text").await?;
        assert!(r.lsn <= Some(replayed), "{r:?} vs {replayed}");
    }
    let seen_by_failover: Vec<_> = seen.iter().map(Observation::seen).collect();
    assert_eq!(seen_by_failover[0].in_recovery, Some(false));

    // The same connections serve every round: one backend per instance, whatever the rounds.
    for _ in 0..3 {
        prober.probe(&login(), &all).await;
    }
    assert_eq!(prober.connected(), 3);
    for node in std::iter::once(primary).chain(cluster.replicas()) {
        assert_eq!(
            backends_named(node, "pgroute-operator").await?,
            1,
            "{}",
            node.name
        );
    }

    // A changed login (an edited Secret) is a new connection, and the old one closes.
    let before = probe_backend(primary).await?;
    assert!(before.is_some(), "one probe backend on the primary");
    let edited = Login {
        password: "rotated".into(),
        ..login()
    };
    prober.probe(&edited, &all).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = probe_backend(primary).await?;
        if now.is_some() && now != before {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "still {before:?}, now {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An instance no longer listed has its connection closed.
    prober.probe(&login(), &all[..2]).await;
    assert_eq!(prober.connected(), 2);
    let gone = &cluster.replicas()[1];
    let deadline = Instant::now() + Duration::from_secs(5);
    while backends_named(gone, "pgroute-operator").await? != 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the connection to {} stayed open",
            gone.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_paused_replica_shows_its_lag_and_leaves_the_read_pool() -> anyhow::Result<()> {
    let cluster = cluster(1).await?;
    let on_primary = pgroute_tests::connect(cluster.primary().addr()).await?;
    on_primary.batch_execute("CREATE TABLE t (id int)").await?;
    let all = instances(&cluster);
    let mut prober = Prober::new(Duration::from_secs(2), Duration::from_secs(2));
    let setup = written(&cluster).await?;
    probe_until(&mut prober, &all, "caught up", caught_up(setup)).await?;

    let on_replica = pgroute_tests::connect(cluster.replicas()[0].addr()).await?;
    on_replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await?;
    on_primary
        .batch_execute("INSERT INTO t SELECT generate_series(1, 1000)")
        .await?;
    let seen = probe_until(&mut prober, &all, "behind by a second", |s| {
        s[1].lsn < s[0].lsn && s[1].replay_lag_ms.is_some_and(|ms| ms >= 1000)
    })
    .await?;

    let mut eligibility = Eligibility::new(Limits {
        max_lag: Duration::from_millis(500),
        max_lag_bytes: 0,
        hysteresis: Duration::ZERO,
    });
    let primary = cluster.primary().host_port();
    let verdicts = eligibility.update(Instant::now(), Some(&primary), seen[0].lsn, &seen);
    assert_eq!(
        verdicts.len(),
        1,
        "the primary is not a replica: {verdicts:?}"
    );
    assert_eq!(verdicts[0].reason, Reason::LagOverLimit, "{verdicts:?}");
    assert!(!verdicts[0].eligible);
    assert!(verdicts[0].lag_bytes.is_some_and(|b| b > 0), "{verdicts:?}");

    on_replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await?;
    let target = written(&cluster).await?;
    let seen = probe_until(&mut prober, &all, "caught up again", caught_up(target)).await?;
    let verdicts = eligibility.update(Instant::now(), Some(&primary), seen[0].lsn, &seen);
    assert_eq!(
        (
            verdicts[0].eligible,
            verdicts[0].reason,
            verdicts[0].lag_bytes
        ),
        (true, Reason::Healthy, Some(0))
    );
    Ok(())
}

#[tokio::test]
async fn a_closed_port_and_a_silent_server_cost_only_their_own_timeout() -> anyhow::Result<()> {
    let cluster = cluster(0).await?;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?
    };
    // Accepts connections and never says a word (a hung host whose kernel still answers).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_addr = silent.local_addr()?;
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });

    let timeout = Duration::from_millis(700);
    let mut prober = Prober::new(timeout, timeout);
    let list = [
        instance(cluster.primary().host_port()),
        instance(closed.to_string()),
        instance(silent_addr.to_string()),
    ];
    let started = Instant::now();
    let seen = prober.probe(&login(), &list).await;
    let took = started.elapsed();
    holder.abort();

    assert!(seen[0].reachable, "{:?}", seen[0]);
    assert!(!seen[1].reachable && seen[1].in_recovery.is_none() && seen[1].lsn.is_none());
    let refused = seen[1].error.as_deref().unwrap_or_default();
    assert!(refused.starts_with("cannot connect: "), "{refused}");
    assert!(!seen[2].reachable);
    assert_eq!(
        seen[2].error.as_deref(),
        Some("cannot connect: no answer within 700ms")
    );
    assert!(
        took >= timeout && took < timeout * 2,
        "probed at once, each within its own timeout: took {took:?}"
    );
    assert_eq!(
        prober.connected(),
        1,
        "only the primary's connection is kept"
    );
    Ok(())
}

/// Sends SIGCONT on drop, so a frozen server is thawed whatever the test does (the cluster cannot
/// be stopped while it is frozen).
struct Thaw<'a>(&'a Node);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let _ = self.0.signal("CONT", true);
    }
}

#[tokio::test]
async fn a_stopped_or_frozen_replica_is_unreachable_and_is_probed_again_when_back(
) -> anyhow::Result<()> {
    let cluster = cluster(2).await?;
    let all = instances(&cluster);
    let timeout = Duration::from_millis(800);
    let mut prober = Prober::new(timeout, timeout);
    let seen = prober.probe(&login(), &all).await;
    assert!(seen.iter().all(|o| o.reachable), "{seen:#?}");

    // Stopped: its connection breaks, and reconnecting is refused.
    let stopped = cluster.replicas()[0].clone();
    let node = stopped.clone();
    tokio::task::spawn_blocking(move || node.stop_immediate()).await??;
    let seen = prober.probe(&login(), &all).await;
    assert!(seen[0].reachable && seen[2].reachable, "{seen:#?}");
    assert!(!seen[1].reachable, "{:?}", seen[1]);
    assert!(seen[1].error.is_some());
    let seen = prober.probe(&login(), &all).await;
    let error = seen[1].error.as_deref().unwrap_or_default();
    assert!(error.starts_with("cannot connect: "), "{error}");

    let node = stopped.clone();
    tokio::task::spawn_blocking(move || node.start()).await??;
    let seen = probe_until(&mut prober, &all, "back", |s| s[1].reachable).await?;
    assert_eq!(seen[1].in_recovery, Some(true));

    // Frozen (SIGSTOP, with its backends): the kept connection's query gets no answer.
    let frozen = cluster.replicas()[1].clone();
    frozen.signal("STOP", true)?;
    let thaw = Thaw(&frozen);
    let started = Instant::now();
    let seen = prober.probe(&login(), &all).await;
    let took = started.elapsed();
    assert!(seen[0].reachable && seen[1].reachable, "{seen:#?}");
    assert_eq!(
        seen[2].error.as_deref(),
        Some("probe query got no answer within 800ms")
    );
    assert!(took < timeout * 2, "took {took:?}");
    drop(thaw);
    let seen = probe_until(&mut prober, &all, "thawed", |s| s[2].reachable).await?;
    assert_eq!(seen[2].in_recovery, Some(true));
    Ok(())
}
