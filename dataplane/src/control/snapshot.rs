//! A pushed snapshot as the sidecar's own type: [`Topology`], made from the wire message by
//! `TryFrom`, which is where snapshots are validated. A snapshot that does not convert is rejected
//! with the [`SnapshotError`] as the reported reason, and the previous topology stays in force.

use std::num::NonZeroU32;
use std::time::Duration;

use pgroute_proto::v1;

use crate::config::{BackendAddr, Config, ConsistencyMode, LoadBalancing, ReplicaConfig};

/// Why a snapshot was refused. The message is what the operator sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("version: must be positive")]
    NoVersion,
    #[error("primary: required")]
    NoPrimary,
    #[error("{field}: {problem}")]
    Address { field: String, problem: String },
    #[error("replicas: {0} is listed twice")]
    DuplicateReplica(BackendAddr),
    #[error("replicas: {0} is the primary")]
    PrimaryAsReplica(BackendAddr),
    #[error("pool.pool_size: must be at least 1")]
    PoolSize,
    #[error("pool.min_idle: {min_idle} exceeds pool.pool_size {pool_size}")]
    MinIdle { min_idle: u32, pool_size: u32 },
    #[error("pool.queue_timeout_ms: must be positive")]
    QueueTimeout,
    #[error("{field}: unknown enum value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("failover.new_primary: required with SWITCHOVER_IN_PROGRESS")]
    NoNewPrimary,
}

/// What the operator says the sidecar should run with. Options: keep the sidecar's own value.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub version: u64,
    pub primary: BackendAddr,
    /// Replicas as the config models them; an ineligible replica has weight 0 (no reads).
    pub replicas: Vec<ReplicaConfig>,
    pub routing: Option<Routing>,
    pub pool: Option<Pool>,
    pub consistency: Option<Consistency>,
    pub failover: Failover,
    /// The DatabaseProxy is being deleted: no further snapshot will come; idle server connections
    /// are closed once (busy ones when their transaction ends).
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub read_write_split: bool,
    pub load_balancing: Option<LoadBalancing>,
    pub primary_reads_weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub pool_size: NonZeroU32,
    pub min_idle: u32,
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consistency {
    pub mode: Option<ConsistencyMode>,
    pub max_replica_lag: Option<Duration>,
    pub max_replica_lag_bytes: Option<u64>,
}

/// What the operator is doing about the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// `primary` takes writes.
    None,
    /// No primary right now: writes wait (`failover.timeout`) for a snapshot with one.
    PrimaryUnavailable,
    /// The primary is moving to this one: writes wait as above.
    Switchover { new_primary: BackendAddr },
}

impl Failover {
    /// Whether writes may go to `primary`.
    pub fn primary_available(&self) -> bool {
        *self == Failover::None
    }
}

impl TryFrom<v1::Snapshot> for Topology {
    type Error = SnapshotError;

    fn try_from(s: v1::Snapshot) -> Result<Topology, SnapshotError> {
        if s.version == 0 {
            return Err(SnapshotError::NoVersion);
        }
        if s.primary.is_empty() {
            return Err(SnapshotError::NoPrimary);
        }
        let primary = address("primary", &s.primary)?;
        let mut replicas: Vec<ReplicaConfig> = Vec::with_capacity(s.replicas.len());
        for (i, r) in s.replicas.iter().enumerate() {
            let addr = address(&format!("replicas[{i}].address"), &r.address)?;
            if addr == primary {
                return Err(SnapshotError::PrimaryAsReplica(addr));
            }
            if replicas.iter().any(|known| known.address == addr) {
                return Err(SnapshotError::DuplicateReplica(addr));
            }
            replicas.push(ReplicaConfig {
                address: addr,
                weight: if r.eligible { r.weight } else { 0 },
                max_lag: (r.max_lag_ms > 0).then(|| Duration::from_millis(r.max_lag_ms)),
            });
        }
        let failover = s.failover.unwrap_or_default();
        let failover = match v1::FailoverState::try_from(failover.state) {
            Ok(v1::FailoverState::None) => Failover::None,
            Ok(v1::FailoverState::PrimaryUnavailable) => Failover::PrimaryUnavailable,
            Ok(v1::FailoverState::SwitchoverInProgress) => {
                if failover.new_primary.is_empty() {
                    return Err(SnapshotError::NoNewPrimary);
                }
                Failover::Switchover {
                    new_primary: address("failover.new_primary", &failover.new_primary)?,
                }
            }
            Err(_) => {
                return Err(SnapshotError::UnknownEnum {
                    field: "failover.state",
                    value: failover.state,
                })
            }
        };
        Ok(Topology {
            version: s.version,
            primary,
            replicas,
            routing: s.routing.map(routing).transpose()?,
            pool: s.pool.map(pool).transpose()?,
            consistency: s.consistency.map(consistency).transpose()?,
            failover,
            draining: s.draining,
        })
    }
}

