//! Running `pgbench` against one target and turning its output into a [`Measurement`].
//!
//! Throughput and average latency come from pgbench's summary on stdout. pgbench prints no percentiles, so
//! p99 comes from its per-transaction log (`-l`), sampled (`--sampling-rate`) to keep the log cheap to
//! write and read; the third field of each line is the transaction's latency in microseconds.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::Protocol;
use crate::process;

/// Share of transactions written to the per-transaction log.
const SAMPLING_RATE: &str = "0.1";
/// pgbench worker threads (`-j`); the machine the benchmark targets has two cores.
const THREADS: &str = "2";
/// Slack on top of `-T` before a hung run is killed (1,000 clients take a while to connect).
const RUN_GRACE: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Lines of pgbench's stderr kept for a failed run's table cell, after folding alike client aborts.
const STDERR_TAIL_LINES: usize = 3;

/// What one pgbench run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub tps: f64,
    pub avg_ms: f64,
    /// `None` when the log held no transactions.
    pub p99_ms: Option<f64>,
}

/// The transaction script: pgbench's built-in `select-only` (`-S`) or `tpcb-like` (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    SelectOnly,
    TpcbLike,
}

/// One run: where, how many clients, which script, for how long.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub addr: SocketAddr,
    pub clients: u32,
    pub script: Script,
    /// `-C`: a new connection for every transaction.
    pub reconnect: bool,
    pub duration: Duration,
    pub protocol: Protocol,
    /// Names the run's log directory; unique per run.
    pub tag: String,
}

/// The `pgbench` of the cluster's installation, with a directory for its logs.
pub struct Pgbench {
    program: PathBuf,
    logs: PathBuf,
}

impl Pgbench {
    pub fn new(bin_dir: &Path, work_dir: &Path) -> Self {
        Pgbench {
            program: bin_dir.join("pgbench"),
            logs: work_dir.join("pgbench"),
        }
    }

    /// `pgbench -i -s <scale>`: creates and fills the pgbench tables.
    pub fn init(&self, addr: SocketAddr, scale: u32) -> Result<()> {
        let output = Command::new(&self.program)
            .args(["-i", "-q", "-s", &scale.to_string()])
            .args(connection_args(addr))
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.program.display()))?;
        if !output.status.success() {
            bail!(
                "pgbench -i failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Runs pgbench for `spec.duration` and reads its summary and sampled latencies.
    pub fn run(&self, spec: &RunSpec) -> Result<Measurement> {
        let dir = self.logs.join(&spec.tag);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let stdout_path = dir.join("stdout");
        let stderr_path = dir.join("stderr");
        let mut cmd = process::with_nofile_limit(&self.program, &run_args(spec, &dir));
        cmd.env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .stdout(create(&stdout_path)?)
            .stderr(create(&stderr_path)?);
        let mut child = cmd.spawn().context("spawn pgbench")?;

        let deadline = Instant::now() + spec.duration + RUN_GRACE;
        let status = loop {
            if let Some(status) = child.try_wait().context("poll pgbench")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("pgbench still running {RUN_GRACE:?} after its duration; killed");
            }
            thread::sleep(POLL_INTERVAL);
        };
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if !status.success() {
            bail!("pgbench failed ({status}): {}", brief(&stderr));
        }
        let stdout = std::fs::read_to_string(&stdout_path)
            .with_context(|| format!("read {}", stdout_path.display()))?;
        let (tps, avg_ms) = parse_summary(&stdout)?;
        let mut latencies = read_latencies(&dir)?;
        let p99_ms = percentile(&mut latencies, 0.99).map(|us| us as f64 / 1000.0);
        Ok(Measurement {
            tps,
            avg_ms,
            p99_ms,
        })
    }
}

fn run_args(spec: &RunSpec, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-n".into(),
        "-T".into(),
        spec.duration.as_secs().max(1).to_string(),
        "-c".into(),
        spec.clients.to_string(),
        "-j".into(),
        THREADS.into(),
        "-M".into(),
        spec.protocol.pgbench_mode().into(),
        "-l".into(),
        "--sampling-rate".into(),
        SAMPLING_RATE.into(),
        "--log-prefix".into(),
        dir.join("tx").display().to_string(),
    ];
    if spec.script == Script::SelectOnly {
        args.push("-S".into());
    }
    if spec.reconnect {
        args.push("-C".into());
    }
    args.extend(connection_args(spec.addr));
    args
}

fn connection_args(addr: SocketAddr) -> Vec<String> {
    vec![
        "-h".into(),
        addr.ip().to_string(),
        "-p".into(),
        addr.port().to_string(),
        "-U".into(),
        "postgres".into(),
        "postgres".into(),
    ]
}

/// `tps = N (...)` and `latency average = X ms` from pgbench's summary.
fn parse_summary(stdout: &str) -> Result<(f64, f64)> {
    let value = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<f64>().ok())
    };
    let tps =
        value("tps = ").with_context(|| format!("no `tps = ` in pgbench output: {stdout}"))?;
    let avg = value("latency average = ")
        .with_context(|| format!("no `latency average = ` in pgbench output: {stdout}"))?;
    Ok((tps, avg))
}

/// Latencies (µs) from every per-transaction log file in `dir` (one per pgbench thread: `tx.<pid>[.<n>]`).
fn read_latencies(dir: &Path) -> Result<Vec<u64>> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry.context("read a directory entry")?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tx."));
        if is_log {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            latencies.extend(log_latencies(&text));
        }
    }
    Ok(latencies)
}

/// Field 3 of `client_id transaction_no time script_no time_epoch time_us`; failed or skipped
/// transactions (a word instead of a number) are left out.
fn log_latencies(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
}

