//! TCP keepalives on client and backend sockets (`server.tcp_keepalive`, `pool.server_tcp_keepalive`).
//!
//! A peer that disappears without closing (a crashed host, a cut network, a dropped NAT entry) leaves a
//! socket that looks open until the kernel's own keepalive default gives up, two hours later on Linux:
//! a pool would keep handing out a dead backend connection and a client slot would stay taken. Probes
//! with short, configured timers find such peers in minutes.

use std::io;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::KeepaliveConfig;

/// Turns keepalive probes on (or off) for `tcp` as `config` says.
pub fn apply(tcp: &TcpStream, config: &KeepaliveConfig) -> io::Result<()> {
    let sock = SockRef::from(tcp);
    if !config.enabled {
        return sock.set_keepalive(false);
    }
    let keepalive = TcpKeepalive::new().with_time(config.idle);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    let keepalive = keepalive
        .with_interval(config.interval)
        .with_retries(config.count);
    sock.set_tcp_keepalive(&keepalive)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn sets_the_configured_timers_on_a_real_socket() {
        let (client, _server) = connected_pair().await;
        let config = KeepaliveConfig {
            enabled: true,
            idle: Duration::from_secs(42),
            interval: Duration::from_secs(7),
            count: 3,
        };
        apply(&client, &config).expect("apply");
        let sock = SockRef::from(&client);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(sock.tcp_keepalive_time().expect("idle"), config.idle);
        assert_eq!(
            sock.tcp_keepalive_interval().expect("interval"),
            config.interval
        );
        assert_eq!(sock.tcp_keepalive_retries().expect("count"), 3);
    }

    #[tokio::test]
    async fn disabled_turns_probes_off() {
        let (client, _server) = connected_pair().await;
        SockRef::from(&client)
            .set_keepalive(true)
            .expect("turn on first");
        let config = KeepaliveConfig {
            enabled: false,
            ..KeepaliveConfig::default()
        };
        apply(&client, &config).expect("apply");
        assert!(!SockRef::from(&client).keepalive().expect("SO_KEEPALIVE"));
    }
}
