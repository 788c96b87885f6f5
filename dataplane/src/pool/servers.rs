//! Which backend connections a pool has open, for the admin console's `SHOW SERVERS`.
//!
//! Each pooled connection carries a [`Listed`] entry from the moment it is opened until it is dropped,
//! so the list can never show a connection that is gone, whichever path closed it. The mutex is taken
//! only when a connection opens or closes; checkout and checkin flip an atomic in the entry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One open backend connection.
#[derive(Debug)]
pub struct ServerInfo {
    /// Unique among the proxy's pool connections (per pool list, counted from 1).
    pub id: u64,
    /// The backend's process id (from its BackendKeyData).
    pub pid: u32,
    pub addr: SocketAddr,
    pub local_addr: Option<SocketAddr>,
    pub tls: bool,
    /// Microseconds since the Unix epoch.
    pub connect_time: u64,
    active: AtomicBool,
    /// Last checkout or checkin, µs since the Unix epoch.
    request_time: AtomicU64,
}

impl ServerInfo {
    /// Checked out by a client right now.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn request_time(&self) -> u64 {
        self.request_time.load(Ordering::Relaxed)
    }
}

/// The open connections of one pool.
#[derive(Debug, Default)]
pub struct ServerList {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Arc<ServerInfo>>>,
}

impl ServerList {
    /// Lists a connection that just logged in; it leaves the list when the returned entry drops.
    pub(crate) fn add(
        self: &Arc<Self>,
        pid: u32,
        addr: SocketAddr,
        local_addr: Option<SocketAddr>,
        tls: bool,
    ) -> Listed {
        let now = crate::clients::now_micros();
        let info = Arc::new(ServerInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            pid,
            addr,
            local_addr,
            tls,
            connect_time: now,
            active: AtomicBool::new(false),
            request_time: AtomicU64::new(now),
        });
        self.lock().insert(info.id, info.clone());
        Listed {
            list: self.clone(),
            info,
        }
    }

    /// A snapshot, oldest connection first.
    pub fn all(&self) -> Vec<Arc<ServerInfo>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ServerInfo>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection's place in its pool's list.
#[derive(Debug)]
pub(crate) struct Listed {
    list: Arc<ServerList>,
    info: Arc<ServerInfo>,
}

impl Listed {
    /// Checked out (`true`) or back in the pool.
    pub(crate) fn set_active(&self, active: bool) {
        self.info.active.store(active, Ordering::Relaxed);
        self.info
            .request_time
            .store(crate::clients::now_micros(), Ordering::Relaxed);
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.list.lock().remove(&self.info.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_leave_when_dropped_and_track_checkout() {
        let list = Arc::new(ServerList::default());
        let addr: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
        let a = list.add(7, addr, None, false);
        let b = list.add(8, addr, None, false);
        a.set_active(true);
        let all = list.all();
        assert_eq!(all.iter().map(|s| s.pid).collect::<Vec<_>>(), [7, 8]);
        assert!(all[0].is_active() && !all[1].is_active());
        drop(a);
        assert_eq!(list.all().len(), 1);
        drop(b);
        assert!(list.all().is_empty());
    }
}
