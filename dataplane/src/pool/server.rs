//! One backend connection: the socket, its read buffer, and what the proxy knows about its session.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pgroute_protocol::FrameReader;

use super::ServerStream;
use crate::stream::OverTcp;

use crate::session::{BackendStatements, SessionVars};

/// The key PostgreSQL gave this connection for CancelRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKey {
    pub pid: u32,
    pub secret: u32,
}

/// An open, logged-in backend connection.
#[derive(Debug)]
pub struct ServerConn {
    pub(crate) stream: ServerStream,
    pub(crate) reader: FrameReader,
    addr: SocketAddr,
    key: BackendKey,
    params: Vec<(String, String)>,
    created: Instant,
    last_used: Instant,
    /// Session variables set on this connection by clients, so the next client's state is applied only
    /// when it differs.
    pub(crate) applied: SessionVars,
    /// Statements the proxy prepared on this connection for transaction-mode clients.
    pub(crate) prepared: BackendStatements,
    /// Its entry in the pool's list of connections (`SHOW SERVERS`); none outside pools.
    pub(crate) listed: Option<super::servers::Listed>,
}

impl ServerConn {
    pub(crate) fn new(
        stream: ServerStream,
        reader: FrameReader,
        addr: SocketAddr,
        key: BackendKey,
        params: Vec<(String, String)>,
    ) -> ServerConn {
        let now = Instant::now();
        ServerConn {
            stream,
            reader,
            addr,
            key,
            params,
            created: now,
            last_used: now,
            applied: SessionVars::default(),
            prepared: BackendStatements::default(),
            listed: None,
        }
    }

    /// The resolved address, where CancelRequests for this connection go.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn key(&self) -> BackendKey {
        self.key
    }

    /// ParameterStatus values reported at login.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    pub(crate) fn expired(&self, lifetime: Duration) -> bool {
        self.created.elapsed() >= lifetime
    }

    pub(crate) fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }

    /// Lists the connection in its pool's `SHOW SERVERS` list.
    pub(crate) fn list_in(&mut self, list: &std::sync::Arc<super::servers::ServerList>) {
        let local = self.stream.tcp().and_then(|t| t.local_addr().ok());
        let tls = self.stream.is_tls();
        self.listed = Some(list.add(self.key.pid, self.addr, local, tls));
    }

    /// Marks the connection checked out (`true`) or back in the pool, for `SHOW SERVERS`.
    pub(crate) fn set_active(&self, active: bool) {
        if let Some(listed) = &self.listed {
            listed.set_active(active);
        }
    }

    pub(crate) fn touch(&mut self, now: Instant) {
        self.last_used = now;
    }

    /// An idle connection must have nothing to read: EOF means the server closed it, and bytes mean it
    /// sent something unprompted (usually a FATAL before closing). One non-blocking read, no round trip.
    pub(crate) fn looks_alive(&self) -> bool {
        if self.reader.buffered() > 0 {
            return false;
        }
        match &self.stream {
            ServerStream::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            // Reading raw bytes would corrupt the TLS stream: ask for readiness only (any bytes
            // from an idle backend mean trouble, as above).
            ServerStream::Tls(tls) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                tls.tcp().poll_read_ready(&mut cx).is_pending()
            }
            ServerStream::Closed => false,
        }
    }
}
