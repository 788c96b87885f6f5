//! One round for one DatabaseProxy: resolve, probe, decide, publish, report. See the module above
//! for who does what (leader or follower).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};
use pgroute_proto::v1::{self, Snapshot};
use serde_json::json;

use super::status::{self, Observation as StatusInput};
use super::{promote, Context, Error, ReconcileOptions, FIELD_MANAGER};
use crate::control::ProxyKey;
use crate::crd::{condition, DatabaseProxy, DatabaseProxySpec, EndpointRole, FailoverPolicy};
use crate::failover::{self, Action as Decision, Policy, Seen, State};
use crate::topology::{self, Eligibility, Instance, Limits, Prober, ReplicaVerdict};

/// `spec.failover.detectionDelay` when absent.
const DEFAULT_DETECTION_DELAY: Duration = Duration::from_secs(10);

/// What the operator keeps about one DatabaseProxy between rounds.
pub struct ProxyState {
    prober: Prober,
    eligibility: Option<Eligibility>,
    /// The failover state machine (leader only; a follower reads the primary from status).
    failover: Option<State>,
    /// The last snapshot published (version 0: versions are the index's), to publish only changes.
    published: Option<Snapshot>,
    /// Its version in the index.
    version: u64,
    /// The problem reported last (an Event is sent when it changes).
    problem: Option<String>,
    /// The last completed failover, for status.
    last_failover: Option<(Time, String)>,
    last_status_write: Option<Instant>,
    /// Replica eligibility last round, for Events on change.
    eligible: HashMap<String, bool>,
    drain_started: Option<Instant>,
    /// Consecutive failed rounds (the error policy's backoff).
    pub failures: u32,
    /// Deleted and drained: the state can go.
    pub done: bool,
}

impl ProxyState {
    pub fn new(options: &ReconcileOptions) -> ProxyState {
        ProxyState {
            prober: Prober::new(options.connect_timeout, options.query_timeout),
            eligibility: None,
            failover: None,
            published: None,
            version: 0,
            problem: None,
            last_failover: None,
            last_status_write: None,
            eligible: HashMap::new(),
            drain_started: None,
            failures: 0,
            done: false,
        }
    }
}

/// What the round decided about the primary.
struct Primary {
    address: Option<String>,
    /// Why writes have nowhere to go right now, while failing over.
    failing_over: Option<String>,
}

pub(super) async fn run(
    ctx: &Context,
    key: &ProxyKey,
    proxy: &DatabaseProxy,
    state: &mut ProxyState,
    leader: bool,
) -> Result<Action, Error> {
    let spec = &proxy.spec;
    let resolved = resolve(ctx, key, spec).await;
    let (instances, login) = match resolved {
        Ok(r) => r,
        Err(e) => {
            if leader {
                let message = crate::error_chain(&e);
                let seen = StatusInput {
                    generation: proxy.metadata.generation,
                    resolve_error: Some(&message),
                    primary: None,
                    failing_over: None,
                    problem: None,
                    replicas: &[],
                    topology_version: state.version,
                    proxies: ctx.reports.in_sync(key, state.version),
                    last_failover: state.last_failover.clone(),
                };
                write_status(ctx, key, proxy, state, &seen).await?;
            }
            return Err(e);
        }
    };
    let observations = state.prober.probe(&login, &instances).await;
    let now = Instant::now();
    let seen: Vec<Seen> = observations.iter().map(|o| o.seen()).collect();

    let primary = if leader {
        decide(ctx, proxy, state, &instances, &seen, &login, now).await?
    } else {
        state.failover = None;
        from_status(proxy)
    };

    let limits = Limits::from_spec(&spec.consistency)?;
    let eligibility = state
        .eligibility
        .get_or_insert_with(|| Eligibility::new(limits));
    eligibility.set_limits(limits);
    let primary_lsn = primary
        .address
        .as_deref()
        .and_then(|p| observations.iter().find(|o| o.address == p))
        .and_then(|o| o.lsn);
    let verdicts = eligibility.update(now, primary.address.as_deref(), primary_lsn, &observations);

    if let Some(address) = primary.address.as_deref() {
        let failover = v1::Failover {
            state: if primary.failing_over.is_some() {
                v1::FailoverState::PrimaryUnavailable
            } else {
                v1::FailoverState::None
            } as i32,
            new_primary: String::new(),
        };
        let snapshot = topology::build(spec, Some(address), &verdicts, failover)?;
        publish(ctx, key, state, snapshot);
    }

    let (synced, total) = ctx.reports.in_sync(key, state.version);
    ctx.metrics.proxy(
        key,
        state.version,
        synced,
        total,
        &verdicts,
        primary.failing_over.is_some(),
    );
    if leader {
        replica_events(ctx, proxy, state, &verdicts).await;
        let problem = state.problem.clone();
        let seen = StatusInput {
            generation: proxy.metadata.generation,
            resolve_error: None,
            primary: primary.address.as_deref(),
            failing_over: primary.failing_over.as_deref(),
            problem: problem.as_deref(),
            replicas: &verdicts,
            topology_version: state.version,
            proxies: (synced, total),
            last_failover: state.last_failover.clone(),
        };
        write_status(ctx, key, proxy, state, &seen).await?;
    }
    Ok(Action::requeue(ctx.options.probe_interval))
}

