//! `pgroute-operator`'s library: what the binary wires together.
//!
//! For now the `DatabaseProxy` custom resource ([`crd`]) and the control plane the sidecars talk to
//! ([`control`]): an in-memory index of the topology per DatabaseProxy and the gRPC service that
//! streams it. The reconciler that feeds the index arrives with the operator issue.

pub mod control;
pub mod crd;
