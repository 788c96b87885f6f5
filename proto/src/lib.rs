//! The control-plane API between `pgroute-operator` and the `pgroute` sidecars: the
//! `pgroute.control.v1` protobuf package (`proto/pgroute/control/v1/control.proto`, where every field
//! is documented) compiled to prost messages and a tonic client and server.
//!
//! Generated types stop at the edges: the operator and the sidecar convert them to their own types
//! (and validate) as soon as they arrive.

/// `pgroute.control.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("pgroute.control.v1");
}
