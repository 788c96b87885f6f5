//! The `Snapshot` the sidecars get, from the spec and this round's decisions. Pure.
//!
//! What the sidecar refuses (`pgroute::control::Topology::try_from` and the configuration check
//! after it) is refused here first, with the spec field named, so a bad spec shows on the
//! DatabaseProxy instead of as N rejected reports: no primary, a pool of 0, `minIdle` over
//! `poolSize`, a queue timeout of 0, negative numbers. The version is left 0: the index assigns it.
//!
//! Not expressible yet: `consistency.maxLag: 0s` ("no time limit") goes out as
//! `max_replica_lag_ms: 0`, which the sidecar reads as "keep your own limit"; the operator's own
//! verdicts (`eligible`) still follow the spec.

use pgroute_proto::v1;

use super::duration::{duration_field, millis};
use super::{Limits, ReplicaVerdict, SpecError};
use crate::crd::{ConsistencyMode, DatabaseProxySpec, LoadBalancing};

/// Each replica's share of reads; the primary's `primaryReadsWeight` (0..=100) is relative to it.
pub const REPLICA_WEIGHT: u32 = 100;

/// The snapshot for `spec`, with `primary`, the replicas' verdicts in their order (the primary, if
/// among them, and repeated addresses are left out: the sidecar refuses both) and `failover` as
/// decided.
pub fn build(
    spec: &DatabaseProxySpec,
    primary: Option<&str>,
    replicas: &[ReplicaVerdict],
    failover: v1::Failover,
) -> Result<v1::Snapshot, SpecError> {
    let primary = primary
        .filter(|p| !p.is_empty())
        .ok_or(SpecError::NoPrimary)?;
    let limits = Limits::from_spec(&spec.consistency)?;
    let max_lag_ms = millis(limits.max_lag);
    let mut out: Vec<v1::Replica> = Vec::with_capacity(replicas.len());
    for r in replicas {
        if r.address == primary || out.iter().any(|o| o.address == r.address) {
            continue;
        }
        out.push(v1::Replica {
            address: r.address.clone(),
            weight: REPLICA_WEIGHT,
            zone: String::new(),
            lag_ms: r.lag_ms.unwrap_or(0),
            lag_bytes: r.lag_bytes.unwrap_or(0),
            eligible: r.eligible,
            max_lag_ms,
        });
    }
    Ok(v1::Snapshot {
        version: 0,
        primary: primary.to_owned(),
        replicas: out,
        routing: Some(routing(spec)?),
        pool: Some(pool(spec)?),
        consistency: Some(v1::Consistency {
            mode: consistency_mode(spec.consistency.mode) as i32,
            max_replica_lag_ms: max_lag_ms,
            max_replica_lag_bytes: limits.max_lag_bytes,
        }),
        failover: Some(failover),
        draining: false,
    })
}

fn routing(spec: &DatabaseProxySpec) -> Result<v1::Routing, SpecError> {
    let r = &spec.routing;
    let primary_reads_weight = u32::try_from(r.primary_reads_weight)
        .ok()
        .filter(|w| *w <= 100)
        .ok_or_else(|| SpecError::field("routing.primaryReadsWeight", "must be 0 to 100"))?;
    Ok(v1::Routing {
        read_write_split: r.read_write_split,
        load_balancing: load_balancing(r.load_balancing) as i32,
        primary_reads_weight,
    })
}

fn pool(spec: &DatabaseProxySpec) -> Result<v1::Pool, SpecError> {
    let p = &spec.pool;
    let pool_size = u32::try_from(p.pool_size)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| SpecError::field("pool.poolSize", "must be at least 1"))?;
    let min_idle = u32::try_from(p.min_idle)
        .map_err(|_| SpecError::field("pool.minIdle", "must not be negative"))?;
    if min_idle > pool_size {
        return Err(SpecError::field(
            "pool.minIdle",
            format!("{min_idle} exceeds pool.poolSize {pool_size}"),
        ));
    }
    let queue_timeout = duration_field("pool.queueTimeout", &p.queue_timeout)?;
    let queue_timeout_ms = millis(queue_timeout);
    if queue_timeout_ms == 0 {
        return Err(SpecError::field(
            "pool.queueTimeout",
            "must be at least 1ms",
        ));
    }
    Ok(v1::Pool {
        pool_size,
        min_idle,
        queue_timeout_ms,
    })
}

fn load_balancing(lb: LoadBalancing) -> v1::LoadBalancing {
    match lb {
        LoadBalancing::LeastConnections => v1::LoadBalancing::LeastConnections,
        LoadBalancing::RoundRobin => v1::LoadBalancing::RoundRobin,
        LoadBalancing::Random => v1::LoadBalancing::Random,
        LoadBalancing::ConsistentHash => v1::LoadBalancing::Hash,
    }
}

