//! Background checks that feed the topology: health checks with circuit breakers (`check`, `backend`,
//! `breaker`), the failover decision they drive (`failover`), and the replication-lag monitor (`lag`).

pub mod backend;
pub mod breaker;
pub mod check;
pub mod failover;
pub mod lag;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use backend::{BackendHealth, Role, Transition};
pub use breaker::BreakerState;

use crate::config::{BackendAddr, HealthConfig};

/// The health of every backend pgroute knows, created on first use; pools and the router share the
/// entries.
#[derive(Debug)]
pub struct Backends {
    config: HealthConfig,
    map: Mutex<HashMap<BackendAddr, Arc<BackendHealth>>>,
    /// Configured backends in order (primary first, then replicas): what health checks visit.
    order: Mutex<Vec<BackendAddr>>,
}

impl Backends {
    pub fn new(
        config: HealthConfig,
        configured: impl IntoIterator<Item = BackendAddr>,
    ) -> Backends {
        let backends = Backends {
            config,
            map: Mutex::new(HashMap::new()),
            order: Mutex::new(Vec::new()),
        };
        for addr in configured {
            backends.get(&addr);
        }
        backends
    }

    /// The entry for `addr`, created (and added to the checked set) on first use.
    pub fn get(&self, addr: &BackendAddr) -> Arc<BackendHealth> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = map.get(addr) {
            return h.clone();
        }
        let h = BackendHealth::new(addr.clone(), &self.config);
        map.insert(addr.clone(), h.clone());
        self.order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(addr.clone());
        h
    }

    /// Stops checking `addr` (it left the configuration). Pools still holding its entry keep it.
    pub fn forget(&self, addr: &BackendAddr) {
        self.order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|a| a != addr);
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(addr);
    }

    /// Every backend, in the order they became known.
    pub fn all(&self) -> Vec<Arc<BackendHealth>> {
        let order = self
            .order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        order.iter().map(|a| self.get(a)).collect()
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }
}
