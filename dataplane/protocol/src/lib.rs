//! PostgreSQL v3 wire protocol framing for pgroute.
//!
//! Pure functions over byte buffers: no sockets, no async, so the codec can be unit tested and fuzzed on
//! its own. The proxy forwards frames as the bytes it read (`bytes::Bytes` slices of its read buffer) and
//! only looks inside the few messages it must understand; this crate provides the framing that finds frame
//! boundaries, typed views of those few messages, and builders for what the proxy itself says.
//!
//! Frontend (client → server) and backend (server → client) messages are distinct types on purpose: the
//! same tag byte means different things in each direction (`'D'` is Describe one way, DataRow the other).

pub mod backend;
pub mod error;
pub mod frame;
pub mod frontend;
pub mod startup;

pub use error::ProtocolError;
pub use frame::{FrameReader, Limits};
