//! Finding the PostgreSQL server binaries.
//!
//! Debian installs each major version side by side under `/usr/lib/postgresql/<major>/bin` and puts only
//! client wrappers on `PATH`, so the server tools have to be looked up. A bad explicit choice (option or
//! `PGROUTE_PG_BIN`) is an error rather than a silent fall-back, so a test never runs against a version
//! nobody asked for.

use std::path::{Path, PathBuf};

use crate::ClusterError;

/// Environment variable naming the server bin directory, for machines with a non-Debian layout.
pub const PG_BIN_ENV: &str = "PGROUTE_PG_BIN";

const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Finds the server bin directory: `PGROUTE_PG_BIN` if set, else the highest Debian major version.
pub fn find_pg_bin_dir() -> Result<PathBuf, ClusterError> {
    match std::env::var_os(PG_BIN_ENV) {
        Some(dir) => checked(PathBuf::from(dir)),
        None => highest_major(Path::new(DEBIAN_ROOT)),
    }
}

/// Uses the caller's directory if given, otherwise discovers one.
pub(crate) fn resolve(explicit: Option<&Path>) -> Result<PathBuf, ClusterError> {
    match explicit {
        Some(dir) => checked(dir.to_path_buf()),
        None => find_pg_bin_dir(),
    }
}

fn checked(dir: PathBuf) -> Result<PathBuf, ClusterError> {
    if has_server(&dir) {
        Ok(dir)
    } else {
        Err(ClusterError::NoServerBinaries {
            searched: vec![dir],
        })
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file()
}

/// Picks `<root>/<major>/bin` with the largest numeric major that contains `postgres`.
fn highest_major(root: &Path) -> Result<PathBuf, ClusterError> {
    let not_found = || ClusterError::NoServerBinaries {
        searched: vec![root.join("<major>/bin")],
    };
    let entries = std::fs::read_dir(root).map_err(|_| not_found())?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workdir::ClusterDir;

    fn fake_install(root: &Path, major: &str, with_server: bool) -> Result<(), ClusterError> {
        let bin = root.join(major).join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| ClusterError::io("mkdir", e))?;
        if with_server {
            std::fs::write(bin.join("postgres"), b"").map_err(|e| ClusterError::io("write", e))?;
        }
        Ok(())
    }

    #[test]
    fn picks_highest_major_that_has_a_server() -> Result<(), ClusterError> {
        let dir = ClusterDir::create()?;
        for (major, server) in [
            ("9", true),
            ("13", true),
            ("15", true),
            ("16", false),
            ("x", true),
        ] {
            fake_install(dir.path(), major, server)?;
        }
        assert_eq!(highest_major(dir.path())?, dir.path().join("15/bin"));
        Ok(())
    }

    #[test]
    fn explicit_dir_without_server_is_an_error() -> Result<(), ClusterError> {
        let dir = ClusterDir::create()?;
        let err = resolve(Some(dir.path()));
        assert!(matches!(err, Err(ClusterError::NoServerBinaries { .. })));
        Ok(())
    }

    #[test]
    fn finds_installed_binaries() -> Result<(), ClusterError> {
        let bin = find_pg_bin_dir()?;
        assert!(bin.join("pg_ctl").is_file(), "{}", bin.display());
        Ok(())
    }
}
