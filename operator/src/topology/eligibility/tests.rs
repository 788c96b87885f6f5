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
