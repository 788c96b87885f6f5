//! A fault-injecting TCP proxy for tests, placed between pgroute and a backend.
//!
//! The machines have no `netem` and no toxiproxy (DESIGN.md, "Tests"), so network faults come from here:
//! added latency, a blackhole that swallows bytes, refused connections, a connection cut after N bytes of
//! a result, and an abrupt reset of every open connection. It is in-process and tokio-based, listens on
//! `127.0.0.1:0`, and stops every task it started when dropped.
//!
//! Flow: the accept task takes a connection, consults the current [`Fault`] (refuse or blackhole it at
//! once), otherwise connects to the target and runs one task with two directions. Each direction is a
//! reader that decides per chunk what the fault does with it (forward, delay, swallow, truncate) and a
//! writer that delivers chunks when they are due, so latency delays bytes without throttling bandwidth.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What the proxy does to traffic. Set with [`FaultProxy::set`]; applies to data read after the call on
/// every connection, and to connections accepted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward everything at once.
    #[default]
    None,
    /// Deliver every chunk this much later than it arrived, in both directions.
    Latency(Duration),
    /// Accept and read, but never forward and never answer (a host that vanished from the network).
    /// New connections are not even connected to the target.
    Blackhole,
    /// Close new connections as soon as they are accepted. Open connections are left alone.
    Refuse,
    /// Per connection: forward this many bytes backend→client (counted from when the fault was set),
    /// then close both sides.
    CloseAfterBytes(usize),
}

/// A running fault proxy. Dropping it aborts the listener and every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    /// The fault and a generation number bumped on every `set`, so per-connection byte counts restart.
    fault: Mutex<(u64, Fault)>,
    /// Bumped by `reset_all`; every connection task watches it.
    resets: watch::Sender<u64>,
    open: AtomicUsize,
    /// Connections accepted since start, refused ones included: connection attempts as the backend
    /// would count them.
    attempts: AtomicUsize,
}

