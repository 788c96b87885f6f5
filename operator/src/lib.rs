//! `pgroute-operator`'s library: what the binary wires together.
//!
//! For now the `DatabaseProxy` custom resource ([`crd`]); the control plane the sidecars talk to
//! ([`control`]): an in-memory index of the topology per DatabaseProxy and the gRPC service that
//! streams it; the failover decision ([`failover`]) as a pure state machine; the operator's view of
//! the database ([`topology`]); and the admission webhook that injects the sidecar ([`webhook`]).

pub mod control;
pub mod crd;
pub mod failover;
pub mod topology;
pub mod webhook;
