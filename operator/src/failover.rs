//! The operator's failover decision: from what the last probe of every instance saw, which instance is
//! the primary, and — under the `promote` policy — when to promote which replica.
//!
//! Pure: observations and time in, the next state and one action out, so every transition is a unit
//! test. The reconciler probes, calls [`step`], and carries out the action (publish an urgent snapshot,
//! call `pg_promote()`), then probes again.
//!
//! Split-brain guards: a snapshot never names two primaries (a second instance out of recovery while
//! the known primary answers is reported, not followed); a replica is never promoted while a more
//! advanced one is reachable, nor when it is behind the last known primary's flush position and another
//! is not.

use std::time::{Duration, Instant};

/// How long a promoted replica may take to leave recovery before the promotion counts as failed and
/// the decision starts over (reported).
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// `spec.failover.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// An external manager (CloudNativePG, Patroni) promotes; the operator follows what it finds.
    Follow,
    /// The operator promotes the most advanced reachable replica once the primary has been gone for
    /// `detection_delay`.
    Promote { detection_delay: Duration },
}

/// One instance as the last probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub address: String,
    /// Answered the probe.
    pub reachable: bool,
    /// `pg_is_in_recovery()`; `None` when unreachable.
    pub in_recovery: Option<bool>,
    /// Replicas: `pg_last_wal_replay_lsn()`; the primary: `pg_current_wal_flush_lsn()`.
    pub lsn: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `primary` answers and is out of recovery. `flush_lsn` is the last position it was seen at.
    Healthy { primary: String, flush_lsn: u64 },
    /// The primary stopped answering (or went into recovery) at `since`.
    PrimaryLost {
        primary: String,
        flush_lsn: u64,
        since: Instant,
    },
    /// `pg_promote()` was called on `candidate`; waiting to see it out of recovery.
    Promoting {
        old: String,
        flush_lsn: u64,
        candidate: String,
        since: Instant,
    },
}

/// What the reconciler does after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Push the primary as unavailable (writes wait in the sidecars), at once.
    PublishUnavailable {
        primary: String,
    },
    /// Push `primary` as the primary, at once (a failover decision is never debounced).
    PublishPrimary {
        primary: String,
        reason: String,
    },
    /// Call `pg_promote()` on `candidate`.
    Promote {
        candidate: String,
    },
    /// Something is wrong that the operator must not resolve by itself; report it (Degraded).
    Report {
        problem: String,
    },
}

/// The state to start deciding from, at an operator's first look at a DatabaseProxy (or after a
/// restart, or on a follower taking over). `known` is the primary the status already records, else
/// the one the spec declares: it is trusted as the starting point even if it does not answer, so the
/// first [`step`] treats it as lost (and waits `detection_delay`) rather than promoting at startup.
/// Without one, the single instance found out of recovery is the primary; none or several: no
/// decision yet (`None`, reported as an unresolved topology).
pub fn start(seen: &[Seen], known: Option<&str>) -> Option<State> {
    if let Some(primary) = known {
        let flush_lsn = seen
            .iter()
            .find(|s| s.address == primary)
            .and_then(|s| s.lsn)
            .unwrap_or(0);
        return Some(State::Healthy {
            primary: primary.to_owned(),
            flush_lsn,
        });
    }
    let mut primaries = seen
        .iter()
        .filter(|s| s.reachable && s.in_recovery == Some(false));
    match (primaries.next(), primaries.next()) {
        (Some(one), None) => Some(State::Healthy {
            primary: one.address.clone(),
            flush_lsn: one.lsn.unwrap_or(0),
        }),
        _ => None,
    }
}

impl State {
    /// The instance taking writes, as far as this state knows (the lost one while lost).
    pub fn primary(&self) -> &str {
        match self {
            State::Healthy { primary, .. } | State::PrimaryLost { primary, .. } => primary,
            State::Promoting { old, .. } => old,
        }
    }

    /// Writes have nowhere to go right now.
    pub fn is_failing_over(&self) -> bool {
        !matches!(self, State::Healthy { .. })
    }
}

