//! Read-your-writes for one client: remembering where its last write left the primary's WAL, and which
//! replicas may serve its reads because of it.
//!
//! After a transaction that may have written commits on the primary, the session asks that same
//! connection for `pg_current_wal_insert_lsn()` before returning it to the pool (one round trip, only for
//! writes, only when replicas are configured). A later read may use a replica only once the lag monitor
//! has seen it replay that position; until then it reads from the primary (or waits, or fails, as
//! `consistency.fallback` says). With `scope = user` or `token`, the position is shared through the
//! proxy's registry, so another connection of the same user or request waits for it too.

use std::time::{Duration, Instant};

use crate::classify::{Decision, Reason, Route};
use crate::config::{CausalScope, ConsistencyConfig, ConsistencyMode};
use crate::topology::{CausalRegistry, Lsn, ReplicaState};

use super::vars::SessionVars;

/// What a read must wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requirement {
    /// Nothing: any eligible replica.
    None,
    /// A replica that has replayed this WAL position.
    Replayed(Lsn),
    /// No replica until then (causal window).
    PrimaryUntil(Instant),
}

/// One client's read-after-write state.
#[derive(Debug)]
pub(crate) struct Causal {
    mode: ConsistencyMode,
    scope: CausalScope,
    window: Duration,
    user: String,
    /// This connection's own last write.
    own: Option<(Lsn, Instant)>,
    /// Lag this client's reads accept instead of the replicas' own limits: the user's
    /// (`consistency.user_max_lag`), else the database's (`consistency.database_max_lag`).
    pub(crate) max_lag: Option<Duration>,
}

/// The startup parameter / setting that names a causal token.
pub(crate) const TOKEN_SETTING: &str = "pgroute.causal_token";

impl Causal {
    pub(crate) fn new(config: &ConsistencyConfig, user: &str, database: &str) -> Causal {
        Causal {
            mode: config.mode,
            scope: config.scope,
            window: config.causal_window,
            user: user.to_owned(),
            own: None,
            max_lag: config
                .user_max_lag
                .get(user)
                .or_else(|| config.database_max_lag.get(database))
                .map(|d| **d),
        }
    }

    /// Whether a batch routed by `decision` may have written (and its commit must be waited for).
    /// Reads that ended up on the primary for other reasons did not.
    pub(crate) fn may_write(&self, decision: Decision) -> bool {
        self.mode != ConsistencyMode::None
            && decision.route == Route::Primary
            && !matches!(
                decision.reason,
                Reason::PrimaryOnlySetting
                    | Reason::NoReplica
                    | Reason::PrimaryShare
                    | Reason::ReadYourWrites
                    | Reason::ReplicaLagging
                    | Reason::SessionMode
            )
    }

    /// Whether recording a write needs the primary's WAL position (read-your-writes) or only the time.
    pub(crate) fn needs_lsn(&self) -> bool {
        self.mode == ConsistencyMode::ReadYourWrites
    }

    /// Records a committed write (its WAL position, 0 in causal-window mode).
    pub(crate) fn wrote(&mut self, lsn: Lsn, vars: &SessionVars, registry: &CausalRegistry) {
        let now = Instant::now();
        let lsn = self.own.map_or(lsn, |(l, _)| l.max(lsn));
        self.own = Some((lsn, now));
        if let Some(key) = self.shared_key(vars) {
            registry.record(&key, lsn);
        }
    }

