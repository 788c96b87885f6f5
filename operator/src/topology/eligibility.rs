//! Which replicas may take reads, from the probe's observations: a verdict with its reason per
//! replica. Pure (time is passed in), so every transition is a unit test.
//!
//! A replica over a lag limit, unreachable, or out of recovery leaves the read pool at once. It comes
//! back only after staying under the limits for `hysteresis` (reason [`Reason::Recovering`]
//! meanwhile), so a replica hovering around the limit does not flap in and out of every sidecar's
//! pool. A replica whose very first observation is healthy is eligible at once: after an operator
//! restart there is nothing to wait out.
//!
//! Limits whose measure is missing: a replica that cannot say its replay lag while a time limit is set
//! is [`Reason::Unknown`] (not eligible). The byte limit needs the primary's position from the same
//! round; when no primary answered (failover under way) the byte limit is skipped for that round,
//! so reads go on on replicas the time limit still vouches for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::duration::{duration_field, millis};
use super::{Observation, SpecError};
use crate::crd::ConsistencySettings;

/// Lag limits and hysteresis, from `spec.consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most replay lag a replica may have and take reads; `ZERO`: no time limit.
    pub max_lag: Duration,
    /// Most WAL bytes not yet replayed; 0: no byte limit.
    pub max_lag_bytes: u64,
    /// How long a replica must stay under the limits before it takes reads again.
    pub hysteresis: Duration,
}

impl Limits {
    pub fn from_spec(c: &ConsistencySettings) -> Result<Limits, SpecError> {
        Ok(Limits {
            max_lag: duration_field("consistency.maxLag", &c.max_lag)?,
            max_lag_bytes: u64::try_from(c.max_lag_bytes)
                .map_err(|_| SpecError::field("consistency.maxLagBytes", "must not be negative"))?,
            hysteresis: duration_field("consistency.hysteresis", &c.hysteresis)?,
        })
    }
}

/// Why a replica does or does not take reads; `Display` is the CamelCase word the status shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Reachable, in recovery, under the limits.
    Healthy,
    /// Over the time or byte limit.
    LagOverLimit,
    /// Under the limits again, but not yet for `hysteresis`.
    Recovering,
    /// The probe got no answer.
    Unreachable,
    /// Answers, but is not in recovery: a second primary or a promoted replica, never a read target.
    NotInRecovery,
    /// Answers, but what a limit needs could not be measured.
    Unknown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Healthy => "Healthy",
            Reason::LagOverLimit => "LagOverLimit",
            Reason::Recovering => "Recovering",
            Reason::Unreachable => "Unreachable",
            Reason::NotInRecovery => "NotInRecovery",
            Reason::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replica's verdict for this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaVerdict {
    pub address: String,
    /// The primary's flush position minus this replica's replay position (0 when ahead); `None`
    /// when either is unknown.
    pub lag_bytes: Option<u64>,
    /// Replay lag in milliseconds, as the replica measured it.
    pub lag_ms: Option<u64>,
    pub eligible: bool,
    pub reason: Reason,
}

/// The verdicts' memory between rounds: who is eligible, and since when each excluded replica has
/// been back under the limits.
#[derive(Debug, Clone)]
pub struct Eligibility {
    limits: Limits,
    replicas: HashMap<String, Track>,
}

#[derive(Debug, Clone, Copy)]
struct Track {
    eligible: bool,
    /// Under the limits without a break since then (`None`: not under them now).
    under_since: Option<Instant>,
}

impl Eligibility {
    pub fn new(limits: Limits) -> Eligibility {
        Eligibility {
            limits,
            replicas: HashMap::new(),
        }
    }

    /// New limits apply from the next [`Eligibility::update`]. Nothing is reset: a replica excluded
    /// under the old limits and under the new ones now waits out the hysteresis (measured from when it
    /// went under, with the new `hysteresis`), like any recovering replica.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The verdict on every observed instance except `primary`, in the order observed. `now` is when
    /// the observations were made; `primary_lsn` is the primary's flush position from the same round
    /// (lag_bytes = primary_lsn - replay_lsn, saturating). Replicas not observed are forgotten.
    pub fn update(
        &mut self,
        now: Instant,
        primary: Option<&str>,
        primary_lsn: Option<u64>,
        observations: &[Observation],
    ) -> Vec<ReplicaVerdict> {
        let mut next = HashMap::with_capacity(observations.len());
        let verdicts = observations
            .iter()
            .filter(|o| Some(o.address.as_str()) != primary)
            .map(|o| {
                let lag_bytes = match (o.reachable, primary_lsn, o.lsn) {
                    (true, Some(p), Some(r)) => Some(p.saturating_sub(r)),
                    _ => None,
                };
                let lag_ms = o.replay_lag_ms.filter(|_| o.reachable);
                let (track, reason) = match self.problem(o, primary_lsn, lag_bytes) {
                    Some(problem) => (
                        Track {
                            eligible: false,
                            under_since: None,
                        },
                        problem,
                    ),
                    None => self.under_limits(&o.address, now),
                };
                next.insert(o.address.clone(), track);
                ReplicaVerdict {
                    address: o.address.clone(),
                    lag_bytes,
                    lag_ms,
                    eligible: track.eligible,
                    reason,
                }
            })
            .collect();
        self.replicas = next;
        verdicts
    }

