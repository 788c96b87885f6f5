//! pgroute's data plane: a pooling PostgreSQL proxy.
//!
//! Data flows listener → session → pool → protocol (the `pgroute-protocol` crate); `config` holds the
//! single serde tree of settings, `auth` the credentials, `proxy` the shared state every session sees,
//! and `demo` the embedded cluster walkthrough behind `pgroute demo`. See `docs/architecture.md`.

pub mod admin;
pub mod auth;
pub mod classify;
pub mod cli;
pub mod clients;
pub mod config;
pub mod control;
pub mod demo;
pub mod health;
pub mod keepalive;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod pool;
pub mod proxy;
mod quoting;
pub mod router;
pub mod session;
pub mod stream;
pub mod tls;
pub mod topology;
pub mod trace;

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
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`server.metrics_listen`), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Serves until the `Running` is dropped, so `/readyz` reports the shutdown while it drains.
    _metrics: Option<metrics::MetricsServer>,
    shutdown: watch::Sender<bool>,
    /// The listener; it hands back the sessions still running when it stops.
    task: tokio::task::JoinHandle<tokio::task::JoinSet<()>>,
    /// Managed mode: the control-plane stream (stops when this is dropped).
    control: Option<control::ControlTask>,
}

/// Errors starting a proxy.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Metrics(#[from] metrics::ServeError),
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
        if proxy.config().health.checks {
            health::check::spawn(Arc::downgrade(&proxy));
        }
        // Even with no replicas yet: a reload may add some.
        if proxy.config().consistency.monitor {
            health::lag::spawn(Arc::downgrade(&proxy));
        }
        let control = proxy
            .config()
            .control
            .enabled()
            .then(|| control::spawn(Arc::downgrade(&proxy)));
        let (shutdown, rx) = watch::channel(false);
        let metrics = match (proxy.metrics(), &proxy.config().server.metrics_listen) {
            (Some(m), Some(listen)) => {
                let registry = m.registry(Arc::downgrade(&proxy));
                let weak = Arc::downgrade(&proxy);
                Some(metrics::serve(listen, registry, weak, shutdown.subscribe()).await?)
            }
            _ => None,
        };
        let task = tokio::spawn(listener::serve(listener, proxy.clone(), rx));
        Ok(Running {
            proxy,
            addr,
            metrics_addr: metrics.as_ref().map(|m| m.addr),
            _metrics: metrics,
            shutdown,
            task,
            control,
        })
    }

    /// Stops accepting; sessions already running finish on their own.
    pub async fn stop(self) {
        drop(self.control);
        let _ = self.shutdown.send(true);
        if let Ok(mut sessions) = self.task.await {
            sessions.detach_all();
        }
    }

    /// Graceful shutdown (SIGTERM): stops accepting at once (new connections are refused), closes
    /// clients idle between transactions with SQLSTATE 57P01, lets transactions in flight finish,
    /// and after `timeout` closes every connection left. Returns how many sessions were cut off at
    /// the deadline.
    pub async fn shutdown(self, timeout: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        drop(self.control);
        let _ = self.shutdown.send(true);
        let mut sessions = self.task.await.unwrap_or_default();
        self.proxy.begin_shutdown();
        tracing::info!(
            sessions = sessions.len(),
            in_flight = self.proxy.gate().in_flight(),
            ?timeout,
            "shutting down: no new clients; waiting for transactions in flight"
        );
        let drained = tokio::time::timeout_at(deadline, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            return 0;
        }
        let cut = sessions.len();
        tracing::warn!(
            sessions = cut,
            "shutdown_timeout reached; closing the connections left"
        );
        sessions.shutdown().await;
        cut
    }
}
