//! Background checks that feed the topology: today the replication-lag monitor. Health checks and
//! circuit breakers (issue 7) join it here.

pub mod lag;