/// One decision. `now` is when `seen` was observed.
pub fn step(state: &State, seen: &[Seen], policy: Policy, now: Instant) -> (State, Action) {
    let primaries: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.reachable && s.in_recovery == Some(false))
        .collect();
    match state {
        State::Healthy { primary, flush_lsn } => {
            let current = seen.iter().find(|s| &s.address == primary);
            let fine = current.is_some_and(|s| s.reachable && s.in_recovery == Some(false));
            if fine {
                let flush = current
                    .and_then(|s| s.lsn)
                    .unwrap_or(*flush_lsn)
                    .max(*flush_lsn);
                let next = State::Healthy {
                    primary: primary.clone(),
                    flush_lsn: flush,
                };
                return match primaries.iter().find(|s| &s.address != primary) {
                    Some(other) => (
                        next,
                        Action::Report {
                            problem: format!(
                                "{} is out of recovery while the primary {primary} still answers: \
                                 not followed (split brain)",
                                other.address
                            ),
                        },
                    ),
                    None => (next, Action::Nothing),
                };
            }
            let lost = State::PrimaryLost {
                primary: primary.clone(),
                flush_lsn: *flush_lsn,
                since: now,
            };
            // Already somebody else (an external manager was quick): follow at once.
            match lost_primary_step(&lost, &primaries, seen, policy, now) {
                (s, Action::Nothing) => (
                    s,
                    Action::PublishUnavailable {
                        primary: primary.clone(),
                    },
                ),
                other => other,
            }
        }
        State::PrimaryLost { .. } => lost_primary_step(state, &primaries, seen, policy, now),
        State::Promoting {
            old,
            flush_lsn,
            candidate,
            since,
        } => {
            if primaries.iter().any(|s| &s.address == candidate) {
                let flush = seen
                    .iter()
                    .find(|s| &s.address == candidate)
                    .and_then(|s| s.lsn)
                    .unwrap_or(0);
                return (
                    State::Healthy {
                        primary: candidate.clone(),
                        flush_lsn: flush,
                    },
                    Action::PublishPrimary {
                        primary: candidate.clone(),
                        reason: format!("promoted {candidate} after losing {old}"),
                    },
                );
            }
            if now.duration_since(*since) >= PROMOTE_TIMEOUT {
                return (
                    State::PrimaryLost {
                        primary: old.clone(),
                        flush_lsn: *flush_lsn,
                        since: *since,
                    },
                    Action::Report {
                        problem: format!(
                            "{candidate} was promoted but is still in recovery after {PROMOTE_TIMEOUT:?}; \
                             deciding again"
                        ),
                    },
                );
            }
            (state.clone(), Action::Nothing)
        }
    }
}

fn lost_primary_step(
    state: &State,
    primaries: &[&Seen],
    seen: &[Seen],
    policy: Policy,
    now: Instant,
) -> (State, Action) {
    let State::PrimaryLost {
        primary,
        flush_lsn,
        since,
    } = state
    else {
        return (state.clone(), Action::Nothing);
    };
    // The old primary is back out of recovery (a restart): keep it.
    if let Some(back) = primaries.iter().find(|s| &s.address == primary) {
        return (
            State::Healthy {
                primary: primary.clone(),
                flush_lsn: back.lsn.unwrap_or(*flush_lsn),
            },
            Action::PublishPrimary {
                primary: primary.clone(),
                reason: format!("{primary} is back"),
            },
        );
    }
    match primaries {
        [one] => {
            return (
                State::Healthy {
                    primary: one.address.clone(),
                    flush_lsn: one.lsn.unwrap_or(0),
                },
                Action::PublishPrimary {
                    primary: one.address.clone(),
                    reason: format!("{} is the primary now (was {primary})", one.address),
                },
            );
        }
        [] => {}
        several => {
            let names: Vec<&str> = several.iter().map(|s| s.address.as_str()).collect();
            return (
                state.clone(),
                Action::Report {
                    problem: format!(
                        "several instances are out of recovery ({}): none is followed",
                        names.join(", ")
                    ),
                },
            );
        }
    }
    let Policy::Promote { detection_delay } = policy else {
        return (state.clone(), Action::Nothing);
    };
    if now.duration_since(*since) < detection_delay {
        return (state.clone(), Action::Nothing);
    }
    match candidate(seen, *flush_lsn) {
        Ok(c) => (
            State::Promoting {
                old: primary.clone(),
                flush_lsn: *flush_lsn,
                candidate: c.clone(),
                since: now,
            },
            Action::Promote { candidate: c },
        ),
        Err(problem) => (state.clone(), Action::Report { problem }),
    }
}

