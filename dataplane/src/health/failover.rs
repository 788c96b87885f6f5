//! Which backend should be the primary, from what health checks last saw. Pure, so every case is a unit
//! test; `check` acts on the verdict.
//!
//! pgroute never promotes anything in standalone mode: it follows. The current primary is kept while it
//! is up and not in recovery (or its role is unknown because the check cannot ask it), even if another
//! backend also claims to be a primary (a split brain is the database's problem to settle, and
//! jumping on every claim would make it pgroute's). Once the current primary is down or reports that it
//! is in recovery, the first configured backend that is up and out of recovery is followed.

use super::Role;
use crate::config::BackendAddr;

/// One backend as the last checks saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub address: BackendAddr,
    pub up: bool,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The current primary is fine.
    Keep,
    /// Follow this backend: it is the primary now.
    Follow(BackendAddr),
    /// No backend can take writes; they wait for one (`failover.timeout`).
    NoPrimary,
}

pub fn decide(current: &BackendAddr, seen: &[Seen]) -> Verdict {
    let current_fine = seen
        .iter()
        .find(|s| &s.address == current)
        .is_none_or(|s| s.up && s.role != Role::Replica);
    if current_fine {
        return Verdict::Keep;
    }
    match seen
        .iter()
        .find(|s| &s.address != current && s.up && s.role == Role::Primary)
    {
        Some(s) => Verdict::Follow(s.address.clone()),
        None => Verdict::NoPrimary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(port: u16, up: bool, role: Role) -> Seen {
        Seen {
            address: format!("127.0.0.1:{port}").parse().expect("address"),
            up,
            role,
        }
    }

    fn addr(port: u16) -> BackendAddr {
        format!("127.0.0.1:{port}").parse().expect("address")
    }

    #[test]
    fn a_healthy_primary_is_kept_even_when_a_replica_claims_to_be_one() {
        let v = decide(
            &addr(1),
            &[seen(1, true, Role::Primary), seen(2, true, Role::Primary)],
        );
        assert_eq!(v, Verdict::Keep);
        // Role unknown (the check cannot log in) but answering: kept.
        assert_eq!(
            decide(&addr(1), &[seen(1, true, Role::Unknown)]),
            Verdict::Keep
        );
    }

    #[test]
    fn a_down_primary_hands_over_to_a_promoted_replica() {
        let v = decide(
            &addr(1),
            &[
                seen(1, false, Role::Primary),
                seen(2, true, Role::Replica),
                seen(3, true, Role::Primary),
            ],
        );
        assert_eq!(v, Verdict::Follow(addr(3)));
    }

    #[test]
    fn a_down_primary_with_no_promoted_replica_means_no_primary() {
        let v = decide(
            &addr(1),
            &[seen(1, false, Role::Primary), seen(2, true, Role::Replica)],
        );
        assert_eq!(v, Verdict::NoPrimary);
    }

    #[test]
    fn an_old_primary_back_as_a_standby_is_not_followed() {
        // After failing over to 2, node 1 returns in recovery: 2 stays.
        let v = decide(
            &addr(2),
            &[seen(1, true, Role::Replica), seen(2, true, Role::Primary)],
        );
        assert_eq!(v, Verdict::Keep);
        // And a primary that was demoted with nobody promoted yet takes no writes.
        let v = decide(
            &addr(1),
            &[seen(1, true, Role::Replica), seen(2, true, Role::Replica)],
        );
        assert_eq!(v, Verdict::NoPrimary);
    }

    #[test]
    fn a_down_candidate_is_not_followed() {
        let v = decide(
            &addr(1),
            &[seen(1, false, Role::Primary), seen(2, false, Role::Primary)],
        );
        assert_eq!(v, Verdict::NoPrimary);
    }
}
