//! The operator end to end, with no cluster: the real `kube::Client` against the fake API server
//! (`pgroute_tests::kube_api`), the operator running in-process (`pgroute_operator::run::start`), a
//! real PostgreSQL primary and streaming replica from the test kit, and a real pgroute sidecar in
//! managed mode following the operator's control plane.
//!
//! What a user would watch with `kubectl get dbp -w` and `kubectl describe dbp`: status converging
//! (conditions, primary, replicas with lag), a failover recorded in status and Events and pushed to
//! the sidecar, which then writes to the new primary, and deletion waiting on the finalizer until
//! the sidecars were told.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, CustomResourceExt};
use pgroute_operator::crd::{DatabaseProxy, DatabaseProxyStatus};
use pgroute_operator::run::{self, RunOptions};
use pgroute_tests::kube_api::FakeApiServer;
use pgroute_tests::{Cluster, ClusterOptions, Stack};

const NS: &str = "shop";
const NAME: &str = "orders";

async fn client(server: &FakeApiServer) -> anyhow::Result<Client> {
    let config = kube::Config::new(server.url().parse()?);
    Ok(Client::try_from(config)?)
}

/// An operator with short timings, so the test sees in seconds what a cluster sees in tens. Its
/// logs go to the test output with `RUST_LOG` set (e.g. `RUST_LOG=pgroute_operator=debug`).
async fn operator(client: Client, identity: &str) -> anyhow::Result<run::Running> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut options = RunOptions::new("pgroute-system", identity);
    options.control_listen = "127.0.0.1:0".parse()?;
    options.metrics_listen = "127.0.0.1:0".parse()?;
    options.debounce = Duration::from_millis(100);
    options.reconcile.probe_interval = Duration::from_millis(300);
    options.reconcile.connect_timeout = Duration::from_secs(1);
    options.reconcile.query_timeout = Duration::from_secs(1);
    options.reconcile.drain_timeout = Duration::from_secs(10);
    options.election.lease_duration = Duration::from_secs(3);
    options.election.renew_deadline = Duration::from_secs(2);
    options.election.retry_period = Duration::from_millis(300);
    options.serve.report_stale_after = Duration::from_secs(5);
    Ok(run::start(client, options).await?)
}

fn proxy_object(primary: &str, replica: &str, policy: &str) -> anyhow::Result<DatabaseProxy> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "pgroute.dev/v1alpha1",
        "kind": "DatabaseProxy",
        "metadata": { "name": NAME, "namespace": NS },
        "spec": {
            "target": { "endpoints": [
                { "host": host(primary), "port": port(primary), "role": "primary" },
                { "host": host(replica), "port": port(replica), "role": "replica" },
            ]},
            "credentials": { "secretName": "orders-db" },
            "consistency": { "maxLag": "5s", "hysteresis": "1s" },
            "failover": if policy == "promote" {
                serde_json::json!({ "policy": "promote", "detectionDelay": "1s" })
            } else {
                serde_json::json!({ "policy": policy })
            },
            "podSelector": { "matchLabels": { "app": "orders" } },
        }
    }))?)
}

/// A primary and one streaming replica.
async fn cluster() -> anyhow::Result<Cluster> {
    let opts = ClusterOptions {
        replicas: 1,
        ..ClusterOptions::default()
    };
    Ok(tokio::task::spawn_blocking(move || Cluster::start(opts)).await??)
}

fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

fn port(addr: &str) -> i32 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5432)
}

async fn secret(client: &Client) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let data = BTreeMap::from([
        ("username".to_owned(), ByteString(b"postgres".to_vec())),
        (
            "password".to_owned(),
            ByteString(b"unused-with-trust".to_vec()),
        ),
    ]);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("orders-db".into()),
                    namespace: Some(NS.into()),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..Secret::default()
            },
        )
        .await?;
    Ok(())
}

/// Polls `check` until it returns `Some`, or fails with the last thing seen.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::from("not yet"),
            Err(e) => format!("{e:#}"),
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition<'a>(status: &'a DatabaseProxyStatus, type_: &str) -> Option<&'a str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

async fn status_where(
    api: &Api<DatabaseProxy>,
    what: &str,
    limit: Duration,
    ok: impl Fn(&DatabaseProxyStatus) -> bool,
) -> anyhow::Result<DatabaseProxyStatus> {
    eventually(what, limit, || async {
        let p = api.get(NAME).await?;
        Ok(p.status.filter(|s| ok(s)))
    })
    .await
    .with_context(|| what.to_owned())
}

async fn events(client: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let api: Api<Event> = Api::namespaced(client.clone(), NS);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect())
}

