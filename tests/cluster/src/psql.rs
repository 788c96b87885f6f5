//! Running one SQL statement through `psql`.
//!
//! The kit is synchronous and dependency-free, so it talks to its servers with the installed client
//! instead of a driver; unaligned tuples-only output makes results easy to compare in tests.

use crate::runner::{self, Runner};
use crate::ClusterError;

/// Runs `sql` against the server on 127.0.0.1:`port` as `postgres` and returns its trimmed output.
pub(crate) fn query(runner: &Runner, port: u16, sql: &str) -> Result<String, ClusterError> {
    let mut cmd = runner.client("psql");
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ])
    .arg("-p")
    .arg(port.to_string())
    .args(["-U", "postgres", "-d", "postgres", "-c", sql])
    // A hung connect would otherwise block a test forever.
    .env("PGCONNECT_TIMEOUT", "10");
    let output = runner::run(&mut cmd)?;
    let text = String::from_utf8(output.stdout).map_err(|source| ClusterError::InvalidOutput {
        command: runner::describe(&cmd),
        source,
    })?;
    Ok(text.trim().to_owned())
}
