//! The configuration files every node gets, rendered as text without touching the disk.
//!
//! Settings shared by all nodes are appended to `postgresql.conf` of the primary, which `pg_basebackup`
//! copies to the replicas. What differs per node (port, socket directory) lives in a separate included
//! file, so it can be rewritten when a port is taken and a start is retried.

use std::path::Path;

use crate::ClusterOptions;

/// Per-node file included from `postgresql.conf`.
pub(crate) const NODE_CONF: &str = "pgroute-node.conf";

/// Trust on loopback and the local socket: the cluster is throwaway and only reachable from this host.
pub(crate) const HBA_CONF: &str = "\
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
";

/// Speed over durability (the data is thrown away), and enough WAL senders and kept WAL for replicas.
const SHARED: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_level", "replica"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("hot_standby", "on"),
    ("wal_keep_size", "256MB"),
    ("shared_buffers", "64MB"),
    ("logging_collector", "off"),
    ("log_min_messages", "warning"),
];

/// Text appended to `postgresql.conf`: shared settings, the per-node include, then the caller's settings
/// last so they override ours.
pub(crate) fn shared_conf(opts: &ClusterOptions) -> String {
    let mut text = String::from("\n# pgroute-cluster\n");
    for (name, value) in SHARED {
        text.push_str(&setting(name, value));
    }
    text.push_str(&setting(
        "max_connections",
        &opts.max_connections.to_string(),
    ));
    text.push_str(&format!("include '{NODE_CONF}'\n"));
    for (name, value) in &opts.settings {
        text.push_str(&setting(name, value));
    }
    text
}

/// Contents of [`NODE_CONF`] for a node listening on `port`.
pub(crate) fn node_conf(port: u16, socket_dir: Option<&Path>) -> String {
    let sockets = socket_dir
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    setting("port", &port.to_string()) + &setting("unix_socket_directories", &sockets)
}

/// Line appended to a replica's `postgresql.auto.conf`, after the one `pg_basebackup -R` wrote, so the
/// replica reports its own name in `pg_stat_replication`.
pub(crate) fn primary_conninfo(primary_port: u16, application_name: &str) -> String {
    let conninfo = format!(
        "host=127.0.0.1 port={primary_port} user=postgres application_name={application_name}"
    );
    setting("primary_conninfo", &conninfo)
}

/// `name = 'value'`; PostgreSQL accepts quoted values for settings of every type.
fn setting(name: &str, value: &str) -> String {
    format!("{name} = '{}'\n", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_settings_come_last_and_are_quoted() {
        let opts = ClusterOptions {
            settings: vec![("application_name".into(), "it's".into())],
            max_connections: 42,
            ..ClusterOptions::default()
        };
        let text = shared_conf(&opts);
        assert!(text.contains("max_connections = '42'\n"));
        assert!(text.ends_with("application_name = 'it''s'\n"), "{text}");
        let include = text.find("include 'pgroute-node.conf'");
        let user = text.find("application_name");
        assert!(include < user);
    }

    #[test]
    fn node_conf_without_socket_dir_disables_unix_sockets() {
        assert_eq!(
            node_conf(5433, None),
            "port = '5433'\nunix_socket_directories = ''\n"
        );
        assert!(node_conf(5433, Some(Path::new("/tmp/x/sock"))).contains("'/tmp/x/sock'"));
    }

    #[test]
    fn conninfo_names_the_replica() {
        assert_eq!(
            primary_conninfo(5432, "replica1"),
            "primary_conninfo = 'host=127.0.0.1 port=5432 user=postgres application_name=replica1'\n"
        );
    }
}
