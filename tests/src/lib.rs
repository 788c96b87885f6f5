//! pgroute's test kit: real PostgreSQL clusters (from `pgroute-cluster`), pgroute proxies started
//! in-process on free loopback ports, and small helpers for driving them with real clients.
//!
//! Nothing here mocks the database. Each test gets its own cluster, so tests run in parallel and a
//! failing test cannot disturb another; the cluster and proxy stop when the returned values drop, also
//! when the test panics.

pub mod certs;
pub mod fault;
pub mod kube_api;
pub mod otlp;
pub mod raw;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
pub use pgroute::config::{Config, PoolMode};
pub use pgroute::Running;
pub use pgroute_cluster::{Cluster, ClusterOptions, Node};

/// A cluster with a proxy in front of its primary.
pub struct Stack {
    pub proxy: Running,
    pub cluster: Cluster,
}

impl Stack {
    /// Starts a primary with `replicas` streaming replicas and a proxy, after `tweak` adjusts the
    /// proxy's configuration (listen address, primary and replicas are filled in already).
    pub async fn start(replicas: usize, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Stack> {
        Stack::start_with(
            ClusterOptions {
                replicas,
                ..ClusterOptions::default()
            },
            tweak,
        )
        .await
    }

    /// [`Stack::start`] with a cluster of these options (e.g. `recovery_min_apply_delay` on replicas).
    pub async fn start_with(
        opts: ClusterOptions,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Stack> {
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(opts))
            .await
            .context("cluster start task")?
            .context("starting PostgreSQL")?;
        let replica_addrs: Vec<SocketAddr> = cluster.replicas().iter().map(Node::addr).collect();
        let proxy = start_proxy(cluster.primary().addr(), |c| {
            c.backends.replicas = replica_addrs
                .iter()
                .filter_map(|a| a.to_string().parse::<pgroute::config::BackendAddr>().ok())
                .map(Into::into)
                .collect();
            tweak(c);
        })
        .await?;
        Ok(Stack { proxy, cluster })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr
    }

    /// A libpq-style connection string through the proxy.
    pub fn conninfo(&self) -> String {
        conninfo(self.proxy.addr)
    }

    /// A tokio-postgres client through the proxy (its connection task runs in the background).
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(self.proxy.addr).await
    }

    /// A tokio-postgres client through the proxy with extra connection parameters appended to the
    /// conninfo (e.g. `application_name=x`, `options='-c work_mem=1MB'`).
    pub async fn connect_with(&self, extra: &str) -> anyhow::Result<tokio_postgres::Client> {
        connect_conninfo(&format!("{} {extra}", self.conninfo())).await
    }

    /// Makes the primary demand a password from each `(role, method)` on TCP (`scram-sha-256` or
    /// `md5`), ahead of the kit's trust rule, and reloads its configuration.
    pub async fn require_passwords(&self, rules: &[(&str, &str)]) -> anyhow::Result<()> {
        let hba = self.cluster.primary().data_dir.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba)?;
        let mut new: String = rules
            .iter()
            .map(|(role, method)| format!("host all {role} 127.0.0.1/32 {method}\n"))
            .collect();
        new.push_str(&old);
        std::fs::write(&hba, new)?;
        let direct = self.connect_direct().await?;
        direct.batch_execute("SELECT pg_reload_conf()").await?;
        // The postmaster re-reads pg_hba.conf when it handles the signal, shortly after; nothing in
        // SQL shows when that happened (pg_hba_file_rules reads the file itself).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        Ok(())
    }

    /// Waits until every replica has replayed everything the primary has written so far, so a test's
    /// setup is visible through replicas before the test reads.
    pub async fn wait_for_replicas(&self) -> anyhow::Result<()> {
        let primary = self.connect_direct().await?;
        let lsn: String = primary
            // The insert position, not the write position: the kit runs with synchronous_commit off,
            // so a commit can return before its record is written, and waiting for the write position
            // could end before the commit is replayed.
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await?
            .get(0);
        for replica in self.cluster.replicas() {
            let client = connect(replica.addr()).await?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let caught_up: bool = client
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                        &[&lsn],
                    )
                    .await?
                    .get(0);
                if caught_up {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "replica {} did not replay {lsn} within 15 s",
                    replica.addr()
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// A tokio-postgres client straight to the primary, bypassing the proxy (to check what it did).
    pub async fn connect_direct(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(self.cluster.primary().addr()).await
    }
}

/// Starts a proxy in front of `primary` on a free loopback port.
pub async fn start_proxy(
    primary: SocketAddr,
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<Running> {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.backends.primary = Some(primary.to_string().parse().map_err(anyhow::Error::msg)?);
    tweak(&mut config);
    Running::start(config).await.context("starting pgroute")
}

pub fn conninfo(addr: SocketAddr) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=10",
        addr.ip(),
        addr.port()
    )
}

/// Connects with tokio-postgres and drives the connection in a background task.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<tokio_postgres::Client> {
    connect_conninfo(&conninfo(addr)).await
}

/// Connects with a full conninfo string, driving the connection in a background task.
pub async fn connect_conninfo(conninfo: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting with `{conninfo}`"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The SQLSTATE a driver reported somewhere in an error's chain (e.g. a failed `connect`).
pub fn sqlstate(err: &anyhow::Error) -> Option<tokio_postgres::error::SqlState> {
    err.chain()
        .find_map(|e| e.downcast_ref::<tokio_postgres::Error>())
        .and_then(|e| e.code().cloned())
}

/// Shares one proxy handle across tasks.
pub type SharedProxy = Arc<pgroute::Proxy>;