/// The whole flow of the issue: converge, fail over (an external promotion: `follow`), delete.
#[tokio::test]
async fn status_converges_a_failover_reaches_the_sidecar_and_deletion_drains() -> anyhow::Result<()>
{
    let server = FakeApiServer::start().await?;
    server.install_crd(&serde_json::to_value(DatabaseProxy::crd())?)?;
    let kube = client(&server).await?;
    let op = operator(kube.clone(), "operator-0").await?;
    let url = format!("http://{}", op.control_addr);

    let stack = Stack::start_with(
        ClusterOptions {
            replicas: 1,
            ..ClusterOptions::default()
        },
        |c| {
            c.backends.primary = None;
            c.backends.replicas.clear();
            c.control.url = Some(url.clone());
            c.control.namespace = Some(NS.into());
            c.control.pod = Some("orders-app-0".into());
            c.control.proxy = Some(NAME.into());
            c.control.report_interval = Duration::from_millis(300);
        },
    )
    .await?;
    let old_primary = stack.cluster.primary().clone();
    let replica = stack.cluster.replicas()[0].clone();
    let (p_addr, r_addr) = (old_primary.host_port(), replica.host_port());

    secret(&kube).await?;
    let proxies: Api<DatabaseProxy> = Api::namespaced(kube.clone(), NS);
    proxies
        .create(
            &PostParams::default(),
            &proxy_object(&p_addr, &r_addr, "follow")?,
        )
        .await?;

    // Converged: the primary, the replica with its lag and eligibility, the sidecar in sync.
    let status = status_where(
        &proxies,
        "status to converge",
        Duration::from_secs(20),
        |s| condition(s, "Ready") == Some("True") && s.proxies_total == 1,
    )
    .await?;
    assert_eq!(status.primary.as_deref(), Some(p_addr.as_str()));
    assert_eq!(status.replicas.len(), 1, "{status:?}");
    assert_eq!(status.replicas[0].address, r_addr);
    assert!(status.replicas[0].eligible, "{status:?}");
    assert_eq!(status.replicas[0].reason, "Healthy");
    assert!(status.replicas[0].lag_bytes.is_some(), "{status:?}");
    assert_eq!(status.replicas_ready, 1);
    assert_eq!((status.proxies_synced, status.proxies_total), (1, 1));
    assert_eq!(condition(&status, "TopologyResolved"), Some("True"));
    assert_eq!(condition(&status, "ProxiesSynced"), Some("True"));
    assert_eq!(condition(&status, "FailoverInProgress"), Some("False"));
    assert_eq!(condition(&status, "Degraded"), Some("False"));
    assert!(status.observed_generation.is_some());
    let object = proxies.get(NAME).await?;
    assert!(
        object
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "pgroute.dev/drain"),
        "the operator holds its finalizer"
    );
    assert!(op.is_leader());

    // The sidecar serves the pushed topology.
    let client = stack.connect().await?;
    client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY)")
        .await?;
    let port: i32 = client
        .query_one(
            "INSERT INTO orders VALUES (1) RETURNING inet_server_port()",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(port, i32::from(old_primary.addr().port()));
    stack.wait_for_replicas().await?;
    drop(client);

    // An external manager's failover: the primary stops, the replica is promoted.
    let (p, r) = (old_primary.clone(), replica.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        p.stop_immediate()?;
        r.promote()?;
        Ok(())
    })
    .await??;
    let status = status_where(
        &proxies,
        "the failover in status",
        Duration::from_secs(20),
        |s| s.primary.as_deref() == Some(r_addr.as_str()) && condition(s, "Ready") == Some("True"),
    )
    .await?;
    let reason = status.last_failover_reason.clone().unwrap_or_default();
    assert!(reason.contains(&r_addr), "{reason}");
    assert!(status.last_failover_time.is_some());
    assert_eq!(condition(&status, "FailoverInProgress"), Some("False"));
    let seen = events(&kube).await?;
    assert!(
        seen.iter()
            .any(|(reason, note)| reason == "PrimaryChanged" && note.contains(&r_addr)),
        "{seen:?}"
    );

    // The sidecar writes to the new primary, without a restart.
    let port: i32 = eventually(
        "a write through the sidecar",
        Duration::from_secs(20),
        || async {
            let client = stack.connect().await?;
            let row = client
                .query_one(
                    "INSERT INTO orders VALUES (2) RETURNING inet_server_port()",
                    &[],
                )
                .await?;
            Ok(Some(row.get(0)))
        },
    )
    .await?;
    assert_eq!(port, i32::from(replica.addr().port()));

    // Deletion: the finalizer holds the object until the sidecar acknowledged the draining topology.
    proxies.delete(NAME, &DeleteParams::default()).await?;
    let sidecar = stack.proxy.proxy.clone();
    eventually("the sidecar to be told", Duration::from_secs(10), || {
        let draining = sidecar.control_status().state().draining;
        async move { Ok(draining.then_some(())) }
    })
    .await?;
    eventually("the object to go", Duration::from_secs(15), || async {
        Ok(proxies.get_opt(NAME).await?.is_none().then_some(()))
    })
    .await?;
    let seen = events(&kube).await?;
    assert!(
        seen.iter()
            .any(|(reason, note)| reason == "Drained" && note.starts_with("1 of 1")),
        "{seen:?}"
    );
    // Still serving with the last topology.
    let client = stack.connect().await?;
    client.query_one("SELECT 1", &[]).await?;

    op.stop().await;
    Ok(())
}

