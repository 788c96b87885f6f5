//! Starting the proxies as child processes, waiting until they listen, and stopping them on drop.
//!
//! The proxies and pgbench must handle thousands of connections, so they are started through
//! `sh -c 'ulimit -n …'` (as root the hard limit can be raised too). A [`ChildGuard`] owns each proxy:
//! dropping it stops the process even when the benchmark returns early with an error.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Open-file limit of proxies and pgbench (see [`nofile_script`]): above `max_client_conn` plus the
/// server side.
const CHILD_NOFILE: u32 = 20_000;

/// How long a proxy gets to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a proxy gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How much of a proxy's log goes into an error.
const LOG_TAIL_LINES: usize = 10;

/// `program args…` run by `sh` after raising the open-file limit to [`CHILD_NOFILE`]; `exec` keeps the pid.
/// Where the hard limit is lower and cannot be raised (a container without CAP_SYS_RESOURCE), the child
/// gets the hard limit, and `sh`'s complaint lands in the child's stderr.
pub fn with_nofile_limit(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(nofile_script())
        .arg("sh")
        .arg(program)
        .args(args);
    cmd
}

/// [`with_nofile_limit`] as the `postgres` user. The limit is raised after `runuser`, whose PAM session
/// (`pam_limits`) resets the soft limit to the system default (often 1024).
pub fn as_postgres_with_nofile_limit(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", "sh", "-c"])
        .arg(nofile_script())
        .arg("sh")
        .arg(program)
        .args(args);
    cmd
}

/// Raises the soft open-file limit and execs `"$@"`.
fn nofile_script() -> String {
    format!("ulimit -n {CHILD_NOFILE} || ulimit -n \"$(ulimit -Hn)\"; exec \"$@\"")
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("read a bound address")?
        .port())
}

/// Where a proxy's pid comes from: the child itself, or a pid file when the child is a wrapper
/// (`runuser` forks and waits instead of exec'ing).
#[derive(Debug)]
pub enum PidSource {
    Child,
    PidFile(PathBuf),
}

/// A running proxy: stopped with SIGTERM (then SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    pid_source: PidSource,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`, and waits until `addr` accepts connections.
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        addr: SocketAddr,
        pid_source: PidSource,
        log: PathBuf,
    ) -> Result<Self> {
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone().context("duplicate a log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {name} ({cmd:?})"))?;
        let mut guard = ChildGuard {
            name,
            child,
            addr,
            pid_source,
            log,
        };
        guard.wait_until_listening()?;
        Ok(guard)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The proxy's own pid (not a wrapper's), for `/proc/<pid>/status`.
    pub fn pid(&self) -> Result<u32> {
        match &self.pid_source {
            PidSource::Child => Ok(self.child.id()),
            PidSource::PidFile(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?;
                text.trim()
                    .parse()
                    .with_context(|| format!("{} holds {text:?}, not a pid", path.display()))
            }
        }
    }

    fn wait_until_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("poll the child")? {
                bail!(
                    "{} exited ({status}) before listening on {}; {}",
                    self.name,
                    self.addr,
                    self.log_tail()
                );
            }
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not listening on {} after {LISTEN_TIMEOUT:?}; {}",
                    self.name,
                    self.addr,
                    self.log_tail()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join(" | ");
        if tail.is_empty() {
            format!("{} is empty", self.log.display())
        } else {
            format!("last lines of {}: {tail}", self.log.display())
        }
    }

    fn stop(&mut self) {
        if let Ok(pid) = self.pid() {
            signal(pid, "TERM");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(POLL_INTERVAL);
        }
        if let Ok(pid) = self.pid() {
            signal(pid, "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kill -<sig> <pid>`; best effort, this runs while dropping (no libc in this crate).
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn limit_is_raised_after_runuser_and_the_program_is_execed() {
        let cmd = as_postgres_with_nofile_limit(Path::new("pgbouncer"), &["x.ini".to_owned()]);
        let argv = argv(&cmd);
        assert_eq!(argv[..6], ["runuser", "-u", "postgres", "--", "sh", "-c"]);
        assert!(argv[6].starts_with("ulimit -n 20000 ||"));
        assert!(argv[6].ends_with("exec \"$@\""));
        assert_eq!(argv[7..], ["sh", "pgbouncer", "x.ini"]);
    }
}