    /// What this client's next read must wait for.
    pub(crate) fn requirement(&self, vars: &SessionVars, registry: &CausalRegistry) -> Requirement {
        let shared = self.shared_key(vars).and_then(|k| registry.get(&k));
        let last = match (self.own, shared) {
            (Some(a), Some(b)) => Some((a.0.max(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        let Some((lsn, at)) = last else {
            return Requirement::None;
        };
        match self.mode {
            ConsistencyMode::None => Requirement::None,
            ConsistencyMode::ReadYourWrites => Requirement::Replayed(lsn),
            ConsistencyMode::CausalWindow => {
                let until = at + self.window;
                if Instant::now() < until {
                    Requirement::PrimaryUntil(until)
                } else {
                    Requirement::None
                }
            }
        }
    }

    fn shared_key(&self, vars: &SessionVars) -> Option<String> {
        match self.scope {
            CausalScope::Connection => None,
            CausalScope::User => Some(format!("user:{}", self.user)),
            CausalScope::Token => vars
                .get(TOKEN_SETTING)
                .and_then(setting_value)
                .map(|t| format!("token:{t}")),
        }
    }
}

/// Whether `replica` may serve a read that needs `req` and accepts `max_lag` (its configured limit when
/// `None`).
pub(crate) fn replica_usable(
    replica: &ReplicaState,
    req: Requirement,
    max_lag: Option<Duration>,
) -> bool {
    let lag_ok = match max_lag {
        Some(limit) => replica.within(limit),
        None => replica.eligible(),
    };
    lag_ok
        && match req {
            Requirement::None => true,
            Requirement::Replayed(lsn) => replica.replay_lsn() >= lsn,
            Requirement::PrimaryUntil(until) => Instant::now() >= until,
        }
}

/// The value in a tracked `SET name = value` / `SET name TO value` statement.
fn setting_value(stmt: &str) -> Option<&str> {
    let lower = stmt.to_ascii_lowercase();
    let at = lower
        .find('=')
        .map(|i| i + 1)
        .or_else(|| lower.find(" to ").map(|i| i + 4))?;
    let v = stmt[at..].trim().trim_end_matches(';').trim();
    let v = v.trim_matches('\'').trim_matches('"');
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_from_either_form_of_set() {
        assert_eq!(
            setting_value("SET \"pgroute.causal_token\" = 'req-1'"),
            Some("req-1")
        );
        assert_eq!(
            setting_value("set pgroute.causal_token to req-1;"),
            Some("req-1")
        );
        assert_eq!(setting_value("SET pgroute.causal_token = ''"), None);
    }

    #[test]
    fn own_writes_require_their_position_and_windows_expire() {
        let registry = CausalRegistry::default();
        let vars = SessionVars::default();
        let mut c = Causal::new(&ConsistencyConfig::default(), "app", "db");
        assert_eq!(c.requirement(&vars, &registry), Requirement::None);
        c.wrote(42, &vars, &registry);
        c.wrote(7, &vars, &registry);
        assert_eq!(c.requirement(&vars, &registry), Requirement::Replayed(42));

        let config = ConsistencyConfig {
            mode: ConsistencyMode::CausalWindow,
            causal_window: Duration::ZERO,
            ..ConsistencyConfig::default()
        };
        let mut w = Causal::new(&config, "app", "db");
        w.wrote(0, &vars, &registry);
        assert_eq!(w.requirement(&vars, &registry), Requirement::None);
    }

    #[test]
    fn a_users_lag_limit_wins_over_its_databases() {
        let mut config = ConsistencyConfig::default();
        config
            .user_max_lag
            .insert("reporting".into(), Duration::from_secs(60).into());
        config
            .database_max_lag
            .insert("billing".into(), Duration::from_millis(200).into());
        let limit = |user, db| Causal::new(&config, user, db).max_lag;
        assert_eq!(limit("reporting", "billing"), Some(Duration::from_secs(60)));
        assert_eq!(limit("app", "billing"), Some(Duration::from_millis(200)));
        assert_eq!(limit("app", "other"), None);
    }

    #[test]
    fn user_scope_shares_writes_between_connections() {
        let registry = CausalRegistry::default();
        let vars = SessionVars::default();
        let config = ConsistencyConfig {
            scope: CausalScope::User,
            ..ConsistencyConfig::default()
        };
        let mut a = Causal::new(&config, "app", "db");
        let b = Causal::new(&config, "app", "db");
        let other = Causal::new(&config, "someone", "db");
        a.wrote(99, &vars, &registry);
        assert_eq!(b.requirement(&vars, &registry), Requirement::Replayed(99));
        assert_eq!(other.requirement(&vars, &registry), Requirement::None);
    }
}