/// The replica to promote: reachable, in recovery, the most advanced, so none behind another is ever
/// chosen. If even the most advanced is behind the lost primary's last flush position it is still the
/// best there is; the gap (what is lost) is logged.
fn candidate(seen: &[Seen], flush_lsn: u64) -> Result<String, String> {
    let best = seen
        .iter()
        .filter(|s| s.reachable && s.in_recovery == Some(true))
        .max_by_key(|s| s.lsn.unwrap_or(0));
    match best {
        Some(s) if s.lsn.is_some() => {
            if s.lsn.unwrap_or(0) < flush_lsn {
                tracing::warn!(
                    candidate = %s.address,
                    behind = flush_lsn - s.lsn.unwrap_or(0),
                    "promoting the most advanced replica, which is behind the lost primary's last flush position"
                );
            }
            Ok(s.address.clone())
        }
        Some(s) => Err(format!(
            "{} answers but reports no replay position: not promoted",
            s.address
        )),
        None => Err("no reachable replica to promote".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(addr: &str, in_recovery: bool, lsn: u64) -> Seen {
        Seen {
            address: addr.into(),
            reachable: true,
            in_recovery: Some(in_recovery),
            lsn: Some(lsn),
        }
    }

    fn down(addr: &str) -> Seen {
        Seen {
            address: addr.into(),
            reachable: false,
            in_recovery: None,
            lsn: None,
        }
    }

    fn healthy(primary: &str, lsn: u64) -> State {
        State::Healthy {
            primary: primary.into(),
            flush_lsn: lsn,
        }
    }

    #[test]
    fn start_trusts_the_known_primary_even_when_it_does_not_answer() {
        assert_eq!(
            start(&[down("p"), up("r", true, 5)], Some("p")),
            Some(healthy("p", 0))
        );
        assert_eq!(
            start(&[up("p", false, 9)], Some("p")),
            Some(healthy("p", 9))
        );
    }

    #[test]
    fn start_without_a_known_primary_needs_exactly_one_out_of_recovery() {
        assert_eq!(
            start(&[up("a", true, 1), up("b", false, 7)], None),
            Some(healthy("b", 7))
        );
        assert_eq!(start(&[up("a", true, 1), down("b")], None), None);
        assert_eq!(start(&[up("a", false, 1), up("b", false, 7)], None), None);
    }

    #[test]
    fn the_primary_of_each_state() {
        let t = Instant::now();
        assert_eq!(healthy("p", 1).primary(), "p");
        let lost = State::PrimaryLost {
            primary: "p".into(),
            flush_lsn: 1,
            since: t,
        };
        assert_eq!(lost.primary(), "p");
        assert!(lost.is_failing_over());
        let promoting = State::Promoting {
            old: "p".into(),
            flush_lsn: 1,
            candidate: "r".into(),
            since: t,
        };
        assert_eq!(promoting.primary(), "p");
        assert!(!healthy("p", 1).is_failing_over());
    }

    const PROMOTE: Policy = Policy::Promote {
        detection_delay: Duration::from_secs(10),
    };

    #[test]
    fn a_healthy_primary_stays_and_its_position_moves_on() {
        let t = Instant::now();
        let (s, a) = step(
            &healthy("p", 10),
            &[up("p", false, 20), up("r", true, 15)],
            PROMOTE,
            t,
        );
        assert_eq!(s, healthy("p", 20));
        assert_eq!(a, Action::Nothing);
    }

    #[test]
    fn a_second_primary_while_the_first_answers_is_reported_not_followed() {
        let t = Instant::now();
        let (s, a) = step(
            &healthy("p", 10),
            &[up("p", false, 20), up("r", false, 15)],
            PROMOTE,
            t,
        );
        assert_eq!(s, healthy("p", 20));
        assert!(matches!(a, Action::Report { problem } if problem.contains("split brain")));
    }

    #[test]
    fn losing_the_primary_makes_it_unavailable_at_once() {
        let t = Instant::now();
        let (s, a) = step(
            &healthy("p", 10),
            &[down("p"), up("r", true, 10)],
            PROMOTE,
            t,
        );
        assert!(matches!(s, State::PrimaryLost { since, .. } if since == t));
        assert_eq!(
            a,
            Action::PublishUnavailable {
                primary: "p".into()
            }
        );
        // A primary that went into recovery is lost too.
        let (s, _) = step(&healthy("p", 10), &[up("p", true, 10)], Policy::Follow, t);
        assert!(matches!(s, State::PrimaryLost { .. }));
    }

    #[test]
    fn follow_waits_for_someone_else_to_promote_and_then_follows() {
        let t = Instant::now();
        let (lost, _) = step(
            &healthy("p", 10),
            &[down("p"), up("r", true, 10)],
            Policy::Follow,
            t,
        );
        let later = t + Duration::from_secs(3600);
        let (s, a) = step(
            &lost,
            &[down("p"), up("r", true, 10)],
            Policy::Follow,
            later,
        );
        assert_eq!((s, a), (lost.clone(), Action::Nothing), "never promotes");
        let (s, a) = step(
            &lost,
            &[down("p"), up("r", false, 12)],
            Policy::Follow,
            later,
        );
        assert_eq!(s, healthy("r", 12));
        assert!(matches!(a, Action::PublishPrimary { primary, .. } if primary == "r"));
    }

    #[test]
    fn an_external_promotion_seen_with_the_loss_is_followed_at_once() {
        let t = Instant::now();
        let (s, a) = step(
            &healthy("p", 10),
            &[down("p"), up("r", false, 12)],
            Policy::Follow,
            t,
        );
        assert_eq!(s, healthy("r", 12));
        assert!(matches!(a, Action::PublishPrimary { .. }));
    }

    #[test]
    fn the_old_primary_back_before_anything_happened_is_kept() {
        let t = Instant::now();
        let (lost, _) = step(
            &healthy("p", 10),
            &[down("p"), up("r", true, 10)],
            PROMOTE,
            t,
        );
        let (s, a) = step(&lost, &[up("p", false, 11), up("r", true, 10)], PROMOTE, t);
        assert_eq!(s, healthy("p", 11));
        assert!(matches!(a, Action::PublishPrimary { primary, .. } if primary == "p"));
    }

    #[test]
    fn promote_waits_for_the_detection_delay_then_picks_the_most_advanced_replica() {
        let t = Instant::now();
        let seen = [down("p"), up("r1", true, 8), up("r2", true, 10), down("r3")];
        let (lost, _) = step(&healthy("p", 10), &seen, PROMOTE, t);
        let (s, a) = step(&lost, &seen, PROMOTE, t + Duration::from_secs(9));
        assert_eq!((s, a), (lost.clone(), Action::Nothing));
        let (s, a) = step(&lost, &seen, PROMOTE, t + Duration::from_secs(10));
        assert!(matches!(&s, State::Promoting { candidate, .. } if candidate == "r2"));
        assert_eq!(
            a,
            Action::Promote {
                candidate: "r2".into()
            }
        );
        // Seen out of recovery: published as the primary.
        let (s, a) = step(
            &s,
            &[down("p"), up("r1", true, 8), up("r2", false, 11)],
            PROMOTE,
            t,
        );
        assert_eq!(s, healthy("r2", 11));
        assert!(matches!(a, Action::PublishPrimary { primary, .. } if primary == "r2"));
    }

    #[test]
    fn promoting_keeps_waiting_until_the_candidate_is_out_of_recovery() {
        let t = Instant::now();
        let promoting = State::Promoting {
            old: "p".into(),
            flush_lsn: 10,
            candidate: "r".into(),
            since: t,
        };
        let (s, a) = step(&promoting, &[down("p"), up("r", true, 10)], PROMOTE, t);
        assert_eq!((s, a), (promoting.clone(), Action::Nothing));
        // A promotion that never takes: reported, and decided again.
        let late = t + PROMOTE_TIMEOUT;
        let (s, a) = step(&promoting, &[down("p"), up("r", true, 10)], PROMOTE, late);
        assert!(matches!(s, State::PrimaryLost { ref primary, .. } if primary == "p"));
        assert!(matches!(a, Action::Report { problem } if problem.contains("still in recovery")));
    }

    #[test]
    fn nothing_to_promote_is_reported() {
        let t = Instant::now();
        let (lost, _) = step(&healthy("p", 10), &[down("p"), down("r")], PROMOTE, t);
        let (_, a) = step(
            &lost,
            &[down("p"), down("r")],
            PROMOTE,
            t + Duration::from_secs(60),
        );
        assert!(
            matches!(a, Action::Report { problem } if problem.contains("no reachable replica"))
        );
        let no_lsn = Seen {
            lsn: None,
            ..up("r", true, 0)
        };
        let (_, a) = step(
            &lost,
            &[down("p"), no_lsn],
            PROMOTE,
            t + Duration::from_secs(60),
        );
        assert!(matches!(a, Action::Report { problem } if problem.contains("no replay position")));
    }

    #[test]
    fn two_instances_out_of_recovery_after_a_loss_are_not_followed() {
        let t = Instant::now();
        let (lost, _) = step(
            &healthy("p", 10),
            &[down("p"), up("r", true, 10)],
            PROMOTE,
            t,
        );
        let (s, a) = step(
            &lost,
            &[down("p"), up("r1", false, 10), up("r2", false, 10)],
            PROMOTE,
            t + Duration::from_secs(60),
        );
        assert_eq!(s, lost);
        assert!(matches!(a, Action::Report { problem } if problem.contains("several")));
    }
}
