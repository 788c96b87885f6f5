//! The operator's view of the database behind a DatabaseProxy, in four steps the reconciler runs
//! each round:
//!
//! 1. [`resolve`]: which instances the target names and the login, read from the Kubernetes API
//!    (fixed endpoints, Services/EndpointSlices by label, or a CloudNativePG `Cluster`);
//! 2. [`probe`]: what each instance says right now (in recovery? WAL position? replay lag?), over
//!    one kept connection per instance;
//! 3. [`eligibility`]: which replicas may take reads, with hysteresis (pure, time passed in);
//! 4. [`snapshot`]: the `pgroute.control.v1.Snapshot` the sidecars get (pure).
//!
//! The failover decision ([`crate::failover`]) sits between 2 and 4: it reads
//! [`Observation::seen`] and names the primary that 3 and 4 are given.

mod duration;
pub mod eligibility;
pub mod probe;
pub mod resolve;
pub mod snapshot;

pub use duration::{parse_duration, SpecError};
pub use eligibility::{Eligibility, Limits, Reason, ReplicaVerdict};
pub use probe::{split_address, Observation, Prober};
pub use resolve::{instances, login, ResolveError};
pub use snapshot::build;

use crate::crd::EndpointRole;

/// One database instance the target names. `address` is `host:port` (`[v6]:port` for an IPv6
/// address), the form the sidecars' `BackendAddr` parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub address: String,
    /// The role the target declares (fixed endpoints, CloudNativePG's `currentPrimary`); `None` when
    /// only probing `pg_is_in_recovery()` can tell (Services, EndpointSlices).
    pub declared: Option<EndpointRole>,
}

/// How the operator logs in to probe the instances (from the DatabaseProxy's Secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    /// Always `postgres` for now: the probe reads server-wide functions only.
    pub dbname: String,
}

/// The password stays out of logs and panics.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// `host:port`, with brackets around an IPv6 address so the port stays unambiguous.
pub(crate) fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(host_port("10.0.0.7", 5432), "10.0.0.7:5432");
        assert_eq!(host_port("pg-0.db", 5433), "pg-0.db:5433");
        assert_eq!(host_port("fd00::7", 5432), "[fd00::7]:5432");
        assert_eq!(host_port("[fd00::7]", 5432), "[fd00::7]:5432");
    }

    #[test]
    fn a_login_does_not_print_its_password() {
        let login = Login {
            user: "app".into(),
            password: "hunter2".into(),
            dbname: "postgres".into(),
        };
        let shown = format!("{login:?}");
        assert!(
            shown.contains("app") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
