//! pgroute's data plane: a pooling PostgreSQL proxy.
//!
//! Data flows listener → session → pool → protocol (the `pgroute-protocol` crate); `config` holds the
//! single serde tree of settings, `auth` the credentials, `proxy` the shared state every session sees,
//! and `demo` the embedded cluster walkthrough behind `pgroute demo`. See `docs/architecture.md`.

pub mod auth;
pub mod classify;
pub mod cli;
pub mod config;
pub mod demo;
pub mod health;
pub mod keepalive;
pub mod limits;
pub mod listener;
pub mod pool;
pub mod proxy;
mod quoting;
pub mod router;
pub mod session;
pub mod stream;
pub mod tls;
pub mod topology;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;

/// An error and its causes on one line (`a: b: c`), for logs and one-line exits.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}
pub use proxy::{Proxy, StartError};

/// A proxy bound to its listen address and serving in the background: what `pgroute` runs, and what
/// tests and the demo start in-process.
#[derive(Debug)]
pub struct Running {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Errors starting a proxy.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl Running {
    /// Validates `config`, binds `server.listen` and starts accepting.
    pub async fn start(config: Config) -> Result<Running, RunError> {
        let proxy = Proxy::new(config)?;
        let listen = proxy.config().server.listen.clone();
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|source| RunError::Bind {
                addr: listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| RunError::Bind {
            addr: listen,
            source,
        })?;
        if proxy.config().consistency.monitor && !proxy.replicas().is_empty() {
            health::lag::spawn(Arc::downgrade(&proxy));
        }
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(listener::serve(listener, proxy.clone(), rx));
        Ok(Running {
            proxy,
            addr,
            shutdown,
            task,
        })
    }

    /// Stops accepting; sessions already running finish on their own.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
