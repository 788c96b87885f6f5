//! `pgroute-operator`'s library: what the binary wires together.
//!
//! For now the `DatabaseProxy` custom resource ([`crd`]) and the control plane the sidecars talk to
//! ([`control`]): an in-memory index of the topology per DatabaseProxy and the gRPC service that
//! streams it, the failover decision ([`failover`]) as a pure state machine, and the operator's view
//! of the database ([`topology`]: resolve the target, probe the instances, judge the replicas, build
//! the snapshot). The reconciler that runs them and feeds the index arrives with the rest of the
//! operator issue.

pub mod control;
pub mod crd;
pub mod failover;
pub mod topology;
