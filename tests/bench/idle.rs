//! Memory per idle client: hold thousands of connected clients on a proxy and watch its RSS grow.
//!
//! Each client does the PostgreSQL startup handshake (protocol 3.0, `user=postgres database=postgres`,
//! trust auth) and waits for ReadyForQuery, so the proxy holds a fully set-up session, then sends nothing.
//! The handshake is written out here (a few bytes) rather than taken from a driver, so the clients cost
//! this process little and send exactly the same startup to both proxies. RSS is `VmRSS` from
//! `/proc/<pid>/status`, read after one warm-up client and again once all the others idle; the proxies are
//! freshly started for this (see `main`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::process::ChildGuard;

/// Handshakes in flight at once: enough to be quick, few enough not to overflow a listen backlog.
const CONCURRENT_HANDSHAKES: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the proxy to finish whatever it does after the last handshake before RSS is read.
const SETTLE: Duration = Duration::from_secs(1);
/// File descriptors this process needs besides the idle clients.
const FD_HEADROOM: u64 = 256;
/// Longest startup-phase message accepted; anything longer means the stream is out of step.
const MAX_MESSAGE_LEN: usize = 1 << 20;
/// `3 << 16 | 0`: protocol 3.0.
const PROTOCOL_3_0: i32 = 196_608;

/// A proxy's resident memory without and with the idle clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub before_kib: u64,
    pub after_kib: u64,
    /// Clients that completed the handshake and were held while `after_kib` was read.
    pub clients: usize,
}

impl MemoryUse {
    pub fn kib_per_client(&self) -> Option<f64> {
        (self.clients > 0)
            .then(|| self.after_kib.saturating_sub(self.before_kib) as f64 / self.clients as f64)
    }
}

/// Fails early (before minutes of pgbench) when this process cannot open `idle` sockets.
pub fn check_fd_limit(idle: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("read /proc/self/limits")?;
    let soft = parse_nofile_soft(&limits).context("no `Max open files` in /proc/self/limits")?;
    let needed = idle as u64 + FD_HEADROOM;
    if soft < needed {
        bail!(
            "open-file limit is {soft}, {needed} needed for --idle {idle}: run through tests/bench/run.sh \
             (it sets `ulimit -n 65536`), lower --idle, or pass --skip-memory"
        );
    }
    Ok(())
}

/// Connects `idle` clients to the proxy and reports its RSS before and while they are held.
pub fn measure(proxy: &ChildGuard, idle: usize) -> Result<MemoryUse> {
    let pid = proxy.pid()?;
    eprintln!("holding {idle} idle clients on {} ...", proxy.name());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build a tokio runtime")?;
    // The first client makes a proxy open its server connection and learn the server's parameters;
    // that is per pool, not per client, so it happens before the baseline is read.
    let warm_up = runtime.block_on(connect_all(proxy, 1))?;
    std::thread::sleep(SETTLE);
    let before_kib = rss_kib(pid)?;
    let clients = runtime.block_on(connect_all(proxy, idle))?;
    std::thread::sleep(SETTLE);
    let after_kib = rss_kib(pid)?;
    let held = clients.len();
    drop((warm_up, clients));
    Ok(MemoryUse {
        before_kib,
        after_kib,
        clients: held,
    })
}

/// All `count` clients, or the first error with how many failed.
async fn connect_all(proxy: &ChildGuard, count: usize) -> Result<Vec<TcpStream>> {
    let permits = Arc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
    let addr = proxy.addr();
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(addr))
                .await
                .context("handshake timed out")?
        });
    }
    let mut clients = Vec::with_capacity(count);
    let mut first_error = None;
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("client task panicked").and_then(|r| r) {
            Ok(stream) => clients.push(stream),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(clients),
        Some(e) => Err(e.context(format!(
            "{failed} of {count} idle clients failed to connect"
        ))),
    }
}

/// Connects and completes the startup handshake; returns the idle connection.
async fn handshake(addr: std::net::SocketAddr) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.write_all(&startup_message()).await?;
    loop {
        let tag = stream.read_u8().await.context("read a message type")?;
        let len = stream.read_i32().await.context("read a message length")?;
        let body_len = usize::try_from(len.saturating_sub(4))
            .ok()
            .filter(|n| *n <= MAX_MESSAGE_LEN)
            .with_context(|| format!("implausible length {len} of a {:?} message", tag as char))?;
        let mut body = vec![0; body_len];
        stream.read_exact(&mut body).await?;
        match tag {
            b'Z' => return Ok(stream),
            b'E' => bail!("server error: {}", error_message(&body)),
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                bail!("server asked for authentication (expected trust)")
            }
            // AuthenticationOk, ParameterStatus, BackendKeyData, NoticeResponse.
            _ => {}
        }
    }
}

/// StartupMessage: length, protocol 3.0, then `user` and `database`, NUL-terminated, and a final NUL.
fn startup_message() -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for part in ["user", "postgres", "database", "postgres"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let len = i32::try_from(body.len() + 4).unwrap_or(i32::MAX);
    let mut message = len.to_be_bytes().to_vec();
    message.extend(body);
    message
}

/// The `M` (message) field of an ErrorResponse body, or the whole body when there is none.
fn error_message(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"M"))
        .map_or_else(
            || String::from_utf8_lossy(body).into_owned(),
            |m| String::from_utf8_lossy(m).into_owned(),
        )
}

fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// `VmRSS:     12345 kB`.
fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `Max open files  <soft>  <hard>  files`.
fn parse_nofile_soft(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_message_is_protocol_3_with_user_and_database() {
        let msg = startup_message();
        let expected_body = b"\0\x03\0\0user\0postgres\0database\0postgres\0\0";
        assert_eq!(&msg[..4], &(4 + expected_body.len() as i32).to_be_bytes());
        assert_eq!(&msg[4..], expected_body);
    }

    #[test]
    fn error_message_field_is_extracted() {
        let body = b"SFATAL\0C53300\0Msorry, too many clients already\0\0";
        assert_eq!(error_message(body), "sorry, too many clients already");
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t   12345 kB\n"), Some(12345));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            65536                65536                files\n";
        assert_eq!(parse_nofile_soft(limits), Some(65536));
    }

    #[test]
    fn per_client_is_growth_over_clients() {
        let m = MemoryUse {
            before_kib: 100,
            after_kib: 600,
            clients: 250,
        };
        assert_eq!(m.kib_per_client(), Some(2.0));
    }
}