/// Deletion: the last snapshot again with `draining`, then (leader) wait for the sidecars to report
/// it, at most `drain_timeout`; the finalizer goes when this returns.
pub(super) async fn drain(
    ctx: &Context,
    key: &ProxyKey,
    proxy: &DatabaseProxy,
    state: &mut ProxyState,
    leader: bool,
) -> Result<Action, Error> {
    if let Some(snapshot) = state.published.clone().filter(|s| !s.draining) {
        publish(
            ctx,
            key,
            state,
            Snapshot {
                draining: true,
                ..snapshot
            },
        );
        if leader {
            event(
                ctx,
                proxy,
                EventType::Normal,
                "Draining",
                "Drain",
                "telling the sidecars this DatabaseProxy is being deleted".into(),
            )
            .await;
        }
    }
    state.done = true;
    if !leader {
        return Ok(Action::await_change());
    }
    let started = *state.drain_started.get_or_insert_with(Instant::now);
    let (synced, total) = loop {
        let (synced, total) = ctx.reports.in_sync(key, state.version);
        if state.published.is_none() || synced == total {
            break (synced, total);
        }
        let waited = started.elapsed();
        if waited >= ctx.options.drain_timeout {
            break (synced, total);
        }
        tokio::time::sleep((ctx.options.drain_timeout - waited).min(Duration::from_millis(250)))
            .await;
    };
    let note = format!("{synced} of {total} sidecar(s) acknowledged the draining topology");
    if synced == total {
        tracing::info!(proxy = %key, "{note}; removing the finalizer");
    } else {
        tracing::warn!(proxy = %key, "{note} within {:?}; removing the finalizer anyway", ctx.options.drain_timeout);
    }
    event(ctx, proxy, EventType::Normal, "Drained", "Drain", note).await;
    ctx.index.remove(key);
    ctx.metrics.forget(key);
    Ok(Action::await_change())
}

async fn resolve(
    ctx: &Context,
    key: &ProxyKey,
    spec: &DatabaseProxySpec,
) -> Result<(Vec<Instance>, topology::Login), Error> {
    let instances = topology::instances(&ctx.client, &key.namespace, &spec.target).await?;
    let login = topology::login(&ctx.client, &key.namespace, &spec.credentials).await?;
    Ok((instances, login))
}

/// The leader's decision: one step of the failover state machine, carried out.
async fn decide(
    ctx: &Context,
    proxy: &DatabaseProxy,
    state: &mut ProxyState,
    instances: &[Instance],
    seen: &[Seen],
    login: &topology::Login,
    now: Instant,
) -> Result<Primary, Error> {
    let policy = policy(&proxy.spec)?;
    if state.failover.is_none() {
        let known = proxy
            .status
            .as_ref()
            .and_then(|s| s.primary.clone())
            .or_else(|| {
                instances
                    .iter()
                    .find(|i| i.declared == Some(EndpointRole::Primary))
                    .map(|i| i.address.clone())
            });
        state.failover = failover::start(seen, known.as_deref());
    }
    let Some(current) = state.failover.clone() else {
        return Ok(Primary {
            address: None,
            failing_over: None,
        });
    };
    let (next, action) = failover::step(&current, seen, policy, now);
    state.failover = Some(next.clone());
    let problem = match action {
        Decision::Nothing => None,
        Decision::PublishUnavailable { primary } => {
            ctx.metrics.primary_lost();
            event(
                ctx,
                proxy,
                EventType::Warning,
                "PrimaryLost",
                "Failover",
                format!("primary {primary} is unreachable or in recovery; writes wait"),
            )
            .await;
            None
        }
        Decision::PublishPrimary { primary, reason } => {
            if primary != current.primary() {
                ctx.metrics.failover();
                state.last_failover = Some((Time(Timestamp::now()), reason.clone()));
            }
            event(
                ctx,
                proxy,
                EventType::Normal,
                "PrimaryChanged",
                "Failover",
                reason,
            )
            .await;
            None
        }
        Decision::Promote { candidate } => {
            event(
                ctx,
                proxy,
                EventType::Warning,
                "Promoting",
                "Failover",
                format!(
                    "promoting {candidate} with pg_promote(): primary {} lost",
                    current.primary()
                ),
            )
            .await;
            if let Err(e) = promote::promote(login, &candidate, ctx.options.connect_timeout).await {
                let message = format!(
                    "pg_promote() on {candidate} failed: {}",
                    crate::error_chain(&e)
                );
                tracing::warn!("{message}");
                event(
                    ctx,
                    proxy,
                    EventType::Warning,
                    "PromoteFailed",
                    "Failover",
                    message,
                )
                .await;
            }
            None
        }
        Decision::Report { problem } => Some(problem),
    };
    // A problem stays reported until a round without one.
    if problem != state.problem {
        if let Some(p) = &problem {
            tracing::warn!(proxy = %proxy.metadata.name.as_deref().unwrap_or_default(), "{p}");
            event(
                ctx,
                proxy,
                EventType::Warning,
                "NeedsAttention",
                "Failover",
                p.clone(),
            )
            .await;
        }
        state.problem = problem;
    }
    Ok(Primary {
        address: Some(next.primary().to_owned()),
        failing_over: describe(&next),
    })
}

