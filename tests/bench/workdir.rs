//! The benchmark's temporary directory: proxy configs and logs, pgbench logs. Removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>`.
    pub fn create(prefix: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("{prefix}-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Nobody to report to while dropping; a leftover temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Makes `dir` (which must exist) and everything in it owned by `postgres`, for tools that run as it.
pub fn give_to_postgres(dir: &Path) -> Result<()> {
    let status = Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(dir)
        .status()
        .context("run chown")?;
    if !status.success() {
        bail!(
            "chown -R postgres:postgres {} failed ({status})",
            dir.display()
        );
    }
    Ok(())
}
