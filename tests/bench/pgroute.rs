//! pgroute, the system under test, started from its release binary with the same pool as PgBouncer.
//!
//! In front of the primary alone for the comparison with PgBouncer, and with streaming replicas for the
//! read-scaling step (`replicas`), where reads go to the replicas by pgroute's default policy. The
//! read-your-writes step (`consistency`) adds a config file for what has no flag (its lag limit); the
//! flags still win over the file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::process::{self, ChildGuard, PidSource};

pub struct Options {
    pub binary: PathBuf,
    pub primary: SocketAddr,
    /// Streaming replicas reads may go to (`--replica`, repeated); empty for the primary only.
    pub replicas: Vec<SocketAddr>,
    pub pool_size: u32,
    pub max_client_conn: u32,
    /// Where pgroute's stderr (its log) goes.
    pub log: PathBuf,
    /// A TOML file (`--config`) for settings without a flag; `None` for pgroute's defaults.
    pub config: Option<PathBuf>,
}

/// Starts pgroute on a free port and returns once it accepts connections.
pub fn start(opts: &Options) -> Result<ChildGuard> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?));
    let cmd = process::with_nofile_limit(&opts.binary, &args(opts, listen));
    ChildGuard::spawn("pgroute", cmd, listen, PidSource::Child, opts.log.clone())
        .with_context(|| format!("start pgroute ({})", opts.binary.display()))
}

fn args(opts: &Options, listen: SocketAddr) -> Vec<String> {
    let mut args: Vec<String> = [
        "--listen".to_owned(),
        listen.to_string(),
        "--primary".to_owned(),
        opts.primary.to_string(),
        "--pool-size".to_owned(),
        opts.pool_size.to_string(),
        "--max-client-conn".to_owned(),
        opts.max_client_conn.to_string(),
        "--pool-mode".to_owned(),
        "transaction".to_owned(),
    ]
    .into();
    if let Some(config) = &opts.config {
        args.push("--config".to_owned());
        args.push(config.display().to_string());
    }
    for replica in &opts.replicas {
        args.push("--replica".to_owned());
        args.push(replica.to_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_is_its_own_flag() {
        let addr = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let opts = Options {
            binary: PathBuf::from("pgroute"),
            primary: addr(5432),
            replicas: vec![addr(5433), addr(5434)],
            pool_size: 20,
            max_client_conn: 10_000,
            log: PathBuf::from("pgroute.log"),
            config: None,
        };
        let args = args(&opts, addr(6432));
        let tail: Vec<&str> = args[args.len() - 4..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            ["--replica", "127.0.0.1:5433", "--replica", "127.0.0.1:5434"]
        );
        assert_eq!(args.iter().filter(|a| *a == "--primary").count(), 1);
        assert!(!args.iter().any(|a| a == "--config"));
    }

    #[test]
    fn a_config_file_is_passed_with_its_flag() {
        let addr = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let opts = Options {
            binary: PathBuf::from("pgroute"),
            primary: addr(5432),
            replicas: Vec::new(),
            pool_size: 20,
            max_client_conn: 10_000,
            log: PathBuf::from("pgroute.log"),
            config: Some(PathBuf::from("/tmp/b/pgroute.toml")),
        };
        let args = args(&opts, addr(6432));
        let at = args.iter().position(|a| a == "--config");
        assert_eq!(
            at.and_then(|i| args.get(i + 1)).map(String::as_str),
            Some("/tmp/b/pgroute.toml")
        );
    }
}