/// A follower's view: the primary and failover state the leader wrote.
fn from_status(proxy: &DatabaseProxy) -> Primary {
    let status = proxy.status.as_ref();
    let failing_over = status
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == condition::FAILOVER_IN_PROGRESS && c.status == "True")
        })
        .map(|c| c.message.clone());
    Primary {
        address: status.and_then(|s| s.primary.clone()),
        failing_over,
    }
}

fn describe(state: &State) -> Option<String> {
    match state {
        State::Healthy { .. } => None,
        State::PrimaryLost { primary, .. } => {
            Some(format!("primary {primary} is unreachable or in recovery"))
        }
        State::Promoting { old, candidate, .. } => {
            Some(format!("promoting {candidate}: primary {old} lost"))
        }
    }
}

fn policy(spec: &DatabaseProxySpec) -> Result<Policy, Error> {
    Ok(match spec.failover.policy {
        FailoverPolicy::Follow => Policy::Follow,
        FailoverPolicy::Promote => Policy::Promote {
            detection_delay: match &spec.failover.detection_delay {
                Some(d) => topology::parse_duration(d)?,
                None => DEFAULT_DETECTION_DELAY,
            },
        },
    })
}

/// Publishes `snapshot` if it differs from the last one; at once when the primary or the failover
/// state changed (or on drain), debounced otherwise.
fn publish(ctx: &Context, key: &ProxyKey, state: &mut ProxyState, snapshot: Snapshot) {
    if state.published.as_ref() == Some(&snapshot) {
        return;
    }
    let urgent = state.published.as_ref().is_none_or(|p| {
        p.primary != snapshot.primary
            || p.failover != snapshot.failover
            || p.draining != snapshot.draining
    });
    state.version = ctx.index.publish(key, snapshot.clone(), urgent);
    state.published = Some(snapshot);
}

async fn replica_events(
    ctx: &Context,
    proxy: &DatabaseProxy,
    state: &mut ProxyState,
    verdicts: &[ReplicaVerdict],
) {
    for v in verdicts {
        let before = state.eligible.insert(v.address.clone(), v.eligible);
        if before.is_some_and(|b| b != v.eligible) {
            let (kind, reason) = if v.eligible {
                (EventType::Normal, "ReplicaEligible")
            } else {
                (EventType::Warning, "ReplicaIneligible")
            };
            event(
                ctx,
                proxy,
                kind,
                reason,
                "Topology",
                format!("replica {}: {}", v.address, v.reason),
            )
            .await;
        }
    }
    state
        .eligible
        .retain(|a, _| verdicts.iter().any(|v| &v.address == a));
}

async fn write_status(
    ctx: &Context,
    key: &ProxyKey,
    proxy: &DatabaseProxy,
    state: &mut ProxyState,
    seen: &StatusInput<'_>,
) -> Result<(), Error> {
    let current = proxy.status.as_ref();
    let next = status::compute(current, seen, &Time(Timestamp::now()));
    let since = state.last_status_write.map(|t| t.elapsed());
    if !status::needs_write(current, &next, since, ctx.options.lag_refresh) {
        return Ok(());
    }
    let api = Api::<DatabaseProxy>::namespaced(ctx.client.clone(), &key.namespace);
    let body = json!({
        "apiVersion": DatabaseProxy::api_version(&()),
        "kind": DatabaseProxy::kind(&()),
        "status": next,
    });
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::Status)?;
    state.last_status_write = Some(Instant::now());
    Ok(())
}

/// Publishes an Event about `proxy`; a failure is logged, never fails the round.
async fn event(
    ctx: &Context,
    proxy: &DatabaseProxy,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &proxy.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish an Event");
    }
}
