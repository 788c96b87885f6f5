//! What the benchmark prints: classification cost first, then the table (one row per (workload, target),
//! ratio rows after each workload), the prepared-statement rows, the read-scaling rows, then memory. The
//! read-your-writes step prints its own lines (`consistency::report`) with the row helpers here.
//!
//! Formatting is pure (`format_*` return strings) so the layout and the ratio arithmetic are unit-tested;
//! the `print_*` wrappers only write to stdout.

use std::time::Duration;

use crate::classify::{self, Cost};
use crate::cli::Protocol;
use crate::idle::MemoryUse;
use crate::matrix::{RunOptions, Target};
use crate::pgbench::Measurement;
use crate::prepared::{self, RowRun};
use crate::proxies::POOL_SIZE;
use crate::replicas::{self, Layout, LayoutRun};

pub const WORKLOAD_WIDTH: usize = 40;
pub const TARGET_WIDTH: usize = 18;
const NUMBER_WIDTH: usize = 10;

/// What became of one (workload, target) cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Measurement),
    Failed(String),
    /// The target cannot run this workload (PostgreSQL alone with 1,000 clients).
    NotApplicable,
}

impl Outcome {
    /// A pgbench run's result as a cell; the error on one line.
    pub fn from_run(run: anyhow::Result<Measurement>) -> Outcome {
        match run {
            Ok(measurement) => Outcome::Measured(measurement),
            Err(e) => Outcome::Failed(format!("{e:#}").replace('\n', " ")),
        }
    }

    fn measured(&self) -> Option<&Measurement> {
        match self {
            Outcome::Measured(m) => Some(m),
            _ => None,
        }
    }
}

pub fn print_classification(cost: &anyhow::Result<Cost>) {
    match cost {
        Ok(cost) => {
            for line in format_classification(cost) {
                println!("{line}");
            }
        }
        Err(e) => println!(
            "classification: error: {}",
            format!("{e:#}").replace('\n', " ")
        ),
    }
}

pub fn print_table_header(opts: &RunOptions) {
    println!(
        "\npgbench: {} s per run, -j 2, -M {}, proxies in transaction mode with {POOL_SIZE} server connections\n",
        opts.duration.as_secs(),
        opts.protocol.pgbench_mode()
    );
    print_column_header();
}

/// The table's column names; every step's rows line up under them.
pub fn print_column_header() {
    println!(
        "{:<WORKLOAD_WIDTH$} {:<TARGET_WIDTH$} {:>NUMBER_WIDTH$} {:>NUMBER_WIDTH$} {:>NUMBER_WIDTH$}",
        "workload", "target", "TPS", "avg ms", "p99 ms"
    );
}

/// One row; `target` is the label in the target column (a [`Target::label`] or a [`Layout::label`]).
pub fn print_row(workload: &str, target: &str, outcome: &Outcome) {
    println!("{}", format_row(workload, target, outcome));
}

pub fn print_ratios(outcomes: &[(Target, Outcome)]) {
    for line in format_ratios(outcomes) {
        println!("{line}");
    }
}

pub fn print_memory(idle: usize, results: &[(&str, anyhow::Result<MemoryUse>)]) {
    for line in format_memory(idle, results) {
        println!("{line}");
    }
}

pub fn print_replica_header(opts: &RunOptions) {
    println!(
        "\nread scaling: pgbench -S, {} clients, {} s per run, -j 2, -M {}, pgroute in transaction mode with \
         {POOL_SIZE} server connections per backend, alone on the primary, then with reads on {} replicas\n",
        replicas::CLIENTS,
        opts.duration.as_secs(),
        opts.protocol.pgbench_mode(),
        replicas::REPLICAS
    );
    print_column_header();
}

pub fn print_prepared_header(duration: Duration) {
    println!(
        "\nprepared statements: pgbench -S, {} clients, {} s per run, -j 2, -M simple then -M prepared \
         through pgroute, -M prepared through PgBouncer, the proxies above (transaction mode, \
         {POOL_SIZE} server connections)\n",
        prepared::CLIENTS,
        duration.as_secs()
    );
    print_column_header();
}

pub fn print_prepared_ratio(runs: &[RowRun]) {
    for line in format_prepared_ratio(runs) {
        println!("{line}");
    }
}

pub fn print_replica_error(error: &anyhow::Error) {
    println!(
        "read scaling: error: {}",
        format!("{error:#}").replace('\n', " ")
    );
}

/// Where the transactions of the row above went.
pub fn print_served(served: &Result<Vec<(String, u64)>, String>) {
    println!("{}", format_served(served));
}

