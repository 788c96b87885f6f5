//! The one error type of the crate.
//!
//! Callers are tests and `pgroute demo`, which mostly print the error; so every variant carries what was
//! being attempted and, for failed commands, the server's own words (stderr or the tail of `server.log`).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::string::FromUtf8Error;

/// Why a throwaway cluster could not be started, queried or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory with a `postgres` binary: nothing to start.
    #[error("no PostgreSQL server binaries (`postgres`) found; searched: {}", join_paths(.searched))]
    NoServerBinaries { searched: Vec<PathBuf> },

    /// A file-system or process-spawn operation failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    /// A command printed something that is not UTF-8 where text was expected.
    #[error("`{command}` printed output that is not UTF-8")]
    InvalidOutput {
        command: String,
        #[source]
        source: FromUtf8Error,
    },

    /// Something did not happen within its deadline.
    #[error("timed out waiting for {what}")]
    Timeout { what: String },
}

impl ClusterError {
    /// Wraps an I/O error with a description of the operation that failed.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        ClusterError::Io {
            what: what.into(),
            source,
        }
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
