//! The reconciler: kube-runtime's `Controller` over every `DatabaseProxy`. Each reconcile is one
//! round — resolve the target, probe the instances, decide (failover, eligibility), publish a
//! snapshot to the sidecars when the topology changed, write status when it changed — and requeues
//! itself after `probe_interval`, so the rounds are the probe loop.
//!
//! Every replica serves the control plane, so every replica runs rounds and publishes snapshots for
//! the sidecars connected to it. Only the leader ([`crate::leader`]) writes status, holds the
//! finalizer and runs the failover state machine; followers take the primary and the failover state
//! from the status the leader wrote, so all replicas hand sidecars the same primary.

mod promote;
mod round;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::control::{ProxyKey, Reports, TopologyIndex};
use crate::crd::DatabaseProxy;
use crate::metrics::Metrics;

pub use round::ProxyState;

/// The finalizer that makes deletion wait for the sidecars to be told.
pub const FINALIZER: &str = "pgroute.dev/drain";

/// The field manager of every write (server-side apply).
pub const FIELD_MANAGER: &str = "pgroute-operator";

/// Timings of the reconciler.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Time between rounds (probes) of one DatabaseProxy. Default 2s.
    pub probe_interval: Duration,
    /// Connecting to an instance gives up after this. Default 2s.
    pub connect_timeout: Duration,
    /// One probe query gives up after this. Default 2s.
    pub query_timeout: Duration,
    /// On deletion, how long to wait for every connected sidecar to report the draining snapshot
    /// before the finalizer is removed anyway. Default 30s.
    pub drain_timeout: Duration,
    /// Replica lag alone is written to status at most this often. Default 10s.
    pub lag_refresh: Duration,
    /// Retry delay after a failed round: doubles per consecutive failure from `probe_interval` up to
    /// this. Default 5 minutes.
    pub max_backoff: Duration,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            probe_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(30),
            lag_refresh: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub index: TopologyIndex,
    pub reports: Arc<Reports>,
    pub leader: watch::Receiver<bool>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub options: ReconcileOptions,
    /// Per DatabaseProxy: connections to its instances and what the last rounds decided. Each has its
    /// own lock, held for a round (rounds of one object never overlap anyway).
    proxies: Mutex<HashMap<ProxyKey, Arc<tokio::sync::Mutex<ProxyState>>>>,
}

impl Context {
    pub fn new(
        client: Client,
        index: TopologyIndex,
        reports: Arc<Reports>,
        leader: watch::Receiver<bool>,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        options: ReconcileOptions,
    ) -> Context {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            index,
            reports,
            leader,
            metrics,
            options,
            proxies: Mutex::default(),
        }
    }

    fn state(&self, key: &ProxyKey) -> Arc<tokio::sync::Mutex<ProxyState>> {
        self.proxies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(ProxyState::new(&self.options))))
            .clone()
    }

    fn forget(&self, key: &ProxyKey) {
        self.proxies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}

/// Why a round failed; the message goes to the log and the retry is backed off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("DatabaseProxy has no namespace")]
    NoNamespace,
    #[error("cannot resolve the database: {0}")]
    Resolve(#[from] crate::topology::ResolveError),
    #[error("invalid spec: {0}")]
    Spec(#[from] crate::topology::SpecError),
    #[error("cannot write status")]
    Status(#[source] kube::Error),
    #[error("finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// The controller over every DatabaseProxy; its `store()` is the cache the webhook reads too.
pub fn controller(client: Client) -> Controller<DatabaseProxy> {
    Controller::new(
        Api::<DatabaseProxy>::all(client),
        watcher::Config::default(),
    )
}

/// Runs `controller` until `shutdown` resolves.
pub async fn run(
    controller: Controller<DatabaseProxy>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %crate::error_chain(&e), "reconcile");
            }
        })
        .await;
}

async fn reconcile(proxy: Arc<DatabaseProxy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = proxy.namespace().ok_or(Error::NoNamespace)?;
    let key = ProxyKey::new(namespace.clone(), proxy.name_any());
    let state = ctx.state(&key);
    let mut state = state.lock().await;
    let result = if ctx.is_leader() {
        let api = Api::<DatabaseProxy>::namespaced(ctx.client.clone(), &namespace);
        finalizer(&api, FINALIZER, proxy, |event| async {
            match event {
                Finalizer::Apply(p) => round::run(&ctx, &key, &p, &mut state, true).await,
                Finalizer::Cleanup(p) => round::drain(&ctx, &key, &p, &mut state, true).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    } else if proxy.metadata.deletion_timestamp.is_some() {
        round::drain(&ctx, &key, &proxy, &mut state, false).await
    } else {
        round::run(&ctx, &key, &proxy, &mut state, false).await
    };
    match &result {
        Ok(_) => {
            state.failures = 0;
            ctx.metrics.reconciled(true);
        }
        Err(_) => ctx.metrics.reconciled(false),
    }
    let done = state.done;
    drop(state);
    if done {
        ctx.forget(&key);
    }
    result
}

/// Backoff per object: `probe_interval` doubled per consecutive failure, up to `max_backoff`.
fn error_policy(proxy: Arc<DatabaseProxy>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ProxyKey::new(proxy.namespace().unwrap_or_default(), proxy.name_any());
    let failures = ctx
        .state(&key)
        .try_lock()
        .map(|mut s| {
            s.failures = s.failures.saturating_add(1);
            s.failures
        })
        .unwrap_or(1);
    let delay = backoff(
        ctx.options.probe_interval,
        ctx.options.max_backoff,
        failures,
    );
    tracing::warn!(proxy = %key, error = %crate::error_chain(error), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// `base · 2^(failures-1)`, at most `max`.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let b = Duration::from_secs(2);
        let max = Duration::from_secs(300);
        assert_eq!(backoff(b, max, 1), Duration::from_secs(2));
        assert_eq!(backoff(b, max, 2), Duration::from_secs(4));
        assert_eq!(backoff(b, max, 5), Duration::from_secs(32));
        assert_eq!(backoff(b, max, 9), max);
        assert_eq!(backoff(b, max, u32::MAX), max);
    }
}