/// Nearest-rank percentile (`p` in 0..=1); sorts `values`.
fn percentile(values: &mut [u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (p * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("create {}", path.display()))
}

/// A distinct line of pgbench's stderr: a client's abort by the server's message (every client that
/// aborts prints its own line), anything else by its text.
#[derive(Debug, PartialEq, Eq)]
enum StderrLine<'a> {
    Text(&'a str),
    Aborted(&'a str),
}

/// pgbench's stderr on one line, for a table cell. A proxy that cannot run the workload makes every client
/// fail alike, one line each, so repeated lines are folded into one with a count (`50 clients aborted:
/// ERROR: …`, `ERROR: … (44 times)`); of the distinct lines, in order of first appearance, the last
/// [`STDERR_TAIL_LINES`] are kept, without pgbench's `pgbench: error: ` prefixes.
fn brief(stderr: &str) -> String {
    let mut distinct: Vec<(StderrLine<'_>, usize)> = Vec::new();
    for text in stderr.lines().map(strip_prefixes).filter(|l| !l.is_empty()) {
        let line = aborted_message(text).map_or(StderrLine::Text(text), StderrLine::Aborted);
        match distinct.iter_mut().find(|(seen, _)| *seen == line) {
            Some((_, count)) => *count += 1,
            None => distinct.push((line, 1)),
        }
    }
    distinct[distinct.len().saturating_sub(STDERR_TAIL_LINES)..]
        .iter()
        .map(|(line, count)| match (line, count) {
            (StderrLine::Aborted(message), 1) => format!("1 client aborted: {message}"),
            (StderrLine::Aborted(message), n) => format!("{n} clients aborted: {message}"),
            (StderrLine::Text(text), 1) => (*text).to_owned(),
            (StderrLine::Text(text), n) => format!("{text} ({n} times)"),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `pgbench: error: text` → `text`; the level is implied by the run having failed. pgbench's two threads
/// write stderr unsynchronised, so a prefix can come doubled or split (`pgbench:pgbench: error: text`
/// here, ` error: text` on another line); every leading `pgbench:`, `error:` and `fatal:` goes.
fn strip_prefixes(line: &str) -> &str {
    let mut line = line.trim();
    while let Some(rest) = ["pgbench:", "error:", "fatal:"]
        .iter()
        .find_map(|prefix| line.strip_prefix(prefix))
    {
        line = rest.trim_start();
    }
    line
}

/// The server's message in `client 3 script 0 aborted in command 1 query 0: ERROR:  …` (pgbench 15).
/// Looked for anywhere in the line, in case a fragment of another line got in front.
fn aborted_message(line: &str) -> Option<&str> {
    let (_, command) = line.split_once(" aborted in command ")?;
    let (_, message) = command.split_once(": ")?;
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "\
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 50
number of threads: 2
duration: 5 s
number of transactions actually processed: 150000
latency average = 1.666 ms
initial connection time = 20.5 ms
tps = 30012.345678 (without initial connection time)
";

    #[test]
    fn reads_tps_and_average_latency() {
        let parsed = parse_summary(SUMMARY).ok();
        assert_eq!(parsed, Some((30012.345678, 1.666)));
    }

    #[test]
    fn reconnect_summary_is_read_too() {
        let text = "latency average = 3.000 ms\naverage connection time = 1.2 ms\n\
                    tps = 900.5 (including reconnection times)\n";
        assert_eq!(parse_summary(text).ok(), Some((900.5, 3.0)));
    }

    #[test]
    fn missing_tps_is_an_error() {
        assert!(parse_summary("latency average = 1 ms\n").is_err());
    }

    #[test]
    fn latencies_skip_failed_transactions() {
        let log = "0 1 1500 0 1700000000 123\n1 4 failed 0 1700000000 9\n2 7 250 0 1700000000 5\n";
        assert_eq!(log_latencies(log).collect::<Vec<_>>(), vec![1500, 250]);
    }

    /// The shape of a `-M prepared` run through PgBouncer 1.18 in transaction mode (abridged).
    #[test]
    fn alike_lines_fold_into_one_with_a_count() {
        let stderr = "\
pgbench: error: ERROR:  prepared statement \"P_0\" already exists
pgbench: error: client 24 script 0 aborted in command 1 query 0: ERROR:  prepared statement \"P_0\" does not exist
pgbench:pgbench: error: ERROR:  prepared statement \"P_0\" already exists
pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  prepared statement \"P_0\" does not exist
 error: client 47 script 0 aborted in command 1 query 0: ERROR:  prepared statement \"P_0\" does not exist
 error: client 9 script 0 aborted in command 1 query 0: ERROR:  prepared statement \"P_0\" does not exist

pgbench: error: Run was aborted; the above results are incomplete.
";
        assert_eq!(
            brief(stderr),
            "ERROR:  prepared statement \"P_0\" already exists (2 times) | \
             4 clients aborted: ERROR:  prepared statement \"P_0\" does not exist | \
             Run was aborted; the above results are incomplete."
        );
        assert_eq!(
            brief("pgbench: error: client 1 script 0 aborted in command 0 query 0: FATAL:  x\n"),
            "1 client aborted: FATAL:  x"
        );
    }

    #[test]
    fn other_stderr_keeps_its_last_lines() {
        let stderr = "one\npgbench: error: connection to server failed\nthree\nfour\n";
        assert_eq!(brief(stderr), "connection to server failed | three | four");
    }

    #[test]
    fn nearest_rank_percentile() {
        let mut values: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut values, 0.99), Some(99));
        assert_eq!(percentile(&mut [7], 0.99), Some(7));
        assert_eq!(percentile(&mut [], 0.99), None);
    }
}
