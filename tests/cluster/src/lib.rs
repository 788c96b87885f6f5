//! A throwaway PostgreSQL primary with streaming replicas, for integration tests and `pgroute demo`.
//!
//! The proxy's routing, failover and lag handling can only be tested against real servers, and every test
//! needs its own so tests run in parallel. This crate starts them from the installed server binaries on
//! free loopback ports in a temporary directory, and removes everything on drop, also when a test panics.
//! It is synchronous (`std::process`) so it fits both `#[test]` functions and the demo binary.
//!
//! Flow: [`Cluster::start`] resolves the binaries (`bin_dir`), creates the directory (`workdir`), runs
//! `initdb` and `pg_basebackup` (`runner`, as `postgres` when we are root) with the settings of `conf`,
//! starts each [`Node`], then waits until the primary reports every replica as streaming.

mod bin_dir;
mod cluster;
mod conf;
mod error;
mod node;
mod options;
mod port;
mod psql;
mod runner;
mod workdir;

#[cfg(test)]
mod tests;

pub use bin_dir::{find_pg_bin_dir, PG_BIN_ENV};
pub use cluster::Cluster;
pub use error::ClusterError;
pub use node::Node;
pub use options::ClusterOptions;
