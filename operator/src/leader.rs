//! Leader election with a `coordination.k8s.io/v1` Lease, so several operator replicas can run: all
//! serve the control plane; only the leader writes status, manages finalizers and decides failover.
//!
//! The same protocol as client-go's leaderelection: the holder renews `renewTime` every
//! `retry_period`; a candidate takes the Lease over when it has seen no change to it for
//! `lease_duration`. Expiry is judged on the candidate's own monotonic clock from when it last saw the
//! Lease change, never by comparing `renewTime` with its wall clock, so clock skew between nodes
//! cannot make two replicas leaders. Writes carry the Lease's `resourceVersion`: of two candidates
//! racing for it, the API server lets one win (409 for the other). A leader that cannot renew for
//! `renew_deadline` (shorter than `lease_duration`) steps down before anyone else may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::watch;

/// Timings and identity. Defaults are client-go's (15 s / 10 s / 2 s).
#[derive(Debug, Clone)]
pub struct ElectionOptions {
    /// Name of the Lease, in `namespace`.
    pub lease_name: String,
    pub namespace: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a silent Lease stays held.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down. Must be below `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or checked.
    pub retry_period: Duration,
}

impl ElectionOptions {
    pub fn new(namespace: &str, identity: &str) -> ElectionOptions {
        ElectionOptions {
            lease_name: "pgroute-operator".into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a replica does with the Lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It is ours: renew it.
    Renew,
    /// Nobody holds it, or its holder went silent: take it.
    Acquire,
    /// Somebody else holds it.
    Follow { holder: String },
}

/// The Lease as last read, and when this replica first saw it in that form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub holder: Option<String>,
    /// `renewTime` as written (compared for change only, never against our clock).
    pub renew_time: Option<String>,
    pub seen_at: Instant,
}

impl Observed {
    /// `previous` updated with what was just read at `now`: `seen_at` moves only when the Lease
    /// changed (holder or renewTime).
    pub fn update(
        previous: Option<&Observed>,
        holder: Option<&str>,
        renew_time: Option<&str>,
        now: Instant,
    ) -> Observed {
        let holder = holder.filter(|h| !h.is_empty()).map(str::to_owned);
        let renew_time = renew_time.map(str::to_owned);
        match previous {
            Some(p) if p.holder == holder && p.renew_time == renew_time => p.clone(),
            _ => Observed {
                holder,
                renew_time,
                seen_at: now,
            },
        }
    }
}

/// The decision, pure. `lease_duration` is the Lease's own `leaseDurationSeconds` when it has one.
pub fn decide(observed: &Observed, me: &str, lease_duration: Duration, now: Instant) -> Decision {
    match &observed.holder {
        None => Decision::Acquire,
        Some(h) if h == me => Decision::Renew,
        Some(_) if now.duration_since(observed.seen_at) >= lease_duration => Decision::Acquire,
        Some(h) => Decision::Follow { holder: h.clone() },
    }
}

/// Runs the election until `shutdown` resolves, then releases the Lease if held (so a successor
/// need not wait `lease_duration`). `leader` is set whenever leadership changes.
pub async fn run(
    api: Api<Lease>,
    options: ElectionOptions,
    leader: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut observed: Option<Observed> = None;
    let mut last_renewed: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let now = Instant::now();
        let held = match try_once(&api, &options, &mut observed, now).await {
            Ok(held) => {
                if held {
                    last_renewed = Some(now);
                }
                held
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = %options.lease_name, "leader election: cannot read or write the Lease");
                // Keep leadership only within the renew deadline.
                last_renewed.is_some_and(|t| now.duration_since(t) < options.renew_deadline)
                    && *leader.borrow()
            }
        };
        if !held {
            last_renewed = None;
        }
        if *leader.borrow() != held {
            tracing::info!(identity = %options.identity, leader = held, "leadership changed");
            leader.send_replace(held);
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(options.retry_period) => {}
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        if let Err(e) = release(&api, &options).await {
            tracing::warn!(error = %e, "could not release the Lease; a successor waits for it to expire");
        }
    }
}

/// One read and, if the decision says so, one write. `Ok(true)`: we hold the Lease now.
async fn try_once(
    api: &Api<Lease>,
    options: &ElectionOptions,
    observed: &mut Option<Observed>,
    now: Instant,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&options.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(options.lease_name.clone()),
                namespace: Some(options.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_by(options, None, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let renew = spec.renew_time.as_ref().map(|t| t.0.to_string());
    let seen = Observed::update(
        observed.as_ref(),
        spec.holder_identity.as_deref(),
        renew.as_deref(),
        now,
    );
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(options.lease_duration, Duration::from_secs);
    let decision = decide(&seen, &options.identity, duration, now);
    *observed = Some(seen);
    let transitions = spec.lease_transitions.unwrap_or(0);
    lease.spec = Some(match decision {
        Decision::Follow { .. } => return Ok(false),
        Decision::Renew => {
            let mut renewed = held_by(options, spec.acquire_time.clone(), transitions);
            renewed.lease_transitions = Some(transitions);
            renewed
        }
        Decision::Acquire => held_by(options, None, transitions + 1),
    });
    match api
        .replace(&options.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        // Somebody else wrote it first (renewed, or won the race to take it).
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

fn held_by(options: &ElectionOptions, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(options.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(options.lease_duration.as_secs()).unwrap_or(i32::MAX),
        ),
        acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Gives the Lease up (empty holder, as client-go's `ReleaseOnCancel`), if it is still ours.
async fn release(api: &Api<Lease>, options: &ElectionOptions) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&options.lease_name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(options.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&options.lease_name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn seen(holder: Option<&str>, renew: &str, at: Instant) -> Observed {
        Observed::update(None, holder, Some(renew), at)
    }

    #[test]
    fn an_unheld_lease_is_acquired() {
        let t = Instant::now();
        assert_eq!(decide(&seen(None, "1", t), "me", D, t), Decision::Acquire);
        assert_eq!(
            decide(&seen(Some(""), "1", t), "me", D, t),
            Decision::Acquire
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let t = Instant::now();
        assert_eq!(
            decide(&seen(Some("me"), "1", t), "me", D, t),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_holder_is_followed_and_a_silent_one_replaced() {
        let t = Instant::now();
        let o = seen(Some("other"), "1", t);
        assert_eq!(
            decide(&o, "me", D, t + D - Duration::from_millis(1)),
            Decision::Follow {
                holder: "other".into()
            }
        );
        assert_eq!(decide(&o, "me", D, t + D), Decision::Acquire);
    }

    #[test]
    fn expiry_counts_from_the_last_change_seen_not_from_renew_time() {
        let t = Instant::now();
        let first = seen(Some("other"), "1", t);
        // Renewed 10 s later: the clock restarts.
        let renewed = Observed::update(
            Some(&first),
            Some("other"),
            Some("2"),
            t + Duration::from_secs(10),
        );
        assert_eq!(renewed.seen_at, t + Duration::from_secs(10));
        assert!(matches!(
            decide(&renewed, "me", D, t + Duration::from_secs(20)),
            Decision::Follow { .. }
        ));
        // Unchanged: the clock keeps running.
        let same = Observed::update(
            Some(&renewed),
            Some("other"),
            Some("2"),
            t + Duration::from_secs(24),
        );
        assert_eq!(same.seen_at, t + Duration::from_secs(10));
        assert_eq!(
            decide(&same, "me", D, t + Duration::from_secs(25)),
            Decision::Acquire
        );
    }
}
