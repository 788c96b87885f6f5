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
mod tests;
