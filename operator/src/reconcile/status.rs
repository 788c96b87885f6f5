//! The status a round of observation leads to, pure: what was seen in, a `DatabaseProxyStatus` out.
//! Conditions keep their `lastTransitionTime` while their status stays the same, so an unchanged
//! world gives an equal status and [`needs_write`] can skip the API call.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{condition, DatabaseProxyStatus, ReplicaStatus};
use crate::topology::ReplicaVerdict;

/// What one round saw and decided.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub generation: Option<i64>,
    /// Why the target did not resolve to instances (Secret missing, no endpoints...).
    pub resolve_error: Option<&'a str>,
    /// The primary in force (the lost one while failing over).
    pub primary: Option<&'a str>,
    /// The primary is lost, or a replica is being promoted.
    pub failing_over: Option<&'a str>,
    /// Something the operator will not resolve by itself (split brain, nothing to promote).
    pub problem: Option<&'a str>,
    pub replicas: &'a [ReplicaVerdict],
    pub topology_version: u64,
    /// Sidecars with `topology_version` in force, of those reporting.
    pub proxies: (usize, usize),
    pub last_failover: Option<(Time, String)>,
}

/// The new status, with the previous one's transition times kept where nothing flipped.
pub fn compute(
    previous: Option<&DatabaseProxyStatus>,
    seen: &Observation<'_>,
    now: &Time,
) -> DatabaseProxyStatus {
    let replicas: Vec<ReplicaStatus> = seen
        .replicas
        .iter()
        .map(|r| ReplicaStatus {
            address: r.address.clone(),
            lag_bytes: r.lag_bytes.map(saturating_i64),
            lag_millis: r.lag_ms.map(saturating_i64),
            eligible: r.eligible,
            reason: r.reason.to_string(),
        })
        .collect();
    let ready_replicas = replicas.iter().filter(|r| r.eligible).count();
    let (synced, total) = seen.proxies;

    let resolved = match (seen.resolve_error, seen.primary) {
        (Some(e), _) => cond(condition::TOPOLOGY_RESOLVED, false, "ResolveFailed", e),
        (None, None) => cond(
            condition::TOPOLOGY_RESOLVED,
            false,
            "NoPrimary",
            "no instance is out of recovery",
        ),
        (None, Some(p)) => cond(
            condition::TOPOLOGY_RESOLVED,
            true,
            "Resolved",
            &format!("primary {p}, {} replica(s)", replicas.len()),
        ),
    };
    let failover = match seen.failing_over {
        Some(what) => cond(condition::FAILOVER_IN_PROGRESS, true, "PrimaryLost", what),
        None => cond(
            condition::FAILOVER_IN_PROGRESS,
            false,
            "PrimaryHealthy",
            "the primary answers",
        ),
    };
    let synced_message = format!(
        "{synced} of {total} sidecar(s) run topology version {}",
        seen.topology_version
    );
    let proxies_synced = cond(
        condition::PROXIES_SYNCED,
        synced == total,
        if synced == total { "Synced" } else { "Pending" },
        &synced_message,
    );
    let ineligible: Vec<&ReplicaStatus> = replicas.iter().filter(|r| !r.eligible).collect();
    let degraded = if let Some(problem) = seen.problem {
        cond(condition::DEGRADED, true, "NeedsAttention", problem)
    } else if !ineligible.is_empty() {
        let list: Vec<String> = ineligible
            .iter()
            .map(|r| format!("{} ({})", r.address, r.reason))
            .collect();
        cond(
            condition::DEGRADED,
            true,
            "ReplicasNotReady",
            &format!("replicas not taking reads: {}", list.join(", ")),
        )
    } else if synced < total {
        cond(condition::DEGRADED, true, "ProxiesBehind", &synced_message)
    } else {
        cond(
            condition::DEGRADED,
            false,
            "AsExpected",
            "all replicas and sidecars are in step",
        )
    };
    let ready_now = seen.resolve_error.is_none()
        && seen.primary.is_some()
        && seen.failing_over.is_none()
        && synced == total;
    let ready = if ready_now {
        cond(
            condition::READY,
            true,
            "Ready",
            "writes and reads are served",
        )
    } else {
        let why = [&resolved, &failover, &proxies_synced]
            .into_iter()
            .find(|c| (c.type_ == condition::FAILOVER_IN_PROGRESS) == (c.status == "True"))
            .map_or("not ready", |c| c.message.as_str());
        cond(condition::READY, false, "NotReady", why)
    };

    let mut conditions = vec![ready, resolved, proxies_synced, degraded, failover];
    for c in &mut conditions {
        c.observed_generation = seen.generation;
        let before = previous.and_then(|p| p.conditions.iter().find(|o| o.type_ == c.type_));
        c.last_transition_time = match before {
            Some(b) if b.status == c.status => b.last_transition_time.clone(),
            _ => now.clone(),
        };
    }
    let (last_failover_time, last_failover_reason) = match &seen.last_failover {
        Some((t, r)) => (Some(t.clone()), Some(r.clone())),
        None => (
            previous.and_then(|p| p.last_failover_time.clone()),
            previous.and_then(|p| p.last_failover_reason.clone()),
        ),
    };
    DatabaseProxyStatus {
        observed_generation: seen.generation,
        conditions,
        primary: seen.primary.map(str::to_owned),
        replicas,
        replicas_ready: i32::try_from(ready_replicas).unwrap_or(i32::MAX),
        topology_version: saturating_i64(seen.topology_version),
        proxies_synced: i32::try_from(synced).unwrap_or(i32::MAX),
        proxies_total: i32::try_from(total).unwrap_or(i32::MAX),
        last_failover_time,
        last_failover_reason,
    }
}

