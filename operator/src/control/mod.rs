//! The control plane sidecars subscribe to: [`TopologyIndex`] holds the current snapshot of each
//! DatabaseProxy and fans it out; [`ControlService`] is the `pgroute.control.v1.Control` gRPC service
//! that streams it and records what each sidecar reports; [`serve`] runs it on a socket.
//!
//! The index is plain data and tokio channels (tested without a network); the service only translates
//! between it and gRPC.

mod index;
mod reports;
mod service;

pub use index::{ProxyKey, TopologyIndex};
pub use reports::{Reports, SidecarId, SidecarState};
pub use service::{bind_and_serve, serve, ControlService, ServeOptions};