pub fn print_replica_scaling(runs: &[LayoutRun]) {
    for line in format_replica_scaling(runs) {
        println!("{line}");
    }
}

pub fn print_how_to_read() {
    println!(
        "\nHow to read: higher TPS and lower avg/p99 latency are better; ratio rows are pgroute divided by \
         the baseline, so TPS above 1.00x and p99 below 1.00x favour pgroute; with -C, avg includes \
         reconnect time and p99 (pgbench's per-transaction log, 10% sampled) does not; the read-scaling \
         ratio is pgroute with replicas divided by pgroute with the primary only; the prepared/simple \
         ratio is pgroute with -M prepared divided by pgroute with -M simple; the read-your-writes ratio \
         is pgroute with the delayed replica divided by pgroute with every read on the primary, and its TPS \
         counts the workload's statements (each its own transaction); classification is time per \
         statement in this process (lower is better); memory is the proxy's RSS growth per idle client \
         (lower is better). Runs shorter than 15 s (--quick) are noisy."
    );
}

fn format_classification(cost: &Cost) -> Vec<String> {
    let warm = cost.warm.micros();
    let cold = cost.cold.micros();
    vec![
        format!(
            "classification: warm {warm:.2} µs/statement (target < {} µs: {}), \
             cold {cold:.1} µs/statement (target < {} µs: {})",
            classify::WARM_TARGET_US,
            met(warm < classify::WARM_TARGET_US),
            classify::COLD_TARGET_US,
            met(cold < classify::COLD_TARGET_US),
        ),
        format!(
            "  warm: {} calls over {} cached statements; cold: {} calls, each an unseen read query \
             (parse + cache insert)",
            cost.warm.calls,
            classify::STATEMENTS.len(),
            cost.cold.calls
        ),
    ]
}

fn format_served(served: &Result<Vec<(String, u64)>, String>) -> String {
    let text = match served {
        Ok(nodes) => nodes
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("error: {e}"),
    };
    format!("{:<WORKLOAD_WIDTH$}   transactions committed: {text}", "")
}

/// The ratio row (TPS and p99, replicas over primary only), the verdict, and what the ratio means here.
fn format_replica_scaling(runs: &[LayoutRun]) -> Vec<String> {
    let find = |layout: Layout| {
        runs.iter()
            .find(|r| r.layout == layout)
            .and_then(|r| r.outcome.measured())
    };
    let (tps_cell, p99, verdict) = compare(
        find(Layout::PrimaryOnly),
        find(Layout::WithReplicas),
        replicas::TARGET_RATIO,
    );
    vec![
        ratio_row("2 replicas/primary", &tps_cell, &p99),
        format!(
            "read scaling: pgroute with {} replicas / pgroute primary only = {verdict}",
            replicas::REPLICAS
        ),
        "  On this 2-core machine all three servers, pgbench and pgroute share the same cores, so the \
         replicas add servers but hardly any CPU: the ratio mostly shows what routing costs, not what \
         more servers buy."
            .to_owned(),
    ]
}

/// The ratio row (TPS and p99, prepared over simple, both through pgroute) and the verdict.
fn format_prepared_ratio(runs: &[RowRun]) -> Vec<String> {
    let find = |protocol: Protocol| {
        runs.iter()
            .find(|r| r.row.target == Target::Pgroute && r.row.protocol == protocol)
            .and_then(|r| r.outcome.measured())
    };
    let (tps_cell, p99, verdict) = compare(
        find(Protocol::Simple),
        find(Protocol::Prepared),
        prepared::TARGET_RATIO,
    );
    vec![
        ratio_row("prepared/simple", &tps_cell, &p99),
        format!("prepared/simple through pgroute = {verdict}"),
    ]
}

/// `new` against `base`: the TPS ratio cell, the p99 ratio cell, and the verdict against `target`.
fn compare(
    base: Option<&Measurement>,
    new: Option<&Measurement>,
    target: f64,
) -> (String, String, String) {
    let tps = base
        .zip(new)
        .filter(|(b, _)| b.tps > 0.0)
        .map(|(b, n)| n.tps / b.tps);
    let p99 = ratio(new.and_then(|m| m.p99_ms), base.and_then(|m| m.p99_ms));
    let tps_cell = tps.map_or("n/a".to_owned(), |r| format!("{r:.2}x"));
    let verdict = match tps {
        Some(r) => format!("{r:.2}x TPS (target >= {target:.1}x: {})", met(r >= target)),
        None => format!("n/a (target >= {target:.1}x: not measured)"),
    };
    (tps_cell, p99, verdict)
}

