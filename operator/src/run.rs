//! The operator wired together: leader election, the reconciler, the control-plane gRPC server, the
//! admission webhook (reading the reconciler's cache of DatabaseProxies) and the metrics endpoint, all on one tokio runtime. The binary parses flags
//! into [`RunOptions`] and calls [`start`]; the end-to-end tests call it in-process against the fake
//! API server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::{ControlService, ServeOptions, TopologyIndex};
use crate::crd::DatabaseProxy;
use crate::leader::{self, ElectionOptions};
use crate::metrics::Metrics;
use crate::reconcile::{self, Context, ReconcileOptions};
use crate::webhook::WebhookOptions;

/// Everything the operator needs to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The control plane sidecars subscribe to (gRPC).
    pub control_listen: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_listen: SocketAddr,
    /// Leader election (Lease name, namespace, this replica's identity, timings).
    pub election: ElectionOptions,
    pub reconcile: ReconcileOptions,
    pub serve: ServeOptions,
    /// Ordinary topology changes wait this long, coalescing (failovers never wait). Default 500ms.
    pub debounce: Duration,
    /// The admission webhook (HTTPS) and what it injects; `None` runs without it (e.g. when the
    /// chart's webhook is disabled).
    pub webhook: Option<(SocketAddr, WebhookOptions)>,
}

impl RunOptions {
    pub fn new(namespace: &str, identity: &str) -> RunOptions {
        RunOptions {
            control_listen: SocketAddr::from(([0, 0, 0, 0], 6500)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            election: ElectionOptions::new(namespace, identity),
            reconcile: ReconcileOptions::default(),
            serve: ServeOptions::default(),
            debounce: Duration::from_millis(500),
            webhook: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running operator; [`Running::stop`] shuts it down in order (the Lease is released).
pub struct Running {
    pub control_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub webhook_addr: Option<SocketAddr>,
    pub index: TopologyIndex,
    pub service: ControlService,
    leader: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Leadership changes, for callers that wait for them.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Stops accepting work, lets running rounds finish, releases the Lease.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds every port, then starts every part in the background.
pub async fn start(client: Client, options: RunOptions) -> Result<Running, StartError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })
    };
    let control_listener = bind(options.control_listen).await?;
    let metrics_listener = bind(options.metrics_listen).await?;
    let control_addr = local(&control_listener, options.control_listen);
    let metrics_addr = local(&metrics_listener, options.metrics_listen);
    let webhook_listener = match &options.webhook {
        Some((addr, _)) => Some(bind(*addr).await?),
        None => None,
    };
    let webhook_addr = webhook_listener
        .as_ref()
        .zip(options.webhook.as_ref())
        .map(|(l, (asked, _))| local(l, *asked));

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let (shutdown, _) = watch::channel(false);
    let stopping = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (ready_tx, ready) = watch::channel(Some("starting".to_owned()));
    let (leader_tx, leader) = watch::channel(false);
    let mut tasks = Vec::new();

    tasks.push(tokio::spawn(crate::http::serve_until(
        metrics_listener,
        Arc::new(registry),
        ready,
        stopping(shutdown.subscribe()),
    )));

    let index = TopologyIndex::new(options.debounce);
    let service = ControlService::new(index.clone(), options.serve.clone());
    {
        let service = service.clone();
        let stop = stopping(shutdown.subscribe());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::control::serve(service, control_listener, stop).await {
                tracing::error!(error = %crate::error_chain(&e), "control plane stopped");
            }
        }));
    }

    let leases = Api::namespaced(client.clone(), &options.election.namespace);
    tasks.push(tokio::spawn(leader::run(
        leases,
        options.election.clone(),
        leader_tx,
        stopping(shutdown.subscribe()),
    )));
    {
        let metrics = metrics.clone();
        let mut leader = leader.clone();
        let mut stop = shutdown.subscribe();
        tasks.push(tokio::spawn(async move {
            loop {
                metrics.set_leader(*leader.borrow_and_update());
                tokio::select! {
                    changed = leader.changed() => if changed.is_err() { break },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }));
    }

    // Ready once the API server answers for DatabaseProxies (the CRD is installed and RBAC allows
    // it): before that, reconciling would only fail.
    {
        let client = client.clone();
        let mut stop = shutdown.subscribe();
        tasks.push(tokio::spawn(async move {
            let api = Api::<DatabaseProxy>::all(client);
            loop {
                match api.list(&kube::api::ListParams::default().limit(1)).await {
                    Ok(_) => {
                        ready_tx.send_replace(None);
                        break;
                    }
                    Err(e) => {
                        ready_tx.send_replace(Some(format!("cannot list DatabaseProxies: {e}")));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }));
    }

    let controller = reconcile::controller(client.clone());
    if let (Some(listener), Some((_, webhook))) = (webhook_listener, options.webhook.clone()) {
        let store = controller.store();
        let proxies = move |namespace: &str| -> Vec<Arc<DatabaseProxy>> {
            store
                .state()
                .into_iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
                .collect()
        };
        let stop = stopping(shutdown.subscribe());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::webhook::serve(listener, webhook, proxies, stop).await {
                tracing::error!(error = %crate::error_chain(&e), "admission webhook stopped");
            }
        }));
    }

    let ctx = Arc::new(Context::new(
        client,
        index.clone(),
        service.reports().clone(),
        leader.clone(),
        Reporter {
            controller: "pgroute-operator".into(),
            instance: Some(options.election.identity.clone()),
        },
        metrics,
        options.reconcile.clone(),
    ));
    tasks.push(tokio::spawn(reconcile::run(
        controller,
        ctx,
        stopping(shutdown.subscribe()),
    )));

    Ok(Running {
        control_addr,
        metrics_addr,
        webhook_addr,
        index,
        service,
        leader,
        shutdown,
        tasks,
    })
}

fn local(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}
