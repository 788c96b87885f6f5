//! `[admin]`: the PgBouncer-compatible admin console (`psql -d pgroute`). Kept apart from the rest of the
//! tree because only the login path and `admin::*` read it.

use serde::{Deserialize, Serialize};

/// Who may use the admin console, and under which database name. Read at each login: reloadable.
///
/// The console authenticates like any client (`auth.type` against the auth file), except that the
/// secret comes from the auth file only, never from `auth_query`: the console is no database, and the
/// right to pause or shut down the proxy should not follow from a database role. With
/// `auth.type = "trust"` anyone who can reach the listen port can claim to be one of these users and
/// run every command, `SHUTDOWN` included: with trust, keep both lists empty (the default) unless the
/// port is reachable only from where operators work.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The virtual database a client names to reach the console instead of a backend. Default
    /// `pgroute` (PgBouncer's is `pgbouncer`). A real database of the same name becomes unreachable
    /// through pgroute.
    pub database: String,
    /// Users who may run every command (`PAUSE`, `RESUME`, `RELOAD`, `DRAIN`, `UNDRAIN`, `SHUTDOWN`) and
    /// every `SHOW`. PgBouncer's `admin_users`. Default: none.
    pub users: Vec<String>,
    /// Users who may only run `SHOW` commands (monitoring, exporters). PgBouncer's `stats_users`.
    /// Default: none.
    pub stats_users: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            database: "pgroute".into(),
            users: Vec::new(),
            stats_users: Vec::new(),
        }
    }
}
