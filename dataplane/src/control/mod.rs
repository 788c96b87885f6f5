//! Managed mode: the sidecar follows the operator's control plane (`[control]`, `--control-plane`).
//!
//! [`client`] keeps one `Watch` stream open (reconnecting with jittered exponential [`backoff`]);
//! each snapshot is converted and validated ([`snapshot`]), then applied atomically by [`apply`]
//! (`Proxy::follow_primary`, `Proxy::reload`, which swaps the topology sessions read per transaction:
//! no lock on the query path), and reported back. A bad snapshot is rejected with its reason and the
//! previous topology stays in force; so does the last good one while the control plane is
//! unreachable. [`ControlStatus`] says how that is going, for `/readyz` and metrics.

mod apply;
pub mod backoff;
mod client;
pub mod snapshot;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, Weak};

pub use apply::{apply, ApplyError};
pub use snapshot::{SnapshotError, Topology};

use crate::config::BackendAddr;
use crate::Proxy;

/// Stands in for the primary until the first snapshot names one (managed mode with no
/// `backends.primary`). `.invalid` never resolves; logins are refused before anything would dial it.
pub(crate) fn placeholder_primary() -> BackendAddr {
    BackendAddr::try_from("awaiting-control-plane.invalid:5432".to_owned())
        .unwrap_or_else(|_| unreachable!("a valid literal address"))
}

/// The control-plane link as seen by the sidecar; `Proxy::control_status` hands it out. Metrics and
/// `/readyz` read [`ControlStatus::state`]: in managed mode, ready means a topology is in force
/// (`!awaiting_first_snapshot`); `connected == false` with a topology in force means "serving the
/// last good snapshot" (degraded, still ready).
#[derive(Debug, Default)]
pub struct ControlStatus {
    managed: bool,
    connected: AtomicBool,
    /// Version in force (0: none yet).
    applied: AtomicU64,
    /// No topology at all yet: logins are refused with 57P03.
    awaiting: AtomicBool,
    /// The snapshot in force says the DatabaseProxy is being deleted.
    draining: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`ControlStatus`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlState {
    /// Following a control plane (`control.url` set).
    pub managed: bool,
    /// A `Watch` stream is open right now.
    pub connected: bool,
    /// The snapshot version in force, if any was applied.
    pub applied_version: Option<u64>,
    /// Clients are refused until the first snapshot (no `backends.primary` in the file).
    pub awaiting_first_snapshot: bool,
    /// The DatabaseProxy is being deleted: this topology is the last one the operator sends.
    pub draining: bool,
    /// The last connection failure or rejected snapshot, until the next success.
    pub last_error: Option<String>,
}

impl ControlStatus {
    pub(crate) fn new(managed: bool, awaiting_first_snapshot: bool) -> ControlStatus {
        ControlStatus {
            managed,
            awaiting: AtomicBool::new(awaiting_first_snapshot),
            ..ControlStatus::default()
        }
    }

    pub fn state(&self) -> ControlState {
        let applied = self.applied.load(Ordering::Acquire);
        ControlState {
            managed: self.managed,
            connected: self.connected.load(Ordering::Acquire),
            applied_version: (applied > 0).then_some(applied),
            awaiting_first_snapshot: self.awaiting_first_snapshot(),
            draining: self.draining(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// True until a first snapshot is in force, when the file names no primary.
    pub fn awaiting_first_snapshot(&self) -> bool {
        self.awaiting.load(Ordering::Acquire)
    }

    /// The version in force (0: none).
    pub fn applied_version(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The snapshot in force says the DatabaseProxy is being deleted.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    fn set_applied(&self, version: u64) {
        self.applied.store(version, Ordering::Release);
        self.awaiting.store(false, Ordering::Release);
    }

    fn set_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }
}

/// The running control-plane task; dropping it stops the task.
#[derive(Debug)]
pub struct ControlTask(tokio::task::JoinHandle<()>);

impl Drop for ControlTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts following the control plane in `proxy`'s `[control]` (which must be enabled).
pub fn spawn(proxy: Weak<Proxy>) -> ControlTask {
    ControlTask(tokio::spawn(client::run(proxy)))
}