fn address(field: &str, text: &str) -> Result<BackendAddr, SnapshotError> {
    text.parse().map_err(|problem| SnapshotError::Address {
        field: field.to_owned(),
        problem,
    })
}

fn routing(r: v1::Routing) -> Result<Routing, SnapshotError> {
    let load_balancing = match v1::LoadBalancing::try_from(r.load_balancing) {
        Ok(v1::LoadBalancing::Unspecified) => None,
        Ok(v1::LoadBalancing::LeastConnections) => Some(LoadBalancing::LeastConnections),
        Ok(v1::LoadBalancing::RoundRobin) => Some(LoadBalancing::RoundRobin),
        Ok(v1::LoadBalancing::Random) => Some(LoadBalancing::Random),
        Ok(v1::LoadBalancing::Hash) => Some(LoadBalancing::Hash),
        Err(_) => {
            return Err(SnapshotError::UnknownEnum {
                field: "routing.load_balancing",
                value: r.load_balancing,
            })
        }
    };
    Ok(Routing {
        read_write_split: r.read_write_split,
        load_balancing,
        primary_reads_weight: r.primary_reads_weight,
    })
}

fn pool(p: v1::Pool) -> Result<Pool, SnapshotError> {
    let pool_size = NonZeroU32::new(p.pool_size).ok_or(SnapshotError::PoolSize)?;
    if p.min_idle > p.pool_size {
        return Err(SnapshotError::MinIdle {
            min_idle: p.min_idle,
            pool_size: p.pool_size,
        });
    }
    if p.queue_timeout_ms == 0 {
        return Err(SnapshotError::QueueTimeout);
    }
    Ok(Pool {
        pool_size,
        min_idle: p.min_idle,
        queue_timeout: Duration::from_millis(p.queue_timeout_ms),
    })
}

fn consistency(c: v1::Consistency) -> Result<Consistency, SnapshotError> {
    let mode = match v1::ConsistencyMode::try_from(c.mode) {
        Ok(v1::ConsistencyMode::Unspecified) => None,
        Ok(v1::ConsistencyMode::None) => Some(ConsistencyMode::None),
        Ok(v1::ConsistencyMode::ReadYourWrites) => Some(ConsistencyMode::ReadYourWrites),
        Ok(v1::ConsistencyMode::CausalWindow) => Some(ConsistencyMode::CausalWindow),
        Err(_) => {
            return Err(SnapshotError::UnknownEnum {
                field: "consistency.mode",
                value: c.mode,
            })
        }
    };
    Ok(Consistency {
        mode,
        max_replica_lag: (c.max_replica_lag_ms > 0)
            .then(|| Duration::from_millis(c.max_replica_lag_ms)),
        max_replica_lag_bytes: (c.max_replica_lag_bytes > 0).then_some(c.max_replica_lag_bytes),
    })
}

