//! The control-plane API between `pgroute-operator` and the `pgroute` sidecars.
//!
//! Empty on purpose: the `pgroute.control.v1` protobuf package and its generated code arrive with the
//! control-plane issue. The crate exists now so the workspace layout is the one DESIGN.md fixes.
