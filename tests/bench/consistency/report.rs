//! What the read-your-writes step prints, in the table of the other steps: a row per layout with what
//! its clients saw beneath it, then the ratio row and the verdict on the target (no stale read).
//!
//! Formatting is pure (`format_*` return strings) so the layout and the arithmetic are unit-tested; the
//! `print_*` wrappers only write to stdout. Row, ratio and column helpers are the crate's [`report`].

use std::time::Duration;

use super::workload::{self, Tally};
use super::{Layout, LayoutRun, MAX_REPLICA_LAG, REPLICA_DELAY_SECS};
use crate::proxies::POOL_SIZE;
use crate::report::{self, Outcome, WORKLOAD_WIDTH};

/// Writes per client within one replica delay from which the note on where reads went applies: with
/// writes at random, the chance of none in the last delay is then below 1% (e^-5).
const BUSY_WRITES: f64 = 5.0;

pub fn print_header(duration: Duration) {
    println!(
        "\nread-your-writes: {} clients, {}% writes (UPDATE kv ... RETURNING v) and {}% reads (SELECT v) of \
         rows each client owns, tokio-postgres prepared statements, {} s per run; one replica applying \
         WAL {REPLICA_DELAY_SECS} s late (recovery_min_apply_delay); pgroute in transaction mode with \
         {POOL_SIZE} server connections per backend and consistency.max_replica_lag = {MAX_REPLICA_LAG}, \
         alone on the primary, then with the delayed replica\n",
        workload::CLIENTS,
        workload::WRITE_PERCENT,
        100 - workload::WRITE_PERCENT,
        duration.as_secs(),
    );
    report::print_column_header();
}

pub fn print_error(error: &anyhow::Error) {
    println!(
        "read-your-writes: error: {}",
        format!("{error:#}").replace('\n', " ")
    );
}

/// The layout's row, then where its reads went and what its clients saw.
pub fn print_run(run: &LayoutRun) {
    report::print_row(&workload_label(), run.layout.label(), &outcome(run));
    for line in format_details(run) {
        println!("{line}");
    }
}

pub fn print_summary(runs: &[LayoutRun]) {
    for line in format_summary(runs) {
        println!("{line}");
    }
}

fn workload_label() -> String {
    format!(
        "{}/{} read/write, {} clients",
        100 - workload::WRITE_PERCENT,
        workload::WRITE_PERCENT,
        workload::CLIENTS
    )
}

fn outcome(run: &LayoutRun) -> Outcome {
    match &run.workload {
        Ok(workload) => Outcome::Measured(workload.measurement()),
        Err(e) => Outcome::Failed(e.clone()),
    }
}

/// Under a measured row: reads per node (with shares), then stale reads, writes and errors.
fn format_details(run: &LayoutRun) -> Vec<String> {
    let Ok(workload) = &run.workload else {
        return Vec::new();
    };
    let indent = format!("{:<WORKLOAD_WIDTH$}  ", "");
    vec![
        format!("{indent} reads served: {}", format_reads(&run.reads)),
        format!("{indent} {}", format_tally(&workload.tally)),
    ]
}

