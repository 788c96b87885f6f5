//! CancelRequest routing.
//!
//! Clients get the proxy's own BackendKeyData (a pid and secret it made up), because the backend
//! connection under a client changes with every transaction. While a client's query runs, its slot points
//! at that backend connection's real key; a CancelRequest naming the client is forwarded there, and one for
//! an idle client does nothing, as with PostgreSQL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::pool::BackendKey;

/// Where a cancel for a busy client goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: SocketAddr,
    pub key: BackendKey,
}

#[derive(Debug)]
struct Slot {
    secret: u32,
    target: Mutex<Option<CancelTarget>>,
}

/// Every connected client's key.
#[derive(Debug)]
pub struct CancelRegistry {
    clients: Mutex<HashMap<u32, Arc<Slot>>>,
    rate: Mutex<TokenBucket>,
}

/// Cancels forwarded per second: each forwarded cancel opens a backend connection (a process fork in
/// PostgreSQL), so a flood of them is throttled here.
#[derive(Debug)]
struct TokenBucket {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl CancelRegistry {
    /// A registry forwarding at most `per_second` cancels a second (bursts up to the same number).
    pub fn new(per_second: NonZeroU32) -> CancelRegistry {
        let per_second = f64::from(per_second.get());
        CancelRegistry {
            clients: Mutex::new(HashMap::new()),
            rate: Mutex::new(TokenBucket {
                per_second,
                tokens: per_second,
                last: Instant::now(),
            }),
        }
    }

    /// Issues a fresh key for a client; the returned handle unregisters on drop.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let secret = rand::random();
        let slot = Arc::new(Slot {
            secret,
            target: Mutex::new(None),
        });
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let pid = loop {
            // Positive, like a real pid, for clients that print it.
            let pid = rand::random::<u32>() & 0x7fff_ffff;
            if pid != 0 && !clients.contains_key(&pid) {
                break pid;
            }
        };
        clients.insert(pid, slot.clone());
        CancelHandle {
            registry: self.clone(),
            pid,
            slot,
        }
    }

    /// Forwards a cancel for client `pid` to the backend running its query, if any. Wrong secrets and
    /// unknown pids are ignored silently, as PostgreSQL does.
    pub async fn cancel(&self, pid: u32, secret: u32) {
        let target = {
            let clients = match self.clients.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            clients
                .get(&pid)
                .filter(|s| s.secret == secret)
                .and_then(|s| s.target.lock().ok().and_then(|t| *t))
        };
        let Some(target) = target else {
            tracing::debug!(pid, "cancel for an idle or unknown client ignored");
            return;
        };
        let allowed = self
            .rate
            .lock()
            .map(|mut b| b.take(Instant::now()))
            .unwrap_or(false);
        if !allowed {
            tracing::warn!(pid, "cancel dropped: max_cancels_per_second reached");
            return;
        }
        let request = pgroute_protocol::startup::cancel_request(target.key.pid, target.key.secret);
        match TcpStream::connect(target.addr).await {
            Ok(mut s) => {
                if let Err(e) = s.write_all(&request).await {
                    tracing::warn!(backend = %target.addr, error = %e, "cannot forward cancel");
                }
            }
            Err(e) => tracing::warn!(backend = %target.addr, error = %e, "cannot forward cancel"),
        }
    }

    pub fn len(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's registration.
#[derive(Debug)]
pub struct CancelHandle {
    registry: Arc<CancelRegistry>,
    pid: u32,
    slot: Arc<Slot>,
}

impl CancelHandle {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn secret(&self) -> u32 {
        self.slot.secret
    }

    /// Points cancels at the backend connection now running this client's queries (or at none).
    pub fn set_target(&self, target: Option<CancelTarget>) {
        if let Ok(mut t) = self.slot.target.lock() {
            *t = target;
        }
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        if let Ok(mut clients) = self.registry.clients.lock() {
            clients.remove(&self.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_the_rate_and_refills() {
        let start = Instant::now();
        let mut b = TokenBucket {
            per_second: 2.0,
            tokens: 2.0,
            last: start,
        };
        assert!(b.take(start));
        assert!(b.take(start));
        assert!(!b.take(start), "burst is capped at the rate");
        assert!(
            b.take(start + Duration::from_millis(500)),
            "half a second refills one"
        );
        assert!(!b.take(start + Duration::from_millis(500)));
    }

    #[test]
    fn keys_are_unique_and_unregistered_on_drop() {
        let r = Arc::new(CancelRegistry::new(NonZeroU32::MIN));
        let a = r.register();
        let b = r.register();
        assert_ne!(a.pid(), b.pid());
        assert_eq!(r.len(), 2);
        drop(a);
        assert_eq!(r.len(), 1);
    }

    #[tokio::test]
    async fn cancel_with_wrong_secret_or_idle_client_sends_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let r = Arc::new(CancelRegistry::new(NonZeroU32::MIN));
        let h = r.register();
        r.cancel(h.pid(), h.secret()).await; // idle: no target
        h.set_target(Some(CancelTarget {
            addr,
            key: BackendKey { pid: 7, secret: 9 },
        }));
        r.cancel(h.pid(), h.secret().wrapping_add(1)).await; // wrong secret
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "nothing must connect");
        r.cancel(h.pid(), h.secret()).await;
        let (mut s, _) = listener.accept().await.expect("forwarded");
        let mut buf = [0u8; 16];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut buf)
            .await
            .expect("read");
        assert_eq!(buf, pgroute_protocol::startup::cancel_request(7, 9));
    }
}
