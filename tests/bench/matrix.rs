//! Which workloads run against which targets, in what order.
//!
//! Each workload runs against every target it applies to, one after the other, and its rows (plus the
//! ratio rows) are printed as soon as the workload is done, so a long run shows progress. A target that did
//! not start, or a run that fails, becomes an `error:` row; the other rows still run.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::Protocol;
use crate::pgbench::{Pgbench, RunSpec, Script};
use crate::report::{self, Outcome};

/// Where pgbench connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Direct,
    PgBouncer,
    Pgroute,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Direct, Target::PgBouncer, Target::Pgroute];

    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::PgBouncer => "PgBouncer",
            Target::Pgroute => "pgroute",
        }
    }
}

/// The address of each target, or why it is not available.
pub struct Targets {
    pub direct: Result<SocketAddr, String>,
    pub pgbouncer: Result<SocketAddr, String>,
    pub pgroute: Result<SocketAddr, String>,
}

impl Targets {
    pub fn get(&self, target: Target) -> &Result<SocketAddr, String> {
        match target {
            Target::Direct => &self.direct,
            Target::PgBouncer => &self.pgbouncer,
            Target::Pgroute => &self.pgroute,
        }
    }
}

/// Settings shared by every run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub duration: Duration,
    pub protocol: Protocol,
}

/// One row group of the table.
#[derive(Debug)]
pub struct Workload {
    pub name: &'static str,
    /// Short form for log directory names.
    pub tag: &'static str,
    pub script: Script,
    pub clients: u32,
    pub reconnect: bool,
    /// Whether PostgreSQL can take this many clients itself (`max_connections` is 300).
    pub direct: bool,
}

pub const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "select-only, 50 clients",
        tag: "select-50",
        script: Script::SelectOnly,
        clients: 50,
        reconnect: false,
        direct: true,
    },
    Workload {
        name: "TPC-B-like, 50 clients",
        tag: "tpcb-50",
        script: Script::TpcbLike,
        clients: 50,
        reconnect: false,
        direct: true,
    },
    Workload {
        name: "select-only, 1000 clients",
        tag: "select-1000",
        script: Script::SelectOnly,
        clients: 1000,
        reconnect: false,
        direct: false,
    },
    Workload {
        name: "select-only -C (reconnect), 50 clients",
        tag: "select-50-reconnect",
        script: Script::SelectOnly,
        clients: 50,
        reconnect: true,
        direct: true,
    },
];

/// Runs every workload against every target and prints the table as it goes.
pub fn run(pgbench: &Pgbench, targets: &Targets, opts: &RunOptions) {
    report::print_table_header(opts);
    for workload in &WORKLOADS {
        let outcomes = Target::ALL.map(|target| {
            let outcome = run_one(pgbench, targets, opts, workload, target);
            report::print_row(workload.name, target.label(), &outcome);
            (target, outcome)
        });
        report::print_ratios(&outcomes);
    }
}

fn run_one(
    pgbench: &Pgbench,
    targets: &Targets,
    opts: &RunOptions,
    workload: &Workload,
    target: Target,
) -> Outcome {
    if target == Target::Direct && !workload.direct {
        return Outcome::NotApplicable;
    }
    let addr = match targets.get(target) {
        Ok(addr) => *addr,
        Err(e) => return Outcome::Failed(e.clone()),
    };
    let spec = RunSpec {
        addr,
        clients: workload.clients,
        script: workload.script,
        reconnect: workload.reconnect,
        duration: opts.duration,
        protocol: opts.protocol,
        tag: format!("{}-{}", workload.tag, target.label()),
    };
    Outcome::from_run(pgbench.run(&spec))
}
