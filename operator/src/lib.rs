//! `pgroute-operator`'s library: what the binary wires together ([`run`]).
//!
//! The `DatabaseProxy` custom resource ([`crd`]); the reconciler ([`reconcile`]) that resolves each
//! one's database ([`topology`]: target, probes, replica eligibility, the sidecars' snapshot), runs
//! the failover decision ([`failover`], a pure state machine) and writes status, under leader
//! election ([`leader`]); the control plane the sidecars subscribe to ([`control`]); the admission
//! webhook that injects the sidecar ([`webhook`]); and the operator's own metrics and probes
//! ([`metrics`], [`http`]).

pub mod control;
pub mod crd;
pub mod failover;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod topology;
pub mod webhook;

/// `e` and its sources, `: `-separated: one log line or condition message that says everything.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}