    /// What keeps `o` out of the read pool this round, if anything.
    fn problem(
        &self,
        o: &Observation,
        primary_lsn: Option<u64>,
        lag_bytes: Option<u64>,
    ) -> Option<Reason> {
        if !o.reachable {
            return Some(Reason::Unreachable);
        }
        match o.in_recovery {
            Some(true) => {}
            Some(false) => return Some(Reason::NotInRecovery),
            None => return Some(Reason::Unknown),
        }
        let mut over = false;
        let mut unknown = false;
        if !self.limits.max_lag.is_zero() {
            match o.replay_lag_ms {
                Some(ms) => over |= ms > millis(self.limits.max_lag),
                None => unknown = true,
            }
        }
        // No primary position this round: the byte limit cannot be applied, and is skipped.
        if self.limits.max_lag_bytes > 0 && primary_lsn.is_some() {
            match lag_bytes {
                Some(bytes) => over |= bytes > self.limits.max_lag_bytes,
                None => unknown = true,
            }
        }
        if over {
            Some(Reason::LagOverLimit)
        } else if unknown {
            Some(Reason::Unknown)
        } else {
            None
        }
    }

    /// A replica under the limits: eligible if it was already, or on first sight, or once it has
    /// been under them for `hysteresis`.
    fn under_limits(&self, address: &str, now: Instant) -> (Track, Reason) {
        match self.replicas.get(address) {
            None => (
                Track {
                    eligible: true,
                    under_since: Some(now),
                },
                Reason::Healthy,
            ),
            Some(t) if t.eligible => (*t, Reason::Healthy),
            Some(t) => {
                let since = t.under_since.unwrap_or(now);
                let done = now.saturating_duration_since(since) >= self.limits.hysteresis;
                (
                    Track {
                        eligible: done,
                        under_since: Some(since),
                    },
                    if done {
                        Reason::Healthy
                    } else {
                        Reason::Recovering
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "pg-0:5432";
    const R1: &str = "pg-1:5432";
    const R2: &str = "pg-2:5432";

    fn limits() -> Limits {
        Limits {
            max_lag: Duration::from_secs(2),
            max_lag_bytes: 1000,
            hysteresis: Duration::from_secs(5),
        }
    }

    fn replica(address: &str, lsn: u64, lag_ms: u64) -> Observation {
        Observation {
            address: address.into(),
            reachable: true,
            in_recovery: Some(true),
            lsn: Some(lsn),
            replay_lag_ms: Some(lag_ms),
            error: None,
        }
    }

    fn primary(lsn: u64) -> Observation {
        Observation {
            in_recovery: Some(false),
            replay_lag_ms: Some(0),
            ..replica(PRIMARY, lsn, 0)
        }
    }

    fn unreachable(address: &str) -> Observation {
        Observation {
            address: address.into(),
            reachable: false,
            in_recovery: None,
            lsn: None,
            replay_lag_ms: None,
            error: Some("cannot connect: refused".into()),
        }
    }

    /// One round with the primary at `primary_lsn`; the verdicts as (address, eligible, reason).
    fn round(
        e: &mut Eligibility,
        now: Instant,
        primary_lsn: u64,
        replicas: &[Observation],
    ) -> Vec<(String, bool, Reason)> {
        let mut all = vec![primary(primary_lsn)];
        all.extend_from_slice(replicas);
        e.update(now, Some(PRIMARY), Some(primary_lsn), &all)
            .into_iter()
            .map(|v| (v.address, v.eligible, v.reason))
            .collect()
    }

    fn v(address: &str, eligible: bool, reason: Reason) -> (String, bool, Reason) {
        (address.into(), eligible, reason)
    }

    #[test]
    fn healthy_replicas_are_eligible_at_first_sight_and_the_primary_is_left_out() {
        let mut e = Eligibility::new(limits());
        let t0 = Instant::now();
        let verdicts = e.update(
            t0,
            Some(PRIMARY),
            Some(5000),
            &[replica(R1, 4500, 100), primary(5000), replica(R2, 6000, 0)],
        );
        assert_eq!(
            verdicts,
            [
                ReplicaVerdict {
                    address: R1.into(),
                    lag_bytes: Some(500),
                    lag_ms: Some(100),
                    eligible: true,
                    reason: Reason::Healthy,
                },
                ReplicaVerdict {
                    address: R2.into(),
                    lag_bytes: Some(0),
                    lag_ms: Some(0),
                    eligible: true,
                    reason: Reason::Healthy,
                },
            ],
            "ahead of the primary's flush position saturates to 0 bytes"
        );
    }

    #[test]
    fn every_reason_to_be_left_out() {
        let mut e = Eligibility::new(limits());
        let t0 = Instant::now();
        let second_primary = Observation {
            in_recovery: Some(false),
            ..replica(R2, 5000, 0)
        };
        let verdicts = round(
            &mut e,
            t0,
            5000,
            &[
                replica("time:1", 5000, 2001),
                replica("bytes:1", 3999, 0),
                unreachable("down:1"),
                second_primary,
                Observation {
                    replay_lag_ms: None,
                    ..replica("nolag:1", 4000, 0)
                },
                Observation {
                    in_recovery: None,
                    ..replica("odd:1", 4000, 0)
                },
                replica("edge:1", 4000, 2000),
            ],
        );
        assert_eq!(
            verdicts,
            [
                v("time:1", false, Reason::LagOverLimit),
                v("bytes:1", false, Reason::LagOverLimit),
                v("down:1", false, Reason::Unreachable),
                v(R2, false, Reason::NotInRecovery),
                v("nolag:1", false, Reason::Unknown),
                v("odd:1", false, Reason::Unknown),
                v("edge:1", true, Reason::Healthy),
            ],
            "exactly at a limit is still under it"
        );
    }

    #[test]
    fn a_replica_leaves_at_once_and_returns_after_the_hysteresis() {
        let mut e = Eligibility::new(limits());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            round(&mut e, t0, 0, &[replica(R1, 0, 0)]),
            [v(R1, true, Reason::Healthy)]
        );
        assert_eq!(
            round(&mut e, t0 + s(1), 0, &[replica(R1, 0, 3000)]),
            [v(R1, false, Reason::LagOverLimit)]
        );
        // Under again at t=2: recovering until t=7.
        assert_eq!(
            round(&mut e, t0 + s(2), 0, &[replica(R1, 0, 500)]),
            [v(R1, false, Reason::Recovering)]
        );
        assert_eq!(
            round(&mut e, t0 + s(6), 0, &[replica(R1, 0, 500)]),
            [v(R1, false, Reason::Recovering)]
        );
        // Over again at t=6.5 restarts the clock.
        assert_eq!(
            round(
                &mut e,
                t0 + Duration::from_millis(6500),
                0,
                &[unreachable(R1)]
            ),
            [v(R1, false, Reason::Unreachable)]
        );
        assert_eq!(
            round(&mut e, t0 + s(8), 0, &[replica(R1, 0, 0)]),
            [v(R1, false, Reason::Recovering)]
        );
        assert_eq!(
            round(
                &mut e,
                t0 + Duration::from_millis(12_999),
                0,
                &[replica(R1, 0, 0)]
            ),
            [v(R1, false, Reason::Recovering)]
        );
        assert_eq!(
            round(&mut e, t0 + s(13), 0, &[replica(R1, 0, 0)]),
            [v(R1, true, Reason::Healthy)],
            "5 s under the limits since t=8"
        );
        assert_eq!(
            round(&mut e, t0 + s(14), 0, &[replica(R1, 0, 1999)]),
            [v(R1, true, Reason::Healthy)]
        );
    }

    #[test]
    fn a_replica_first_seen_unhealthy_waits_the_hysteresis_too() {
        let mut e = Eligibility::new(limits());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            round(&mut e, t0, 0, &[unreachable(R1)]),
            [v(R1, false, Reason::Unreachable)]
        );
        assert_eq!(
            round(&mut e, t0 + s(1), 0, &[replica(R1, 0, 0)]),
            [v(R1, false, Reason::Recovering)]
        );
        assert_eq!(
            round(&mut e, t0 + s(6), 0, &[replica(R1, 0, 0)]),
            [v(R1, true, Reason::Healthy)]
        );
    }

    #[test]
    fn a_replica_no_longer_observed_is_forgotten() {
        let mut e = Eligibility::new(limits());
        let t0 = Instant::now();
        round(&mut e, t0, 0, &[replica(R1, 0, 9000)]);
        round(&mut e, t0 + Duration::from_secs(1), 0, &[]);
        assert_eq!(
            round(&mut e, t0 + Duration::from_secs(2), 0, &[replica(R1, 0, 0)]),
            [v(R1, true, Reason::Healthy)],
            "seen for the first time again"
        );
    }

    #[test]
    fn the_byte_limit_is_skipped_without_a_primary_position() {
        let mut e = Eligibility::new(limits());
        let far_behind = [replica(R1, 0, 100)];
        let verdicts = e.update(Instant::now(), None, None, &far_behind);
        assert_eq!(
            verdicts,
            [ReplicaVerdict {
                address: R1.into(),
                lag_bytes: None,
                lag_ms: Some(100),
                eligible: true,
                reason: Reason::Healthy,
            }]
        );
        let verdicts = e.update(Instant::now(), Some(PRIMARY), Some(1_000_000), &far_behind);
        assert_eq!(verdicts[0].reason, Reason::LagOverLimit);
    }

    #[test]
    fn zero_limits_mean_no_limit() {
        let mut e = Eligibility::new(Limits {
            max_lag: Duration::ZERO,
            max_lag_bytes: 0,
            hysteresis: Duration::ZERO,
        });
        let verdicts = round(
            &mut e,
            Instant::now(),
            u64::MAX,
            &[
                replica(R1, 0, u64::MAX),
                Observation {
                    replay_lag_ms: None,
                    ..replica(R2, 0, 0)
                },
            ],
        );
        assert_eq!(
            verdicts,
            [v(R1, true, Reason::Healthy), v(R2, true, Reason::Healthy)]
        );
    }

    #[test]
    fn changed_limits_apply_from_the_next_round() {
        let mut e = Eligibility::new(limits());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let lagging = [replica(R1, 0, 3000)];
        assert_eq!(
            round(&mut e, t0, 0, &lagging),
            [v(R1, false, Reason::LagOverLimit)]
        );
        e.set_limits(Limits {
            max_lag: s(10),
            hysteresis: s(1),
            ..limits()
        });
        assert_eq!(e.limits().max_lag, s(10));
        assert_eq!(
            round(&mut e, t0 + s(1), 0, &lagging),
            [v(R1, false, Reason::Recovering)],
            "under the looser limit now, waiting out the (new) hysteresis"
        );
        assert_eq!(
            round(&mut e, t0 + s(2), 0, &lagging),
            [v(R1, true, Reason::Healthy)]
        );
        e.set_limits(Limits {
            max_lag: s(1),
            ..limits()
        });
        assert_eq!(
            round(&mut e, t0 + s(3), 0, &lagging),
            [v(R1, false, Reason::LagOverLimit)],
            "a tighter limit excludes at once"
        );
    }

    #[test]
    fn limits_come_from_the_spec() {
        let spec = ConsistencySettings {
            max_lag: "1m30s".into(),
            max_lag_bytes: 16_777_216,
            hysteresis: "500ms".into(),
            ..ConsistencySettings::default()
        };
        assert_eq!(
            Limits::from_spec(&spec),
            Ok(Limits {
                max_lag: Duration::from_secs(90),
                max_lag_bytes: 16_777_216,
                hysteresis: Duration::from_millis(500),
            })
        );
        let defaults = Limits::from_spec(&ConsistencySettings::default()).expect("defaults");
        assert_eq!(defaults.max_lag, Duration::from_secs(2));
        assert_eq!(defaults.hysteresis, Duration::from_secs(5));

        let bad = ConsistencySettings {
            hysteresis: "5 s".into(),
            ..ConsistencySettings::default()
        };
        assert_eq!(
            Limits::from_spec(&bad).expect_err("bad").to_string(),
            "spec.consistency.hysteresis: `5 s` is not a duration such as 500ms, 5s or 1m30s: expected a unit (ms, s, m or h) after the number"
        );
        let negative = ConsistencySettings {
            max_lag_bytes: -1,
            ..ConsistencySettings::default()
        };
        assert_eq!(
            Limits::from_spec(&negative)
                .expect_err("negative")
                .to_string(),
            "spec.consistency.maxLagBytes: must not be negative"
        );
    }

    #[test]
    fn reasons_display_as_status_words() {
        let all = [
            (Reason::Healthy, "Healthy"),
            (Reason::LagOverLimit, "LagOverLimit"),
            (Reason::Recovering, "Recovering"),
            (Reason::Unreachable, "Unreachable"),
            (Reason::NotInRecovery, "NotInRecovery"),
            (Reason::Unknown, "Unknown"),
        ];
        for (reason, word) in all {
            assert_eq!(reason.to_string(), word);
        }
    }
}
