//! What a caller may choose about a throwaway cluster.
//!
//! Kept apart from the start-up code so the defaults are in one place and readable at a glance.

use std::path::PathBuf;

/// Shape and configuration of the cluster [`crate::Cluster::start`] builds.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of streaming replicas next to the primary. Default: 1.
    pub replicas: usize,
    /// Directory holding `initdb`, `pg_ctl`, `postgres`, `psql`. Default: `None`, meaning the
    /// `PGROUTE_PG_BIN` environment variable if set, else the highest `/usr/lib/postgresql/<major>/bin`.
    pub pg_bin_dir: Option<PathBuf>,
    /// Extra `postgresql.conf` settings for every node, written after the crate's own so they win.
    /// Values are quoted by the crate (`name = 'value'`), which PostgreSQL accepts for every type.
    /// Setting `port` or `unix_socket_directories` here breaks the cluster's bookkeeping.
    pub settings: Vec<(String, String)>,
    /// `max_connections` of every node. Default: 300, so pool tests are not capped by the server's 100.
    pub max_connections: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 1,
            pg_bin_dir: None,
            settings: Vec::new(),
            max_connections: 300,
        }
    }
}