impl Shared {
    fn fault(&self) -> (u64, Fault) {
        match self.fault.lock() {
            Ok(f) => *f,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy")?;
        let addr = listener.local_addr()?;
        let (resets, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            target,
            fault: Mutex::new((0, Fault::None)),
            resets,
            open: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients (pgroute) connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the fault for new data on every connection and for new connections.
    pub fn set(&self, fault: Fault) {
        let mut current = match self.shared.fault.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = (current.0 + 1, fault);
    }

    /// Abruptly closes every open connection on both sides (SO_LINGER 0, so the peers see a reset).
    pub fn reset_all(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// Connection attempts since start (refused ones included).
    pub fn attempts(&self) -> usize {
        self.shared.attempts.load(Ordering::SeqCst)
    }

    /// Connections open right now (refused ones are never counted).
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connections: aborting it drops (and aborts) them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                shared.attempts.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                if shared.fault().1 == Fault::Refuse {
                    reset_on_close(&client);
                    drop(client);
                    continue;
                }
                shared.open.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard(shared.clone());
                conns.spawn(serve(client, shared.clone(), guard));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Counts a connection as open until its task ends or is aborted.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>, _guard: OpenGuard) {
    let mut resets = shared.resets.subscribe();
    resets.mark_unchanged();
    if shared.fault().1 == Fault::Blackhole {
        let mut sink = vec![0u8; 8192];
        tokio::select! {
            _ = resets.changed() => {}
            _ = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
        }
        reset_on_close(&client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(shared.target).await else {
        reset_on_close(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let reset = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        tokio::select! {
            _ = resets.changed() => true,
            _ = direction(cr, sw, &shared, false) => false,
            _ = direction(sr, cw, &shared, true) => false,
        }
    };
    if reset {
        reset_on_close(&client);
        reset_on_close(&server);
    }
    // Dropping both streams closes both sides.
}

/// SO_LINGER 0: closing the socket then sends a reset instead of a FIN. tokio deprecates `set_linger`
/// because a positive linger blocks the thread on drop; a zero linger never blocks.
#[allow(deprecated)]
fn reset_on_close(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// One direction: a reader that applies the fault per chunk and a writer that delivers chunks when due.
/// Ends when the reader's side closes (or fails, or `CloseAfterBytes` is reached) and everything read so
/// far was delivered, or when the writer fails.
async fn direction(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
    to_client: bool,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let read = async move {
        let mut counted = (u64::MAX, 0usize);
        loop {
            let mut buf = vec![0u8; 16 * 1024];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.truncate(n);
            let (generation, fault) = shared.fault();
            let mut due = Instant::now();
            let mut last = false;
            match fault {
                Fault::Blackhole => continue,
                Fault::Latency(d) => due += d,
                Fault::CloseAfterBytes(limit) if to_client => {
                    if counted.0 != generation {
                        counted = (generation, 0);
                    }
                    let room = limit.saturating_sub(counted.1);
                    buf.truncate(room);
                    counted.1 += buf.len();
                    last = counted.1 >= limit;
                }
                Fault::None | Fault::Refuse | Fault::CloseAfterBytes(_) => {}
            }
            if !buf.is_empty() && tx.send((due, buf)).await.is_err() {
                return;
            }
            if last {
                return;
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.flush().await;
    };
    // The reader ends first in the normal case (dropping the sender lets the writer drain and finish);
    // a failed write ends the direction at once.
    tokio::select! {
        _ = write => {}
        _ = async { read.await; std::future::pending::<()>().await } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes every connection until it closes.
    async fn echo_server() -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Ok((addr, task))
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await??;
        Ok(got)
    }

    /// Reads until end of stream or error; returns what arrived and whether it ended with an error.
    async fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, Option<std::io::ErrorKind>) {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Err(_) => return (all, Some(std::io::ErrorKind::TimedOut)),
                Ok(Ok(0)) => return (all, None),
                Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return (all, Some(e.kind())),
            }
        }
    }

    #[tokio::test]
    async fn forwards_and_counts_connections() -> anyhow::Result<()> {
        let (echo, _server) = echo_server().await?;
        let proxy = FaultProxy::start(echo).await?;
        let mut a = TcpStream::connect(proxy.addr()).await?;
        let mut b = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(round_trip(&mut a, b"hello").await?, b"hello");
        assert_eq!(round_trip(&mut b, b"world").await?, b"world");
        assert_eq!(proxy.connections(), 2);
        drop(a);
        wait_for(|| proxy.connections() == 1).await;
        Ok(())
    }

    #[tokio::test]
    async fn latency_delays_each_way() -> anyhow::Result<()> {
        let (echo, _server) = echo_server().await?;
        let proxy = FaultProxy::start(echo).await?;
        let mut s = TcpStream::connect(proxy.addr()).await?;
        proxy.set(Fault::Latency(Duration::from_millis(100)));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut s, b"slow").await?, b"slow");
        assert!(started.elapsed() >= Duration::from_millis(200));
        proxy.set(Fault::None);
        let started = std::time::Instant::now();
        round_trip(&mut s, b"fast").await?;
        assert!(started.elapsed() < Duration::from_millis(100));
        Ok(())
    }

    #[tokio::test]
    async fn blackhole_swallows_and_never_answers() -> anyhow::Result<()> {
        let (echo, _server) = echo_server().await?;
        let proxy = FaultProxy::start(echo).await?;
        proxy.set(Fault::Blackhole);
        let mut s = TcpStream::connect(proxy.addr()).await?;
        s.write_all(b"anyone?").await?;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(read.is_err(), "a blackhole answered: {read:?}");
        Ok(())
    }

    #[tokio::test]
    async fn refuse_closes_new_connections_only() -> anyhow::Result<()> {
        let (echo, _server) = echo_server().await?;
        let proxy = FaultProxy::start(echo).await?;
        let mut old = TcpStream::connect(proxy.addr()).await?;
        round_trip(&mut old, b"x").await?;
        proxy.set(Fault::Refuse);
        let mut new = TcpStream::connect(proxy.addr()).await?;
        let _ = new.write_all(b"hi").await;
        let (data, _) = read_to_end(&mut new).await;
        assert!(data.is_empty());
        assert_eq!(round_trip(&mut old, b"still here").await?, b"still here");
        Ok(())
    }

    #[tokio::test]
    async fn close_after_bytes_truncates_then_closes() -> anyhow::Result<()> {
        let (echo, _server) = echo_server().await?;
        let proxy = FaultProxy::start(echo).await?;
        let mut s = TcpStream::connect(proxy.addr()).await?;
        round_trip(&mut s, b"before").await?; // not counted: the fault is set afterwards
        proxy.set(Fault::CloseAfterBytes(10));
        s.write_all(b"0123456789abcdef").await?;
        let (data, _) = read_to_end(&mut s).await;
        assert_eq!(data, b"0123456789");
        wait_for(|| proxy.connections() == 0).await;
        Ok(())
    }

    #[tokio::test]
    async fn reset_all_cuts_every_connection() -> anyhow::Result<()> {
        let (echo, _server) = echo_server().await?;
        let proxy = FaultProxy::start(echo).await?;
        let mut a = TcpStream::connect(proxy.addr()).await?;
        let mut b = TcpStream::connect(proxy.addr()).await?;
        round_trip(&mut a, b"a").await?;
        round_trip(&mut b, b"b").await?;
        proxy.reset_all();
        for s in [&mut a, &mut b] {
            let (data, error) = read_to_end(s).await;
            assert!(data.is_empty());
            assert_ne!(error, Some(std::io::ErrorKind::TimedOut));
        }
        wait_for(|| proxy.connections() == 0).await;
        // The proxy itself keeps serving.
        let mut c = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(round_trip(&mut c, b"again").await?, b"again");
        Ok(())
    }

    #[tokio::test]
    async fn drop_stops_everything() -> anyhow::Result<()> {
        let (echo, _server) = echo_server().await?;
        let proxy = FaultProxy::start(echo).await?;
        let addr = proxy.addr();
        let mut s = TcpStream::connect(addr).await?;
        round_trip(&mut s, b"x").await?;
        drop(proxy);
        let (_, error) = read_to_end(&mut s).await;
        assert_ne!(error, Some(std::io::ErrorKind::TimedOut));
        Ok(())
    }

    async fn wait_for(mut done: impl FnMut() -> bool) {
        for _ in 0..100 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not reached within 2s");
    }
}
