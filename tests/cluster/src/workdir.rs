//! The cluster's temporary directory: naming, ownership and removal.
//!
//! Everything a cluster writes (data directories, logs, sockets) lives under one directory, so teardown is
//! one `remove_dir_all` and parallel tests never share files. Removal also happens on drop, so a directory
//! does not outlive a failed start-up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::runner;
use crate::ClusterError;

/// Distinguishes directories made by one process within the same clock tick.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unix socket paths are limited to ~107 bytes; this leaves room for `/.s.PGSQL.65535`.
const MAX_SOCKET_DIR_LEN: usize = 100 - "/.s.PGSQL.65535".len();

/// A uniquely named directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(crate) struct ClusterDir {
    path: PathBuf,
}

impl ClusterDir {
    /// Creates `pgroute-cluster-<pid>-<counter>-<nanos>` with a `sock` subdirectory.
    pub(crate) fn create() -> Result<Self, ClusterError> {
        let path = std::env::temp_dir().join(unique_name());
        std::fs::create_dir(&path)
            .map_err(|e| ClusterError::io(format!("create {}", path.display()), e))?;
        let dir = ClusterDir { path };
        let sock = dir.sock_path();
        std::fs::create_dir(&sock)
            .map_err(|e| ClusterError::io(format!("create {}", sock.display()), e))?;
        Ok(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where servers put their Unix sockets, or `None` when the path would be too long for one
    /// (the servers then listen on TCP only, which is all this crate uses).
    pub(crate) fn socket_dir(&self) -> Option<PathBuf> {
        let sock = self.sock_path();
        (sock.as_os_str().len() <= MAX_SOCKET_DIR_LEN).then_some(sock)
    }

    /// Makes the directory writable by the `postgres` user, which the servers run as when we are root.
    pub(crate) fn give_to_postgres(&self) -> Result<(), ClusterError> {
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postgres:postgres").arg(&self.path);
        runner::run(&mut chown).map(drop)
    }

    fn sock_path(&self) -> PathBuf {
        self.path.join("sock")
    }
}

impl Drop for ClusterDir {
    fn drop(&mut self) {
        // Nothing useful to do on failure while dropping; a leftover temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("pgroute-cluster-{}-{counter}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_unique_and_removed_on_drop() -> Result<(), ClusterError> {
        let a = ClusterDir::create()?;
        let b = ClusterDir::create()?;
        assert_ne!(a.path(), b.path());
        assert!(a.path().join("sock").is_dir());
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        Ok(())
    }
}