/// A target's verdict word.
pub fn met(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "not met"
    }
}

fn format_row(workload: &str, target: &str, outcome: &Outcome) -> String {
    let cells = match outcome {
        Outcome::Measured(m) => format!(
            "{:>NUMBER_WIDTH$.1} {:>NUMBER_WIDTH$.3} {:>NUMBER_WIDTH$}",
            m.tps,
            m.avg_ms,
            m.p99_ms.map_or("-".to_owned(), |p| format!("{p:.3}"))
        ),
        Outcome::Failed(e) => format!("error: {e}"),
        Outcome::NotApplicable => format!("{:>NUMBER_WIDTH$}", "n/a"),
    };
    format!("{workload:<WORKLOAD_WIDTH$} {target:<TARGET_WIDTH$} {cells}")
}

/// `pgroute/PgBouncer` (TPS and p99) and `pgroute/direct` (TPS); `n/a` where a side has no number.
fn format_ratios(outcomes: &[(Target, Outcome)]) -> Vec<String> {
    let find = |target: Target| {
        outcomes
            .iter()
            .find(|(t, _)| *t == target)
            .and_then(|(_, o)| o.measured())
    };
    let pgroute = find(Target::Pgroute);
    let pgbouncer = find(Target::PgBouncer);
    let direct = find(Target::Direct);
    let tps = |base: Option<&Measurement>| ratio(pgroute.map(|m| m.tps), base.map(|m| m.tps));
    let p99 = ratio(
        pgroute.and_then(|m| m.p99_ms),
        pgbouncer.and_then(|m| m.p99_ms),
    );
    vec![
        ratio_row("pgroute/PgBouncer", &tps(pgbouncer), &p99),
        ratio_row("pgroute/direct", &tps(direct), ""),
        String::new(),
    ]
}

/// A ratio row: `label` in the target column, the ratios under TPS and p99.
pub fn ratio_row(label: &str, tps: &str, p99: &str) -> String {
    let row = format!(
        "{:<WORKLOAD_WIDTH$} {label:<TARGET_WIDTH$} {tps:>NUMBER_WIDTH$} {:>NUMBER_WIDTH$} {p99:>NUMBER_WIDTH$}",
        "", ""
    );
    row.trim_end().to_owned()
}

/// `value / base` as `1.23x`, or `n/a` when either is missing or the base is 0.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
        _ => "n/a".to_owned(),
    }
}

