//! Managed mode end to end: the operator's control-plane server in-process, a sidecar following it,
//! real PostgreSQL behind. The sidecar starts with no primary in its file, serves once the first
//! snapshot arrives, and follows a promotion pushed as a new snapshot, without a restart.

use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute_operator::control::{ControlService, ProxyKey, ServeOptions, SidecarId, TopologyIndex};
use pgroute_proto::v1;
use pgroute_tests::{ClusterOptions, Stack};
use tokio_postgres::error::SqlState;

fn snapshot(primary: &str, replicas: &[String]) -> v1::Snapshot {
    v1::Snapshot {
        primary: primary.into(),
        replicas: replicas
            .iter()
            .map(|r| v1::Replica {
                address: r.clone(),
                weight: 1,
                eligible: true,
                ..v1::Replica::default()
            })
            .collect(),
        ..v1::Snapshot::default()
    }
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn managed_sidecar_serves_the_pushed_topology_and_follows_a_promotion() -> anyhow::Result<()>
{
    let index = TopologyIndex::new(Duration::from_millis(200));
    let service = ControlService::new(index.clone(), ServeOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pgroute_operator::control::serve(
        service.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));

    let stack = Stack::start_with(
        ClusterOptions {
            replicas: 1,
            ..ClusterOptions::default()
        },
        |c| {
            c.backends.primary = None;
            c.backends.replicas.clear();
            c.control.url = Some(url.clone());
            c.control.namespace = Some("shop".into());
            c.control.pod = Some("app-0".into());
            c.control.proxy = Some("orders".into());
        },
    )
    .await?;
    let key = ProxyKey::new("shop", "orders");
    let proxy = stack.proxy.proxy.clone();
    let old_primary = stack.cluster.primary().clone();
    let replica = stack.cluster.replicas()[0].clone();

    // No topology yet: clients are told to come back.
    until("the stream to open", Duration::from_secs(10), || {
        proxy.control_status().state().connected
    })
    .await?;
    let refused = stack.connect().await.expect_err("no topology yet");
    assert_eq!(
        pgroute_tests::sqlstate(&refused),
        Some(SqlState::CANNOT_CONNECT_NOW),
        "{refused:#}"
    );
    let not_ready = pgroute::metrics::readiness(Some(&proxy), false).expect_err("ready");
    assert!(not_ready.contains("control plane"), "{not_ready}");

    let first = index.publish(
        &key,
        snapshot(&old_primary.host_port(), &[replica.host_port()]),
        false,
    );
    until("the first snapshot", Duration::from_secs(10), || {
        proxy.control_status().applied_version() == first
    })
    .await?;
    let ready = pgroute::metrics::readiness(Some(&proxy), false).map_err(anyhow::Error::msg)?;
    assert!(ready.contains("control plane connected"), "{ready}");
    let client = stack.connect().await?;
    client
        .batch_execute("CREATE TABLE managed (id int PRIMARY KEY)")
        .await?;
    let port: i32 = client
        .query_one(
            "INSERT INTO managed VALUES (1) RETURNING inet_server_port()",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(port, i32::from(old_primary.addr().port()));

    // Asynchronous replication: let the replica have the table before its primary goes away.
    stack.wait_for_replicas().await?;

    // The operator's failover: the old primary is gone, the replica promoted, the swap pushed.
    let (p, r) = (old_primary.clone(), replica.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        p.stop_immediate()?;
        r.promote()?;
        Ok(())
    })
    .await??;
    let mut swapped = snapshot(&replica.host_port(), &[]);
    swapped.failover = Some(v1::Failover {
        state: v1::FailoverState::None as i32,
        new_primary: String::new(),
    });
    let pushed_at = Instant::now();
    let second = index.publish(&key, swapped, true);
    until("the swapped snapshot", Duration::from_secs(5), || {
        proxy.control_status().applied_version() == second
    })
    .await?;
    let applied_in = pushed_at.elapsed();
    assert!(
        applied_in < Duration::from_secs(1),
        "applied in {applied_in:?}"
    );

    // Same sidecar, no restart: writes go to the new primary (the old connection may have been
    // ended with its server; a new one works).
    let write = "INSERT INTO managed VALUES (2) RETURNING inet_server_port()";
    let port: i32 = match client.query_one(write, &[]).await {
        Ok(row) => row.get(0),
        Err(_) => stack
            .connect()
            .await?
            .query_one(write, &[])
            .await
            .context("a write after the swap")?
            .get(0),
    };
    assert_eq!(port, i32::from(replica.addr().port()));
    assert_eq!(proxy.primary().address().to_string(), replica.host_port());

    // The sidecar told the operator it runs the new version.
    let id = SidecarId {
        namespace: "shop".into(),
        pod: "app-0".into(),
    };
    let reports = service.reports().clone();
    until(
        "the report of the new version",
        Duration::from_secs(5),
        || reports.get(&id).is_some_and(|s| s.applied == second),
    )
    .await?;
    assert_eq!(service.in_sync(&key), (1, 1));

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}