/// `promote`: the operator itself promotes the most advanced replica after `detectionDelay`.
#[tokio::test]
async fn the_operator_promotes_a_replica_when_the_policy_says_so() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    server.install_crd(&serde_json::to_value(DatabaseProxy::crd())?)?;
    let kube = client(&server).await?;
    let op = operator(kube.clone(), "operator-0").await?;
    let cluster = cluster().await?;
    let old_primary = cluster.primary().clone();
    let replica = cluster.replicas()[0].clone();
    let (p_addr, r_addr) = (old_primary.host_port(), replica.host_port());
    secret(&kube).await?;
    let proxies: Api<DatabaseProxy> = Api::namespaced(kube.clone(), NS);
    proxies
        .create(
            &PostParams::default(),
            &proxy_object(&p_addr, &r_addr, "promote")?,
        )
        .await?;
    status_where(
        &proxies,
        "status to converge",
        Duration::from_secs(20),
        |s| s.primary.as_deref() == Some(p_addr.as_str()) && s.replicas_ready == 1,
    )
    .await?;

    let p = old_primary.clone();
    tokio::task::spawn_blocking(move || p.stop_immediate()).await??;
    let lost = status_where(
        &proxies,
        "the primary reported lost",
        Duration::from_secs(10),
        |s| condition(s, "FailoverInProgress") == Some("True"),
    )
    .await?;
    assert_eq!(condition(&lost, "Ready"), Some("False"));
    let status = status_where(&proxies, "the promotion", Duration::from_secs(30), |s| {
        s.primary.as_deref() == Some(r_addr.as_str()) && condition(s, "Ready") == Some("True")
    })
    .await?;
    assert!(status
        .last_failover_reason
        .unwrap_or_default()
        .contains("promoted"));
    let in_recovery: bool = pgroute_tests::connect(replica.addr())
        .await?
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    assert!(
        !in_recovery,
        "the operator called pg_promote() on the replica"
    );
    let seen = events(&kube).await?;
    for reason in ["PrimaryLost", "Promoting", "PrimaryChanged"] {
        assert!(
            seen.iter().any(|(r, _)| r == reason),
            "no {reason} event in {seen:?}"
        );
    }
    op.stop().await;
    Ok(())
}

/// Two replicas of the operator: one leader at a time; when it stops, the other takes over and
/// keeps status up to date.
#[tokio::test]
async fn a_second_operator_takes_over_when_the_leader_stops() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    server.install_crd(&serde_json::to_value(DatabaseProxy::crd())?)?;
    let kube = client(&server).await?;
    let first = operator(kube.clone(), "operator-0").await?;
    eventually("a leader", Duration::from_secs(5), || {
        let leading = first.is_leader();
        async move { Ok(leading.then_some(())) }
    })
    .await?;
    let second = operator(kube.clone(), "operator-1").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        first.is_leader() && !second.is_leader(),
        "one leader at a time"
    );

    let cluster = cluster().await?;
    let (p_addr, r_addr) = (
        cluster.primary().host_port(),
        cluster.replicas()[0].host_port(),
    );
    secret(&kube).await?;
    let proxies: Api<DatabaseProxy> = Api::namespaced(kube.clone(), NS);
    proxies
        .create(
            &PostParams::default(),
            &proxy_object(&p_addr, &r_addr, "follow")?,
        )
        .await?;
    status_where(
        &proxies,
        "status from the leader",
        Duration::from_secs(20),
        |s| s.primary.as_deref() == Some(p_addr.as_str()),
    )
    .await?;
    // The follower publishes the same primary to the sidecars connected to it.
    let key = pgroute_operator::control::ProxyKey::new(NS, NAME);
    eventually("the follower's snapshot", Duration::from_secs(10), || {
        let snapshot = second.index.current(&key);
        let p = p_addr.clone();
        async move { Ok(snapshot.filter(|s| s.primary == p).map(|_| ())) }
    })
    .await?;

    first.stop().await;
    eventually("the follower to take over", Duration::from_secs(10), || {
        let leading = second.is_leader();
        async move { Ok(leading.then_some(())) }
    })
    .await?;
    // The new leader writes status: replica lag moves into it once the other is gone.
    let mut writable = proxies.get(NAME).await?;
    writable.spec.consistency.max_lag_bytes = 1;
    writable.metadata.managed_fields = None;
    proxies
        .replace(NAME, &PostParams::default(), &writable)
        .await?;
    let generation = proxies.get(NAME).await?.metadata.generation;
    status_where(
        &proxies,
        "the new leader's status",
        Duration::from_secs(10),
        |s| s.observed_generation == generation,
    )
    .await?;
    second.stop().await;
    Ok(())
}
