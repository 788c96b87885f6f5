//! Running PostgreSQL's command-line tools and turning their failures into errors.
//!
//! `initdb` and `postgres` refuse to run as root, and CI runs as root; so every server-side command goes
//! through one place that decides whether to prefix it with `runuser -u postgres --`. Client commands
//! (`psql`) connect over TCP with trust auth and run as whoever we are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::ClusterError;

/// How to invoke the tools of one PostgreSQL installation.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    bin_dir: PathBuf,
    as_postgres: bool,
}

impl Runner {
    /// Runs server tools as `postgres` exactly when this process is root.
    pub(crate) fn detect(bin_dir: PathBuf) -> Result<Self, ClusterError> {
        let as_postgres = effective_uid()? == 0;
        Ok(Runner {
            bin_dir,
            as_postgres,
        })
    }

    pub(crate) fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Whether server files must be owned by the `postgres` user.
    pub(crate) fn as_postgres(&self) -> bool {
        self.as_postgres
    }

    /// A server-side tool (`initdb`, `pg_ctl`, `pg_basebackup`), as `postgres` when we are root.
    pub(crate) fn server(&self, program: &str) -> Command {
        let tool = self.bin_dir.join(program);
        let mut cmd = if self.as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(tool);
            runuser
        } else {
            Command::new(tool)
        };
        // The caller's working directory may not be readable by `postgres`, and initdb checks it.
        cmd.current_dir("/");
        cmd
    }

    /// A client tool (`psql`), run as ourselves.
    pub(crate) fn client(&self, program: &str) -> Command {
        Command::new(self.bin_dir.join(program))
    }
}

/// Runs `cmd` to completion with captured output; a non-zero exit is an error carrying stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, ClusterError> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError::io(format!("run `{}`", describe(cmd)), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ClusterError::CommandFailed {
            command: describe(cmd),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The command line as a human would type it, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The effective uid, from `/proc/self/status` (no libc in this crate), else from `id -u`.
fn effective_uid() -> Result<u32, ClusterError> {
    if let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_status_euid)
    {
        return Ok(uid);
    }
    let mut id = Command::new("id");
    id.arg("-u");
    let output = run(&mut id)?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .map_err(|_| ClusterError::CommandFailed {
            command: describe(&id),
            status: output.status,
            stderr: format!("unexpected output {text:?}"),
        })
}

/// `Uid:` lists real, effective, saved and filesystem uids; we want the second.
fn parse_status_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_uid_from_status() {
        let status = "Name:\tx\nUid:\t1000\t0\t1000\t1000\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_status_euid(status), Some(0));
        assert_eq!(parse_status_euid("Name:\tx\n"), None);
    }

    #[test]
    fn server_commands_run_as_postgres_only_when_root() {
        let root = Runner {
            bin_dir: PathBuf::from("/pg/bin"),
            as_postgres: true,
        };
        assert_eq!(
            describe(&root.server("initdb")),
            "runuser -u postgres -- /pg/bin/initdb"
        );
        let user = Runner {
            as_postgres: false,
            ..root
        };
        assert_eq!(describe(&user.server("initdb")), "/pg/bin/initdb");
    }

    #[test]
    fn failed_command_keeps_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        match run(&mut cmd) {
            Err(ClusterError::CommandFailed { stderr, .. }) => assert_eq!(stderr, "oops"),
            other => panic!("expected CommandFailed, got {other:?}"),
        }
    }
}
