//! The HTTP side: `/metrics` (OpenMetrics text), `/healthz` (the process answers) and `/readyz` (it
//! should get traffic), on `server.metrics_listen`.
//!
//! hyper's HTTP/1 server alone, one task per connection: three fixed paths need no router or
//! framework. Readiness is a pure function of the proxy's state ([`readiness`]), tested without HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::health::BreakerState;
use crate::ops::Phase;
use crate::Proxy;

/// A slow or idle scraper connection is closed after this long without a complete request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The endpoint could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}")]
pub struct ServeError {
    addr: String,
    #[source]
    source: std::io::Error,
}

/// A running metrics endpoint; it stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    registry: Registry,
    proxy: Weak<Proxy>,
    /// `true` once the client listener stopped accepting.
    listener_stopped: watch::Receiver<bool>,
}

/// Binds `listen` and serves the endpoints in the background.
pub async fn serve(
    listen: &str,
    registry: Registry,
    proxy: Weak<Proxy>,
    listener_stopped: watch::Receiver<bool>,
) -> Result<MetricsServer, ServeError> {
    let failed = |source| ServeError {
        addr: listen.to_owned(),
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    let state = Arc::new(State {
        registry,
        proxy,
        listener_stopped,
    });
    let task = tokio::spawn(accept(listener, state));
    Ok(MetricsServer { addr, task })
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&req, &state)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

fn respond(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut text = String::with_capacity(16 * 1024);
            match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
                Ok(()) => reply(StatusCode::OK, OPENMETRICS, text),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    "encoding failed\n".into(),
                ),
            }
        }
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let proxy = state.proxy.upgrade();
            let stopped = *state.listener_stopped.borrow();
            match readiness(proxy.as_deref(), stopped) {
                Ok(detail) => reply(StatusCode::OK, TEXT, format!("ready: {detail}\n")),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {why}\n"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Whether the proxy should get new clients: its listener accepts, it is not shutting down, and the
/// primary is known and takes writes (health checks pass, breaker not open). `Ok` with a short detail,
/// `Err` with the reason.
pub fn readiness(proxy: Option<&Proxy>, listener_stopped: bool) -> Result<String, String> {
    let Some(proxy) = proxy else {
        return Err("stopped".into());
    };
    if listener_stopped || proxy.gate().phase() == Phase::ShuttingDown {
        return Err("shutting down".into());
    }
    // Managed mode: nothing to serve before the first snapshot; afterwards the last good one serves
    // even while the control plane is unreachable (said in the detail, not a reason to leave the
    // Service).
    let control = proxy.control_status().state();
    if control.awaiting_first_snapshot {
        return Err("waiting for the control plane's first topology snapshot".into());
    }
    let primary = proxy.primary();
    let addr = primary.address();
    if !primary.available() {
        return Err(format!(
            "no primary: {addr} is down or in recovery and no other backend is a primary"
        ));
    }
    let health = proxy.backends().get(&addr);
    if !health.is_up() {
        return Err(format!("primary {addr} is marked down by health checks"));
    }
    if health.breaker_state() == BreakerState::Open {
        return Err(format!("primary {addr}: circuit breaker open"));
    }
    let paused = match proxy.gate().phase() {
        Phase::Paused => " (paused)",
        _ => "",
    };
    let managed = match (control.managed, control.connected) {
        (false, _) => String::new(),
        (true, true) => format!(
            "; control plane connected, snapshot {}",
            control.applied_version.unwrap_or_default()
        ),
        (true, false) => format!(
            "; control plane unreachable, serving snapshot {} ({})",
            control.applied_version.unwrap_or_default(),
            control.last_error.unwrap_or_default()
        ),
    };
    Ok(format!("primary {addr}{paused}{managed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Arc<Proxy> {
        let mut config = crate::Config::default();
        config.backends.primary = "127.0.0.1:1".parse().ok();
        Proxy::new(config).expect("proxy")
    }

    #[test]
    fn ready_until_shutdown_or_without_a_primary() {
        let p = proxy();
        assert_eq!(readiness(Some(&p), false), Ok("primary 127.0.0.1:1".into()));
        assert!(readiness(Some(&p), true).is_err());
        assert!(readiness(None, false).is_err());
        p.primary().set_available(false);
        let why = readiness(Some(&p), false).expect_err("no primary");
        assert!(why.contains("no primary"), "{why}");
        p.primary().set_available(true);
        p.begin_shutdown();
        assert_eq!(readiness(Some(&p), false), Err("shutting down".into()));
    }
}
