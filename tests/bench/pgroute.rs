//! pgroute, the system under test, started from its release binary with the same pool as PgBouncer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::process::{self, ChildGuard, PidSource};

pub struct Options {
    pub binary: PathBuf,
    pub primary: SocketAddr,
    pub pool_size: u32,
    pub max_client_conn: u32,
    /// Where pgroute's stderr (its log) goes.
    pub log: PathBuf,
}

/// Starts pgroute on a free port and returns once it accepts connections.
pub fn start(opts: &Options) -> Result<ChildGuard> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_port()?));
    let cmd = process::with_nofile_limit(&opts.binary, &args(opts, listen));
    ChildGuard::spawn("pgroute", cmd, listen, PidSource::Child, opts.log.clone())
        .with_context(|| format!("start pgroute ({})", opts.binary.display()))
}

fn args(opts: &Options, listen: SocketAddr) -> Vec<String> {
    [
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
    .into()
}
