//! `pgroute-operator`'s library: what the binary wires together.
//!
//! For now the `DatabaseProxy` custom resource ([`crd`]); the control plane the sidecars talk to
//! ([`control`]): an in-memory index of the topology per DatabaseProxy and the gRPC service that
//! streams it; the failover decision ([`failover`]) as a pure state machine; and the admission
//! webhook that injects the sidecar into application pods ([`webhook`]). The reconciler that probes
//! the instances and feeds them arrives with the rest of the operator issue.

pub mod control;
pub mod crd;
pub mod failover;
pub mod topology;
pub mod webhook;
