//! Prepared statements: pgbench select-only with `-M prepared` against `-M simple` through pgroute, with
//! PgBouncer beside it.
//!
//! The issue asks that prepared statements through pgroute give at least [`TARGET_RATIO`] times the
//! select-only throughput of the simple protocol through pgroute: a prepared statement skips the parse on
//! the server, and pgroute keeps a prepared statement's routing decision, so it skips the classifier's
//! parse too. The step runs right after the matrix against the same proxies (primary only, transaction
//! mode, the same pool), so its `-M simple` row repeats the matrix's select-only row at 50 clients under
//! the same conditions.
//!
//! PgBouncer runs `-M prepared` too, as the issue asks, although it cannot: in transaction mode it hands
//! each transaction to any server connection, and before 1.21 (`max_prepared_statements`; Debian ships
//! 1.18) it does not carry prepared statements across them, so pgbench's statements go missing. Its row
//! is the error pgbench reported, as any failed run is; it takes no part in the ratio.

use std::time::Duration;

use crate::cli::Protocol;
use crate::matrix::{Target, Targets};
use crate::pgbench::{Pgbench, RunSpec, Script};
use crate::report::{self, Outcome};

/// The target: TPS with `-M prepared` over TPS with `-M simple`, both through pgroute.
pub const TARGET_RATIO: f64 = 1.2;
/// pgbench clients, as in the matrix's select-only row.
pub const CLIENTS: u32 = 50;

/// One row of the step: where pgbench connects and how it sends statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub target: Target,
    pub protocol: Protocol,
}

impl Row {
    /// The baseline first, then what it is compared with, then PgBouncer.
    pub const ALL: [Row; 3] = [
        Row {
            target: Target::Pgroute,
            protocol: Protocol::Simple,
        },
        Row {
            target: Target::Pgroute,
            protocol: Protocol::Prepared,
        },
        Row {
            target: Target::PgBouncer,
            protocol: Protocol::Prepared,
        },
    ];

    /// The workload column: the protocol is what differs between the rows, so it goes there.
    pub fn workload(self) -> String {
        format!(
            "select-only -M {}, {CLIENTS} clients",
            self.protocol.pgbench_mode()
        )
    }
}

/// One row's result.
#[derive(Debug)]
pub struct RowRun {
    pub row: Row,
    pub outcome: Outcome,
}

/// Runs every row for `duration` each, printing each as it finishes, then the ratio and the verdict.
pub fn run(pgbench: &Pgbench, targets: &Targets, duration: Duration) {
    report::print_prepared_header(duration);
    let runs = Row::ALL.map(|row| {
        let outcome = run_row(pgbench, targets, duration, row);
        report::print_row(&row.workload(), row.target.label(), &outcome);
        RowRun { row, outcome }
    });
    report::print_prepared_ratio(&runs);
}

fn run_row(pgbench: &Pgbench, targets: &Targets, duration: Duration, row: Row) -> Outcome {
    let addr = match targets.get(row.target) {
        Ok(addr) => *addr,
        Err(e) => return Outcome::Failed(e.clone()),
    };
    let spec = RunSpec {
        addr,
        clients: CLIENTS,
        script: Script::SelectOnly,
        reconnect: false,
        duration,
        protocol: row.protocol,
        tag: format!(
            "prepared-step-{}-{}",
            row.protocol.pgbench_mode(),
            row.target.label()
        ),
    };
    Outcome::from_run(pgbench.run(&spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_fit_the_workload_column_and_name_the_protocol() {
        for row in Row::ALL {
            let workload = row.workload();
            assert!(workload.len() <= report::WORKLOAD_WIDTH, "{workload}");
            assert!(workload.contains(row.protocol.pgbench_mode()), "{workload}");
        }
    }
}