fn consistency_mode(mode: ConsistencyMode) -> v1::ConsistencyMode {
    match mode {
        ConsistencyMode::ReadYourWrites => v1::ConsistencyMode::ReadYourWrites,
        ConsistencyMode::CausalWindow => v1::ConsistencyMode::CausalWindow,
        ConsistencyMode::None => v1::ConsistencyMode::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ConsistencySettings, PoolSettings, RoutingSettings};
    use crate::topology::Reason;

    fn spec() -> DatabaseProxySpec {
        serde_json::from_value(serde_json::json!({
            "target": {"endpoints": [{"host": "pg-0", "role": "primary"}]},
            "credentials": {"secretName": "db"},
            "podSelector": {"matchLabels": {"app": "orders"}},
        }))
        .expect("a valid spec")
    }

    fn verdict(
        address: &str,
        eligible: bool,
        lag_ms: Option<u64>,
        lag_bytes: Option<u64>,
    ) -> ReplicaVerdict {
        ReplicaVerdict {
            address: address.into(),
            lag_bytes,
            lag_ms,
            eligible,
            reason: if eligible {
                Reason::Healthy
            } else {
                Reason::LagOverLimit
            },
        }
    }

    fn no_failover() -> v1::Failover {
        v1::Failover::default()
    }

    #[test]
    fn every_field_maps_from_the_spec_and_the_verdicts() {
        let mut spec = spec();
        spec.pool = PoolSettings {
            pool_size: 30,
            min_idle: 3,
            queue_timeout: "1m30s".into(),
        };
        spec.routing = RoutingSettings {
            read_write_split: false,
            load_balancing: LoadBalancing::ConsistentHash,
            primary_reads_weight: 40,
        };
        spec.consistency = ConsistencySettings {
            mode: ConsistencyMode::CausalWindow,
            max_lag: "1.5s".into(),
            max_lag_bytes: 4096,
            hysteresis: "5s".into(),
        };
        let failover = v1::Failover {
            state: v1::FailoverState::PrimaryUnavailable as i32,
            new_primary: String::new(),
        };
        let s = build(
            &spec,
            Some("10.0.0.1:5432"),
            &[
                verdict("10.0.0.2:5432", true, Some(12), Some(300)),
                verdict("10.0.0.3:5432", false, None, None),
            ],
            failover.clone(),
        )
        .expect("valid");
        assert_eq!(
            s,
            v1::Snapshot {
                version: 0,
                primary: "10.0.0.1:5432".into(),
                replicas: vec![
                    v1::Replica {
                        address: "10.0.0.2:5432".into(),
                        weight: 100,
                        zone: String::new(),
                        lag_ms: 12,
                        lag_bytes: 300,
                        eligible: true,
                        max_lag_ms: 1500,
                    },
                    v1::Replica {
                        address: "10.0.0.3:5432".into(),
                        weight: 100,
                        zone: String::new(),
                        lag_ms: 0,
                        lag_bytes: 0,
                        eligible: false,
                        max_lag_ms: 1500,
                    },
                ],
                routing: Some(v1::Routing {
                    read_write_split: false,
                    load_balancing: v1::LoadBalancing::Hash as i32,
                    primary_reads_weight: 40,
                }),
                pool: Some(v1::Pool {
                    pool_size: 30,
                    min_idle: 3,
                    queue_timeout_ms: 90_000,
                }),
                consistency: Some(v1::Consistency {
                    mode: v1::ConsistencyMode::CausalWindow as i32,
                    max_replica_lag_ms: 1500,
                    max_replica_lag_bytes: 4096,
                }),
                failover: Some(failover),
                draining: false,
            }
        );
    }

    #[test]
    fn enums_map_one_to_one() {
        for (lb, wire) in [
            (
                LoadBalancing::LeastConnections,
                v1::LoadBalancing::LeastConnections,
            ),
            (LoadBalancing::RoundRobin, v1::LoadBalancing::RoundRobin),
            (LoadBalancing::Random, v1::LoadBalancing::Random),
            (LoadBalancing::ConsistentHash, v1::LoadBalancing::Hash),
        ] {
            assert_eq!(load_balancing(lb), wire);
        }
        for (mode, wire) in [
            (
                ConsistencyMode::ReadYourWrites,
                v1::ConsistencyMode::ReadYourWrites,
            ),
            (
                ConsistencyMode::CausalWindow,
                v1::ConsistencyMode::CausalWindow,
            ),
            (ConsistencyMode::None, v1::ConsistencyMode::None),
        ] {
            assert_eq!(consistency_mode(mode), wire);
        }
    }

    #[test]
    fn the_primary_and_repeats_are_not_replicas() {
        let s = build(
            &spec(),
            Some("pg-0:5432"),
            &[
                verdict("pg-1:5432", true, None, None),
                verdict("pg-0:5432", true, None, None),
                verdict("pg-1:5432", false, None, None),
            ],
            no_failover(),
        )
        .expect("valid");
        let replicas: Vec<(&str, bool)> = s
            .replicas
            .iter()
            .map(|r| (r.address.as_str(), r.eligible))
            .collect();
        assert_eq!(replicas, [("pg-1:5432", true)]);
    }

    fn refused(edit: impl FnOnce(&mut DatabaseProxySpec)) -> String {
        let mut s = spec();
        edit(&mut s);
        build(&s, Some("pg-0:5432"), &[], no_failover())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn what_the_sidecar_would_refuse_is_refused_here_with_the_field() {
        assert_eq!(
            build(&spec(), None, &[], no_failover()).expect_err("no primary"),
            SpecError::NoPrimary
        );
        assert_eq!(
            build(&spec(), Some(""), &[], no_failover()).expect_err("no primary"),
            SpecError::NoPrimary
        );
        assert_eq!(
            refused(|s| s.pool.pool_size = 0),
            "spec.pool.poolSize: must be at least 1"
        );
        assert_eq!(
            refused(|s| s.pool.min_idle = -1),
            "spec.pool.minIdle: must not be negative"
        );
        assert_eq!(
            refused(|s| s.pool.min_idle = 21),
            "spec.pool.minIdle: 21 exceeds pool.poolSize 20"
        );
        assert_eq!(
            refused(|s| s.pool.queue_timeout = "0s".into()),
            "spec.pool.queueTimeout: must be at least 1ms"
        );
        assert_eq!(
            refused(|s| s.pool.queue_timeout = "5sec".into()),
            "spec.pool.queueTimeout: `5sec` is not a duration such as 500ms, 5s or 1m30s: unknown unit (use ms, s, m or h)"
        );
        assert_eq!(
            refused(|s| s.consistency.max_lag = "2".into()),
            "spec.consistency.maxLag: `2` is not a duration such as 500ms, 5s or 1m30s: a number needs a unit (ms, s, m or h)"
        );
        assert_eq!(
            refused(|s| s.routing.primary_reads_weight = 101),
            "spec.routing.primaryReadsWeight: must be 0 to 100"
        );
    }

    /// The sidecar's own conversion and configuration check accept what `build` makes (with the
    /// version the index would assign), and it means what the spec says.
    #[test]
    fn the_sidecar_accepts_a_built_snapshot() {
        let mut spec = spec();
        spec.pool.min_idle = 20;
        spec.consistency.max_lag_bytes = 1 << 20;
        let mut s = build(
            &spec,
            Some("10.0.0.1:5432"),
            &[
                verdict("10.0.0.2:5432", true, Some(5), Some(10)),
                verdict("[fd00::3]:5432", false, Some(9000), None),
            ],
            v1::Failover {
                state: v1::FailoverState::SwitchoverInProgress as i32,
                new_primary: "10.0.0.2:5432".into(),
            },
        )
        .expect("valid");
        s.version = 1;
        let topology = pgroute::control::Topology::try_from(s).expect("the sidecar accepts it");
        let config = topology.config(&pgroute::Config::default());
        config.validate().expect("a valid sidecar configuration");
        assert_eq!(
            config.backends.primary,
            Some("10.0.0.1:5432".parse().expect("address"))
        );
        let replicas: Vec<(String, u32)> = config
            .backends
            .replicas
            .iter()
            .map(|r| (r.address.to_string(), r.weight))
            .collect();
        assert_eq!(
            replicas,
            [("10.0.0.2:5432".into(), 100), ("[fd00::3]:5432".into(), 0)],
            "an ineligible replica gets no reads"
        );
        assert_eq!(config.pool.pool_size.get(), 20);
        assert_eq!(config.pool.min_idle, 20);
        assert_eq!(config.consistency.max_replica_lag_bytes, 1 << 20);
        assert!(!topology.failover.primary_available());
    }

    #[test]
    fn the_spec_defaults_build() {
        let s = build(&spec(), Some("pg-0:5432"), &[], no_failover()).expect("defaults are valid");
        assert_eq!(
            s.pool,
            Some(v1::Pool {
                pool_size: 20,
                min_idle: 0,
                queue_timeout_ms: 5000,
            })
        );
    }
}
