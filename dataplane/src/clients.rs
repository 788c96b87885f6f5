//! Who is connected: one entry per logged-in client, for the admin console's `SHOW CLIENTS` and
//! `SHOW POOLS` (and metrics).
//!
//! Entries are keyed by the client's cancel pid (the proxy's own BackendKeyData, unique while the
//! client is connected), so insert and remove are O(1) under a mutex taken only at login and close.
//! What changes while the client works (idle, waiting for a connection, linked to one) is atomics in
//! the entry, written once or twice per transaction and never under a lock: the console reads a
//! snapshot that may be a transaction old, which is all a report needs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a client is doing, in PgBouncer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Logged in, between transactions (no backend connection).
    Idle,
    /// Waiting for a backend connection (queued, or held by PAUSE).
    Waiting,
    /// Linked to a backend connection (running a transaction, or holding one in session mode).
    Active,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }

    fn from_u8(v: u8) -> ClientState {
        match v {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }
}

/// What is known of a client at login; fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ClientLogin {
    pub pid: u32,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub addr: Option<SocketAddr>,
    pub local_addr: Option<SocketAddr>,
    pub tls: bool,
    /// An admin console session (counted apart from pools).
    pub admin: bool,
}

/// One connected client.
#[derive(Debug)]
pub struct ClientInfo {
    pub login: ClientLogin,
    /// Microseconds since the Unix epoch.
    pub connect_time: u64,
    state: AtomicU8,
    /// When the client last started a transaction (µs since the Unix epoch; 0: never).
    request_time: AtomicU64,
    /// Backend pid of the connection the client is linked to (0: none).
    server_pid: AtomicU32,
}

impl ClientInfo {
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn request_time(&self) -> u64 {
        self.request_time.load(Ordering::Relaxed)
    }

    /// The backend pid of the connection this client is linked to, if any.
    pub fn server_pid(&self) -> Option<u32> {
        match self.server_pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }
}

/// Every logged-in client.
#[derive(Debug, Default)]
pub struct Clients {
    entries: Mutex<HashMap<u32, Arc<ClientInfo>>>,
}

impl Clients {
    /// Adds a client; the returned handle removes it on drop.
    pub fn register(self: &Arc<Self>, login: ClientLogin) -> ClientHandle {
        let info = Arc::new(ClientInfo {
            connect_time: now_micros(),
            state: AtomicU8::new(ClientState::Idle as u8),
            request_time: AtomicU64::new(0),
            server_pid: AtomicU32::new(0),
            login,
        });
        self.lock().insert(info.login.pid, info.clone());
        ClientHandle {
            clients: self.clone(),
            info,
        }
    }

    /// A snapshot of every client, sorted by connect time.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by_key(|c| (c.connect_time, c.login.pid));
        v
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<ClientInfo>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A client's entry; removed when dropped (the session ends).
#[derive(Debug)]
pub struct ClientHandle {
    clients: Arc<Clients>,
    info: Arc<ClientInfo>,
}

impl ClientHandle {
    pub fn info(&self) -> &ClientInfo {
        &self.info
    }

    /// The client starts a transaction: it waits for a connection until [`Activity::linked`]; when the
    /// returned guard is dropped (the transaction ended) it is idle again, or stays linked when
    /// `keep_link` (session mode holds the connection between transactions).
    pub fn waiting(&self, keep_link: bool) -> Activity {
        self.info
            .request_time
            .store(now_micros(), Ordering::Relaxed);
        self.info
            .state
            .store(ClientState::Waiting as u8, Ordering::Relaxed);
        Activity {
            info: self.info.clone(),
            keep_link,
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.clients.lock().remove(&self.info.login.pid);
    }
}

/// A transaction in progress, from the wait for a connection to its end. Holds its own reference to
/// the entry, so the session stays free to borrow itself mutably meanwhile.
#[derive(Debug)]
pub struct Activity {
    info: Arc<ClientInfo>,
    keep_link: bool,
}

impl Activity {
    /// The client got the backend connection with this pid.
    pub fn linked(&self, server_pid: u32) {
        self.info.server_pid.store(server_pid, Ordering::Relaxed);
        self.info
            .state
            .store(ClientState::Active as u8, Ordering::Relaxed);
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        let linked = self.keep_link && self.info.server_pid().is_some();
        if !linked {
            self.info.server_pid.store(0, Ordering::Relaxed);
        }
        let state = match (linked, self.info.state()) {
            (true, ClientState::Active) => ClientState::Active,
            _ => ClientState::Idle,
        };
        self.info.state.store(state as u8, Ordering::Relaxed);
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(pid: u32) -> ClientLogin {
        ClientLogin {
            pid,
            user: "app".into(),
            database: "db".into(),
            application_name: String::new(),
            addr: None,
            local_addr: None,
            tls: false,
            admin: false,
        }
    }

    #[test]
    fn entries_follow_the_handles() {
        let clients = Arc::new(Clients::default());
        let a = clients.register(login(1));
        let b = clients.register(login(2));
        assert_eq!(clients.len(), 2);
        drop(a);
        let all = clients.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].login.pid, 2);
        drop(b);
        assert!(clients.is_empty());
    }

    #[test]
    fn a_transaction_goes_waiting_active_idle() {
        let clients = Arc::new(Clients::default());
        let h = clients.register(login(1));
        assert_eq!(h.info().state(), ClientState::Idle);
        {
            let activity = h.waiting(false);
            assert_eq!(h.info().state(), ClientState::Waiting);
            assert!(h.info().request_time() > 0);
            activity.linked(42);
            assert_eq!(h.info().state(), ClientState::Active);
            assert_eq!(h.info().server_pid(), Some(42));
        }
        assert_eq!(h.info().state(), ClientState::Idle);
        assert_eq!(h.info().server_pid(), None);
        // Session mode: the link outlives the transaction.
        h.waiting(true).linked(43);
        assert_eq!(h.info().state(), ClientState::Active);
        assert_eq!(h.info().server_pid(), Some(43));
        // A wait that never got a connection ends idle.
        drop(h.waiting(false));
        assert_eq!(h.info().state(), ClientState::Idle);
    }
}
