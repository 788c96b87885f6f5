//! One PostgreSQL server of the cluster and the `pg_ctl` operations tests perform on it.
//!
//! Tests stop, restart and promote single nodes to exercise failover, so these operations are public and
//! blocking (`pg_ctl -w`): when they return, the server is really up or down.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::runner::{self, Runner};
use crate::{conf, port, ClusterError};

/// How many ports to try when another process grabs the free port before the server binds it.
const PORT_ATTEMPTS: usize = 3;

/// How much of `server.log` to put into a start error.
const LOG_TAIL_LINES: usize = 20;

/// A server of the cluster, addressed over TCP on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Node {
    /// `primary`, `replica1`, `replica2`, ...; replicas use it as `application_name`.
    pub name: String,
    pub port: u16,
    pub data_dir: PathBuf,
    runner: Runner,
    socket_dir: Option<PathBuf>,
}

impl Node {
    /// A node that does not exist on disk yet; port 0 until [`Node::start_on_free_port`] picks one.
    pub(crate) fn new(
        name: String,
        data_dir: PathBuf,
        runner: Runner,
        socket_dir: Option<PathBuf>,
    ) -> Self {
        Node {
            name,
            port: 0,
            data_dir,
            runner,
            socket_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The form connection strings and the proxy's config want.
    pub fn host_port(&self) -> String {
        self.addr().to_string()
    }

    /// The postmaster's pid, or `None` when it is not running (no readable `postmaster.pid`).
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server without a checkpoint, like a crash, so tests see what clients see on failover.
    pub fn stop_immediate(&self) -> Result<(), ClusterError> {
        let mut cmd = self.pg_ctl();
        cmd.args(["stop", "-m", "immediate", "-w"]);
        runner::run(&mut cmd).map(drop)
    }

    /// Starts the server again (after a stop) and waits until it accepts connections.
    pub fn start(&self) -> Result<(), ClusterError> {
        let mut cmd = self.pg_ctl();
        cmd.arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "start"]);
        runner::run(&mut cmd)
            .map(drop)
            .map_err(|e| self.with_log_tail(e))
    }

    /// Turns a replica into a primary and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), ClusterError> {
        let mut cmd = self.pg_ctl();
        cmd.args(["promote", "-w"]);
        runner::run(&mut cmd).map(drop)
    }

    /// Sends `signal` (as `kill` names it: `KILL`, `STOP`, `CONT`) to the postmaster, and with
    /// `children` to every server process it started first: stopping the postmaster alone leaves open
    /// sessions running, which is not what a hung host looks like.
    pub fn signal(&self, signal: &str, children: bool) -> Result<(), ClusterError> {
        let pid = self
            .pid()
            .ok_or_else(|| {
                ClusterError::io(
                    format!("signal {signal} to {}", self.name),
                    std::io::ErrorKind::NotFound.into(),
                )
            })?
            .to_string();
        if children {
            // Exit status 1 only means no child matched.
            let _ = Command::new("pkill")
                .arg(format!("-{signal}"))
                .args(["-P", &pid])
                .status();
        }
        runner::run(Command::new("kill").args(["-s", signal, &pid])).map(drop)
    }

    /// Starts a stopped former primary as a standby of `primary` (`standby.signal` plus
    /// `primary_conninfo`), the way an HA manager brings an old primary back after a failover. Without
    /// `pg_rewind` it may not manage to stream from the new timeline, but it runs in recovery, which is
    /// what clients and pgroute see.
    pub fn start_as_standby(&self, primary: &Node) -> Result<(), ClusterError> {
        let signal = self.data_dir.join("standby.signal");
        std::fs::write(&signal, "")
            .map_err(|e| ClusterError::io(format!("write {}", signal.display()), e))?;
        let conf = self.data_dir.join(conf::NODE_CONF);
        let mut text = conf::node_conf(self.port, self.socket_dir.as_deref());
        text.push_str(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={}'\n",
            primary.port, self.name
        ));
        std::fs::write(&conf, text)
            .map_err(|e| ClusterError::io(format!("write {}", conf.display()), e))?;
        self.start()
    }

    /// First start: picks a port, writes it to the node's config and starts, retrying on a port race.
    pub(crate) fn start_on_free_port(&mut self) -> Result<(), ClusterError> {
        let mut attempt = 1;
        loop {
            self.port = port::free_port()?;
            self.write_node_conf()?;
            match self.start() {
                Err(e) if attempt < PORT_ATTEMPTS && is_port_conflict(&e) => attempt += 1,
                result => return result,
            }
        }
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    fn write_node_conf(&self) -> Result<(), ClusterError> {
        let path = self.data_dir.join(conf::NODE_CONF);
        let text = conf::node_conf(self.port, self.socket_dir.as_deref());
        std::fs::write(&path, text)
            .map_err(|e| ClusterError::io(format!("write {}", path.display()), e))
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = self.runner.server("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    /// `pg_ctl` only says "could not start server"; the reason is in the server's log.
    fn with_log_tail(&self, error: ClusterError) -> ClusterError {
        match error {
            ClusterError::CommandFailed {
                command,
                status,
                stderr,
            } => ClusterError::CommandFailed {
                command,
                status,
                stderr: format!(
                    "{stderr}\n--- last lines of {} ---\n{}",
                    self.log_path().display(),
                    log_tail(&self.log_path())
                ),
            },
            other => other,
        }
    }
}

fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

fn is_port_conflict(error: &ClusterError) -> bool {
    matches!(error, ClusterError::CommandFailed { stderr, .. } if stderr.contains("Address already in use"))
}
