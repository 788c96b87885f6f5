//! PgBouncer, the baseline: configured like pgroute (transaction pooling, same pool size, trust auth).
//!
//! PgBouncer refuses to run as root, so it runs as `postgres` through `runuser`, with its config, auth file,
//! log and pid file in a directory owned by `postgres`. `runuser` forks, so the pid comes from the pid file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::process::{self, ChildGuard, PidSource};
use crate::workdir;

const PGBOUNCER: &str = "pgbouncer";

pub struct Options {
    pub primary: SocketAddr,
    pub pool_size: u32,
    pub max_client_conn: u32,
    /// Created here; holds `pgbouncer.ini`, `userlist.txt`, the log and the pid file.
    pub dir: PathBuf,
}

/// Starts PgBouncer on a free port and returns once it accepts connections.
pub fn start(opts: &Options) -> Result<ChildGuard> {
    let port = process::free_port()?;
    let dir = &opts.dir;
    std::fs::create_dir(dir).with_context(|| format!("create {}", dir.display()))?;
    let ini = dir.join("pgbouncer.ini");
    write(&ini, &render_ini(opts, port))?;
    write(&dir.join("userlist.txt"), "\"postgres\" \"\"\n")?;
    workdir::give_to_postgres(dir)?;

    let cmd =
        process::as_postgres_with_nofile_limit(Path::new(PGBOUNCER), &[ini.display().to_string()]);
    ChildGuard::spawn(
        "PgBouncer",
        cmd,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        PidSource::PidFile(dir.join("pgbouncer.pid")),
        // PgBouncer writes its own log to `logfile`; this one catches start-up errors on stderr.
        dir.join("stderr.log"),
    )
    .context("start PgBouncer")
}

/// `pgbouncer.ini`. Per-connection logging is off: with `pgbench -C` it would measure log I/O.
fn render_ini(opts: &Options, port: u16) -> String {
    let dir = opts.dir.display();
    format!(
        "\
[databases]
* = host={host} port={primary_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = {max_client_conn}
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
",
        host = opts.primary.ip(),
        primary_port = opts.primary.port(),
        pool_size = opts.pool_size,
        max_client_conn = opts.max_client_conn,
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_points_at_the_primary_with_the_same_pool_as_pgroute() {
        let opts = Options {
            primary: SocketAddr::from((Ipv4Addr::LOCALHOST, 5432)),
            pool_size: 20,
            max_client_conn: 10_000,
            dir: PathBuf::from("/tmp/b"),
        };
        let ini = render_ini(&opts, 6432);
        for line in [
            "* = host=127.0.0.1 port=5432",
            "listen_port = 6432",
            "pool_mode = transaction",
            "default_pool_size = 20",
            "max_client_conn = 10000",
            "auth_file = /tmp/b/userlist.txt",
            "pidfile = /tmp/b/pgbouncer.pid",
        ] {
            assert!(ini.lines().any(|l| l == line), "missing {line:?} in\n{ini}");
        }
    }
}
