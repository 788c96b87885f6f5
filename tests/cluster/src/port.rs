//! Picking a loopback port nobody is listening on.
//!
//! The port is released before the server binds it, so another process can take it in between; callers
//! retry the start with a fresh port when that happens.

use std::net::{Ipv4Addr, TcpListener};

use crate::ClusterError;

/// A port that was free on 127.0.0.1 a moment ago.
pub(crate) fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| ClusterError::io("bind 127.0.0.1:0 to find a free port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ClusterError::io("read the address of a bound listener", e))?;
    Ok(addr.port())
}