/// Whether `next` must be written over `current`. Any change but replica lag is written at once;
/// lag alone changes on every probe of a busy database, so it is written at most every
/// `lag_refresh` (the sidecars get lag through snapshots, not through the status).
pub fn needs_write(
    current: Option<&DatabaseProxyStatus>,
    next: &DatabaseProxyStatus,
    since_last_write: Option<Duration>,
    lag_refresh: Duration,
) -> bool {
    let Some(current) = current else {
        return true;
    };
    if current == next {
        return false;
    }
    if without_lag(current) != without_lag(next) {
        return true;
    }
    since_last_write.is_none_or(|d| d >= lag_refresh)
}

fn without_lag(s: &DatabaseProxyStatus) -> DatabaseProxyStatus {
    let mut s = s.clone();
    for r in &mut s.replicas {
        r.lag_bytes = None;
        r.lag_millis = None;
    }
    s
}

fn cond(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Reason;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    fn replica(addr: &str, eligible: bool, reason: Reason, lag: u64) -> ReplicaVerdict {
        ReplicaVerdict {
            address: addr.into(),
            lag_bytes: Some(lag),
            lag_ms: Some(lag),
            eligible,
            reason,
        }
    }

    fn seen<'a>(replicas: &'a [ReplicaVerdict]) -> Observation<'a> {
        Observation {
            generation: Some(3),
            resolve_error: None,
            primary: Some("p:5432"),
            failing_over: None,
            problem: None,
            replicas,
            topology_version: 10,
            proxies: (2, 2),
            last_failover: None,
        }
    }

    fn get<'a>(s: &'a DatabaseProxyStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn a_healthy_world_is_ready_and_not_degraded() {
        let rs = [replica("r:5432", true, Reason::Healthy, 0)];
        let s = compute(None, &seen(&rs), &at(100));
        assert_eq!(s.primary.as_deref(), Some("p:5432"));
        assert_eq!(
            (s.replicas_ready, s.proxies_synced, s.proxies_total),
            (1, 2, 2)
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(get(&s, condition::READY).status, "True");
        assert_eq!(get(&s, condition::TOPOLOGY_RESOLVED).status, "True");
        assert_eq!(get(&s, condition::DEGRADED).status, "False");
        assert_eq!(get(&s, condition::FAILOVER_IN_PROGRESS).status, "False");
        assert_eq!(s.conditions.len(), condition::ALL.len());
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let healthy = [replica("r:5432", true, Reason::Healthy, 0)];
        let first = compute(None, &seen(&healthy), &at(100));
        let again = compute(Some(&first), &seen(&healthy), &at(200));
        assert_eq!(
            first, again,
            "nothing changed: an equal status, nothing to write"
        );
        let lagging = [replica("r:5432", false, Reason::LagOverLimit, 99)];
        let third = compute(Some(&again), &seen(&lagging), &at(300));
        assert_eq!(
            get(&third, condition::DEGRADED).last_transition_time,
            at(300)
        );
        assert_eq!(get(&third, condition::DEGRADED).reason, "ReplicasNotReady");
        assert!(get(&third, condition::DEGRADED)
            .message
            .contains("r:5432 (LagOverLimit)"));
        assert_eq!(get(&third, condition::READY).last_transition_time, at(100));
    }

    #[test]
    fn failover_resolve_errors_and_pending_sidecars_are_not_ready() {
        let rs = [];
        let mut o = seen(&rs);
        o.failing_over = Some("primary p:5432 is unreachable");
        let s = compute(None, &o, &at(1));
        assert_eq!(get(&s, condition::FAILOVER_IN_PROGRESS).status, "True");
        assert_eq!(get(&s, condition::READY).status, "False");
        assert_eq!(
            get(&s, condition::READY).message,
            "primary p:5432 is unreachable"
        );

        let mut o = seen(&rs);
        o.resolve_error = Some("Secret db-creds not found");
        o.primary = None;
        let s = compute(None, &o, &at(1));
        assert_eq!(
            get(&s, condition::TOPOLOGY_RESOLVED).reason,
            "ResolveFailed"
        );
        assert_eq!(
            get(&s, condition::READY).message,
            "Secret db-creds not found"
        );

        let mut o = seen(&rs);
        o.proxies = (1, 3);
        let s = compute(None, &o, &at(1));
        assert_eq!(get(&s, condition::PROXIES_SYNCED).status, "False");
        assert_eq!(get(&s, condition::DEGRADED).reason, "ProxiesBehind");
        assert_eq!(get(&s, condition::READY).status, "False");
    }

    #[test]
    fn a_problem_is_degraded_and_the_last_failover_is_kept() {
        let rs = [];
        let mut o = seen(&rs);
        o.problem = Some("several instances are out of recovery");
        o.last_failover = Some((at(50), "promoted r".into()));
        let s = compute(None, &o, &at(60));
        assert_eq!(get(&s, condition::DEGRADED).reason, "NeedsAttention");
        let later = compute(Some(&s), &seen(&rs), &at(70));
        assert_eq!(later.last_failover_time, Some(at(50)));
        assert_eq!(later.last_failover_reason.as_deref(), Some("promoted r"));
    }

    #[test]
    fn lag_alone_is_written_at_most_every_refresh() {
        let a = [replica("r:5432", true, Reason::Healthy, 1)];
        let b = [replica("r:5432", true, Reason::Healthy, 2)];
        let s1 = compute(None, &seen(&a), &at(1));
        let s2 = compute(Some(&s1), &seen(&b), &at(2));
        let refresh = Duration::from_secs(10);
        assert!(needs_write(None, &s1, None, refresh));
        assert!(!needs_write(Some(&s1), &s1, Some(Duration::ZERO), refresh));
        assert!(!needs_write(
            Some(&s1),
            &s2,
            Some(Duration::from_secs(3)),
            refresh
        ));
        assert!(needs_write(
            Some(&s1),
            &s2,
            Some(Duration::from_secs(10)),
            refresh
        ));
        let c = [replica("r:5432", false, Reason::LagOverLimit, 2)];
        let s3 = compute(Some(&s1), &seen(&c), &at(3));
        assert!(needs_write(Some(&s1), &s3, Some(Duration::ZERO), refresh));
    }
}
