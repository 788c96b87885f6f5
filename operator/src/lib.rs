//! `pgroute-operator`'s library: what the binary wires together.
//!
//! For now the `DatabaseProxy` custom resource ([`crd`]) and the control plane the sidecars talk to
//! ([`control`]): an in-memory index of the topology per DatabaseProxy and the gRPC service that
//! streams it, and the failover decision ([`failover`]) as a pure state machine. The reconciler that
//! probes the instances and feeds both arrives with the rest of the operator issue.

pub mod control;
pub mod crd;
pub mod failover;
pub mod topology;
