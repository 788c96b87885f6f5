//! The `pgroute.control.v1.Control` gRPC service: translates between [`TopologyIndex`]/[`Reports`]
//! and the wire, nothing more.
//!
//! A `Watch` stream sends the current snapshot first (or waits for the first one), then each new
//! version. Keepalive is two-fold: HTTP/2 PINGs (`http2_keepalive`) find dead connections, and the
//! current snapshot is resent unchanged every `resend_interval` while nothing changes, so a sidecar
//! that hears nothing for several intervals knows its stream is stuck (sidecars ignore a version they
//! already have). After `max_stream_lifetime` the server ends the stream with OK and the sidecar
//! subscribes again — possibly to another operator replica, which spreads load after a rollout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::Stream;
use pgroute_proto::v1::control_server::{Control, ControlServer};
use pgroute_proto::v1::{sidecar_report, ReportAck, SidecarReport, Snapshot, WatchRequest};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::control::index::Current;
use crate::control::{ProxyKey, Reports, SidecarId, SidecarState, TopologyIndex};

/// Timings of the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The current snapshot is resent (same version) after this long without a change. Default 30s.
    pub resend_interval: Duration,
    /// A stream ends (OK) after this long; the sidecar re-subscribes. Default 30 minutes.
    pub max_stream_lifetime: Duration,
    /// HTTP/2 PING interval on every connection (a missed answer within the same time closes it).
    /// Default 20s.
    pub http2_keepalive: Duration,
    /// A sidecar that has not reported for this long no longer counts in [`Reports::in_sync`].
    /// Default 90s (three of the sidecar's default report intervals).
    pub report_stale_after: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            resend_interval: Duration::from_secs(30),
            max_stream_lifetime: Duration::from_secs(30 * 60),
            http2_keepalive: Duration::from_secs(20),
            report_stale_after: Duration::from_secs(90),
        }
    }
}

/// The service: an index to stream from, reports to record into.
#[derive(Debug, Clone)]
pub struct ControlService {
    index: TopologyIndex,
    reports: Arc<Reports>,
    options: ServeOptions,
    /// Set when the server shuts down: open streams end (OK), so sidecars resubscribe elsewhere and
    /// the graceful shutdown does not wait on streams that never finish.
    closing: Arc<watch::Sender<bool>>,
}

impl ControlService {
    pub fn new(index: TopologyIndex, options: ServeOptions) -> ControlService {
        ControlService {
            reports: Arc::new(Reports::new(options.report_stale_after)),
            index,
            options,
            closing: Arc::new(watch::Sender::new(false)),
        }
    }

    pub fn reports(&self) -> &Arc<Reports> {
        &self.reports
    }

    pub fn index(&self) -> &TopologyIndex {
        &self.index
    }

    /// `(n, m)`: sidecars of `key` with its current version in force, of those reporting.
    pub fn in_sync(&self, key: &ProxyKey) -> (usize, usize) {
        let version = self.index.current(key).map_or(0, |s| s.version);
        self.reports.in_sync(key, version)
    }

    /// The tonic service, ready for `Server::add_service`.
    pub fn into_server(self) -> ControlServer<ControlService> {
        ControlServer::new(self)
    }
}

/// Runs the service on `listener` until `shutdown` resolves; then open streams end and connections
/// close.
pub async fn serve(
    service: ControlService,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let keepalive = service.options.http2_keepalive;
    let closing = service.closing.clone();
    let shutdown = async move {
        shutdown.await;
        closing.send_replace(true);
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Binds `addr` and runs the service until `shutdown` resolves.
pub async fn bind_and_serve(
    service: ControlService,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve(service, listener, shutdown).await?;
    Ok(())
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let who = request.into_inner();
        if who.proxy.is_empty() || who.namespace.is_empty() {
            return Err(Status::invalid_argument(
                "namespace and proxy (the DatabaseProxy name) are required",
            ));
        }
        let key = ProxyKey::new(&who.namespace, &who.proxy);
        tracing::debug!(proxy = %key, pod = who.pod, version = who.sidecar_version, "sidecar subscribed");
        let state = StreamState {
            rx: self.index.subscribe(&key),
            closing: self.closing.subscribe(),
            sent: None,
            resend_interval: self.options.resend_interval,
            ends_at: tokio::time::Instant::now() + self.options.max_stream_lifetime,
        };
        let stream = futures_util::stream::unfold(state, |mut state| async move {
            let next = state.next().await?;
            Some((Ok(next), state))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report(&self, request: Request<SidecarReport>) -> Result<Response<ReportAck>, Status> {
        let report = request.into_inner();
        let who = report
            .identity
            .ok_or_else(|| Status::invalid_argument("identity is required"))?;
        if who.pod.is_empty() || who.namespace.is_empty() || who.proxy.is_empty() {
            return Err(Status::invalid_argument(
                "identity needs namespace, pod and proxy",
            ));
        }
        let (applied, rejected) = match report.outcome {
            Some(sidecar_report::Outcome::AppliedVersion(v)) => (v, None),
            Some(sidecar_report::Outcome::Rejected(r)) => {
                tracing::warn!(
                    proxy = who.proxy,
                    pod = who.pod,
                    version = r.version,
                    reason = r.reason,
                    "sidecar rejected a snapshot"
                );
                (r.in_force_version, Some((r.version, r.reason)))
            }
            None => (0, None),
        };
        let health = report.health.unwrap_or_default();
        self.reports.record(
            SidecarId {
                namespace: who.namespace.clone(),
                pod: who.pod,
            },
            SidecarState {
                proxy: ProxyKey::new(who.namespace, who.proxy),
                applied,
                rejected,
                ready: health.ready,
                clients: health.clients,
                transactions: health.transactions,
                sidecar_version: who.sidecar_version,
                seen: Instant::now(),
            },
        );
        Ok(Response::new(ReportAck {}))
    }
}

/// One subscriber's position in its proxy's snapshots.
struct StreamState {
    rx: watch::Receiver<Current>,
    closing: watch::Receiver<bool>,
    /// Version last sent on this stream.
    sent: Option<u64>,
    resend_interval: Duration,
    ends_at: tokio::time::Instant,
}

impl StreamState {
    /// The next message: the current snapshot first, then each newer one, the same one again after
    /// `resend_interval` of quiet; `None` when the stream's lifetime is over or the proxy is gone.
    async fn next(&mut self) -> Option<Snapshot> {
        let quiet_until = tokio::time::Instant::now() + self.resend_interval;
        loop {
            let current = self.rx.borrow_and_update().clone();
            if let Some(snapshot) = current {
                if self.sent.is_none_or(|v| v < snapshot.version) {
                    self.sent = Some(snapshot.version);
                    return Some((*snapshot).clone());
                }
            }
            tokio::select! {
                changed = self.rx.changed() => changed.ok()?,
                () = tokio::time::sleep_until(self.ends_at) => return None,
                _ = self.closing.wait_for(|closing| *closing) => return None,
                () = tokio::time::sleep_until(quiet_until), if self.sent.is_some() => {
                    return self.rx.borrow().as_deref().cloned();
                }
            }
        }
    }
}
