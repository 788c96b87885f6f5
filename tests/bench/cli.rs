//! Command-line flags of `pgroute-bench` and the run options derived from them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

use crate::matrix::RunOptions;

/// Seconds per pgbench run by default and with `--quick`.
const DEFAULT_SECS: u64 = 15;
const QUICK_SECS: u64 = 5;

/// Measures pgroute's classification cost, compares pgroute with PgBouncer and a direct connection using
/// pgbench, compares prepared statements with the simple protocol through pgroute, measures read scaling
/// with two replicas and read-your-writes with a lagging replica, then idle-client memory.
#[derive(Debug, Parser)]
#[command(name = "pgroute-bench")]
pub struct Args {
    /// Duration of each pgbench run, in seconds [default: 15].
    #[arg(long, conflicts_with = "quick")]
    pub secs: Option<u64>,

    /// Short runs (5 s each) for a smoke test; numbers are noisier.
    #[arg(long)]
    pub quick: bool,

    /// pgbench query protocol (`pgbench -M`) of the PgBouncer comparison and the read-scaling step.
    #[arg(long, value_enum, default_value_t = Protocol::Simple)]
    pub protocol: Protocol,

    /// Skip the idle-connection memory comparison.
    #[arg(long)]
    pub skip_memory: bool,

    /// Skip the prepared-statement step (select-only `-M prepared` against `-M simple` through pgroute).
    #[arg(long)]
    pub skip_prepared: bool,

    /// Skip the in-process classification cost (warm and cold `classify` calls, about 2 s).
    #[arg(long)]
    pub skip_classify: bool,

    /// Skip the read-scaling step (pgroute with 2 replicas against the primary only); the cluster then
    /// gets one replica, as before that step existed.
    #[arg(long)]
    pub skip_replicas: bool,

    /// Skip the read-your-writes step (a 90/10 read/write workload through pgroute with a replica 1 s
    /// behind, checked for stale reads, against all reads on the primary; it starts its own cluster).
    #[arg(long)]
    pub skip_consistency: bool,

    /// Skip the metrics-overhead step (select-only through pgroute with /metrics off and on, alternating).
    #[arg(long)]
    pub skip_overhead: bool,

    /// The pgroute binary [default: `pgroute` next to this executable].
    #[arg(long)]
    pub pgroute: Option<PathBuf>,

    /// Idle client connections held open on each proxy for the memory comparison.
    #[arg(long, default_value_t = 5000)]
    pub idle: usize,
}

/// `pgbench -M`: how statements are sent.
///
/// `--protocol` offers only the two that PgBouncer's transaction pooling can run, so every row of the
/// comparison measures something. `Prepared` is for the prepared-statement step (`prepared`), which shows
/// PgBouncer failing at it beside pgroute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Simple,
    Extended,
    #[value(skip)]
    Prepared,
}

impl Protocol {
    pub fn pgbench_mode(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
            Protocol::Prepared => "prepared",
        }
    }
}

impl Args {
    pub fn run_options(&self) -> RunOptions {
        let secs = match (self.secs, self.quick) {
            (Some(secs), _) => secs,
            (None, true) => QUICK_SECS,
            (None, false) => DEFAULT_SECS,
        };
        RunOptions {
            duration: Duration::from_secs(secs),
            protocol: self.protocol,
        }
    }

    /// `--pgroute`, else `pgroute` in the directory of this executable (both are built into `target/release`).
    pub fn pgroute_binary(&self) -> Result<PathBuf> {
        if let Some(path) = &self.pgroute {
            return Ok(path.clone());
        }
        let exe = std::env::current_exe().context("find the path of this executable")?;
        let dir = exe
            .parent()
            .with_context(|| format!("{} has no parent directory", exe.display()))?;
        Ok(dir.join("pgroute"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_and_secs_choose_the_duration() {
        let parse = |argv: &[&str]| Args::try_parse_from(argv).map(|a| a.run_options().duration);
        assert_eq!(parse(&["b"]).ok(), Some(Duration::from_secs(15)));
        assert_eq!(parse(&["b", "--quick"]).ok(), Some(Duration::from_secs(5)));
        assert_eq!(
            parse(&["b", "--secs", "7"]).ok(),
            Some(Duration::from_secs(7))
        );
        assert!(parse(&["b", "--secs", "7", "--quick"]).is_err());
    }

    #[test]
    fn skip_flags_parse() {
        let args = Args::try_parse_from(["b", "--skip-replicas", "--skip-classify"]);
        let skips = args.map(|a| (a.skip_replicas, a.skip_classify, a.skip_memory));
        assert_eq!(skips.ok(), Some((true, true, false)));
    }

    #[test]
    fn skip_prepared_parses_and_defaults_to_off() {
        let skip = |argv: &[&str]| Args::try_parse_from(argv).map(|a| a.skip_prepared);
        assert_eq!(skip(&["b"]).ok(), Some(false));
        assert_eq!(skip(&["b", "--skip-prepared"]).ok(), Some(true));
    }

    #[test]
    fn skip_consistency_parses_and_defaults_to_off() {
        let skip = |argv: &[&str]| Args::try_parse_from(argv).map(|a| a.skip_consistency);
        assert_eq!(skip(&["b"]).ok(), Some(false));
        assert_eq!(skip(&["b", "--skip-consistency"]).ok(), Some(true));
    }

    #[test]
    fn prepared_is_not_a_protocol_flag_value() {
        assert!(Args::try_parse_from(["b", "--protocol", "prepared"]).is_err());
    }

    #[test]
    fn protocol_maps_to_pgbench_mode() {
        let args = Args::try_parse_from(["b", "--protocol", "extended"]);
        assert_eq!(
            args.map(|a| a.protocol.pgbench_mode()).ok(),
            Some("extended")
        );
    }
}
