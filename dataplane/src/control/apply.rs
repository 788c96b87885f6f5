//! Puts a validated [`Topology`] in force: one `Proxy::reload` of the current configuration with the
//! snapshot's keys replaced, which swaps the replicas and the primary as a whole (sessions pick the new
//! topology up before their next transaction; nothing on the query path takes a lock).

use crate::control::Topology;
use crate::ops::{ReloadError, ReloadReport};
use crate::Proxy;

/// Why a valid snapshot still could not be applied (the configuration it makes is refused).
#[derive(Debug, thiserror::Error)]
#[error("the configuration this snapshot makes was refused")]
pub struct ApplyError(#[source] pub ReloadError);

/// Applies `topology`. Semantics:
/// - a primary different from the one in force is a failover: `Proxy::follow_primary` ends the
///   transactions running on the old one (it is being demoted or is gone: a write there could be
///   lost) before the new configuration goes in;
/// - `PRIMARY_UNAVAILABLE` / `SWITCHOVER_IN_PROGRESS` mark the primary unavailable, so writes wait
///   up to `failover.timeout` for a snapshot that makes it available again; reads go on;
/// - keys the sidecar cannot change while running (e.g. `routing.load_balancing`) keep their value
///   and are listed in the report's `needs_restart`;
/// - `draining` (the DatabaseProxy is being deleted) closes every idle server connection once, when
///   it first appears; serving goes on with this topology.
pub fn apply(proxy: &Proxy, topology: &Topology) -> Result<ReloadReport, ApplyError> {
    let current = proxy.config();
    let config = topology.config(&current);
    // Refuse before anything moves.
    config
        .validate()
        .map_err(|e| ApplyError(ReloadError::Invalid(e)))?;
    let had_topology = current.backends.primary.is_some();
    let was_draining = proxy.control_status().draining();
    if had_topology && proxy.primary().address() != topology.primary {
        proxy.follow_primary(topology.primary.clone());
    }
    let report = proxy.reload(config).map_err(ApplyError)?;
    proxy
        .primary()
        .set_available(topology.failover.primary_available());
    proxy.control_status().set_draining(topology.draining);
    if topology.draining && !was_draining {
        proxy.pools().drop_all_idle();
    }
    Ok(report)
}