fn format_reads(reads: &Result<Vec<(String, u64)>, String>) -> String {
    match reads {
        Ok(nodes) => {
            let total: u64 = nodes.iter().map(|(_, n)| n).sum();
            nodes
                .iter()
                .map(|(name, n)| match share(*n, total) {
                    Some(pct) => format!("{name} {n} ({pct:.1}%)"),
                    None => format!("{name} {n}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        Err(e) => format!("error: {e}"),
    }
}

fn format_tally(tally: &Tally) -> String {
    let mut text = format!(
        "stale reads: {} of {} reads; writes {}; errors {}",
        tally.stale, tally.reads, tally.writes, tally.errors
    );
    if let Some(first) = &tally.first_error {
        text.push_str(&format!(" (first: {first})"));
    }
    text
}

/// The ratio row (delayed replica over primary only, TPS and p99), the verdict line, and why reads went
/// where they did.
fn format_summary(runs: &[LayoutRun]) -> Vec<String> {
    let find = |layout: Layout| {
        runs.iter()
            .find(|r| r.layout == layout)
            .and_then(|r| r.workload.as_ref().ok())
    };
    let base = find(Layout::PrimaryOnly).map(|w| w.measurement());
    let delayed = find(Layout::DelayedReplica);
    let new = delayed.map(|w| w.measurement());
    let tps = report::ratio(new.map(|m| m.tps), base.map(|m| m.tps));
    let p99 = report::ratio(new.and_then(|m| m.p99_ms), base.and_then(|m| m.p99_ms));
    let stale = match delayed.map(|w| &w.tally) {
        Some(tally) if tally.reads > 0 => format!(
            "{} stale reads in {} reads (target 0: {})",
            tally.stale,
            tally.reads,
            report::met(tally.stale == 0)
        ),
        _ => "stale reads not measured (target 0: not measured)".to_owned(),
    };
    let mut lines = vec![
        report::ratio_row("replica/primary", &tps, &p99),
        format!(
            "read-your-writes with {REPLICA_DELAY_SECS} s lag: {stale}; throughput {tps} of all reads on \
             the primary"
        ),
    ];
    lines.extend(delayed.and_then(format_why));
    lines
}

/// When each client wrote many times within the replica's delay ([`BUSY_WRITES`] or more): a write of its
/// own was nearly always unapplied, so its reads stayed on the primary and the ratio is the cost of
/// read-your-writes rather than what the replica adds.
fn format_why(delayed: &workload::Workload) -> Option<String> {
    let secs = delayed.elapsed.as_secs_f64();
    let per_client = delayed.tally.writes as f64 / secs / workload::CLIENTS as f64;
    (secs > 0.0 && per_client * REPLICA_DELAY_SECS as f64 >= BUSY_WRITES).then(|| {
        format!(
            "  Each client wrote {per_client:.0} times a second, so a write the replica \
             ({REPLICA_DELAY_SECS} s behind) had not applied was nearly always pending and read-your-writes \
             kept that client's reads on the primary (reads served above): the ratio shows what tracking \
             each write's WAL position costs, not what a replica adds."
        )
    })
}

fn share(part: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| part as f64 * 100.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(layout: Layout, tps: u32, stale: u64) -> LayoutRun {
        LayoutRun {
            layout,
            workload: Ok(workload::Workload::of_reads(tps, stale)),
            reads: Ok(vec![("primary".into(), 75), ("replica1".into(), 25)]),
        }
    }

    #[test]
    fn the_verdict_counts_stale_reads_and_divides_by_the_primary_only_run() {
        let runs = [
            run(Layout::PrimaryOnly, 100, 0),
            run(Layout::DelayedReplica, 105, 0),
        ];
        let lines = format_summary(&runs);
        let row: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(row[..2], ["replica/primary", "1.05x"]);
        assert_eq!(
            lines[1],
            "read-your-writes with 1 s lag: 0 stale reads in 105 reads (target 0: met); \
             throughput 1.05x of all reads on the primary"
        );
        let stale = format_summary(&[run(Layout::DelayedReplica, 50, 2)]);
        assert_eq!(
            stale[1],
            "read-your-writes with 1 s lag: 2 stale reads in 50 reads (target 0: not met); \
             throughput n/a of all reads on the primary"
        );
    }

    #[test]
    fn a_failed_run_is_not_measured() {
        let runs = [
            run(Layout::PrimaryOnly, 100, 0),
            LayoutRun {
                layout: Layout::DelayedReplica,
                workload: Err("not started".into()),
                reads: Err("no workload ran".into()),
            },
        ];
        let lines = format_summary(&runs);
        assert!(
            lines[1].contains("stale reads not measured"),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("throughput n/a"), "{}", lines[1]);
        assert!(format_details(&runs[1]).is_empty());
    }

    #[test]
    fn details_show_reads_per_node_and_what_the_clients_saw() {
        let lines = format_details(&run(Layout::DelayedReplica, 100, 1));
        assert!(
            lines[0].ends_with("reads served: primary 75 (75.0%), replica1 25 (25.0%)"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("stale reads: 1 of 100 reads; writes 0; errors 0"),
            "{}",
            lines[1]
        );
        assert!(format_reads(&Err("boom".into())).ends_with("error: boom"));
    }

    #[test]
    fn the_why_note_needs_writes_more_often_than_the_delay() {
        let mut busy = workload::Workload::of_reads(100, 0);
        busy.tally.writes = 64 * workload::CLIENTS as u64;
        let note = format_why(&busy);
        assert!(
            note.as_deref()
                .is_some_and(|n| n.starts_with("  Each client wrote 64 times a second")),
            "{note:?}"
        );
        let idle = workload::Workload::of_reads(100, 0);
        assert_eq!(format_why(&idle), None);
    }

    #[test]
    fn the_workload_label_fits_its_column() {
        assert_eq!(workload_label(), "90/10 read/write, 32 clients");
        assert!(workload_label().len() <= WORKLOAD_WIDTH);
    }
}
