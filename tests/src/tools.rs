//! Running the real PostgreSQL client tools (psql, pgbench) from the cluster's bin directory against a
//! proxy, with their output captured for assertions.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use anyhow::Context;

/// Runs a PostgreSQL client tool from `bin_dir` against `addr` as user postgres, database postgres.
pub async fn run_tool(
    bin_dir: &Path,
    tool: &str,
    addr: SocketAddr,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(bin_dir.join(tool));
    cmd.args([
        "-h",
        &addr.ip().to_string(),
        "-p",
        &addr.port().to_string(),
        "-U",
        "postgres",
    ])
    .args(args)
    .env("PGCONNECT_TIMEOUT", "10")
    .env_remove("PGPASSWORD")
    .stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("spawning {tool}"))?;
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().context("stdin")?;
        pipe.write_all(input).await?;
        drop(pipe);
    }
    Ok(child.wait_with_output().await?)
}

/// psql with `-X -A -t -v ON_ERROR_STOP=1 -d postgres`, returning stdout; fails with stderr otherwise.
pub async fn psql(
    bin_dir: &Path,
    addr: SocketAddr,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> anyhow::Result<String> {
    let mut all = vec![
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        "postgres",
    ];
    all.extend_from_slice(args);
    let out = run_tool(bin_dir, "psql", addr, &all, stdin).await?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What pgbench reported.
#[derive(Debug)]
pub struct PgbenchResult {
    pub transactions: u64,
    pub failed: u64,
    pub tps: f64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs pgbench and parses its summary; fails if it exited non-zero.
pub async fn pgbench(
    bin_dir: &Path,
    addr: SocketAddr,
    args: &[&str],
) -> anyhow::Result<PgbenchResult> {
    let out = run_tool(bin_dir, "pgbench", addr, args, None).await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let field = |prefix: &str| -> Option<String> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let transactions = field("number of transactions actually processed:")
        .and_then(|v| v.split('/').next().map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let failed = field("number of failed transactions:")
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tps = field("tps =")
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok(PgbenchResult {
        transactions,
        failed,
        tps,
        stdout,
        stderr,
    })
}