fn format_memory(idle: usize, results: &[(&str, anyhow::Result<MemoryUse>)]) -> Vec<String> {
    let mut lines = vec![
        format!("\nidle clients: {idle} per proxy (startup handshake done, then idle)\n"),
        format!(
            "{:<TARGET_WIDTH$} {:>12} {:>12} {:>10} {:>16}",
            "proxy", "RSS before", "RSS after", "clients", "KiB per client"
        ),
    ];
    for (name, result) in results {
        lines.push(match result {
            Ok(m) => format!(
                "{name:<TARGET_WIDTH$} {:>12} {:>12} {:>10} {:>16}",
                mib(m.before_kib),
                mib(m.after_kib),
                m.clients,
                m.kib_per_client()
                    .map_or("n/a".to_owned(), |k| format!("{k:.2}"))
            ),
            Err(e) => format!(
                "{name:<TARGET_WIDTH$} error: {}",
                format!("{e:#}").replace('\n', " ")
            ),
        });
    }
    let per_client = |name: &str| {
        results
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, r)| r.as_ref().ok())
            .and_then(MemoryUse::kib_per_client)
    };
    lines.push(format!(
        "{:<TARGET_WIDTH$} {:>12}",
        "pgroute/PgBouncer",
        ratio(per_client("pgroute"), per_client("PgBouncer"))
    ));
    lines
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(tps: f64, p99: f64) -> Outcome {
        Outcome::Measured(Measurement {
            tps,
            avg_ms: 1.0,
            p99_ms: Some(p99),
        })
    }

    #[test]
    fn ratios_divide_pgroute_by_the_baseline() {
        let outcomes = [
            (Target::Direct, measured(200.0, 1.0)),
            (Target::PgBouncer, measured(100.0, 4.0)),
            (Target::Pgroute, measured(150.0, 2.0)),
        ];
        let lines = format_ratios(&outcomes);
        let bouncer: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(bouncer, ["pgroute/PgBouncer", "1.50x", "0.50x"]);
        let direct: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(direct, ["pgroute/direct", "0.75x"]);
    }

    #[test]
    fn missing_sides_give_na_ratios() {
        let outcomes = [
            (Target::Direct, Outcome::NotApplicable),
            (Target::PgBouncer, measured(100.0, 4.0)),
            (Target::Pgroute, Outcome::Failed("boom".into())),
        ];
        let lines = format_ratios(&outcomes);
        let bouncer: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(bouncer, ["pgroute/PgBouncer", "n/a", "n/a"]);
        assert!(lines[1].ends_with("n/a"));
    }

    #[test]
    fn failed_rows_say_error_and_keep_the_message() {
        let row = format_row("w", "pgroute", &Outcome::Failed("refused".into()));
        assert!(row.contains("pgroute"));
        assert!(row.ends_with("error: refused"));
    }

    #[test]
    fn classification_says_whether_each_target_was_met() {
        let cost = Cost {
            warm: classify::PerCall {
                calls: 1_000_000,
                elapsed: std::time::Duration::from_millis(200),
            },
            cold: classify::PerCall {
                calls: 10_000,
                elapsed: std::time::Duration::from_secs(1),
            },
        };
        let lines = format_classification(&cost);
        assert_eq!(
            lines[0],
            "classification: warm 0.20 µs/statement (target < 1 µs: met), \
             cold 100.0 µs/statement (target < 50 µs: not met)"
        );
    }

    #[test]
    fn replica_ratio_divides_replicas_by_primary_only() {
        let runs = [
            LayoutRun {
                layout: Layout::PrimaryOnly,
                outcome: measured(100.0, 4.0),
                served: Ok(Vec::new()),
            },
            LayoutRun {
                layout: Layout::WithReplicas,
                outcome: measured(160.0, 2.0),
                served: Err("x".into()),
            },
        ];
        let lines = format_replica_scaling(&runs);
        let row: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(row, ["2", "replicas/primary", "1.60x", "0.50x"]);
        assert!(
            lines[1].ends_with("= 1.60x TPS (target >= 1.5x: met)"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn failed_replica_run_is_not_measured() {
        let runs = [LayoutRun {
            layout: Layout::WithReplicas,
            outcome: Outcome::Failed("refused".into()),
            served: Ok(vec![("replica1".into(), 3)]),
        }];
        let lines = format_replica_scaling(&runs);
        assert!(lines[1].contains("n/a (target >= 1.5x: not measured)"));
        assert!(format_served(&runs[0].served).ends_with("transactions committed: replica1 3"));
    }

    fn prepared_runs(simple: Outcome, prepared: Outcome) -> [RowRun; 3] {
        let [pgroute_simple, pgroute_prepared, pgbouncer] = prepared::Row::ALL;
        [
            RowRun {
                row: pgroute_simple,
                outcome: simple,
            },
            RowRun {
                row: pgroute_prepared,
                outcome: prepared,
            },
            RowRun {
                row: pgbouncer,
                outcome: Outcome::Failed("prepared statement does not exist".into()),
            },
        ]
    }

    #[test]
    fn prepared_ratio_divides_prepared_by_simple_through_pgroute() {
        let runs = prepared_runs(measured(100.0, 4.0), measured(130.0, 2.0));
        let lines = format_prepared_ratio(&runs);
        let row: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(row, ["prepared/simple", "1.30x", "0.50x"]);
        assert_eq!(
            lines[1],
            "prepared/simple through pgroute = 1.30x TPS (target >= 1.2x: met)"
        );
        let below =
            format_prepared_ratio(&prepared_runs(measured(100.0, 4.0), measured(119.0, 4.0)));
        assert!(
            below[1].ends_with("= 1.19x TPS (target >= 1.2x: not met)"),
            "{}",
            below[1]
        );
    }

    #[test]
    fn failed_prepared_run_is_not_measured() {
        let runs = prepared_runs(measured(100.0, 4.0), Outcome::Failed("refused".into()));
        let lines = format_prepared_ratio(&runs);
        assert_eq!(
            lines[1],
            "prepared/simple through pgroute = n/a (target >= 1.2x: not measured)"
        );
    }

    #[test]
    fn memory_ratio_is_per_client() {
        let results = [
            (
                "PgBouncer",
                Ok(MemoryUse {
                    before_kib: 1000,
                    after_kib: 3000,
                    clients: 1000,
                }),
            ),
            (
                "pgroute",
                Ok(MemoryUse {
                    before_kib: 1000,
                    after_kib: 2000,
                    clients: 1000,
                }),
            ),
        ];
        let lines = format_memory(1000, &results);
        assert!(lines[2].trim_end().ends_with("2.00"), "{}", lines[2]);
        assert!(lines[4].trim_end().ends_with("0.50x"), "{}", lines[4]);
    }
}
