//! The sidecar's end of the control plane: one `Watch` stream at a time, reopened with jittered
//! exponential backoff after failures and at once when the server ends it (its maximum lifetime);
//! each snapshot applied or rejected, then reported; health reported every `report_interval`.

use std::sync::{Arc, Weak};

use pgroute_proto::v1::control_client::ControlClient;
use pgroute_proto::v1::{sidecar_report, Health, Rejected, SidecarReport, Snapshot, WatchRequest};
use tonic::transport::{Channel, Endpoint};

use crate::config::ControlConfig;
use crate::control::backoff::Backoff;
use crate::control::{apply, Topology};
use crate::Proxy;

/// Why a stream ended badly (the reconnection waits).
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("cannot set up the control-plane connection: {0}")]
    Setup(String),
    #[error("cannot connect to the control plane")]
    Connect(#[source] tonic::transport::Error),
    #[error("control plane refused the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("no message from the control plane for {0:?} (control.idle_timeout)")]
    Idle(std::time::Duration),
}

/// What the sidecar did with the last snapshots: to skip keepalive resends.
#[derive(Debug, Default)]
struct Seen {
    applied: Option<Topology>,
    rejected: Option<u64>,
}

pub(super) async fn run(proxy: Weak<Proxy>) {
    let Some(options) = proxy.upgrade().map(|p| p.config().control.clone()) else {
        return;
    };
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let mut seen = Seen::default();
    loop {
        let Some(p) = proxy.upgrade() else { return };
        let ended = watch(&p, &options, &mut backoff, &mut seen).await;
        let status = p.control_status();
        status.set_connected(false);
        drop(p);
        match ended {
            Ok(()) => tracing::debug!("control plane ended the stream; subscribing again"),
            Err(e) => {
                let message = crate::error_chain(&e);
                let wait = backoff.next(rand::random::<f64>());
                tracing::warn!(error = %message, retry_in = ?wait, "control plane unreachable; keeping the topology in force");
                if let Some(p) = proxy.upgrade() {
                    p.control_status().set_error(Some(message));
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn endpoint(options: &ControlConfig) -> Result<Endpoint, StreamError> {
    let url = options.url.clone().unwrap_or_default();
    let setup = |e: &dyn std::fmt::Display| StreamError::Setup(e.to_string());
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| setup(&e))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        // HTTP/2 PINGs find a dead connection even while the stream is quiet.
        .http2_keep_alive_interval(std::time::Duration::from_secs(20))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        tls = match &options.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    StreamError::Setup(format!("control.ca_file {}: {e}", path.display()))
                })?;
                tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
            }
            None => tls.with_native_roots(),
        };
        endpoint = endpoint.tls_config(tls).map_err(|e| setup(&e))?;
    }
    Ok(endpoint)
}

fn identity(options: &ControlConfig) -> WatchRequest {
    WatchRequest {
        namespace: options.namespace.clone().unwrap_or_default(),
        pod: options.pod.clone().unwrap_or_default(),
        proxy: options.proxy.clone().unwrap_or_default(),
        sidecar_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// One stream, until it ends (`Ok`: the server closed it normally) or fails.
async fn watch(
    proxy: &Arc<Proxy>,
    options: &ControlConfig,
    backoff: &mut Backoff,
    seen: &mut Seen,
) -> Result<(), StreamError> {
    let channel = endpoint(options)?
        .connect()
        .await
        .map_err(StreamError::Connect)?;
    let mut client = ControlClient::new(channel);
    let who = identity(options);
    let mut stream = client.watch(who.clone()).await?.into_inner();
    proxy.control_status().set_connected(true);
    let mut reports = tokio::time::interval(options.report_interval);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reports.tick().await;
    loop {
        tokio::select! {
            message = tokio::time::timeout(options.idle_timeout, stream.message()) => {
                let Some(snapshot) = message.map_err(|_| StreamError::Idle(options.idle_timeout))?? else {
                    return Ok(());
                };
                backoff.reset();
                if let Some(outcome) = handle(proxy, snapshot, seen) {
                    report(&mut client, proxy, &who, Some(outcome)).await;
                }
            }
            _ = reports.tick() => report(&mut client, proxy, &who, None).await,
        }
    }
}

/// Applies or rejects one snapshot; `None` for a resend of what is already in force.
fn handle(proxy: &Proxy, snapshot: Snapshot, seen: &mut Seen) -> Option<sidecar_report::Outcome> {
    let version = snapshot.version;
    let status = proxy.control_status();
    let topology = match Topology::try_from(snapshot) {
        Ok(t) => t,
        Err(e) => return reject(proxy, seen, version, e.to_string()),
    };
    if seen.applied.as_ref() == Some(&topology) {
        return None;
    }
    match apply(proxy, &topology) {
        Ok(report) => {
            for key in &report.needs_restart {
                tracing::warn!(
                    key,
                    version,
                    "control plane changed a setting that needs a restart; keeping its old value"
                );
            }
            tracing::info!(version, primary = %topology.primary, replicas = topology.replicas.len(), failover = ?topology.failover, "topology from the control plane applied");
            status.set_applied(version);
            status.set_error(None);
            seen.applied = Some(topology);
            seen.rejected = None;
            Some(sidecar_report::Outcome::AppliedVersion(version))
        }
        Err(e) => reject(proxy, seen, version, crate::error_chain(&e)),
    }
}

fn reject(
    proxy: &Proxy,
    seen: &mut Seen,
    version: u64,
    reason: String,
) -> Option<sidecar_report::Outcome> {
    if seen.rejected == Some(version) {
        return None;
    }
    seen.rejected = Some(version);
    let in_force = proxy.control_status().applied_version();
    tracing::error!(
        version,
        reason,
        in_force,
        "snapshot from the control plane rejected; the topology in force stays"
    );
    proxy
        .control_status()
        .set_error(Some(format!("snapshot {version} rejected: {reason}")));
    Some(sidecar_report::Outcome::Rejected(Rejected {
        version,
        reason,
        in_force_version: in_force,
    }))
}

/// Sends a report; a failure is logged only (the stream shows whether the link works).
async fn report(
    client: &mut ControlClient<Channel>,
    proxy: &Proxy,
    who: &WatchRequest,
    outcome: Option<sidecar_report::Outcome>,
) {
    let status = proxy.control_status();
    let report = SidecarReport {
        identity: Some(who.clone()),
        outcome,
        health: Some(Health {
            ready: !status.awaiting_first_snapshot(),
            clients: proxy.client_count(),
            transactions: u32::try_from(proxy.gate().in_flight()).unwrap_or(u32::MAX),
        }),
    };
    if let Err(e) = client.report(report).await {
        tracing::warn!(error = %e, "cannot report to the control plane");
    }
}