impl Topology {
    /// `current` with this topology's keys in place: what `Proxy::reload` is given.
    pub fn config(&self, current: &Config) -> Config {
        let mut config = current.clone();
        config.backends.primary = Some(self.primary.clone());
        config.backends.replicas = self.replicas.clone();
        if let Some(r) = &self.routing {
            config.routing.read_write_split = r.read_write_split;
            config.routing.primary_reads_weight = r.primary_reads_weight;
            if let Some(lb) = r.load_balancing {
                config.routing.load_balancing = lb;
            }
        }
        if let Some(p) = &self.pool {
            config.pool.pool_size = p.pool_size;
            config.pool.min_idle = p.min_idle;
            config.pool.queue_timeout = p.queue_timeout;
        }
        if let Some(c) = &self.consistency {
            if let Some(mode) = c.mode {
                config.consistency.mode = mode;
            }
            if let Some(lag) = c.max_replica_lag {
                config.consistency.max_replica_lag = lag;
            }
            if let Some(bytes) = c.max_replica_lag_bytes {
                config.consistency.max_replica_lag_bytes = bytes;
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> v1::Snapshot {
        v1::Snapshot {
            version: 3,
            primary: "db-0:5432".into(),
            replicas: vec![
                v1::Replica {
                    address: "db-1:5432".into(),
                    weight: 2,
                    eligible: true,
                    max_lag_ms: 500,
                    ..v1::Replica::default()
                },
                v1::Replica {
                    address: "db-2:5432".into(),
                    weight: 1,
                    eligible: false,
                    ..v1::Replica::default()
                },
            ],
            pool: Some(v1::Pool {
                pool_size: 10,
                min_idle: 2,
                queue_timeout_ms: 1500,
            }),
            routing: Some(v1::Routing {
                read_write_split: true,
                load_balancing: v1::LoadBalancing::RoundRobin as i32,
                primary_reads_weight: 0,
            }),
            consistency: Some(v1::Consistency {
                mode: v1::ConsistencyMode::None as i32,
                max_replica_lag_ms: 0,
                max_replica_lag_bytes: 1000,
            }),
            failover: None,
            draining: false,
        }
    }

    fn rejected(edit: impl FnOnce(&mut v1::Snapshot)) -> String {
        let mut s = valid();
        edit(&mut s);
        Topology::try_from(s).expect_err("invalid").to_string()
    }

    #[test]
    fn draining_is_carried_over() {
        assert!(!Topology::try_from(valid()).expect("valid").draining);
        let draining = v1::Snapshot {
            draining: true,
            ..valid()
        };
        assert!(Topology::try_from(draining).expect("valid").draining);
    }

    #[test]
    fn a_valid_snapshot_becomes_config() {
        let t = Topology::try_from(valid()).expect("valid");
        assert_eq!(t.failover, Failover::None);
        let mut base = Config::default();
        base.consistency.max_replica_lag = Duration::from_secs(7);
        let c = t.config(&base);
        assert_eq!(c.backends.primary, Some("db-0:5432".parse().expect("addr")));
        assert_eq!(c.backends.replicas[0].weight, 2);
        assert_eq!(
            c.backends.replicas[0].max_lag,
            Some(Duration::from_millis(500))
        );
        assert_eq!(c.backends.replicas[1].weight, 0, "ineligible: no reads");
        assert_eq!(c.pool.pool_size.get(), 10);
        assert_eq!(c.pool.queue_timeout, Duration::from_millis(1500));
        assert_eq!(c.routing.load_balancing, LoadBalancing::RoundRobin);
        assert_eq!(c.consistency.mode, ConsistencyMode::None);
        assert_eq!(
            c.consistency.max_replica_lag,
            Duration::from_secs(7),
            "0: kept"
        );
        assert_eq!(c.consistency.max_replica_lag_bytes, 1000);
    }

    #[test]
    fn bad_snapshots_are_rejected_with_a_reason() {
        assert_eq!(rejected(|s| s.version = 0), "version: must be positive");
        assert_eq!(rejected(|s| s.primary.clear()), "primary: required");
        assert!(rejected(|s| s.primary = "db".into()).starts_with("primary: `db` is not HOST:PORT"));
        assert!(rejected(|s| s.replicas[1].address = "db-1:0".into())
            .starts_with("replicas[1].address:"));
        assert_eq!(
            rejected(|s| s.replicas[1].address = "db-1:5432".into()),
            "replicas: db-1:5432 is listed twice"
        );
        assert_eq!(
            rejected(|s| s.replicas[0].address = "db-0:5432".into()),
            "replicas: db-0:5432 is the primary"
        );
        assert_eq!(
            rejected(|s| s.pool.as_mut().expect("pool").pool_size = 0),
            "pool.pool_size: must be at least 1"
        );
        assert_eq!(
            rejected(|s| s.pool.as_mut().expect("pool").min_idle = 11),
            "pool.min_idle: 11 exceeds pool.pool_size 10"
        );
        assert_eq!(
            rejected(|s| s.pool.as_mut().expect("pool").queue_timeout_ms = 0),
            "pool.queue_timeout_ms: must be positive"
        );
        assert_eq!(
            rejected(|s| s.routing.as_mut().expect("routing").load_balancing = 99),
            "routing.load_balancing: unknown enum value 99"
        );
        assert_eq!(
            rejected(|s| {
                s.failover = Some(v1::Failover {
                    state: v1::FailoverState::SwitchoverInProgress as i32,
                    new_primary: String::new(),
                })
            }),
            "failover.new_primary: required with SWITCHOVER_IN_PROGRESS"
        );
    }

    #[test]
    fn failover_states_map() {
        let mut s = valid();
        s.failover = Some(v1::Failover {
            state: v1::FailoverState::PrimaryUnavailable as i32,
            new_primary: String::new(),
        });
        let t = Topology::try_from(s).expect("valid");
        assert!(!t.failover.primary_available());
        let mut s = valid();
        s.failover = Some(v1::Failover {
            state: v1::FailoverState::SwitchoverInProgress as i32,
            new_primary: "db-1:5432".into(),
        });
        let t = Topology::try_from(s).expect("valid");
        assert_eq!(
            t.failover,
            Failover::Switchover {
                new_primary: "db-1:5432".parse().expect("addr")
            }
        );
    }
}
